// Standalone GPU check of the CUDA fused prefill kernel against a float64 CPU reference, and a
// quick timing. It calls the kernel launcher directly (no core library), through the same
// make_fused_params translation the backend uses.
//
//   fused_check            the full grid (every head dim, dtype, GQA, causal/window, softcap,
//                          sinks, masks, k == v, strided layouts, Lq > Lk, odd lengths)
//   fused_check --quick    a few tiny cases (for compute-sanitizer)
//   fused_check --bench    timing only: chunked prefill and the grid shapes, TFLOPS table
//   fused_check --decode-sweep  decode shapes at several split counts, CUDA graph timing
//   fused_check --decode-chosen the same at the split count the library picks only
//   fused_check --only S   cases (or --bench shapes, e.g. "grid16k d128 c0") whose name contains S
// Exit status: 0 pass, 1 failure, 77 no GPU (ctest skips).
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cuda/fused_cuda.hpp"
#include "cuda/fused_traits_sm90.hpp"
#include "cuda/launch_cuda.hpp"

using longattn::cuda::FusedKernelInfo;
using longattn::cuda::FusedParams;

#define CHECK_CUDA(call)                                                        \
  do {                                                                          \
    cudaError_t e_ = (call);                                                    \
    if (e_ != cudaSuccess) {                                                    \
      std::fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #call, \
                   cudaGetErrorString(e_));                                     \
      std::exit(1);                                                             \
    }                                                                           \
  } while (0)

namespace {

struct Case {
  std::string name;
  int dtype = LONGATTN_BFLOAT16;
  int b = 1, hq = 1, hkv = 1, lq = 1, lk = 1, dqk = 64, dv = 64;
  int causal = 0;
  int64_t window = -1;
  float softcap = 0.f;
  bool sinks = false;
  int mask_kind = LONGATTN_MASK_NONE;
  int mask_shape = 0;  // 0: [B,Hq,Lq,Lk], 1: [B,1,Lq,Lk], 2: [1,1,1,Lk]
  bool kv_shared = false;
  int layout = 0;  // 0: [B,H,L,D]; 1: [B,L,H,D]; 2: [B,H,L,D] with padded token stride
  int splits = 1;  // > 1: the split_kv sequence (partials + merge)
};

const char* dtype_name(int d) {
  return d == LONGATTN_FLOAT32 ? "f32" : d == LONGATTN_FLOAT16 ? "f16" : "bf16";
}
int esize(int dtype) { return dtype == LONGATTN_FLOAT32 ? 4 : 2; }

// Round-trips a float through the storage type, and stores/loads raw elements.
float round_to(int dtype, float x) {
  if (dtype == LONGATTN_FLOAT16) return __half2float(__float2half_rn(x));
  if (dtype == LONGATTN_BFLOAT16) return __bfloat162float(__float2bfloat16_rn(x));
  return x;
}
void store(int dtype, void* base, int64_t idx, float x) {
  if (dtype == LONGATTN_FLOAT32) {
    static_cast<float*>(base)[idx] = x;
  } else if (dtype == LONGATTN_FLOAT16) {
    static_cast<__half*>(base)[idx] = __float2half_rn(x);
  } else {
    static_cast<__nv_bfloat16*>(base)[idx] = __float2bfloat16_rn(x);
  }
}
float load(int dtype, const void* base, int64_t idx) {
  if (dtype == LONGATTN_FLOAT32) return static_cast<const float*>(base)[idx];
  if (dtype == LONGATTN_FLOAT16) return __half2float(static_cast<const __half*>(base)[idx]);
  return __bfloat162float(static_cast<const __nv_bfloat16*>(base)[idx]);
}

// A [B, H, L, D] tensor: its logical values and the strided storage the kernel sees.
struct Tensor {
  int b = 0, h = 0, l = 0, d = 0;
  longattn_strides s{};
  int64_t storage = 0;  // elements
  std::vector<float> v;
  float& at(int bi, int hi, int li, int di) {
    return v[((int64_t(bi) * h + hi) * l + li) * d + di];
  }
  int64_t offset(int bi, int hi, int li, int di) const {
    return bi * s.batch + hi * s.head + li * s.token + di;
  }
};

Tensor make_tensor(int b, int h, int l, int d, int layout) {
  Tensor t;
  t.b = b, t.h = h, t.l = l, t.d = d;
  if (layout == 1) {
    t.s = {int64_t(l) * h * d, d, int64_t(h) * d};
  } else {
    const int64_t pitch = layout == 2 ? d + 24 : d;  // 24 elements keep rows 16-byte aligned
    t.s = {int64_t(h) * l * pitch, int64_t(l) * pitch, pitch};
  }
  t.storage = t.s.batch * b;
  t.v.assign(int64_t(b) * h * l * d, 0.f);
  return t;
}

void fill_random(Tensor& t, int dtype, float amp, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-amp, amp);
  for (float& x : t.v) x = round_to(dtype, u(rng));
}

std::vector<char> to_storage(Tensor& t, int dtype, uint8_t gap_byte) {
  std::vector<char> bytes(t.storage * esize(dtype), char(gap_byte));
  for (int bi = 0; bi < t.b; ++bi)
    for (int hi = 0; hi < t.h; ++hi)
      for (int li = 0; li < t.l; ++li)
        for (int di = 0; di < t.d; ++di)
          store(dtype, bytes.data(), t.offset(bi, hi, li, di), t.at(bi, hi, li, di));
  return bytes;
}

struct Mask {
  longattn_mask m{};
  std::vector<uint8_t> boolean;
  std::vector<float> additive;
  float value(int bi, int hi, int i, int j) const {
    auto st = [&](int d) { return m.dims[d] == 1 ? 0 : m.strides[d]; };
    int64_t at = bi * st(0) + hi * st(1) + i * st(2) + j * st(3);
    if (m.kind == LONGATTN_MASK_BOOLEAN) return boolean[at] ? 0.f : -INFINITY;
    return additive[at];
  }
};

