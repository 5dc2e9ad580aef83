#include "fma_peak.hpp"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <thread>
#include <vector>

namespace longattn::cli {
namespace {

using Clock = std::chrono::steady_clock;

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

// Seconds for `threads` threads to each run `iterations`, started together.
double timed_run(const Kernel& k, int threads, int64_t iterations) {
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::atomic<float> sink{0};  // keeps the loops' results, so the compiler cannot drop them
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&] {
      ready.fetch_add(1);
      while (!go.load(std::memory_order_acquire)) {
      }
      float r = k.loop(iterations);
      float expected = sink.load();
      while (!sink.compare_exchange_weak(expected, expected + r)) {
      }
    });
  while (ready.load() < threads) std::this_thread::yield();
  auto start = Clock::now();
  go.store(true, std::memory_order_release);
  for (auto& th : pool) th.join();
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace

FmaPeak measure_fma_peak(int threads) {
  threads = std::max(1, threads);
  const Kernel k = pick_kernel();
  // Calibrate on one thread to about 80 ms per trial, then keep the best of three trials (the
  // machine may be shared; the peak is what the core can do, so the fastest trial is the truth).
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
  const double flops = 2.0 * double(iterations) * k.accumulators * k.lanes * threads;
  return {flops / best * 1e-9, threads, k.isa, k.lanes};
}

}  // namespace longattn::cli
