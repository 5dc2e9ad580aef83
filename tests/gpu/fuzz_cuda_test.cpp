// Random valid inputs through the C API on every CUDA path (AUTO, unfused, fused, split_kv):
// shapes, head dims 1-576, strides with odd pads and broadcast (stride 0) inputs, base pointers one
// element (2 bytes for 16-bit dtypes) off alignment, k == v (also with Dv < Dqk), boolean and
// additive masks, sinks, windows, softcap, paged K/V with pages of 1-256 tokens, rows that see no
// key, Lq > Lk, every dtype, FP8 caches (e4m3, e5m2; scales per tensor or per KV head). Each run is
// compared with the float64 reference, the bytes around and between O's rows and LSE's are checked
// for writes, and the device must stay usable.
//
// AUTO must run every case (an FP8 cache on Hopper only), and unfused every case but an FP8 cache.
// fused and split_kv run every head dim pair here (padded to a compiled pair) and every layout
// (rows off 16 bytes included) at every page size; they may refuse only for the limits their plans
// document (an FP8 cache off Hopper). Any other refusal or error is a failure. Refusals are tallied
// by reason at the end.
//
//   LONGATTN_FUZZ_CASES  number of cases (default 10000; ~300 under compute-sanitizer)
//   LONGATTN_FUZZ_SEED   base seed (default 1); case i uses its own generator seeded (seed, i)
//   LONGATTN_FUZZ_ONLY   run only case i (to reproduce a failure)
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <utility>

#include "gpu/cuda_test_util.hpp"
#include "reference_test_util.hpp"

namespace longattn_test {
namespace {

constexpr int32_t F32 = LONGATTN_FLOAT32, F16 = LONGATTN_FLOAT16, BF16 = LONGATTN_BFLOAT16;
constexpr int64_t kGuard = 256;  // bytes before and after every buffer
// Reference work per case (multiply-adds): keeps 10,000 cases within minutes.
constexpr double kMaxWork = 4e6;

int64_t env_int(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoll(v, nullptr, 10) : fallback;
}

// A [outer, heads, len, dim] tensor in host memory with kGuard bytes around it, starting
// `offset` bytes past a 256-byte boundary (cudaMalloc's alignment) once uploaded.
struct HostTensor {
  int64_t outer = 1, heads = 1, len = 1, dim = 1, es = 2, offset = 0;
  longattn_strides s{};
  std::vector<uint8_t> bytes;