Mask make_mask(const Case& c, std::mt19937& rng) {
  Mask k;
  k.m.kind = c.mask_kind;
  if (c.mask_kind == LONGATTN_MASK_NONE) return k;
  int64_t dims[4] = {c.b, c.hq, c.lq, c.lk};
  if (c.mask_shape == 1) dims[1] = 1;
  if (c.mask_shape == 2) dims[0] = dims[1] = dims[2] = 1;
  // Contiguous over its own dims, with the key axis padded (a real-world strided mask).
  const int64_t key_pitch = dims[3] + 5;
  int64_t strides[4] = {dims[1] * dims[2] * key_pitch, dims[2] * key_pitch, key_pitch, 1};
  for (int d = 0; d < 4; ++d) k.m.dims[d] = dims[d], k.m.strides[d] = strides[d];
  const int64_t n = dims[0] * strides[0];
  std::uniform_real_distribution<float> u(0.f, 1.f);
  if (c.mask_kind == LONGATTN_MASK_BOOLEAN) {
    k.boolean.resize(n);
    for (auto& x : k.boolean) x = u(rng) < 0.8f;
    // One query row hidden entirely (for every batch/head it covers): O = 0, LSE = -inf.
    if (dims[2] > 3)
      for (int64_t bh = 0; bh < dims[0] * dims[1]; ++bh)
        for (int64_t j = 0; j < dims[3]; ++j) k.boolean[bh * strides[1] + 3 * strides[2] + j] = 0;
  } else {
    k.additive.resize(n);
    for (auto& x : k.additive) x = u(rng) < 0.1f ? -INFINITY : 3.f * u(rng) - 2.f;
  }
  return k;
}

// float64 reference of one row, as DESIGN.md section 1 defines it (and cpu/reference_cpu.cpp).
void reference(const Case& c, const Tensor& q, const Tensor& k, const Tensor& v, const Mask& mask,
               const std::vector<float>& sinks, std::vector<double>& o, std::vector<double>& lse) {
  const int g = c.hq / c.hkv;
  const double scale = 1.0 / std::sqrt(double(float(c.dqk)));
  const int64_t off = int64_t(c.lk) - c.lq;
  const int64_t rows = int64_t(c.b) * c.hq * c.lq;
  o.assign(rows * c.dv, 0.0);
  lse.assign(rows, -INFINITY);
  auto work = [&](int64_t r0, int64_t r1) {
    std::vector<double> s(c.lk);
    for (int64_t r = r0; r < r1; ++r) {
      const int bi = int(r / (int64_t(c.hq) * c.lq)), hi = int(r / c.lq % c.hq), i = int(r % c.lq);
      const int kh = hi / g;
      double mx = -INFINITY;
      for (int j = 0; j < c.lk; ++j) {
        double x = -INFINITY;
        bool vis = (!c.causal || j <= i + off) && (c.window < 0 || j >= i + off - c.window);
        if (vis) {
          double dot = 0;
          for (int d = 0; d < c.dqk; ++d)
            dot += double(q.v[((int64_t(bi) * c.hq + hi) * c.lq + i) * c.dqk + d]) *
                   k.v[((int64_t(bi) * c.hkv + kh) * c.lk + j) * c.dqk + d];
          x = dot * scale;
          if (c.softcap > 0) x = c.softcap * std::tanh(x / c.softcap);
          if (c.mask_kind != LONGATTN_MASK_NONE) x += mask.value(bi, hi, i, j);
        }
        s[j] = x;
        mx = std::max(mx, x);
      }
      if (mx == -INFINITY) continue;
      const double ref = c.sinks ? std::max(mx, double(sinks[hi])) : mx;
      double den = c.sinks ? std::exp(sinks[hi] - ref) : 0.0;
      double* orow = &o[r * c.dv];
      for (int j = 0; j < c.lk; ++j) {
        if (s[j] == -INFINITY) continue;
        const double pj = std::exp(s[j] - ref);
        den += pj;
        const float* vrow = &v.v[((int64_t(bi) * c.hkv + kh) * c.lk + j) * c.dv];
        for (int d = 0; d < c.dv; ++d) orow[d] += pj * vrow[d];
      }
      for (int d = 0; d < c.dv; ++d) orow[d] /= den;
      lse[r] = ref + std::log(den);
    }
  };
  const int n = std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::thread> pool;
  for (int w = 0; w < n; ++w) pool.emplace_back(work, rows * w / n, rows * (w + 1) / n);
  for (auto& t : pool) t.join();
}

