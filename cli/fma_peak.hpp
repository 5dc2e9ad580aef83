// The CPU's measured fp32 FMA peak, the denominator of bench's "% of peak". It is measured by the
// same binary, in the same run, with the same thread count as the bench, so clocks, turbo and SMT
// sharing are those the attention kernels see.
#pragma once

namespace longattn::cli {

struct FmaPeak {
  double gflops = 0;     // all threads together
  int threads = 0;       // threads asked for
  int running = 0;       // of those, running at once: at most one per online CPU
  const char* isa = "";  // "avx512f", "avx2+fma" or "scalar"
  int lanes = 1;         // fp32 lanes per vector
  double ghz = 0;        // core clock, measured with a dependent add chain on one thread
  // ~32 on Zen4 (one 512-bit or two 256-bit FMAs per cycle), 64 on Intel cores with two 512-bit
  // FMA units. Far below means the threads did not all get a core of their own.
  double flops_per_cycle() const { return ghz > 0 ? gflops / ghz / running : 0; }
};

// Runs a register-resident FMA loop on `threads` threads at once, three trials of ~80 ms each.
FmaPeak measure_fma_peak(int threads);

}  // namespace longattn::cli