  HostTensor() = default;
  HostTensor(int64_t o, int64_t h, int64_t l, int64_t d, int64_t elem, longattn_strides st,
             int64_t off, uint8_t fill)
      : outer(o), heads(h), len(l), dim(d), es(elem), offset(off), s(st) {
    const int64_t body = ((o - 1) * st.batch + (h - 1) * st.head + (l - 1) * st.token + d) * elem;
    bytes.assign(size_t(2 * kGuard + off + body), fill);
  }
  int64_t at(int64_t b, int64_t h, int64_t l, int64_t x) const {  // byte index in `bytes`
    return kGuard + offset + (b * s.batch + h * s.head + l * s.token + x) * es;
  }
  float get(int64_t i, int32_t dtype) const {
    return longattn::numeric::load_element(dtype, &bytes[size_t(i)], 0);
  }
  void set(int64_t i, float x, int32_t dtype) {
    longattn::numeric::store_element(dtype, &bytes[size_t(i)], 0, x);
  }
  // "" when every byte outside the elements still holds `fill`.
  std::string untouched_outside(const std::vector<uint8_t>& now, uint8_t fill) const {
    std::vector<uint8_t> inside(now.size(), 0);
    for (int64_t b = 0; b < outer; ++b)
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t l = 0; l < len; ++l) std::fill_n(inside.begin() + at(b, h, l, 0), dim * es, 1);
    for (size_t i = 0; i < now.size(); ++i)
      if (!inside[i] && now[i] != fill)
        return "byte " + std::to_string(int64_t(i) - kGuard - offset) +
               " relative to the tensor's start (outside its elements) was written";
    return "";
  }
};

// A host buffer's copy in device memory; `ptr` is where the tensor starts.
struct DeviceCopy {
  char* base = nullptr;
  char* ptr = nullptr;
  int64_t bytes = 0;
  DeviceCopy(const std::vector<uint8_t>& host, int64_t start) : bytes(int64_t(host.size())) {
    if (cudaMalloc(reinterpret_cast<void**>(&base), size_t(bytes)) != cudaSuccess) return;
    cudaMemcpy(base, host.data(), size_t(bytes), cudaMemcpyHostToDevice);
    ptr = base + start;
  }
  DeviceCopy(const DeviceCopy&) = delete;
  DeviceCopy& operator=(const DeviceCopy&) = delete;
  ~DeviceCopy() { cudaFree(base); }
  std::vector<uint8_t> download() const {
    std::vector<uint8_t> out(static_cast<size_t>(bytes));
    cudaMemcpy(out.data(), base, size_t(bytes), cudaMemcpyDeviceToHost);
    return out;
  }
};

// Strides of a [outer, heads, len, dim] tensor: heads-major or tokens-major, gaps of random size
// (odd ones included) after rows, heads and batches; now and then a broadcast token (stride 0).
longattn_strides random_strides(std::mt19937_64& rng, int64_t heads, int64_t len, int64_t dim,
                                bool allow_broadcast) {
  auto pad = [&]() -> int64_t {
    const int64_t r = int64_t(rng() % 8);
    return r < 4 ? 0 : r < 6 ? int64_t(rng() % 9) + 1 : 8 * int64_t(rng() % 3 + 1);
  };
  longattn_strides s{};
  if (rng() % 2) {  // [B, H, L, D]
    s.token = dim + pad();
    s.head = len * s.token + pad();
    s.batch = heads * s.head + pad();
  } else {  // [B, L, H, D]
    s.head = dim + pad();
    s.token = heads * s.head + pad();
    s.batch = len * s.token + pad();
  }
  if (allow_broadcast && rng() % 40 == 0) s.token = 0;
  return s;
}

struct FuzzCase {
  longattn_args args{};  // host pointers replaced by device ones at run time
  std::string text;
  HostTensor q, k, v, o, lse;  // k is the pool when paged; v unused when k == v
  bool k_eq_v = false, paged = false;
  std::vector<int32_t> table;
  std::vector<uint8_t> mask;
  int64_t mask_offset = 0;
  std::vector<float> sinks;
  std::vector<float> k_scale, v_scale;  // an FP8 cache's, when given
  Problem problem;
};

int64_t ceil_div_i(int64_t a, int64_t b) { return (a + b - 1) / b; }

int64_t pick(std::mt19937_64& rng, std::initializer_list<int64_t> values) {
  return values.begin()[rng() % values.size()];
}

FuzzCase make_case(uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::uniform_real_distribution<float> uni(0.f, 1.f);
  FuzzCase c;
  longattn_args& a = c.args;
  longattn_args_init(&a);
  a.device = LONGATTN_DEVICE_CUDA;
  a.dtype = int32_t(pick(rng, {F32, F16, F16, BF16, BF16}));
  const int64_t es = dtype_size(a.dtype);

  // Head dims: half the cases a fused kernel's, the rest anything in 1..576 (Dv at most 512).
  if (rng() % 2) {
    const int64_t fused[][2] = {{32, 32},   {64, 64},   {80, 80},   {96, 96},   {128, 128},
                                {192, 128}, {192, 192}, {256, 256}, {512, 512}, {576, 512}};
    const auto& d = fused[rng() % 10];
    a.head_dim_qk = d[0], a.head_dim_v = d[1];
  } else {
    a.head_dim_qk = int64_t(rng() % 576) + 1;
    a.head_dim_v = rng() % 3 ? a.head_dim_qk : int64_t(rng() % 512) + 1;
    if (a.head_dim_v > 512) a.head_dim_v = 512;
  }
  c.k_eq_v = rng() % 6 == 0;
  if (c.k_eq_v && a.head_dim_v > a.head_dim_qk)
    a.head_dim_v = a.head_dim_qk;  // V: K's first columns

  a.batch = int64_t(rng() % 3) + 1;
  a.kv_heads = int64_t(pick(rng, {1, 1, 2, 3, 4}));
  a.q_heads = a.kv_heads * pick(rng, {1, 2, 3, 4, 8});
  a.q_len = rng() % 4 == 0 ? 1 : int64_t(rng() % 96) + 1;
  a.kv_len = rng() % 8 == 0 ? int64_t(rng() % 8) + 1 : int64_t(rng() % 400) + 1;
  // Shrink the reference's work: longest axis first.
  auto work = [&] {
    return double(a.batch * a.q_heads * a.q_len) * double(a.kv_len) *
           double(a.head_dim_qk + a.head_dim_v);
  };
  while (work() > kMaxWork) {
    if (a.kv_len >= a.q_len && a.kv_len > 1)
      a.kv_len = (a.kv_len + 1) / 2;
    else if (a.q_len > 1)
      a.q_len = (a.q_len + 1) / 2;
    else if (a.batch > 1)
      a.batch -= 1;
    else
      break;
  }

  a.causal = rng() % 2;
  a.window_left = rng() % 4 == 0 ? int64_t(rng() % (a.kv_len + 2)) : -1;
  float q_amp = 1.f;
  if (rng() % 5 == 0) a.softcap = 5.f + 45.f * uni(rng), q_amp = 6.f;
  if (rng() % 6 == 0) a.scale = 0.05f + 0.5f * uni(rng);

  // An FP8 cache now and then: K and V in e4m3 or e5m2, scales (none, one, or one per KV head) of
  // few significant bits, so code x scale is exact in float32. The unfused path refuses it.
  const int fp8 = int(rng() % 8);
  a.kv_dtype = fp8 == 0 ? LONGATTN_FLOAT8_E4M3 : fp8 == 1 ? LONGATTN_FLOAT8_E5M2 : 0;
  const int64_t kv_es = a.kv_dtype ? 1 : es;
  if (a.kv_dtype && rng() % 3) {
    a.kv_scale_per_head = a.kv_heads > 1 && rng() % 2;
    for (int64_t h = 0; h < (a.kv_scale_per_head ? a.kv_heads : 1); ++h) {
      c.k_scale.push_back(float(pick(rng, {1, 2, 3, 6, 12})) / 8.f);
      c.v_scale.push_back(float(pick(rng, {1, 2, 3, 6, 12})) / 8.f);
    }
  }
  // Q, K, V, O: random layouts; tensors start one element (2 bytes for 16-bit, 4 for float32, 1
  // for FP8) off alignment now and then.
  auto offset = [&] { return rng() % 3 == 0 ? es : int64_t(0); };
  auto kv_offset = [&] { return rng() % 3 == 0 ? kv_es : int64_t(0); };
  const int64_t dk = a.head_dim_qk, dv = a.head_dim_v;
  a.q_strides = random_strides(rng, a.q_heads, a.q_len, dk, true);
  c.q = HostTensor(a.batch, a.q_heads, a.q_len, dk, es, a.q_strides, offset(), kInputGap);
  c.paged = rng() % 4 == 0;
  int64_t kv_outer = a.batch, kv_tokens = a.kv_len;
  if (c.paged) {
    a.page_size = rng() % 2 ? pick(rng, {64, 128, 256}) : int64_t(rng() % 256) + 1;
    const int64_t pages = ceil_div_i(a.kv_len, a.page_size);
    a.num_blocks = a.batch * pages + int64_t(rng() % 4);
    a.block_table_stride = pages + (a.batch > 1 ? int64_t(rng() % 3) : 0);
    std::vector<int32_t> ids(size_t(a.num_blocks));
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng);
    c.table.assign(size_t(a.batch * a.block_table_stride), -7);  // -7: entries never read
    for (int64_t b = 0; b < a.batch; ++b)
      for (int64_t p = 0; p < pages; ++p)
        c.table[size_t(b * a.block_table_stride + p)] = ids[size_t(b * pages + p)];
    kv_outer = a.num_blocks, kv_tokens = a.page_size;
  }
  a.k_strides = random_strides(rng, a.kv_heads, kv_tokens, dk, !c.paged);
  c.k = HostTensor(kv_outer, a.kv_heads, kv_tokens, dk, kv_es, a.k_strides, kv_offset(), kInputGap);
  if (c.k_eq_v) {
    a.v_strides = a.k_strides;
  } else {
    a.v_strides = random_strides(rng, a.kv_heads, kv_tokens, dv, !c.paged);
    c.v =
        HostTensor(kv_outer, a.kv_heads, kv_tokens, dv, kv_es, a.v_strides, kv_offset(), kInputGap);
  }
  a.o_strides = random_strides(rng, a.q_heads, a.q_len, dv, false);
  c.o = HostTensor(a.batch, a.q_heads, a.q_len, dv, es, a.o_strides, offset(), kOutputSentinel);
  c.lse = HostTensor(a.batch, a.q_heads, a.q_len, 1, 4, {a.q_heads * a.q_len, a.q_len, 1}, 0,
                     kOutputSentinel);
  const bool with_lse = rng() % 5 != 0;

