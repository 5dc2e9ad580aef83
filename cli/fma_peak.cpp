#include "fma_peak.hpp"

#include <immintrin.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <numeric>
#include <set>
#include <thread>
#include <vector>

#include "longattn/longattn.h"

namespace longattn::cli {
namespace {

// Independent accumulators hide the FMA latency: Zen4 and Intel cores keep about latency (4
// cycles) x pipes (2) FMAs in flight, so 8 suffice and 12-16 leave margin. AVX-512 has 32 vector
// registers, AVX2 and SSE 16: 12 there leaves room for the two constant operands without spilling.
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

// The generic kernels are built for baseline x86-64: SSE2, a multiply and an add per FMA.
float fma_loop_sse2(int64_t iterations) {
  __m128 acc[kAccumulators256];
  for (int i = 0; i < kAccumulators256; ++i) acc[i] = _mm_set1_ps(float(i));
  const __m128 a = _mm_set1_ps(kA), b = _mm_set1_ps(kB);
  for (int64_t n = 0; n < iterations; ++n) {
#pragma GCC unroll 12
    for (int i = 0; i < kAccumulators256; ++i) acc[i] = _mm_add_ps(_mm_mul_ps(acc[i], a), b);
  }
  for (int i = 1; i < kAccumulators256; ++i) acc[0] = _mm_add_ps(acc[0], acc[i]);
  float lanes[4];
  _mm_storeu_ps(lanes, acc[0]);
  return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}

// AMX-BF16: four independent 16 x 16 float32 tiles, each += a 16 x 32 by 32 x 16 bf16 product
// (8192 multiply-adds) per instruction, the operands loaded once: the kernels' 2 x 2 blocking.
// Only for a process the kernel has granted the tile state (the library's "amx" kernels).
__attribute__((target("amx-tile,amx-bf16"))) float amx_loop(int64_t iterations) {
  struct alignas(64) {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
  } config{};
  config.palette = 1;
  for (int i = 0; i < 8; ++i) config.colsb[i] = 64, config.rows[i] = 16;
  _tile_loadconfig(&config);
  // bf16 1.0 everywhere (zeros could draw less power than real data): each C element grows by 32
  // per instruction, exact in float32 far past any trial's count.
  alignas(64) uint16_t operand[16 * 32];
  std::fill(operand, operand + 16 * 32, uint16_t(0x3f80));
  _tile_loadd(4, operand, 64);
  _tile_loadd(5, operand, 64);
  _tile_loadd(6, operand, 64);
  _tile_loadd(7, operand, 64);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  for (int64_t n = 0; n < iterations; ++n) {
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  alignas(64) float out[16 * 16];
  _tile_stored(0, out, 64);
  _tile_release();
  return out[0];
}

struct Kernel {
  float (*loop)(int64_t);
  const char* isa;
  int lanes, accumulators;
};

Kernel pick_kernel(const std::string& kernels_isa) {
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f");
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const Kernel k512{fma_loop_avx512, "avx512f", 16, kAccumulators512};
  const Kernel k256{fma_loop_avx2, "avx2+fma", 8, kAccumulators256};
  const Kernel k128{fma_loop_sse2, "sse2", 4, kAccumulators256};
  if (kernels_isa == "amx-tiles") return {amx_loop, "amx-bf16", 8192, 4};
  if (kernels_isa == "generic") return k128;
  if (kernels_isa == "avx2" && avx2) return k256;
  if (kernels_isa.rfind("avx512", 0) == 0 && avx512) return k512;
  return avx512 ? k512 : avx2 ? k256 : k128;  // "" or a name this code does not know
}

// CPU seconds of the calling thread. Timing compute by CPU time rather than wall time makes the
// peak the hardware's, not the scheduler's: on a shared machine another process may preempt a
// thread mid-trial, which wall time would count against the core.
double thread_cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

double wall_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Threads meet here before each trial, so a trial starts on all of them at once.
class Barrier {
 public:
  explicit Barrier(int n) : n_(n) {}
  void wait() {
    const int generation = generation_.load(std::memory_order_acquire);
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) + 1 == n_) {
      arrived_.store(0, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_release);
      return;
    }
    while (generation_.load(std::memory_order_acquire) == generation) std::this_thread::yield();
  }