template <class T>
T* to_device(const std::vector<T>& h) {
  T* d = nullptr;
  CHECK_CUDA(cudaMalloc(&d, std::max<size_t>(1, h.size() * sizeof(T))));
  CHECK_CUDA(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}

bool run_case(const Case& c, uint32_t seed) {
  std::mt19937 rng(seed);
  const int dt = c.dtype;
  Tensor q = make_tensor(c.b, c.hq, c.lq, c.dqk, c.layout);
  Tensor k = make_tensor(c.b, c.hkv, c.lk, c.dqk, c.layout);
  Tensor v = make_tensor(c.b, c.hkv, c.lk, c.dv, c.layout);
  Tensor o = make_tensor(c.b, c.hq, c.lq, c.dv, c.layout);
  fill_random(q, dt, 2.f, rng);
  fill_random(k, dt, 1.f, rng);
  if (c.kv_shared)
    v = k;
  else
    fill_random(v, dt, 1.f, rng);
  std::vector<float> sinks(c.hq);
  for (float& x : sinks) x = std::uniform_real_distribution<float>(-1.f, 3.f)(rng);
  Mask mask = make_mask(c, rng);

  // Inputs with a 0x5A sentinel in stride gaps; O poisoned with NaN (0xFF) where it must be
  // written and with the sentinel in its gaps, which must survive.
  std::vector<char> qs = to_storage(q, dt, 0x5A), ks = to_storage(k, dt, 0x5A);
  std::vector<char> vs = to_storage(v, dt, 0x5A), os = to_storage(o, dt, 0x5A);
  for (int bi = 0; bi < o.b; ++bi)
    for (int hi = 0; hi < o.h; ++hi)
      for (int li = 0; li < o.l; ++li)
        std::memset(&os[o.offset(bi, hi, li, 0) * esize(dt)], 0xFF, size_t(o.d) * esize(dt));
  char* dq = to_device(qs);
  char* dk = to_device(ks);
  char* dv = c.kv_shared ? dk : to_device(vs);
  char* dout = to_device(os);
  std::vector<float> lse_init(int64_t(c.b) * c.hq * c.lq, NAN);
  float* dlse = to_device(lse_init);
  float* dsinks = c.sinks ? to_device(sinks) : nullptr;
  void* dmask = nullptr;
  if (c.mask_kind == LONGATTN_MASK_BOOLEAN) dmask = to_device(mask.boolean);
  if (c.mask_kind == LONGATTN_MASK_ADDITIVE) dmask = to_device(mask.additive);

  longattn_args a;
  std::memset(&a, 0, sizeof a);
  a.q = dq, a.k = dk, a.v = dv, a.o = dout, a.lse = dlse;
  a.dtype = dt, a.device = LONGATTN_DEVICE_CUDA;
  a.batch = c.b, a.q_heads = c.hq, a.kv_heads = c.hkv, a.q_len = c.lq, a.kv_len = c.lk;
  a.head_dim_qk = c.dqk, a.head_dim_v = c.dv;
  a.q_strides = q.s, a.k_strides = k.s, a.v_strides = c.kv_shared ? k.s : v.s, a.o_strides = o.s;
  a.causal = c.causal, a.window_left = c.window, a.softcap = c.softcap, a.sinks = dsinks;
  a.mask = mask.m;
  a.mask.data = dmask;
  const FusedParams p = longattn::cuda::make_fused_params(a);
  if (c.kv_shared && !p.kv_shared) {
    std::printf("FAIL %s: k == v not detected\n", c.name.c_str());
    return false;
  }
  float *o_part = nullptr, *lse_part = nullptr;
  if (c.splits > 1) {
    CHECK_CUDA(cudaMalloc(&o_part, longattn::cuda::split_o_floats(a, c.splits) * 4));
    CHECK_CUDA(cudaMalloc(&lse_part, longattn::cuda::split_lse_floats(a, c.splits) * 4));
  }
  CHECK_CUDA(longattn::cuda::run_fused(a, c.splits, o_part, lse_part, nullptr));
  CHECK_CUDA(cudaDeviceSynchronize());
  std::vector<char> out(os.size()), out2(os.size());
  std::vector<float> lse_out(lse_init.size()), lse_out2(lse_init.size());
  CHECK_CUDA(cudaMemcpy(out.data(), dout, out.size(), cudaMemcpyDeviceToHost));
  CHECK_CUDA(cudaMemcpy(lse_out.data(), dlse, lse_out.size() * 4, cudaMemcpyDeviceToHost));
  // Determinism: a second run gives the same bits.
  CHECK_CUDA(longattn::cuda::run_fused(a, c.splits, o_part, lse_part, nullptr));
  CHECK_CUDA(cudaDeviceSynchronize());
  CHECK_CUDA(cudaMemcpy(out2.data(), dout, out.size(), cudaMemcpyDeviceToHost));
  CHECK_CUDA(cudaMemcpy(lse_out2.data(), dlse, lse_out.size() * 4, cudaMemcpyDeviceToHost));
  cudaFree(o_part), cudaFree(lse_part);
  const bool deterministic =
      out == out2 && std::memcmp(lse_out.data(), lse_out2.data(), lse_out.size() * 4) == 0;

  std::vector<double> ro, rl;
  reference(c, q, k, v, mask, sinks, ro, rl);
  double err2 = 0, ref2 = 0, lse_err = 0;
  int64_t bad_empty = 0, nan_count = 0, gap_damage = 0;
  for (int bi = 0; bi < c.b; ++bi)
    for (int hi = 0; hi < c.hq; ++hi)
      for (int i = 0; i < c.lq; ++i) {
        const int64_t r = (int64_t(bi) * c.hq + hi) * c.lq + i;
        const float got_lse = lse_out[r];
        if (std::isnan(got_lse)) ++nan_count;
        if (rl[r] == -INFINITY) {
          if (got_lse != -INFINITY) ++bad_empty;
        } else {
          lse_err = std::max(lse_err, std::fabs(double(got_lse) - rl[r]));
        }
        for (int d = 0; d < c.dv; ++d) {
          const float x = load(dt, out.data(), o.offset(bi, hi, i, d));
          const double ref = ro[r * c.dv + d];
          if (std::isnan(x)) ++nan_count;
          if (rl[r] == -INFINITY && x != 0.f) ++bad_empty;
          err2 += (x - ref) * (x - ref);
          ref2 += ref * ref;
        }
      }
  // The stride gaps of O: everything outside the logical elements keeps the sentinel.
  {
    std::vector<char> touched(out.size(), 0);
    for (int bi = 0; bi < o.b; ++bi)
      for (int hi = 0; hi < o.h; ++hi)
        for (int li = 0; li < o.l; ++li)
          std::memset(&touched[o.offset(bi, hi, li, 0) * esize(dt)], 1, size_t(o.d) * esize(dt));
    for (size_t x = 0; x < out.size(); ++x)
      if (!touched[x] && uint8_t(out[x]) != 0x5A) ++gap_damage;
  }
  const double rel = ref2 > 0 ? std::sqrt(err2 / ref2) : std::sqrt(err2);
  // Seen on H100: bf16 operands (and float32 inputs, rounded to bf16 per tile) near 2.5e-3, f16
  // near 3e-4; LSE within 1e-6 (16-bit inputs are exact) and 3e-4 (float32 rounded to bf16).
  const double tol = dt == LONGATTN_FLOAT16 ? 1e-3 : 6e-3;
  const double lse_tol = dt == LONGATTN_FLOAT32 ? 2e-3 : 1e-4;
  const bool ok = rel <= tol && lse_err <= lse_tol && nan_count == 0 && bad_empty == 0 &&
                  gap_damage == 0 && deterministic;
  FusedKernelInfo ki;
  CHECK_CUDA(longattn::cuda::kernel_for(a, &ki));
  std::printf("%s %-58s %-4s rel %.2e (tol %.0e) lse %.2e nan %lld empty-bad %lld gaps %lld %s\n",
              ok ? "ok  " : "FAIL", c.name.c_str(), ki.family == 80 ? "sm80" : "sm90", rel, tol,
              lse_err, (long long)nan_count, (long long)bad_empty, (long long)gap_damage,
              deterministic ? "" : "NONDETERMINISTIC");
  cudaFree(dq), cudaFree(dk), cudaFree(dout), cudaFree(dlse);
  if (!c.kv_shared) cudaFree(dv);
  if (dsinks) cudaFree(dsinks);
  if (dmask) cudaFree(dmask);
  return ok;
}

std::string describe(const Case& c) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "d%d/%d %s B%d H%d/%d %dx%d%s%s%s%s%s%s%s L%d%s", c.dqk, c.dv,
                dtype_name(c.dtype), c.b, c.hq, c.hkv, c.lq, c.lk, c.causal ? " causal" : "",
                c.window >= 0 ? (" w" + std::to_string(c.window)).c_str() : "",
                c.softcap > 0 ? " cap" : "", c.sinks ? " sinks" : "",
                c.mask_kind == 1   ? " bmask"
                : c.mask_kind == 2 ? " amask"
                                   : "",
                c.mask_kind ? (c.mask_shape == 0   ? "full"
                               : c.mask_shape == 1 ? "/h"
                                                   : "/key")
                            : "",
                c.kv_shared ? " k=v" : "", c.layout,
                c.splits > 1 ? (" split" + std::to_string(c.splits)).c_str() : "");
  return buf;
}

