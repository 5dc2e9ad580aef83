#include "fma_peak.hpp"

#include <immintrin.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <thread>
#include <vector>

namespace longattn::cli {
namespace {

// Independent accumulators hide the FMA latency: Zen4 and Intel cores keep about latency (4
// cycles) x pipes (2) FMAs in flight, so 8 suffice and 12-16 leave margin. AVX-512 has 32 vector
// registers, AVX2 16: 12 there leaves room for the two constant operands without spilling.
constexpr int kAccumulators512 = 16;
constexpr int kAccumulators256 = 12;
// acc = acc * a + b converges to b / (1 - a) = 1: values stay normal, never overflow or denormal.
constexpr float kA = 0.999f, kB = 0.001f;

__attribute__((target("avx512f"))) float fma_loop_avx512(int64_t iterations) {
  __m512 acc[kAccumulators512];
  for (int i = 0; i < kAccumulators512; ++i) acc[i] = _mm512_set1_ps(float(i));
  const __m512 a = _mm512_set1_ps(kA), b = _mm512_set1_ps(kB);
  for (int64_t n = 0; n < iterations; ++n) {
#pragma GCC unroll 16
    for (int i = 0; i < kAccumulators512; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  }
  for (int i = 1; i < kAccumulators512; ++i) acc[0] = _mm512_add_ps(acc[0], acc[i]);
  // A store, not _mm512_reduce_add_ps: GCC 12 warns about uninitialized values inside that one.
  float lanes[16];
  _mm512_storeu_ps(lanes, acc[0]);
  float sum = 0;
  for (float x : lanes) sum += x;
  return sum;
}

__attribute__((target("avx2,fma"))) float fma_loop_avx2(int64_t iterations) {
  __m256 acc[kAccumulators256];
  for (int i = 0; i < kAccumulators256; ++i) acc[i] = _mm256_set1_ps(float(i));
  const __m256 a = _mm256_set1_ps(kA), b = _mm256_set1_ps(kB);
  for (int64_t n = 0; n < iterations; ++n) {
#pragma GCC unroll 12
    for (int i = 0; i < kAccumulators256; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  }
  for (int i = 1; i < kAccumulators256; ++i) acc[0] = _mm256_add_ps(acc[0], acc[i]);
  float lanes[8];
  _mm256_storeu_ps(lanes, acc[0]);
  float sum = 0;
  for (float x : lanes) sum += x;
  return sum;
}

float fma_loop_scalar(int64_t iterations) {
  float acc[kAccumulators256];
  for (int i = 0; i < kAccumulators256; ++i) acc[i] = float(i);
  for (int64_t n = 0; n < iterations; ++n)
    for (float& x : acc) x = std::fma(x, kA, kB);
  float sum = 0;
  for (float x : acc) sum += x;
  return sum;
}

struct Kernel {
  float (*loop)(int64_t);
  const char* isa;
  int lanes, accumulators;
};

Kernel pick_kernel() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return {fma_loop_avx512, "avx512f", 16, kAccumulators512};
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    return {fma_loop_avx2, "avx2+fma", 8, kAccumulators256};
  return {fma_loop_scalar, "scalar", 1, kAccumulators256};
}

// CPU seconds of the calling thread. Timing by CPU time rather than wall time makes the peak the
// hardware's, not the scheduler's: on a shared machine another process may preempt a thread
// mid-trial, which wall time would count against the core.
double thread_cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

// `threads` threads, started together, each run `iterations`; returns the slowest thread's CPU
// seconds (the threads share caches, power and, with SMT, cores, so they must run at once).
double timed_run(const Kernel& k, int threads, int64_t iterations) {
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<double> seconds(static_cast<size_t>(threads));
  std::vector<float> sink(static_cast<size_t>(threads));  // keeps the loops' results alive
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      ready.fetch_add(1);
      while (!go.load(std::memory_order_acquire)) {
      }
      double start = thread_cpu_seconds();
      sink[size_t(t)] = k.loop(iterations);
      seconds[size_t(t)] = thread_cpu_seconds() - start;
    });
  while (ready.load() < threads) std::this_thread::yield();
  go.store(true, std::memory_order_release);
  for (auto& th : pool) th.join();
  volatile float keep = std::accumulate(sink.begin(), sink.end(), 0.0f);
  (void)keep;
  return *std::max_element(seconds.begin(), seconds.end());
}

// A chain of dependent register adds retires one add per cycle on every x86 core, so adds per
// CPU second is the clock the core runs at now (turbo included), which /proc/cpuinfo does not say.
double measure_clock_ghz() {
  constexpr int64_t kBlocks = 1'000'000;
  constexpr int kAddsPerBlock = 50;  // the .rept count below
  double best = 1e30;
  for (int trial = 0; trial < 3; ++trial) {
    uint64_t x = 0;
    double start = thread_cpu_seconds();
    for (int64_t i = 0; i < kBlocks; ++i) asm volatile(".rept 50\n\tadd $1, %0\n\t.endr" : "+r"(x));
    best = std::min(best, thread_cpu_seconds() - start);
  }
  return double(kBlocks) * kAddsPerBlock / best * 1e-9;
}

}  // namespace

FmaPeak measure_fma_peak(int threads) {
  threads = std::max(1, threads);
  const Kernel k = pick_kernel();
  // Calibrate on one thread to about 80 ms per trial, then keep the best of three trials.
  constexpr double kTrialSeconds = 0.08;
  int64_t iterations = 1 << 14;
  double t = timed_run(k, 1, iterations);
  while (t < kTrialSeconds / 8) {
    iterations *= 4;
    t = timed_run(k, 1, iterations);
  }
  iterations = std::max<int64_t>(1, int64_t(double(iterations) * kTrialSeconds / t));
  double best = 1e30;
  for (int trial = 0; trial < 3; ++trial) best = std::min(best, timed_run(k, threads, iterations));
  const double per_thread = 2.0 * double(iterations) * k.accumulators * k.lanes / best;
  // CPU time would credit each of more threads than CPUs with a whole CPU; at most one per CPU.
  const long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  const int running = cpus > 0 ? int(std::min<long>(threads, cpus)) : threads;
  return {per_thread * running * 1e-9, threads, running, k.isa, k.lanes, measure_clock_ghz()};
}

}  // namespace longattn::cli