 private:
  const int n_;
  std::atomic<int> arrived_{0};
  std::atomic<int> generation_{0};
};

struct TrialTime {
  double cpu = 0;   // the slowest thread's CPU seconds
  double wall = 0;  // from the first thread's start to the last one's end
};

// `threads` threads, started once, each run body(thread) `trials` times; the threads share
// caches, power, memory channels and, with SMT, cores, so every trial runs on all of them at once.
std::vector<TrialTime> run_trials(int threads, int trials, const std::function<void(int)>& body) {
  const size_t n = size_t(threads) * size_t(trials);
  std::vector<double> cpu(n), start(n), end(n);
  Barrier barrier(threads);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      for (int trial = 0; trial < trials; ++trial) {
        barrier.wait();
        const size_t i = size_t(trial) * size_t(threads) + size_t(t);
        start[i] = wall_seconds();
        const double cpu_start = thread_cpu_seconds();
        body(t);
        cpu[i] = thread_cpu_seconds() - cpu_start;
        end[i] = wall_seconds();
      }
    });
  for (auto& th : pool) th.join();
  std::vector<TrialTime> out(static_cast<size_t>(trials));
  for (int trial = 0; trial < trials; ++trial) {
    const size_t lo = size_t(trial) * size_t(threads), hi = lo + size_t(threads);
    out[size_t(trial)].cpu = *std::max_element(cpu.begin() + lo, cpu.begin() + hi);
    out[size_t(trial)].wall = *std::max_element(end.begin() + lo, end.begin() + hi) -
                              *std::min_element(start.begin() + lo, start.begin() + hi);
  }
  return out;
}

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Streaming reads: four independent XOR chains (latency 1) so the loads, not the ALU, set the
// pace; the result is returned so the loads cannot be dropped. `bytes` is a multiple of 256.
__attribute__((target("avx512f"))) uint64_t read_avx512(const char* p, int64_t bytes) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  for (int64_t i = 0; i < bytes; i += 256) {
    a0 = _mm512_xor_si512(a0, _mm512_load_si512(p + i));
    a1 = _mm512_xor_si512(a1, _mm512_load_si512(p + i + 64));
    a2 = _mm512_xor_si512(a2, _mm512_load_si512(p + i + 128));
    a3 = _mm512_xor_si512(a3, _mm512_load_si512(p + i + 192));
  }
  a0 = _mm512_xor_si512(_mm512_xor_si512(a0, a1), _mm512_xor_si512(a2, a3));
  uint64_t lanes[8];
  _mm512_storeu_si512(lanes, a0);
  uint64_t x = 0;
  for (uint64_t v : lanes) x ^= v;
  return x;
}

__attribute__((target("avx2"))) uint64_t read_avx2(const char* p, int64_t bytes) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (int64_t i = 0; i < bytes; i += 128) {
    a0 = _mm256_xor_si256(a0, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_xor_si256(a1, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 32)));
    a2 = _mm256_xor_si256(a2, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 64)));
    a3 = _mm256_xor_si256(a3, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 96)));
  }
  a0 = _mm256_xor_si256(_mm256_xor_si256(a0, a1), _mm256_xor_si256(a2, a3));
  uint64_t lanes[4];
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(lanes), a0);
  return lanes[0] ^ lanes[1] ^ lanes[2] ^ lanes[3];
}

uint64_t read_sse2(const char* p, int64_t bytes) {
  __m128i a0 = _mm_setzero_si128(), a1 = a0, a2 = a0, a3 = a0;
  for (int64_t i = 0; i < bytes; i += 64) {
    a0 = _mm_xor_si128(a0, _mm_load_si128(reinterpret_cast<const __m128i*>(p + i)));
    a1 = _mm_xor_si128(a1, _mm_load_si128(reinterpret_cast<const __m128i*>(p + i + 16)));
    a2 = _mm_xor_si128(a2, _mm_load_si128(reinterpret_cast<const __m128i*>(p + i + 32)));
    a3 = _mm_xor_si128(a3, _mm_load_si128(reinterpret_cast<const __m128i*>(p + i + 48)));
  }
  a0 = _mm_xor_si128(_mm_xor_si128(a0, a1), _mm_xor_si128(a2, a3));
  uint64_t lanes[2];
  _mm_storeu_si128(reinterpret_cast<__m128i*>(lanes), a0);
  return lanes[0] ^ lanes[1];
}

bool read_file_line(const std::string& path, std::string* out) {
  std::ifstream f(path);
  return static_cast<bool>(std::getline(f, *out));
}

}  // namespace

FmaPeak measure_fma_peak(int threads, const std::string& kernels_isa) {
  threads = std::max(1, threads);
  const Kernel k = pick_kernel(kernels_isa);
  std::vector<float> sink(static_cast<size_t>(threads));  // keeps the loops' results alive
  int64_t iterations = 1 << 14;
  auto body = [&](int t) { sink[size_t(t)] = k.loop(iterations); };
  // Calibrate on one thread to about 30 ms per trial, then keep the best of ten trials.
  constexpr double kTrialSeconds = 0.03;
  constexpr int kTrials = 10;
  double t = run_trials(1, 1, body)[0].cpu;
  while (t < kTrialSeconds / 8) {
    iterations *= 4;
    t = run_trials(1, 1, body)[0].cpu;
  }
  iterations = std::max<int64_t>(1, int64_t(double(iterations) * kTrialSeconds / t));
  std::vector<double> seconds;
  for (const TrialTime& tt : run_trials(threads, kTrials, body)) seconds.push_back(tt.cpu);
  volatile float keep = std::accumulate(sink.begin(), sink.end(), 0.0f);
  (void)keep;
  // CPU time would credit each of more threads than CPUs with a whole CPU; at most one per CPU.
  const long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  const int running = cpus > 0 ? int(std::min<long>(threads, cpus)) : threads;
  const double flops = 2.0 * double(iterations) * k.accumulators * k.lanes * running;
  FmaPeak p;
  p.gflops = flops / *std::min_element(seconds.begin(), seconds.end()) * 1e-9;
  p.median_gflops = flops / median_of(seconds) * 1e-9;
  p.trials = kTrials;
  p.threads = threads;
  p.running = running;
  p.isa = k.isa;
  p.what = k.loop == amx_loop ? "bf16 tile products" : "fp32 FMAs";
  p.lanes = k.lanes;
  return p;
}