  // Values: every element of every tensor (stride-0 tokens get the last write), then the dense
  // logical view the reference reads.
  Problem& p = c.problem;
  p.B = a.batch, p.Hq = a.q_heads, p.Hkv = a.kv_heads, p.Lq = a.q_len, p.Lk = a.kv_len;
  p.Dqk = dk, p.Dv = dv, p.dtype = a.dtype;
  const int32_t kv_type = a.kv_dtype ? a.kv_dtype : a.dtype;
  auto fill = [&](HostTensor& t, float amp, int32_t dtype, const std::vector<float>& scale) {
    for (int64_t b = 0; b < t.outer; ++b)
      for (int64_t h = 0; h < t.heads; ++h)
        for (int64_t l = 0; l < t.len; ++l)
          for (int64_t x = 0; x < t.dim; ++x)
            t.set(t.at(b, h, l, x), amp * normal(rng) / (scale.empty() ? 1.f : scale[0]), dtype);
  };
  fill(c.q, q_amp, a.dtype, {});
  fill(c.k, 1.f, kv_type, c.k_scale);
  if (!c.k_eq_v) fill(c.v, 1.f, kv_type, c.v_scale);
  if (c.k_eq_v) c.v_scale = c.k_scale;  // one buffer: one scale
  // The value of a K or V element of KV head h: the stored one times its scale.
  auto scaled = [&](const std::vector<float>& scale, int64_t h, float x) {
    return scale.empty() ? x : x * scale[size_t(a.kv_scale_per_head ? h : 0)];
  };
  const HostTensor& vt = c.k_eq_v ? c.k : c.v;
  // Logical token j of batch b: its (outer, slot) in the tensor.
  auto place = [&](int64_t b, int64_t j) {
    if (!c.paged) return std::pair<int64_t, int64_t>(b, j);
    return std::pair<int64_t, int64_t>(c.table[size_t(b * a.block_table_stride + j / a.page_size)],
                                       j % a.page_size);
  };
  for (int64_t b = 0; b < a.batch; ++b)
    for (int64_t h = 0; h < a.q_heads; ++h)
      for (int64_t i = 0; i < a.q_len; ++i)
        for (int64_t x = 0; x < dk; ++x) p.q.push_back(c.q.get(c.q.at(b, h, i, x), a.dtype));
  for (int64_t b = 0; b < a.batch; ++b)
    for (int64_t h = 0; h < a.kv_heads; ++h)
      for (int64_t j = 0; j < a.kv_len; ++j) {
        const auto [blk, slot] = place(b, j);
        for (int64_t x = 0; x < dk; ++x)
          p.k.push_back(scaled(c.k_scale, h, c.k.get(c.k.at(blk, h, slot, x), kv_type)));
        for (int64_t x = 0; x < dv; ++x)
          p.v.push_back(scaled(c.v_scale, h, vt.get(vt.at(blk, h, slot, x), kv_type)));
      }
  p.scale = double(a.scale != 0 ? a.scale : 1.0f / std::sqrt(float(dk)));
  p.causal = a.causal, p.window = a.window_left, p.softcap = a.softcap;