std::vector<Case> grid(bool quick) {
  std::vector<Case> cases;
  auto add = [&](Case c) {
    c.name = describe(c);
    cases.push_back(c);
  };
  const int dims[][2] = {{64, 64},   {80, 80},   {96, 96},   {128, 128},
                         {192, 128}, {192, 192}, {256, 256}, {512, 512}};
  if (quick) {
    for (auto [dqk, dv] : {std::pair{64, 64}, std::pair{128, 128}, std::pair{512, 512}}) {
      Case c;
      c.dqk = dqk, c.dv = dv, c.b = 1, c.hq = 2, c.hkv = 1, c.lq = 33, c.lk = 70, c.causal = 1;
      c.mask_kind = LONGATTN_MASK_BOOLEAN, c.mask_shape = 1, c.sinks = true, c.softcap = 20.f;
      add(c);
      c.mask_kind = 0, c.kv_shared = dqk == dv, c.dtype = LONGATTN_FLOAT32, c.window = 9;
      c.layout = 1, c.splits = 3;
      add(c);
      c = Case{}, c.dqk = dqk, c.dv = dv;  // decode shapes, split (40: most splits empty)
      c.hq = 8, c.hkv = 2, c.lq = 1, c.lk = 300, c.sinks = true, c.splits = dqk == 128 ? 40 : 2;
      add(c);
      c = Case{}, c.dqk = dqk, c.dv = dv;  // the plain (no softcap/mask) kernel, several tiles
      c.hq = 2, c.hkv = 1, c.lq = 200, c.lk = 300, c.causal = 1;
      add(c);
      // More work items than resident blocks (the sm90 kernel's persistent schedule), most of
      // them without a key (Lq > Lk, causal).
      c = Case{}, c.dqk = dqk, c.dv = dv;
      c.hq = 96, c.hkv = 48, c.lq = 300, c.lk = 7, c.causal = 1;
      add(c);
    }
    return cases;
  }
  for (auto [dqk, dv] : dims) {
    Case c;
    c.dqk = dqk, c.dv = dv;
    // GQA 2, causal chunk (Lq < Lk), token-major layout.
    c.b = 2, c.hq = 4, c.hkv = 2, c.lq = 113, c.lk = 1023, c.causal = 1, c.layout = 1;
    add(c);
    // GQA 8 packed into one tile, f16, softcap and sinks, tiny lengths.
    c = Case{}, c.dqk = dqk, c.dv = dv;
    c.dtype = LONGATTN_FLOAT16, c.hq = 8, c.hkv = 1, c.lq = 7, c.lk = 113, c.softcap = 30.f;
    c.sinks = true;
    add(c);
    // Lq > Lk with causal: the first rows see no key. Padded strides.
    c = Case{}, c.dqk = dqk, c.dv = dv;
    c.hq = 2, c.hkv = 2, c.lq = 113, c.lk = 7, c.causal = 1, c.layout = 2;
    add(c);
    // float32 decode row with a causal window.
    c = Case{}, c.dqk = dqk, c.dv = dv;
    c.dtype = LONGATTN_FLOAT32, c.hq = 2, c.hkv = 1, c.lq = 1, c.lk = 1023, c.causal = 1;
    c.window = 100;
    add(c);
    // More work items than an H100 has resident blocks (the sm90 kernel's persistent schedule):
    // causal Lq > Lk, where most items have no key, and non-causal k == v with a window and sinks.
    c = Case{}, c.dqk = dqk, c.dv = dv;
    c.hq = 96, c.hkv = 48, c.lq = 300, c.lk = 7, c.causal = 1;
    add(c);
    c = Case{}, c.dqk = dqk, c.dv = dv;
    c.hq = 140, c.hkv = 140, c.lq = 65, c.lk = 200, c.window = 50, c.sinks = true;
    c.kv_shared = dqk == dv;
    add(c);
    // Square causal with a sliding window, several query tiles.
    c = Case{}, c.dqk = dqk, c.dv = dv;
    c.hq = 2, c.hkv = 1, c.lq = 1023, c.lk = 1023, c.causal = 1, c.window = 255;
    add(c);
    // Decode (16 query heads on 2 KV heads, one row each): decode tiles, split 5, sinks.
    c = Case{}, c.dqk = dqk, c.dv = dv;
    c.b = 2, c.hq = 16, c.hkv = 2, c.lq = 1, c.lk = 1023, c.sinks = true, c.splits = 5;
    add(c);
    // Prefill chunk split 3 (GQA 2, causal, sinks, token-major).
    c = Case{}, c.dqk = dqk, c.dv = dv;
    c.hq = 4, c.hkv = 2, c.lq = 113, c.lk = 1023, c.causal = 1, c.sinks = true, c.splits = 3;
    c.layout = 1;
    add(c);
  }
  for (auto [dqk, dv] : {std::pair{128, 128}, std::pair{256, 256}}) {
    // split_kv edge cases: splits that get no tile (narrow window), rows that see no key
    // (Lq > Lk), masks and float32 through the merge.
    Case c;
    c.dqk = dqk, c.dv = dv;
    c.hq = 4, c.hkv = 1, c.lq = 40, c.lk = 1023, c.causal = 1, c.window = 10, c.splits = 8;
    c.sinks = true;
    add(c);
    c = Case{}, c.dqk = dqk, c.dv = dv;
    c.hq = 2, c.hkv = 2, c.lq = 113, c.lk = 70, c.causal = 1, c.splits = 2, c.sinks = true;
    add(c);
    c = Case{}, c.dqk = dqk, c.dv = dv;
    c.dtype = LONGATTN_FLOAT32, c.hq = 8, c.hkv = 2, c.lq = 2, c.lk = 1023, c.splits = 4;
    c.mask_kind = LONGATTN_MASK_BOOLEAN, c.layout = 2;
    add(c);
    c.dtype = LONGATTN_FLOAT16, c.mask_kind = LONGATTN_MASK_ADDITIVE, c.mask_shape = 1;
    c.lq = 100;
    add(c);
    // The merge with many splits: 150 (more than one batch of loads per merge thread, each
    // split ~2 key tiles), and 40 over 5 key tiles (most splits empty).
    c = Case{}, c.dqk = dqk, c.dv = dv;
    c.hq = 8, c.hkv = 2, c.lq = 1, c.lk = 20000, c.sinks = true, c.splits = 150;
    add(c);
    c.lk = 300, c.splits = 40;
    add(c);
  }
  for (auto [dqk, dv] : {std::pair{64, 64}, std::pair{128, 128}, std::pair{512, 512}}) {
    Case c;
    c.dqk = dqk, c.dv = dv;
    // Boolean mask over every dim (one fully hidden row), with sinks: that row is still empty.
    c.b = 2, c.hq = 4, c.hkv = 2, c.lq = 113, c.lk = 300, c.mask_kind = LONGATTN_MASK_BOOLEAN;
    c.sinks = true;
    add(c);
    // Boolean mask broadcast over heads, causal, GQA 4.
    c.mask_shape = 1, c.causal = 1, c.sinks = false, c.hkv = 1;
    add(c);
    // Additive key-padding mask [1,1,1,Lk] with -inf entries, softcap.
    c = Case{}, c.dqk = dqk, c.dv = dv;
    c.b = 2, c.hq = 2, c.hkv = 1, c.lq = 64, c.lk = 1023, c.mask_kind = LONGATTN_MASK_ADDITIVE;
    c.mask_shape = 2, c.softcap = 50.f;
    add(c);
    // Full additive mask, f16.
    c.mask_shape = 0, c.dtype = LONGATTN_FLOAT16, c.softcap = 0.f, c.lq = 7;
    add(c);
    // K aliasing V (Gemma 4 global layers), GQA 8, causal chunk.
    c = Case{}, c.dqk = dqk, c.dv = dv;
    c.hq = 16, c.hkv = 2, c.lq = 64, c.lk = 300, c.causal = 1, c.kv_shared = true, c.layout = 1;
    add(c);
    // Window without causal: keys before the band are hidden, keys after it visible.
    c = Case{}, c.dqk = dqk, c.dv = dv;
    c.hq = 2, c.hkv = 2, c.lq = 200, c.lk = 457, c.window = 31;
    add(c);
    // Sinks with GQA 8 and bf16, non-causal.
    c = Case{}, c.dqk = dqk, c.dv = dv;
    c.hq = 8, c.hkv = 1, c.lq = 31, c.lk = 1023, c.sinks = true;
    add(c);
  }
  return cases;
}