ReadBandwidth measure_read_bandwidth(int threads, int64_t bytes) {
  threads = std::max(1, threads);
  __builtin_cpu_init();
  uint64_t (*read)(const char*, int64_t) = read_sse2;
  const char* isa = "sse2";
  if (__builtin_cpu_supports("avx512f"))
    read = read_avx512, isa = "avx512f";
  else if (__builtin_cpu_supports("avx2"))
    read = read_avx2, isa = "avx2";
  // Each thread reads its own slice, whole 4 KiB pages (so also whole 256-byte loop steps).
  constexpr int64_t kAlign = 4096;
  const int64_t slice = std::max<int64_t>(kAlign, (bytes / threads + kAlign - 1) / kAlign * kAlign);
  const int64_t total = slice * threads;
  struct Free {
    void operator()(char* p) const { std::free(p); }
  };
  std::unique_ptr<char, Free> buffer(static_cast<char*>(std::aligned_alloc(kAlign, size_t(total))));
  if (!buffer) return {};
  char* base = buffer.get();
  // Written first, by the thread that will read the slice (its pages land on that thread's NUMA
  // node); untouched pages would all map the one zero page and read from cache.
  run_trials(threads, 1, [&](int t) { std::memset(base + slice * t, 0x5a, size_t(slice)); });

  std::vector<uint64_t> sink(static_cast<size_t>(threads));
  int passes = 1;
  auto body = [&](int t) {
    for (int p = 0; p < passes; ++p) sink[size_t(t)] ^= read(base + slice * t, slice);
  };
  // One pass to warm up and size the trials: at least ~50 ms each, so the threads' staggered
  // starts after the barrier are small next to the trial.
  constexpr double kTrialSeconds = 0.05;
  constexpr int kTrials = 5;
  const double once = run_trials(threads, 1, body)[0].wall;
  passes = int(std::clamp(std::ceil(kTrialSeconds / std::max(once, 1e-6)), 1.0, 1000.0));
  std::vector<double> seconds;
  for (const TrialTime& tt : run_trials(threads, kTrials, body)) seconds.push_back(tt.wall);
  volatile uint64_t keep = std::accumulate(sink.begin(), sink.end(), uint64_t(0));
  (void)keep;
  const double read_bytes = double(total) * passes;
  ReadBandwidth r;
  r.gbps = read_bytes / *std::min_element(seconds.begin(), seconds.end()) * 1e-9;
  r.median_gbps = read_bytes / median_of(seconds) * 1e-9;
  r.trials = kTrials;
  r.threads = threads;
  r.bytes = total;
  r.isa = isa;
  return r;
}

int64_t last_level_cache_bytes() {
  constexpr int64_t kFallback = int64_t(32) << 20;
  int best_level = 0;
  int64_t total = 0;
  std::set<std::string> seen;  // shared_cpu_list of the caches counted: each instance once
  const long cpus = sysconf(_SC_NPROCESSORS_CONF);
  for (long cpu = 0; cpu < std::max(1L, cpus); ++cpu) {
    const std::string dir = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/cache/index";
    for (int index = 0;; ++index) {
      const std::string d = dir + std::to_string(index) + "/";
      std::string level, type, size, shared;
      if (!read_file_line(d + "level", &level)) break;
      if (!read_file_line(d + "type", &type) || type == "Instruction" ||
          !read_file_line(d + "size", &size) || !read_file_line(d + "shared_cpu_list", &shared))
        continue;
      const int lvl = std::atoi(level.c_str());
      int64_t b = std::atoll(size.c_str());
      if (size.find('K') != std::string::npos) b <<= 10;
      if (size.find('M') != std::string::npos) b <<= 20;
      if (lvl > best_level) best_level = lvl, total = 0, seen.clear();
      if (lvl == best_level && seen.insert(shared).second) total += b;
    }
  }
  return total > 0 ? total : kFallback;
}

std::string cpu_kernels_isa() {
  longattn_device_info info;
  if (longattn_device_query(LONGATTN_DEVICE_CPU, &info) != LONGATTN_OK) return "";
  const char* key = std::strstr(info.features, "kernels=");
  if (!key) return "";
  key += std::strlen("kernels=");
  return std::string(key, std::strcspn(key, " "));
}

}  // namespace longattn::cli