  if (rng() % 4 == 0) {
    for (int64_t h = 0; h < a.q_heads; ++h) c.sinks.push_back(3.f * normal(rng));
    p.sinks = c.sinks;
  }

  // Masks: each dim full or broadcast, padded strides; a fully hidden row now and then. An
  // additive (float32) mask is sometimes 2 bytes off alignment, a boolean one 1 byte.
  const int mask_kind = int(rng() % 6);
  if (mask_kind == 1 || mask_kind == 2) {
    a.mask.kind = mask_kind == 1 ? LONGATTN_MASK_BOOLEAN : LONGATTN_MASK_ADDITIVE;
    const int64_t full[4] = {a.batch, a.q_heads, a.q_len, a.kv_len};
    int64_t stride = 1;
    for (int d = 3; d >= 0; --d) {
      a.mask.dims[d] = rng() % 3 ? full[d] : 1;
      a.mask.strides[d] = a.mask.dims[d] == 1 ? 999 : stride;
      if (a.mask.dims[d] != 1) stride = stride * a.mask.dims[d] + int64_t(rng() % 3);
    }
    const int64_t mes = mask_kind == 1 ? 1 : 4;
    c.mask_offset = rng() % 5 == 0 ? (mask_kind == 1 ? 1 : 2) : 0;
    c.mask.assign(size_t(c.mask_offset + stride * mes), kInputGap);
    for (int d = 0; d < 4; ++d)
      p.mask_dims[d] = a.mask.dims[d], p.mask_strides[d] = a.mask.strides[d];
    const int64_t* md = a.mask.dims;
    for (int64_t b = 0; b < md[0]; ++b)
      for (int64_t h = 0; h < md[1]; ++h)
        for (int64_t i = 0; i < md[2]; ++i) {
          const bool hidden_row = md[2] > 1 && rng() % 11 == 0;
          for (int64_t j = 0; j < md[3]; ++j) {
            const int64_t off = c.mask_offset + p.mask_offset(b, h, i, j) * mes;
            const bool hide = hidden_row || uni(rng) < 0.25f;
            if (mes == 1) {
              c.mask[size_t(off)] = hide ? 0 : uint8_t(1 + rng() % 200);
            } else {
              const float add = hide ? -std::numeric_limits<float>::infinity() : normal(rng);
              std::memcpy(&c.mask[size_t(off)], &add, 4);
            }
          }
        }
    p.mask_kind = a.mask.kind;
    p.mask = c.mask.data() + c.mask_offset;
  }