// ---- timing ----------------------------------------------------------------------------------

__global__ void fill_kernel(uint16_t* p, int64_t n, uint32_t seed, bool bf16) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    uint32_t h = uint32_t(i) * 2654435761u ^ seed;
    h ^= h >> 15, h *= 2246822519u, h ^= h >> 13;
    const float x = (h & 0xffff) / 32768.f - 1.f;  // [-1, 1)
    p[i] =
        bf16 ? __bfloat16_as_ushort(__float2bfloat16_rn(x)) : __half_as_ushort(__float2half_rn(x));
  }
}

struct Shape {
  const char* group;
  int b, hq, hkv, lq, lk, d;
  int causal;
  bool kv_shared;
};

double visible_pairs(const Shape& s) {
  const double off = double(s.lk) - s.lq;
  double n = 0;
  for (int i = 0; i < s.lq; ++i)
    n += s.causal ? std::min<double>(s.lk, std::max(0.0, i + off + 1)) : s.lk;
  return n;
}

float time_ms(const std::function<void()>& fn, int reps) {
  cudaEvent_t a, b;
  CHECK_CUDA(cudaEventCreate(&a));
  CHECK_CUDA(cudaEventCreate(&b));
  std::vector<float> t;
  for (int r = 0; r < reps; ++r) {
    CHECK_CUDA(cudaEventRecord(a));
    fn();
    CHECK_CUDA(cudaEventRecord(b));
    CHECK_CUDA(cudaEventSynchronize(b));
    float ms = 0;
    CHECK_CUDA(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms);
  }
  cudaEventDestroy(a), cudaEventDestroy(b);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

double matmul_tflops() {
  const int n = 8192;
  uint16_t *a, *b, *c;
  CHECK_CUDA(cudaMalloc(&a, size_t(n) * n * 2));
  CHECK_CUDA(cudaMalloc(&b, size_t(n) * n * 2));
  CHECK_CUDA(cudaMalloc(&c, size_t(n) * n * 2));
  fill_kernel<<<1024, 256>>>(a, int64_t(n) * n, 1, true);
  fill_kernel<<<1024, 256>>>(b, int64_t(n) * n, 2, true);
  cublasHandle_t h;
  if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) return 0;
  const float one = 1.f, zero = 0.f;
  auto gemm = [&] {
    cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, a, CUDA_R_16BF, n, b, CUDA_R_16BF, n,
                 &zero, c, CUDA_R_16BF, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  };
  time_ms(gemm, 3);
  const float ms = time_ms(gemm, 10);
  cublasDestroy(h);
  cudaFree(a), cudaFree(b), cudaFree(c);
  return 2.0 * n * n * double(n) / (ms * 1e-3) / 1e12;
}

