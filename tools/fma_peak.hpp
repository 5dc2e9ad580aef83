// The CPU's measured fp32 FMA peak, the denominator of bench's "% of peak". It is measured by the
// same binary, in the same run, with the same thread count as the bench, so clocks, turbo and SMT
// sharing are those the attention kernels see.
#pragma once

namespace longattn::cli {

struct FmaPeak {
  double gflops = 0;        // all threads together
  int threads = 0;
  const char* isa = "";     // "avx512f", "avx2+fma" or "scalar"
  int lanes = 1;            // fp32 lanes per vector
};

// Runs a register-resident FMA loop on `threads` threads at once for about a quarter second.
FmaPeak measure_fma_peak(int threads);

}  // namespace longattn::cli