  std::ostringstream t;
  t << "B=" << a.batch << " Hq=" << a.q_heads << " Hkv=" << a.kv_heads << " Lq=" << a.q_len
    << " Lk=" << a.kv_len << " D=" << dk << "/" << dv << " " << dtype_label(a.dtype)
    << (a.causal ? " causal" : "") << " window=" << a.window_left << " softcap=" << a.softcap
    << " scale=" << a.scale << (a.kv_dtype ? " kv=" : "")
    << (a.kv_dtype ? dtype_label(a.kv_dtype) : "") << (c.k_scale.empty() ? "" : " kv_scales")
    << (a.kv_scale_per_head ? "/head" : "") << (c.sinks.empty() ? "" : " sinks")
    << " mask=" << a.mask.kind << "+" << c.mask_offset << (c.k_eq_v ? " k==v" : "")
    << (with_lse ? "" : " no_lse") << " q{" << a.q_strides.batch << "," << a.q_strides.head << ","
    << a.q_strides.token << "}+" << c.q.offset << " k{" << a.k_strides.batch << ","
    << a.k_strides.head << "," << a.k_strides.token << "}+" << c.k.offset << " v{"
    << a.v_strides.batch << "," << a.v_strides.head << "," << a.v_strides.token << "}+"
    << (c.k_eq_v ? c.k.offset : c.v.offset) << " o{" << a.o_strides.batch << "," << a.o_strides.head
    << "," << a.o_strides.token << "}+" << c.o.offset;
  if (c.paged)
    t << " paged page=" << a.page_size << " blocks=" << a.num_blocks
      << " table_stride=" << a.block_table_stride;
  c.text = t.str();
  if (!with_lse) c.lse.bytes.clear();  // marks "no LSE"
  return c;
}