// Device-to-device copy of 2 GiB, counting bytes read plus written.
double copy_gbps() {
  const size_t bytes = size_t(1) << 31;
  void *a, *b;
  CHECK_CUDA(cudaMalloc(&a, bytes));
  CHECK_CUDA(cudaMalloc(&b, bytes));
  CHECK_CUDA(cudaMemset(a, 1, bytes));
  auto copy = [&] { CHECK_CUDA(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice)); };
  time_ms(copy, 2);
  const float ms = time_ms(copy, 10);
  cudaFree(a), cudaFree(b);
  return 2.0 * bytes / (ms * 1e-3) / 1e9;
}

int bench_dtype = LONGATTN_BFLOAT16;  // --f16: time the float16 kernels
std::string bench_only;               // --only S: bench shapes whose label contains S
bool sweep_chosen_only = false;       // --decode-chosen: the sweep at the chosen split count only

int bench() {
  cudaDeviceProp prop;
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  const double peak = matmul_tflops(), copy = copy_gbps();
  std::printf("\ncuBLAS bf16 8192^3 matmul: %.0f TFLOPS; device copy %.0f GB/s (read + write)\n",
              peak, copy);
  std::vector<Shape> shapes;
  for (int d : {128, 192, 256})
    for (int lq : {512, 2048})
      for (int lk : {16384, 65536, 131072})
        shapes.push_back({"chunk", 1, 16, 8, lq, lk, d, 1, false});
  for (int lk : {32768, 131072}) shapes.push_back({"gemma", 1, 16, 2, 2048, lk, 512, 1, true});
  // bench/peers.py's grid: 16K tokens per batch, 2048 / d heads.
  for (int len : {1024, 4096, 16384})
    for (int d : {64, 128, 256})
      for (int causal : {0, 1})
        shapes.push_back({len == 1024   ? "grid1k"
                          : len == 4096 ? "grid4k"
                                        : "grid16k",
                          16384 / len, 2048 / d, 2048 / d, len, len, d, causal, false});
  for (int d : {128, 256, 512})
    for (auto [hq, hkv] : {std::pair{16, 2}, std::pair{32, 8}})
      for (int lk : {32768, 131072}) shapes.push_back({"decode", 1, hq, hkv, 1, lk, d, 1, false});
  std::printf("\n%-8s %-4s %-6s %-6s %-7s %-4s %-4s %-4s %-6s %-8s %-7s %-6s %-7s %-6s\n", "shape",
              "d", "H", "Lq", "Lk", "caus", "k=v", "kern", "splits", "ms", "TFLOPS", "%mm", "GB/s",
              "%copy");
  for (const Shape& s : shapes) {
    const std::string label = std::string(s.group) + " d" + std::to_string(s.d) + " c" +
                              std::to_string(s.causal) + " lq" + std::to_string(s.lq) + " lk" +
                              std::to_string(s.lk);
    if (label.find(bench_only) == std::string::npos) continue;
    const int64_t nq = int64_t(s.b) * s.hq * s.lq * s.d, nk = int64_t(s.b) * s.hkv * s.lk * s.d;
    uint16_t *q, *k, *v, *o;
    CHECK_CUDA(cudaMalloc(&q, nq * 2));
    CHECK_CUDA(cudaMalloc(&k, nk * 2));
    CHECK_CUDA(cudaMalloc(&o, nq * 2));
    v = k;
    if (!s.kv_shared) CHECK_CUDA(cudaMalloc(&v, nk * 2));
    const bool bf16 = bench_dtype == LONGATTN_BFLOAT16;
    fill_kernel<<<1024, 256>>>(q, nq, 3, bf16);
    fill_kernel<<<1024, 256>>>(k, nk, 4, bf16);
    if (!s.kv_shared) fill_kernel<<<1024, 256>>>(v, nk, 5, bf16);
    longattn_args a;
    std::memset(&a, 0, sizeof a);
    a.q = q, a.k = k, a.v = v, a.o = o, a.dtype = bench_dtype;
    a.batch = s.b, a.q_heads = s.hq, a.kv_heads = s.hkv, a.q_len = s.lq, a.kv_len = s.lk;
    a.head_dim_qk = a.head_dim_v = s.d;
    a.q_strides = {int64_t(s.hq) * s.lq * s.d, int64_t(s.lq) * s.d, s.d};
    a.k_strides = a.v_strides = {int64_t(s.hkv) * s.lk * s.d, int64_t(s.lk) * s.d, s.d};
    a.o_strides = a.q_strides;
    a.causal = s.causal, a.window_left = -1;
    FusedKernelInfo ki;
    CHECK_CUDA(longattn::cuda::kernel_for(a, &ki));
    const int splits = longattn::cuda::choose_splits(a, ki, prop.multiProcessorCount);
    float *o_part = nullptr, *lse_part = nullptr;
    if (splits > 1) {
      CHECK_CUDA(cudaMalloc(&o_part, longattn::cuda::split_o_floats(a, splits) * 4));
      CHECK_CUDA(cudaMalloc(&lse_part, longattn::cuda::split_lse_floats(a, splits) * 4));
    }
    auto run = [&] { CHECK_CUDA(longattn::cuda::run_fused(a, splits, o_part, lse_part, nullptr)); };
    time_ms(run, 2);
    const float ms = time_ms(run, 10);
    const double tflops = 2.0 * 2 * s.d * visible_pairs(s) * s.b * s.hq / (ms * 1e-3) / 1e12;
    // Bytes that must move: K and V once (once in all when k == v), Q read and O written.
    const double bytes = 2.0 * (nk * (s.kv_shared ? 1 : 2) + 2 * nq);
    const double gbps = bytes / (ms * 1e-3) / 1e9;
    std::printf("%-8s %-4d %-6s %-6d %-7d %-4d %-4s %-4d %-6d %-8.3f %-7.1f %-6.1f %-7.0f %-6.1f\n",
                s.group, s.d, (std::to_string(s.hq) + "/" + std::to_string(s.hkv)).c_str(), s.lq,
                s.lk, s.causal, s.kv_shared ? "yes" : "no", ki.family, splits, ms, tflops,
                100 * tflops / peak, gbps, 100 * gbps / copy);
    std::fflush(stdout);
    cudaFree(q), cudaFree(k), cudaFree(o), cudaFree(o_part), cudaFree(lse_part);
    if (!s.kv_shared) cudaFree(v);
  }
  return 0;
}

