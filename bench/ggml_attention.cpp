// longattn against ggml's CPU flash attention (ggml_flash_attn_ext) in one process, shapes of
// issue 21. Built and run by bench/ggml_compare.sh; prints a markdown table on stdout.
//
//   ggml_attention [--threads N] [--trials N] [--only NAME,...] [--lk-scale F] [--extras-all]
//                  [--no-verify]
//
// ggml runs as llama.cpp runs it on the CPU: Q float32 [d, Lq, Hq] (a permuted view of the
// projection output [d, Hq, Lq]), K and V float16 views [d, Lk, Hkv] of a token-major cache
// [Lk][Hkv][d], for causal an f16 mask [Lk, Lq] of 0 / -inf (padded to GGML_KQ_MASK_PAD rows where
// the ggml version defines it), scale 1/sqrt(d), precision F32, one graph computed with
// ggml_graph_compute on a threadpool of the same thread count. longattn runs the same problem
// through longattn_attention (AUTO path) with bf16 Q/K/V/O in its contiguous [B, H, L, D] layout.
// Timings alternate the two (one warm-up each, then trials whose order rotates every trial).
//
// Columns: ms are the median (and best) of the trials; GFLOPS count 4 * Lq * visible keys * d * Hq
// (visible pairs only under causal); decode GB/s are the K + V bytes over the median time, and
// % BW that against a plain multi-threaded streaming read of 256 MiB measured in this process.
// ratio = ggml ms / longattn ms (> 1: longattn is faster). Decode shapes (all with --extras-all)
// add two rows' worth of context: ggml on contiguous head-major K/V (the layout's share of ggml's
// time; ratio against longattn bf16) and longattn with f16 Q/K/V/O (ratio against ggml).
#include <ggml-cpu.h>
#include <ggml.h>
#include <longattn/longattn.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

struct Shape {
  const char* name;
  int64_t d, hq, hkv, lq, lk;
  bool causal;
};

// The shapes of issue 21 (bf16 for longattn; ggml f16 K/V, f32 Q).
const Shape kShapes[] = {
    {"d256_512x16K", 256, 16, 8, 512, 16384, false},
    {"d256_512x16K_causal", 256, 16, 8, 512, 16384, true},
    {"d256_4Kx4K_causal", 256, 16, 8, 4096, 4096, true},
    {"d128_512x16K", 128, 16, 8, 512, 16384, false},
    {"d128_512x16K_causal", 128, 16, 8, 512, 16384, true},
    {"d512_16/2_512x8K", 512, 16, 2, 512, 8192, false},
    {"d512_16/2_512x8K_causal", 512, 16, 2, 512, 8192, true},
    {"decode_d256_1x32K", 256, 16, 8, 1, 32768, false},
    {"decode_d128_32/8_1x32K", 128, 32, 8, 1, 32768, false},
};