// Refusals the fused paths document (their plans' reasons); anything else is a failure.
std::string documented_refusal(const std::string& why) {
  const char* known[][2] = {
      {"the CUDA unfused path reads K and V in dtype", "an FP8 cache on the unfused path"},
      {"the CUDA kernels read FP8 caches with sm_90a code", "an FP8 cache off Hopper"},
  };
  for (const auto& k : known)
    if (why.find(k[0]) != std::string::npos) return k[1];
  return "";
}

struct Tally {
  std::map<std::string, int64_t> ok, refused;
  std::map<std::string, std::string> refusal_example;
  std::vector<std::string> failures;
  void fail(int64_t index, const FuzzCase& c, const std::string& path, const std::string& what) {
    failures.push_back("case " + std::to_string(index) + " [" + c.text + "] path " + path + ": " +
                       what);
    std::fprintf(stderr, "FAIL %s\n", failures.back().c_str());
  }
};

// Runs one case on every path. Returns false when the device is no longer usable.
bool run_case(int64_t index, const FuzzCase& c, Tally* tally) {
  longattn_args a = c.args;
  DeviceCopy q(c.q.bytes, kGuard + c.q.offset), k(c.k.bytes, kGuard + c.k.offset);
  std::unique_ptr<DeviceCopy> v, mask, sinks, table, k_scale, v_scale;
  if (!c.k_eq_v) v = std::make_unique<DeviceCopy>(c.v.bytes, kGuard + c.v.offset);
  if (!c.mask.empty()) mask = std::make_unique<DeviceCopy>(c.mask, c.mask_offset);
  if (!c.sinks.empty()) {
    std::vector<uint8_t> bytes(c.sinks.size() * 4);
    std::memcpy(bytes.data(), c.sinks.data(), bytes.size());
    sinks = std::make_unique<DeviceCopy>(bytes, 0);
  }
  auto floats = [](const std::vector<float>& x) {
    std::vector<uint8_t> bytes(x.size() * 4);
    std::memcpy(bytes.data(), x.data(), bytes.size());
    return std::make_unique<DeviceCopy>(bytes, 0);
  };
  if (!c.k_scale.empty()) k_scale = floats(c.k_scale), v_scale = floats(c.v_scale);
  if (c.paged) {
    std::vector<uint8_t> bytes(c.table.size() * 4);
    std::memcpy(bytes.data(), c.table.data(), bytes.size());
    table = std::make_unique<DeviceCopy>(bytes, 0);
  }
  a.q = q.ptr, a.k = k.ptr, a.v = c.k_eq_v ? k.ptr : v->ptr;
  a.mask.data = mask ? mask->ptr : nullptr;
  a.sinks = sinks ? reinterpret_cast<const float*>(sinks->ptr) : nullptr;
  a.block_table = table ? reinterpret_cast<const int32_t*>(table->ptr) : nullptr;
  a.k_scale = k_scale ? reinterpret_cast<const float*>(k_scale->ptr) : nullptr;
  a.v_scale = v_scale ? reinterpret_cast<const float*>(v_scale->ptr) : nullptr;
  const bool with_lse = !c.lse.bytes.empty();

  const Problem& p = c.problem;
  const RefResult ref = reference_attention<double>(p);
  // The yardstick of 16-bit results (and of float32 on the fused kernels, which multiply bf16):
  // the same math in float32 with the inputs, P and O rounded to the dtype.
  Problem rounded = p;
  rounded.dtype = a.dtype == F32 ? BF16 : a.dtype;
  for (auto* t : {&rounded.q, &rounded.k, &rounded.v})
    for (float& x : *t) x = round_to_dtype(x, rounded.dtype);
  const RefResult lp = reference_attention<float>(rounded, /*low_precision=*/true);
  const Errors lowp = measure(ref, lp.o, &lp.lse);

  for (int32_t path :
       {LONGATTN_PATH_AUTO, LONGATTN_PATH_UNFUSED, LONGATTN_PATH_FUSED, LONGATTN_PATH_SPLIT_KV}) {
    const std::string name = path_label(path);
    std::vector<uint8_t> lse_host =
        with_lse ? c.lse.bytes : std::vector<uint8_t>(size_t(2 * kGuard + 64), kOutputSentinel);
    DeviceCopy o(c.o.bytes, kGuard + c.o.offset), lse(lse_host, kGuard);
    a.o = o.ptr;
    a.lse = with_lse ? reinterpret_cast<float*>(lse.ptr) : nullptr;
    longattn_options opt;
    longattn_options_init(&opt);
    opt.path = path;
    longattn_plan plan;
    const longattn_status st = longattn_attention(&a, &opt, &plan);
    const std::string message = longattn_last_error();
    const cudaError_t e = cudaDeviceSynchronize();
    if (e != cudaSuccess) {
      tally->fail(index, c, name,
                  std::string("device fault: ") + cudaGetErrorString(e) + " (status " +
                      longattn_status_string(st) + ")");
      return false;
    }
    const std::vector<uint8_t> o_now = o.download(), lse_now = lse.download();
    std::string guard = c.o.untouched_outside(o_now, kOutputSentinel);
    if (guard.empty() && with_lse) guard = c.lse.untouched_outside(lse_now, kOutputSentinel);
    if (guard.empty() && !with_lse && lse_now != lse_host) guard = "LSE written although NULL";
    if (!guard.empty()) tally->fail(index, c, name, "O/LSE guard: " + guard);

    if (st == LONGATTN_UNSUPPORTED &&
        (path == LONGATTN_PATH_FUSED || path == LONGATTN_PATH_SPLIT_KV ||
         (a.kv_dtype && (path == LONGATTN_PATH_UNFUSED || !hopper())))) {
      const std::string why = documented_refusal(message);
      if (why.empty()) {
        tally->fail(index, c, name, "undocumented refusal: " + message);
      } else {
        tally->refused[name + ": " + why] += 1;
        tally->refusal_example.emplace(name + ": " + why, message);
      }
      continue;
    }
    if (st != LONGATTN_OK) {
      tally->fail(index, c, name, std::string(longattn_status_string(st)) + ": " + message);
      continue;
    }
    if (plan.allocated_bytes != plan.transient_bytes)
      tally->fail(index, c, name,
                  "allocated " + std::to_string(plan.allocated_bytes) + " bytes, predicted " +
                      std::to_string(plan.transient_bytes));
    tally->ok[name + " -> " + path_label(plan.path)] += 1;

    RunOutput out;
    out.o_dense.reserve(size_t(p.B * p.Hq * p.Lq * p.Dv));
    HostTensor got = c.o;
    got.bytes = o_now;
    for (int64_t b = 0; b < p.B; ++b)
      for (int64_t h = 0; h < p.Hq; ++h)
        for (int64_t i = 0; i < p.Lq; ++i)
          for (int64_t x = 0; x < p.Dv; ++x)
            out.o_dense.push_back(got.get(got.at(b, h, i, x), a.dtype));
    if (with_lse) {
      HostTensor l = c.lse;
      l.bytes = lse_now;
      for (int64_t r = 0; r < p.B * p.Hq * p.Lq; ++r)
        out.lse_dense.push_back(l.get(kGuard + 4 * r, F32));
    }
    const std::string empty = check_empty_rows(p, ref, out, with_lse);
    if (!empty.empty()) tally->fail(index, c, name, empty);
    const Errors err = measure(ref, out.o_dense, with_lse ? &out.lse_dense : nullptr);
    // Twice the low precision error (FlashAttention's criterion), plus the dtype's rounding of
    // the output: tiny cases can have a yardstick error of 0 by chance. float32 on the unfused
    // path is held to float32 rounding, which grows as sqrt(head dim) over the GEMMs' sums.
    const bool exact = a.dtype == F32 && plan.path == LONGATTN_PATH_UNFUSED;
    const double eps = exact                  ? 1e-5 * std::sqrt(std::max(1.0, double(p.Dqk) / 64))
                       : rounded.dtype == F16 ? 1.0 / 2048
                                              : 1.0 / 256;
    const double o_tol = exact ? eps * err.ref_max : 2 * lowp.o_abs + eps * err.ref_max;
    // float32 LSE: scores of head dims up to 512 carry ~1e-5 of rounding from the GEMM's sums.
    const double lse_tol = exact ? 1e-4 : 2 * lowp.lse_rel + 1e-4;
    if (!(err.o_abs <= o_tol) || !(err.lse_rel <= lse_tol))
      tally->fail(index, c, name + " (ran " + path_label(plan.path) + ")",
                  describe(err, p) + "; low precision: " + describe(lowp, p));
  }

  // Inputs are never written.
  const struct {
    const char* name;
    const DeviceCopy* d;
    const std::vector<uint8_t>* host;
  } inputs[] = {{"q", &q, &c.q.bytes},
                {"k", &k, &c.k.bytes},
                {"v", v.get(), &c.v.bytes},
                {"mask", mask.get(), &c.mask}};
  for (const auto& in : inputs)
    if (in.d && in.d->download() != *in.host)
      tally->fail(index, c, "all", std::string("input ") + in.name + " was modified");
  return true;
}

