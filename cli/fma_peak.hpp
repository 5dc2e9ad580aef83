// The CPU's two ceilings, the denominators of bench's "% peak" and "% BW": the fp32 FMA peak
// (compute-bound shapes: prefill) and the streaming read bandwidth (memory-bound shapes: decode).
// Both are measured by the same binary, in the same run, with the same thread count as the bench,
// so clocks, turbo, SMT sharing and memory channels are those the attention kernels see. Each is
// the best of several short trials on one team of threads, started once; the median trial says
// how steady the machine was.
#pragma once

#include <cstdint>
#include <string>

namespace longattn::cli {

struct FmaPeak {
  double gflops = 0;         // best trial, all threads together
  double median_gflops = 0;  // median trial
  int trials = 0;
  int threads = 0;  // threads asked for
  int running = 0;  // of those, running at once: at most one per online CPU
  const char* isa =
      "";  // the loop's instructions: "avx512f", "avx2+fma", "sse2" (mul+add), "amx-bf16"
  const char* what = "fp32 FMAs";  // or "bf16 tile products" (AMX)
  int lanes = 1;  // fp32 lanes per vector (AMX: multiply-adds per tile instruction)
  // No clock and no flops per cycle: a dependent add chain (the usual clock probe) is eliminated
  // at rename on some cores (Golden Cove: it read 7.7-17.6 "GHz"), and no other chain has the
  // same latency on every vendor's cores.
};

// Runs a register-resident FMA loop on `threads` threads at once, ten trials of ~30 ms each, with
// the vector width of the library's CPU kernels `kernels_isa` ("avx512bf16", "avx512", "avx2",
// "generic"; "" for the best this CPU has): their ceiling, also when LONGATTN_CPU_ISA lowers them.
// "amx-tiles": the AMX-BF16 tile loop instead, the ceiling of the "amx" kernels' bf16 prefill
// tiles (only where the library runs those: the process then holds the tile state).
FmaPeak measure_fma_peak(int threads, const std::string& kernels_isa = "");

struct ReadBandwidth {
  double gbps = 0;         // best trial: bytes read / wall seconds, 1e9 bytes per GB
  double median_gbps = 0;  // median trial
  int trials = 0;
  int threads = 0;
  int64_t bytes = 0;     // the buffer, read whole once or more per trial
  const char* isa = "";  // the loads: "avx512f", "avx2" or "sse2"
};

// Reads a `bytes` buffer (written first, each thread its own slice) on `threads` threads at once:
// a plain streaming read, every byte once per pass, as attention's decode reads K and V. Five
// trials of at least ~50 ms each.
ReadBandwidth measure_read_bandwidth(int threads, int64_t bytes);

// The last-level cache of the whole machine: the largest level's size times its instances
// (several L3s on multi-die CPUs), from sysfs; 32 MiB when it cannot be read.
int64_t last_level_cache_bytes();

// The ISA of the library's CPU kernels ("avx2", ...), from longattn_device_query's features
// ("kernels=avx2 ..."); "" when it does not say.
std::string cpu_kernels_isa();

}  // namespace longattn::cli