// The read floor of a decode shape: K and V read once by a plain streaming kernel (16-byte loads,
// four per array in flight per thread, two blocks of 512 threads per SM), nothing computed. The
// gap between it and the decode kernel is what attention itself costs (v0.4 in bench/NOTES.md).
__global__ void __launch_bounds__(512)
    read_floor_kernel(const uint4* k, const uint4* v, int64_t n16, uint32_t* sink) {
  uint32_t x = 0;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  for (; i + 3 * stride < n16; i += 4 * stride) {
    uint4 a[4], b[4];
#pragma unroll
    for (int u = 0; u < 4; ++u)
      a[u] = __ldcs(k + i + u * stride), b[u] = __ldcs(v + i + u * stride);
#pragma unroll
    for (int u = 0; u < 4; ++u) x ^= a[u].x ^ a[u].y ^ a[u].z ^ a[u].w ^ b[u].x ^ b[u].w;
  }
  for (; i < n16; i += stride) {
    const uint4 a = __ldcs(k + i), b = __ldcs(v + i);
    x ^= a.x ^ a.w ^ b.y ^ b.z;
  }
  if (x == 0x9e3779b9u) sink[0] = x;  // keeps the loads; fill_kernel's data never hits it
}

// Decode split sweep: the 12 decode shapes of bench/peers.py, each at several split counts, timed
// as CUDA graph replays (20 calls per graph, K/V rotated among copies of at least 150 MB in all so
// that no call finds the previous one's K/V in L2). "kernel" is the fused launch alone, "total"
// adds the merge: what a serving runtime's decode graph pays.
float graph_us(const std::function<void(cudaStream_t, int)>& enqueue, int calls) {
  cudaStream_t st;
  CHECK_CUDA(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  for (int i = 0; i < 2; ++i) enqueue(st, i);
  CHECK_CUDA(cudaStreamSynchronize(st));
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  CHECK_CUDA(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
  for (int i = 0; i < calls; ++i) enqueue(st, i);
  CHECK_CUDA(cudaStreamEndCapture(st, &graph));
  CHECK_CUDA(cudaGraphInstantiate(&exec, graph, 0));
  CHECK_CUDA(cudaGraphLaunch(exec, st));
  CHECK_CUDA(cudaStreamSynchronize(st));
  cudaEvent_t a, b;
  CHECK_CUDA(cudaEventCreate(&a));
  CHECK_CUDA(cudaEventCreate(&b));
  std::vector<float> t;
  for (int r = 0; r < 9; ++r) {
    CHECK_CUDA(cudaEventRecord(a, st));
    CHECK_CUDA(cudaGraphLaunch(exec, st));
    CHECK_CUDA(cudaEventRecord(b, st));
    CHECK_CUDA(cudaEventSynchronize(b));
    float ms = 0;
    CHECK_CUDA(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms);
  }
  cudaEventDestroy(a), cudaEventDestroy(b);
  cudaGraphExecDestroy(exec), cudaGraphDestroy(graph), cudaStreamDestroy(st);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2] * 1000.f / calls;
}

int decode_sweep() {
  cudaDeviceProp prop;
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  const double copy = copy_gbps();
  std::printf("\ndecode sweep (graph replays, us per call); device copy %.0f GB/s\n", copy);
  std::printf("%-4s %-6s %-7s %-6s %-6s %-7s %-6s %-9s %-9s %-9s %-9s %-7s %-6s %-7s\n", "d", "H",
              "Lk", "sets", "splits", "blocks", "keys", "kernel_us", "total_us", "pdl_us",
              "early_us", "GB/s", "%copy", "read_us");
  constexpr int kCalls = 20;
  for (int d : {128, 256, 512})
    for (auto [hq, hkv] : {std::pair{16, 2}, std::pair{32, 8}})
      for (int lk : {32768, 131072}) {
        const int64_t nq = int64_t(hq) * d, nk = int64_t(hkv) * lk * d;
        const double kv_bytes = 2.0 * 2 * nk;
        const int sets = std::min(8, std::max(1, int(std::ceil(150e6 / kv_bytes))));
        std::vector<uint16_t*> ks(sets), vs(sets);
        uint16_t *q, *o;
        CHECK_CUDA(cudaMalloc(&q, nq * 2));
        CHECK_CUDA(cudaMalloc(&o, nq * 2));
        fill_kernel<<<1024, 256>>>(q, nq, 3, true);
        for (int i = 0; i < sets; ++i) {
          CHECK_CUDA(cudaMalloc(&ks[i], nk * 2));
          CHECK_CUDA(cudaMalloc(&vs[i], nk * 2));
          fill_kernel<<<1024, 256>>>(ks[i], nk, 4 + 2 * i, true);
          fill_kernel<<<1024, 256>>>(vs[i], nk, 5 + 2 * i, true);
        }
        longattn_args a;
        std::memset(&a, 0, sizeof a);
        a.q = q, a.k = ks[0], a.v = vs[0], a.o = o, a.dtype = LONGATTN_BFLOAT16;
        a.batch = 1, a.q_heads = hq, a.kv_heads = hkv, a.q_len = 1, a.kv_len = lk;
        a.head_dim_qk = a.head_dim_v = d;
        a.q_strides = {nq, d, d};
        a.k_strides = a.v_strides = {nk, int64_t(lk) * d, d};
        a.o_strides = a.q_strides;
        a.causal = 1, a.window_left = -1;
        FusedKernelInfo ki;
        CHECK_CUDA(longattn::cuda::kernel_for(a, &ki));
        const int chosen = longattn::cuda::choose_splits(a, ki, prop.multiProcessorCount);
        const int64_t items = hkv, key_tiles = (lk + ki.traits.block_k - 1) / ki.traits.block_k;
        std::vector<int> cand = {chosen};
        for (int sp : {4, 8, 12, 16, 24, 32, 33, 48, 64, 66, 96, 99, 128, 132, 192, 264})
          if (!sweep_chosen_only && sp != chosen && sp <= key_tiles && items * sp <= 1056)
            cand.push_back(sp);
        const int most = *std::max_element(cand.begin(), cand.end());
        uint32_t* sink;
        CHECK_CUDA(cudaMalloc(&sink, 4));
        const float read = graph_us(
            [&](cudaStream_t st, int call) {
              read_floor_kernel<<<2 * prop.multiProcessorCount, 512, 0, st>>>(
                  reinterpret_cast<const uint4*>(ks[call % sets]),
                  reinterpret_cast<const uint4*>(vs[call % sets]), nk * 2 / 16, sink);
              CHECK_CUDA(cudaGetLastError());
            },
            kCalls);
        cudaFree(sink);
        float *o_part, *lse_part;
        CHECK_CUDA(cudaMalloc(&o_part, longattn::cuda::split_o_floats(a, most) * 4));
        CHECK_CUDA(cudaMalloc(&lse_part, longattn::cuda::split_lse_floats(a, most) * 4));
        for (int sp : cand) {
          auto args_for = [&](int call) {
            longattn_args x = a;
            x.k = ks[call % sets], x.v = vs[call % sets];
            return x;
          };
          using longattn::cuda::MergeLaunch;
          auto with_merge = [&](MergeLaunch m, MergeLaunch f) {
            return graph_us(
                [&](cudaStream_t st, int call) {
                  CHECK_CUDA(
                      longattn::cuda::run_fused(args_for(call), sp, o_part, lse_part, st, m, f));
                },
                kCalls);
          };
          const float total = with_merge(MergeLaunch::kPlain, MergeLaunch::kPlain);
          const float pdl =
              sp > 1 ? with_merge(MergeLaunch::kProgrammatic, MergeLaunch::kPlain) : total;
          // "early": the fused kernel too is a programmatic dependent (of the last call's merge).
          const float early = with_merge(MergeLaunch::kProgrammatic, MergeLaunch::kProgrammatic);
          const float kernel = graph_us(
              [&](cudaStream_t st, int call) {
                FusedParams p = longattn::cuda::make_fused_params(args_for(call));
                if (sp > 1) p.splits = sp, p.o_part = o_part, p.lse_part = lse_part;
                CHECK_CUDA(
                    longattn::cuda::fused_launch(d, d, longattn::cuda::Mma16::kBf16, true, p, st));
              },
              kCalls);
          const double gbps = (kv_bytes + 4.0 * nq) / (total * 1e-6) / 1e9;
          std::printf(
              "%-4d %-6s %-7d %-6d %-6d %-7lld %-6lld %-9.1f %-9.1f %-9.1f %-9.1f %-7.0f "
              "%-6.1f %-7.1f%s\n",
              d, (std::to_string(hq) + "/" + std::to_string(hkv)).c_str(), lk, sets, sp,
              (long long)(items * sp), (long long)((lk + sp - 1) / sp), kernel, total, pdl, early,
              gbps, 100 * gbps / copy, read, sp == chosen ? "  <- choose_splits" : "");
        }
        std::fflush(stdout);
        cudaFree(q), cudaFree(o), cudaFree(o_part), cudaFree(lse_part);
        for (int i = 0; i < sets; ++i) cudaFree(ks[i]), cudaFree(vs[i]);
      }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false, do_bench = false, do_sweep = false;
  std::string only;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--quick")
      quick = true;
    else if (a == "--bench")
      do_bench = true;
    else if (a == "--f16")
      bench_dtype = LONGATTN_FLOAT16;
    else if (a == "--decode-sweep")
      do_sweep = true;
    else if (a == "--decode-chosen")
      do_sweep = sweep_chosen_only = true;
    else if (a == "--only" && i + 1 < argc)
      only = bench_only = argv[++i];
    else {
      std::fprintf(stderr,
                   "usage: %s [--quick] [--bench [--f16]] [--decode-sweep | --decode-chosen] "
                   "[--only SUBSTRING]\n",
                   argv[0]);
      return 2;
    }
  }
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("SKIP: no CUDA device (fused_check needs a GPU)\n");
    return 77;
  }
  cudaDeviceProp prop;
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s (sm_%d%d, %d SMs, %zu KB shared/block)\n", prop.name, prop.major,
              prop.minor, prop.multiProcessorCount, prop.sharedMemPerBlockOptin / 1024);
  for (bool decode : {false, true}) {
    const auto type = longattn::cuda::Mma16::kBf16;  // the f16 kernels share the shapes
#define LONGATTN_X(a, b)                                                                      \
  {                                                                                           \
    FusedKernelInfo ki;                                                                       \
    CHECK_CUDA(longattn::cuda::fused_kernel_info(a, b, type, decode, &ki));                   \
    std::printf(                                                                              \
        "kernel d%d/%d %s: sm_%d code, tiles %dx%d, %d warps, %d stages, %lld B smem, "       \
        "%d regs, %d B local, %d blocks/SM\n",                                                \
        a, b, decode ? "decode" : "prefill", ki.arch, ki.traits.block_q(), ki.traits.block_k, \
        ki.traits.warps, ki.traits.stages, (long long)ki.smem_bytes, ki.regs, ki.local_bytes, \
        ki.blocks_per_sm);                                                                    \
  }
    LONGATTN_FUSED_HEAD_DIMS(LONGATTN_X)
#undef LONGATTN_X
  }