TEST(FuzzCuda, RandomValidInputsRunOrAreRefusedWithADocumentedReason) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const int64_t cases = env_int("LONGATTN_FUZZ_CASES", 10000);
  const uint64_t seed = uint64_t(env_int("LONGATTN_FUZZ_SEED", 1));
  const int64_t only = env_int("LONGATTN_FUZZ_ONLY", -1);
  Tally tally;
  int64_t ran = 0;
  for (int64_t i = only >= 0 ? only : 0; i < (only >= 0 ? only + 1 : cases); ++i) {
    const FuzzCase c = make_case(seed * longattn::numeric::kGoldenGamma + uint64_t(i));
    ++ran;
    if (!run_case(i, c, &tally)) break;  // the context is gone: later cases would all fail
    if (tally.failures.size() >= 50) break;
    if ((i + 1) % 1000 == 0) std::fprintf(stderr, "%lld cases\n", (long long)(i + 1));
  }
  std::printf("%lld cases (seed %llu)\nruns:\n", (long long)ran, (unsigned long long)seed);
  for (const auto& [k, n] : tally.ok) std::printf("  %-28s %lld\n", k.c_str(), (long long)n);
  std::printf("documented refusals:\n");
  for (const auto& [k, n] : tally.refused)
    std::printf("  %-60s %lld  e.g. %s\n", k.c_str(), (long long)n,
                tally.refusal_example[k].c_str());
  EXPECT_TRUE(tally.failures.empty())
      << tally.failures.size() << " failure(s), first: " << tally.failures.front();
}

}  // namespace
}  // namespace longattn_test