double now_ms() {
  return std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

uint16_t float_to_bf16(float f) {  // round to nearest even
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fff + ((u >> 16) & 1);
  return static_cast<uint16_t>(u >> 16);
}

float bf16_to_float(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Keys query row i sees under bottom-right causal: j <= i + (Lk - Lq).
int64_t visible_keys(const Shape& s, int64_t i) {
  if (!s.causal) return s.lk;
  return std::clamp<int64_t>(i + (s.lk - s.lq) + 1, 0, s.lk);
}

double visible_pairs(const Shape& s) {
  double n = 0;
  for (int64_t i = 0; i < s.lq; ++i) n += static_cast<double>(visible_keys(s, i));
  return n;
}

// One problem in both layouts. The values are drawn once in float and rounded to the element type
// of the run (bf16 for timing; f16 for the check, so both libraries see identical inputs).
struct Problem {
  Shape s;
  int threads;
  bool f16;  // longattn in f16 (the check) instead of bf16

  // longattn: [Hq][Lq][d] Q and O, [Hkv][Lk][d] K and V, 16-bit elements; h*: the same values in
  // f16 (the bf16 run's values converted; only where asked for).
  std::vector<uint16_t> q16, k16, v16, o16, qh, kh, vh, oh;
  // ggml: graph 0 reads K/V as views of llama.cpp's token-major cache; graph 1 (only where
  // asked for) reads contiguous [d, Lk, Hkv] K/V, to tell the layout's cost from the kernel's.
  ggml_context* ctx = nullptr;
  ggml_cgraph* graph[2] = {};
  ggml_tensor* out[2] = {};
  ggml_threadpool* pool = nullptr;
  ggml_cplan cplan[2] = {};
  std::vector<uint8_t> work[2];

  Problem(const Shape& shape, int n_threads, bool use_f16, uint32_t seed, bool head_major)
      : s(shape), threads(n_threads), f16(use_f16) {
    const int64_t d = s.d, nq = s.hq * s.lq * d, nkv = s.hkv * s.lk * d;
    q16.resize(nq), o16.resize(nq), k16.resize(nkv), v16.resize(nkv);
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> uni(-1.f, 1.f);
    auto to16 = [&](float x) { return f16 ? ggml_fp32_to_fp16(x) : float_to_bf16(x); };
    for (auto& x : q16) x = to16(uni(rng));
    for (auto& x : k16) x = to16(uni(rng));
    for (auto& x : v16) x = to16(uni(rng));
    build_ggml(head_major);
  }
  ~Problem() {
    if (pool) ggml_threadpool_free(pool);
    if (ctx) ggml_free(ctx);
  }
  float value(uint16_t h) const { return f16 ? ggml_fp16_to_fp32(h) : bf16_to_float(h); }

  void add_f16_copy() {
    auto conv = [&](const std::vector<uint16_t>& src, std::vector<uint16_t>& dst) {
      dst.resize(src.size());
      for (size_t i = 0; i < src.size(); ++i) dst[i] = ggml_fp32_to_fp16(value(src[i]));
    };
    conv(q16, qh), conv(k16, kh), conv(v16, vh), oh.resize(o16.size());
  }

  void build_ggml(bool head_major) {
    const int64_t d = s.d;
#ifdef GGML_KQ_MASK_PAD
    const int64_t mask_rows = GGML_PAD(s.lq, GGML_KQ_MASK_PAD);
#else
    const int64_t mask_rows = s.lq;  // this ggml no longer pads the mask
#endif
    const size_t bytes = s.hq * s.lq * d * 4 * 3 + s.hkv * s.lk * d * 2 * 4 +
                         (s.causal ? mask_rows * s.lk * 2 : 0) + 16 * ggml_tensor_overhead() +
                         ggml_graph_overhead() + (1 << 20);
    ggml_init_params params = {bytes, nullptr, false};
    ctx = ggml_init(params);

    // The projection output [d, Hq, Lq] permuted to [d, Lq, Hq], as llama.cpp passes Q.
    ggml_tensor* q_proj = ggml_new_tensor_3d(ctx, GGML_TYPE_F32, d, s.hq, s.lq);
    float* qp = static_cast<float*>(q_proj->data);
    for (int64_t h = 0; h < s.hq; ++h)
      for (int64_t i = 0; i < s.lq; ++i)
        for (int64_t c = 0; c < d; ++c)
          qp[(i * s.hq + h) * d + c] = value(q16[(h * s.lq + i) * d + c]);
    ggml_tensor* q = ggml_permute(ctx, q_proj, 0, 2, 1, 3);

    // The KV cache: one row of Hkv * d per token; K and V are views [d, Lk, Hkv] of it.
    auto cache_view = [&](const std::vector<uint16_t>& src) {
      ggml_tensor* cache = ggml_new_tensor_2d(ctx, GGML_TYPE_F16, d * s.hkv, s.lk);
      ggml_fp16_t* c16 = static_cast<ggml_fp16_t*>(cache->data);
      for (int64_t h = 0; h < s.hkv; ++h)
        for (int64_t j = 0; j < s.lk; ++j)
          for (int64_t c = 0; c < d; ++c)
            c16[(j * s.hkv + h) * d + c] = ggml_fp32_to_fp16(value(src[(h * s.lk + j) * d + c]));
      return ggml_view_3d(ctx, cache, d, s.lk, s.hkv, ggml_row_size(GGML_TYPE_F16, d * s.hkv),
                          ggml_row_size(GGML_TYPE_F16, d), 0);
    };
    ggml_tensor* k = cache_view(k16);
    ggml_tensor* v = cache_view(v16);
    auto head_major_copy = [&](const std::vector<uint16_t>& src) {
      ggml_tensor* t = ggml_new_tensor_3d(ctx, GGML_TYPE_F16, d, s.lk, s.hkv);
      ggml_fp16_t* t16 = static_cast<ggml_fp16_t*>(t->data);
      for (size_t i = 0; i < src.size(); ++i) t16[i] = ggml_fp32_to_fp16(value(src[i]));
      return t;
    };

    ggml_tensor* mask = nullptr;
    if (s.causal) {  // llama.cpp's kq_mask: 0 where visible, -inf elsewhere (and in pad rows)
      mask = ggml_new_tensor_2d(ctx, GGML_TYPE_F16, s.lk, mask_rows);
      ggml_fp16_t* m = static_cast<ggml_fp16_t*>(mask->data);
      const ggml_fp16_t zero = ggml_fp32_to_fp16(0.f), ninf = ggml_fp32_to_fp16(-INFINITY);
      for (int64_t i = 0; i < mask_rows; ++i) {
        const int64_t vis = i < s.lq ? visible_keys(s, i) : 0;
        for (int64_t j = 0; j < s.lk; ++j) m[i * s.lk + j] = j < vis ? zero : ninf;
      }
    }
    ggml_threadpool_params tpp = ggml_threadpool_params_default(threads);
    pool = ggml_threadpool_new(&tpp);
    for (int g = 0; g < (head_major ? 2 : 1); ++g) {
      if (g == 1) k = head_major_copy(k16), v = head_major_copy(v16);
      out[g] =
          ggml_flash_attn_ext(ctx, q, k, v, mask, 1.f / std::sqrt(static_cast<float>(d)), 0.f, 0.f);
      ggml_flash_attn_ext_set_prec(out[g], GGML_PREC_F32);
      graph[g] = ggml_new_graph(ctx);
      ggml_build_forward_expand(graph[g], out[g]);
      cplan[g] = ggml_graph_plan(graph[g], threads, pool);
      work[g].resize(cplan[g].work_size + 64);
      cplan[g].work_data = work[g].data();
    }
  }

  void run_ggml(int g = 0) {
    if (ggml_graph_compute(graph[g], &cplan[g]) != GGML_STATUS_SUCCESS) {
      std::fprintf(stderr, "ggml_graph_compute failed\n");
      std::exit(1);
    }
  }

  // Runs longattn (AUTO path); with plan, only plans and returns the path's name.
  const char* run_longattn(bool f16_copy = false, longattn_plan* plan = nullptr) {
    longattn_args a;
    longattn_args_init(&a);
    if (f16_copy) {
      a.q = qh.data(), a.k = kh.data(), a.v = vh.data(), a.o = oh.data();
    } else {
      a.q = q16.data(), a.k = k16.data(), a.v = v16.data(), a.o = o16.data();
    }
    a.dtype = f16 || f16_copy ? LONGATTN_FLOAT16 : LONGATTN_BFLOAT16;
    a.device = LONGATTN_DEVICE_CPU;
    a.batch = 1, a.q_heads = s.hq, a.kv_heads = s.hkv, a.q_len = s.lq, a.kv_len = s.lk;
    a.head_dim_qk = a.head_dim_v = s.d;
    a.causal = s.causal;
    longattn_set_contiguous_strides(&a);
    longattn_options o;
    longattn_options_init(&o);
    o.num_threads = threads;
    const longattn_status st =
        plan ? longattn_plan_attention(&a, &o, plan) : longattn_attention(&a, &o, nullptr);
    if (st != LONGATTN_OK) {
      std::fprintf(stderr, "longattn: %s\n", longattn_last_error());
      std::exit(1);
    }
    return plan ? longattn_path_name(plan->path) : "";
  }

  // max |ggml - longattn| over O (ggml's result is [d, Hq, Lq]: token-major).
  double max_abs_diff(int graph_index) const {
    const float* g = static_cast<const float*>(out[graph_index]->data);
    double m = 0;
    for (int64_t h = 0; h < s.hq; ++h)
      for (int64_t i = 0; i < s.lq; ++i)
        for (int64_t c = 0; c < s.d; ++c)
          m = std::max(m, std::fabs(static_cast<double>(g[(i * s.hq + h) * s.d + c]) -
                                    value(o16[(h * s.lq + i) * s.d + c])));
    return m;
  }
};

// A plain streaming read: `threads` threads each sum their slice of a buffer of `bytes`; best of
// `reps` passes, in GB/s.
double read_bandwidth_gbs(int threads, size_t bytes, int reps) {
  const size_t n = bytes / sizeof(uint64_t);
  std::vector<uint64_t> buf(n);
  for (size_t i = 0; i < n; ++i) buf[i] = i;
  std::atomic<uint64_t> sink{0};
  double best = 0;
  for (int r = 0; r < reps; ++r) {
    const double t0 = now_ms();
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t)
      ts.emplace_back([&, t] {
        const size_t b = n * t / threads, e = n * (t + 1) / threads;
        uint64_t acc[8] = {};
        for (size_t i = b; i + 8 <= e; i += 8)
          for (int l = 0; l < 8; ++l) acc[l] += buf[i + l];
        uint64_t sum = 0;
        for (uint64_t x : acc) sum += x;
        sink += sum;
      });
    for (auto& t : ts) t.join();
    best = std::max(best, bytes / ((now_ms() - t0) * 1e6));
  }
  return best;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// The check: small shapes in f16 (identical inputs for both), each of ggml's CPU paths (tiled
// prefill, per-row chunks, split-KV decode), causal and not.
bool verify(int threads) {
  const Shape checks[] = {
      {"check_d128_prefill_causal", 128, 4, 2, 80, 300, true},
      {"check_d256_prefill", 256, 4, 2, 64, 200, false},
      {"check_d64_rows_causal", 64, 4, 1, 7, 50, true},
      {"check_d128_decode", 128, 8, 2, 1, 1000, false},
  };
  bool ok = true;
  for (const Shape& s : checks) {
    Problem p(s, threads, /*use_f16=*/true, 7, /*head_major=*/true);
    p.run_longattn();
    for (int g = 0; g < 2; ++g) {
      p.run_ggml(g);
      const double diff = p.max_abs_diff(g);
      const bool pass = diff < 2e-3;
      ok &= pass;
      std::printf(
          "check %s (d %lld, %lld/%lld, %lld x %lld%s, f16, ggml K/V %s): max |ggml - longattn| = "
          "%.2e %s\n",
          s.name, (long long)s.d, (long long)s.hq, (long long)s.hkv, (long long)s.lq,
          (long long)s.lk, s.causal ? ", causal" : "", g ? "head-major" : "cache view", diff,
          pass ? "ok" : "FAIL");
    }
  }
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2, trials = 5;
  double lk_scale = 1.0;
  bool do_verify = true, extras_all = false;
  std::string only;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--threads") {
      threads = std::atoi(next());
    } else if (a == "--trials") {
      trials = std::atoi(next());
    } else if (a == "--only") {
      only = std::string(",") + next() + ",";
    } else if (a == "--lk-scale") {
      lk_scale = std::atof(next());
    } else if (a == "--extras-all") {
      extras_all = true;
    } else if (a == "--no-verify") {
      do_verify = false;
    } else {
      std::fprintf(stderr,
                   "usage: %s [--threads N] [--trials N] [--only NAME,...] [--lk-scale F] "
                   "[--extras-all] [--no-verify]\n",
                   argv[0]);
      return 2;
    }
  }
  ggml_cpu_init();
  longattn_device_info info;
  longattn_device_query(LONGATTN_DEVICE_CPU, &info);
  std::printf("cpu: %s; longattn %s, %s; ggml %s (commit %s); threads %d, trials %d\n", info.name,
              longattn_version(), info.features, ggml_version(), ggml_commit(), threads, trials);
  if (do_verify && !verify(threads)) return 1;

  // A buffer of 256 MiB: well over 4x the last-level cache of the CPUs this runs on.
  const double bw = read_bandwidth_gbs(threads, size_t(256) << 20, 5);
  std::printf("read bandwidth (%d threads, 256 MiB sum, best of 5): %.1f GB/s\n\n", threads, bw);

  std::printf(
      "| shape | Hq/Hkv | Lq x Lk | mask | longattn path | longattn ms | ggml ms | longattn | ggml "
      "| ratio | "
      "ggml, head-major K/V: ms (ratio) | longattn f16: ms (ratio) | longattn %% BW | ggml %% BW "
      "|\n"
      "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
  for (Shape s : kShapes) {
    if (!only.empty() && only.find(std::string(",") + s.name + ",") == std::string::npos) continue;
    if (s.lq == s.lk) s.lq = std::max<int64_t>(1, static_cast<int64_t>(s.lq * lk_scale));
    s.lk = std::max<int64_t>(1, static_cast<int64_t>(s.lk * lk_scale));
    const bool decode = s.lq == 1;
    const bool extras = decode || extras_all;
    Problem p(s, threads, /*use_f16=*/false, 1234, /*head_major=*/extras);
    if (extras) p.add_f16_copy();
    longattn_plan plan;
    const std::string path_name = p.run_longattn(false, &plan);
    const std::string path = path_name + " " + std::to_string(plan.block_q) + "x" +
                             std::to_string(plan.block_k) +
                             (plan.splits > 1 ? " /" + std::to_string(plan.splits) : "");
    // 0: longattn bf16, 1: ggml on the cache views, 2: ggml on head-major K/V, 3: longattn f16. A
    // warm-up each (first touch, threadpool start), then trials whose order rotates.
    const int n = extras ? 4 : 2;
    auto run = [&](int i) {
      if (i == 0 || i == 3) {
        p.run_longattn(/*f16_copy=*/i == 3);
      } else {
        p.run_ggml(i - 1);
      }
    };
    for (int i = 0; i < n; ++i) run(i);
    std::vector<double> ms[4];
    for (int t = 0; t < trials; ++t) {
      for (int k = 0; k < n; ++k) {
        const int i = (t + k) % n;
        const double t0 = now_ms();
        run(i);
        ms[i].push_back(now_ms() - t0);
      }
    }
    double med[4] = {}, best[4] = {};
    for (int i = 0; i < n; ++i) {
      med[i] = median(ms[i]);
      best[i] = *std::min_element(ms[i].begin(), ms[i].end());
    }
    char rate[2][64], pct[2][32] = {"", ""}, hm[64] = "", lh[64] = "";
    for (int i = 0; i < 2; ++i) {
      if (decode) {  // K + V bytes read once (2 bytes an element for both)
        const double gbs = 2.0 * s.hkv * s.lk * s.d * 2 / 1e9 / (med[i] / 1e3);
        std::snprintf(rate[i], sizeof rate[i], "%.1f GB/s", gbs);
        std::snprintf(pct[i], sizeof pct[i], "%.0f%%", 100 * gbs / bw);
      } else {  // 4 * visible pairs * d * Hq
        const double gflop = 4.0 * visible_pairs(s) * s.d * s.hq / 1e9;
        std::snprintf(rate[i], sizeof rate[i], "%.1f GFLOPS", gflop / (med[i] / 1e3));
      }
    }
    if (extras) {  // each ratio is ggml ms / longattn ms: longattn's speed over ggml's
      std::snprintf(hm, sizeof hm, "%.1f (%.2fx)", med[2], med[2] / med[0]);
      std::snprintf(lh, sizeof lh, "%.1f (%.2fx)", med[3], med[1] / med[3]);
    }
    std::printf(
        "| %s | %lld/%lld | %lld x %lld | %s | %s | %.1f (best %.1f) | %.1f (best %.1f) | %s | %s "
        "| %.2fx | %s | %s | %s | %s |\n",
        s.name, (long long)s.hq, (long long)s.hkv, (long long)s.lq, (long long)s.lk,
        s.causal ? "causal" : "none", path.c_str(), med[0], best[0], med[1], best[1], rate[0],
        rate[1], med[1] / med[0], hm, lh, pct[0], pct[1]);
    std::fflush(stdout);
  }
  return 0;
}