#define LONGATTN_X(a, b)                                                                         \
  {                                                                                              \
    FusedKernelInfo ki;                                                                          \
    CHECK_CUDA(longattn::cuda::fused_sm90_kernel_info(a, b, longattn::cuda::Mma16::kBf16, &ki)); \
    std::printf(                                                                                 \
        "kernel d%d/%d sm90: sm_%d code, tiles %dx%d, %d threads, %lld B smem, "                 \
        "%d regs, %d B local, %d blocks/SM\n",                                                   \
        a, b, ki.arch, ki.block_q, ki.block_k, ki.threads, (long long)ki.smem_bytes, ki.regs,    \
        ki.local_bytes, ki.blocks_per_sm);                                                       \
  }
  LONGATTN_FUSED_SM90_HEAD_DIMS(LONGATTN_X)
#undef LONGATTN_X
  if (do_bench) return bench();
  if (do_sweep) return decode_sweep();
  int failed = 0, ran = 0;
  uint32_t seed = 1234;
  for (const Case& c : grid(quick)) {
    if (!only.empty() && c.name.find(only) == std::string::npos) continue;
    ++ran;
    if (!run_case(c, seed++)) ++failed;
  }
  std::printf("%d of %d cases passed\n", ran - failed, ran);
  return failed ? 1 : 0;
}
