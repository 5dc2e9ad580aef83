// Test utilities shared by the CPU test suite: the dtype conversions (core/numeric.hpp), strided
// tensors with guard bytes,
// a float64 reference written independently of the library (so the tests never trust the library's
// own reference path blindly), a "low precision" reference for the fp16/bf16 error criterion, and
// one Case -> longattn_args builder that every test uses.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <numeric>
#include <ostream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/numeric.hpp"
#include "longattn/longattn.h"

namespace longattn_test {

constexpr double kInf = std::numeric_limits<double>::infinity();

// LONGATTN_TEST_SCALE=small shrinks the longest sequences (4096 -> 1100) so the suite fits the
// sanitizer job's time limit. Every case, and so every feature, still runs; only lengths shrink.
inline bool small_scale() {
  const char* s = std::getenv("LONGATTN_TEST_SCALE");
  return s != nullptr && std::strcmp(s, "small") == 0;
}
inline int64_t scaled_len(int64_t len) { return small_scale() && len > 1100 ? 1100 : len; }

// LONGATTN_CPU_ISA=NAME asks for one instruction set's kernels (the accuracy_isa_* tests, a
// small-scale rerun of the grid). Why such a run repeats the unforced one, which runs the best
// kernels: the CPU lacks NAME (and runs its best instead), or offers nothing above NAME. "" when
// the forced run covers kernels the unforced one does not (or nothing was forced).
inline std::string forced_cpu_isa_repeats_unforced() {
  const char* want = std::getenv("LONGATTN_CPU_ISA");
  longattn_device_info info;
  if (!want || longattn_device_query(LONGATTN_DEVICE_CPU, &info) != LONGATTN_OK) return "";
  const std::string features = std::string(info.features) + " ";  // "kernels=NAME flag flag..."
  const std::string active = features.substr(8, features.find(' ') - 8);
  if (active != want) return "LONGATTN_CPU_ISA=" + std::string(want) + ": this CPU runs " + active;
  // The CPU flag the next instruction set up needs (cpu_info.cpp names them).
  const char* next = active == "generic" ? "avx2" : active == "avx2" ? "avx512f" : "avx512bf16";
  if (active != "amx" && features.find(std::string(" ") + next + " ") == std::string::npos)
    return "LONGATTN_CPU_ISA=" + std::string(want) +
           ": the best this CPU runs, as the unforced run";
  return "";
}

// ---- dtype conversions: the library's own (core/numeric.hpp), which numeric_test.cpp checks
// code by code against a reference written from the format definitions.

using longattn::numeric::bf16_to_float;
using longattn::numeric::f16_to_float;
using longattn::numeric::float_to_bf16;
using longattn::numeric::float_to_f16;
using longattn::numeric::round_to_dtype;

inline int64_t dtype_size(int32_t dtype) { return longattn::numeric::dtype_bytes(dtype); }

inline const char* dtype_label(int32_t dtype) { return longattn::numeric::dtype_short_name(dtype); }

inline const char* path_label(int32_t path) { return longattn_path_name(path); }

// ---- strided tensors with guard regions

// How a [B, H, L, D] tensor is laid out in memory. The padded variants leave gaps between tokens,
// heads and batches (odd sizes, so rows are not vector aligned) and a batch stride that is not the
// product of the others; the tokens-major ones are [B, L, H, D] expressed through strides.
// kRows16 pads every stride to a multiple of 8 elements (rows on 16 bytes for 16-bit types, as TMA
// needs) with at least one gap element after each row, so a padded head dim has columns to misread.
enum class Layout { kContiguous, kPadded, kTokensMajor, kTokensMajorPadded, kRows16 };

inline const char* layout_label(Layout l) {
  switch (l) {
    case Layout::kContiguous:
      return "contiguous";
    case Layout::kPadded:
      return "padded";
    case Layout::kTokensMajor:
      return "tokens_major";
    case Layout::kTokensMajorPadded:
      return "tokens_major_padded";
    case Layout::kRows16:
      return "rows16";
  }
  return "?";
}

inline longattn_strides make_strides(Layout layout, int64_t h, int64_t l, int64_t d) {
  switch (layout) {
    case Layout::kContiguous:
      return {h * l * d, l * d, d};
    case Layout::kPadded: {
      int64_t token = d + 3, head = l * token + 5;
      return {h * head + 7, head, token};
    }
    case Layout::kTokensMajor:
      return {l * h * d, d, h * d};
    case Layout::kTokensMajorPadded: {
      int64_t head = d + 2, token = h * head + 1;
      return {l * token + 9, head, token};
    }
    case Layout::kRows16: {
      int64_t token = (d + 8) / 8 * 8, head = l * token + 8;
      return {h * head + 16, head, token};
    }
  }
  return {0, 0, 0};
}

// Byte patterns. Outputs start as kOutputSentinel (0x7f7f7f7f is 3.4e38 in float32 and bf16 and
// a NaN in fp16, so an element the library forgets to write fails the comparison); gaps in inputs
// hold kInputGap (NaN in every dtype, so a kernel that reads padding poisons its result).
constexpr uint8_t kOutputSentinel = 0x7f;
constexpr uint8_t kInputGap = 0xff;
constexpr int64_t kGuardBytes = 512;

class Tensor {
 public:
  Tensor() = default;
  Tensor(int64_t b, int64_t h, int64_t l, int64_t d, int32_t dtype, Layout layout, uint8_t fill)
      : b_(b), h_(h), l_(l), d_(d), dtype_(dtype), strides_(make_strides(layout, h, l, d)) {
    body_elems_ = (b - 1) * strides_.batch + (h - 1) * strides_.head + (l - 1) * strides_.token + d;
    bytes_.assign(size_t(2 * kGuardBytes + body_elems_ * dtype_size(dtype)), fill);
  }
  void* data() { return bytes_.data() + kGuardBytes; }
  const void* data() const { return bytes_.data() + kGuardBytes; }
  const longattn_strides& strides() const { return strides_; }
  const std::vector<uint8_t>& bytes() const { return bytes_; }
  int64_t elements() const { return b_ * h_ * l_ * d_; }

  int64_t offset(int64_t b, int64_t h, int64_t l, int64_t x) const {
    return b * strides_.batch + h * strides_.head + l * strides_.token + x;
  }
  float get(int64_t off) const { return longattn::numeric::load_element(dtype_, data(), off); }
  // Stores x rounded to the dtype and returns the stored value.
  float set(int64_t off, float x) {
    return longattn::numeric::store_element(dtype_, data(), off, x);
  }
  // The logical values as a dense [B, H, L, D] array.
  std::vector<float> dense() const {
    std::vector<float> out;
    out.reserve(size_t(elements()));
    for (int64_t b = 0; b < b_; ++b)
      for (int64_t h = 0; h < h_; ++h)
        for (int64_t l = 0; l < l_; ++l)
          for (int64_t x = 0; x < d_; ++x) out.push_back(get(offset(b, h, l, x)));
    return out;
  }
  // "" if every byte outside the tensor's elements (guards before/after, gaps between rows) still
  // holds `fill`; otherwise where the first changed byte is.
  std::string untouched_outside(uint8_t fill) const {
    std::vector<uint8_t> inside(size_t(body_elems_), 0);
    for (int64_t b = 0; b < b_; ++b)
      for (int64_t h = 0; h < h_; ++h)
        for (int64_t l = 0; l < l_; ++l) std::fill_n(inside.begin() + offset(b, h, l, 0), d_, 1);
    const int64_t es = dtype_size(dtype_);
    for (int64_t i = 0; i < int64_t(bytes_.size()); ++i) {
      int64_t rel = i - kGuardBytes;
      bool guard = rel < 0 || rel >= body_elems_ * es;
      if (!guard && inside[size_t(rel / es)]) continue;
      if (bytes_[size_t(i)] != fill) {
        std::ostringstream s;
        s << (guard ? (rel < 0 ? "guard before" : "guard after") : "gap between rows")
          << " modified at byte offset " << rel << " (value 0x" << std::hex
          << int(bytes_[size_t(i)]) << ")";
        return s.str();
      }
    }
    return "";
  }

 private:
  int64_t b_ = 0, h_ = 0, l_ = 0, d_ = 0;
  int32_t dtype_ = LONGATTN_FLOAT32;
  longattn_strides strides_{};
  int64_t body_elems_ = 0;
  std::vector<uint8_t> bytes_;
};

// ---- the test case description

// One attention problem. Built with chained setters so the case list reads like a table.
struct Case {
  std::string name;
  int64_t batch = 1, q_heads = 1, kv_heads = 1, q_len = 1, kv_len = 1, dqk = 64, dv = 64;
  int32_t dtype = LONGATTN_FLOAT32;
  float scale = 0.0f, softcap = 0.0f, q_amp = 1.0f, sink_amp = 0.0f;  // sink_amp 0: no sinks
  bool causal = false, k_eq_v = false, lse = true;
  int64_t window = -1;
  int32_t mask_kind = LONGATTN_MASK_NONE;
  bool mask_full[4] = {true, true, true, true};  // false: that mask dim is 1 (broadcast)
  bool mask_padded = false;                      // mask strides with gaps
  Layout in_layout = Layout::kContiguous, out_layout = Layout::kContiguous;
  int32_t kv_dtype = 0;    // an FP8 cache: LONGATTN_FLOAT8_E4M3 / _E5M2
  int kv_scales = 0;       // its scales: 0 none, 1 one per tensor, 2 one per KV head
  int32_t num_splits = 0;  // options.num_splits for split_kv and AUTO (0: the backend's choice)

  explicit Case(std::string n) : name(std::move(n)) {}
  Case& shape(int64_t b, int64_t hq, int64_t hkv, int64_t lq, int64_t lk) {
    batch = b, q_heads = hq, kv_heads = hkv, q_len = scaled_len(lq), kv_len = scaled_len(lk);
    return *this;
  }
  Case& dims(int64_t qk, int64_t v = -1) { return dqk = qk, dv = v < 0 ? qk : v, *this; }
  Case& type(int32_t t) { return dtype = t, *this; }
  Case& is_causal() { return causal = true, *this; }
  Case& win(int64_t w) { return window = w, *this; }
  Case& cap(float c, float amp) { return softcap = c, q_amp = amp, *this; }
  Case& with_scale(float s) { return scale = s, *this; }
  Case& amp(float a) { return q_amp = a, *this; }  // larger scores: a peaked softmax
  Case& sinks(float amp) { return sink_amp = amp, *this; }
  Case& mask(int32_t kind, bool b, bool h, bool q, bool k, bool padded = false) {
    mask_kind = kind, mask_full[0] = b, mask_full[1] = h, mask_full[2] = q, mask_full[3] = k;
    return mask_padded = padded, *this;
  }
  Case& layout(Layout in, Layout out) { return in_layout = in, out_layout = out, *this; }
  Case& same_kv() { return k_eq_v = true, *this; }
  Case& no_lse() { return lse = false, *this; }
  Case& fp8(int32_t kv, int scales) { return kv_dtype = kv, kv_scales = scales, *this; }
  Case& splits(int32_t n) { return num_splits = n, *this; }

  // Seeds differ per case but never between runs (FNV-1a of the name).
  uint32_t seed() const { return longattn::numeric::fnv1a32(name.data(), name.size()); }
  std::string describe() const {
    std::ostringstream s;
    s << name << ": B=" << batch << " Hq=" << q_heads << " Hkv=" << kv_heads << " Lq=" << q_len
      << " Lk=" << kv_len << " Dqk=" << dqk << " Dv=" << dv << " " << dtype_label(dtype);
    if (causal) s << " causal";
    if (window >= 0) s << " window_left=" << window;
    if (softcap > 0) s << " softcap=" << softcap;
    if (q_amp != 1.0f) s << " q_amp=" << q_amp;
    if (scale != 0) s << " scale=" << scale;
    if (sink_amp > 0) s << " sinks(amp " << sink_amp << ")";
    if (mask_kind != LONGATTN_MASK_NONE) {
      s << (mask_kind == LONGATTN_MASK_BOOLEAN ? " bool_mask[" : " add_mask[");
      for (int i = 0; i < 4; ++i) s << (mask_full[i] ? "N" : "1") << (i < 3 ? "," : "]");
      if (mask_padded) s << " padded";
    }
    s << " in=" << layout_label(in_layout) << " out=" << layout_label(out_layout);
    if (k_eq_v) s << " k==v";
    if (!lse) s << " no_lse";
    if (num_splits) s << " num_splits=" << num_splits;
    if (kv_dtype)
      s << " kv=" << dtype_label(kv_dtype)
        << (kv_scales == 0   ? ""
            : kv_scales == 1 ? " scale/tensor"
                             : " scale/head");
    return s.str();
  }
};

// gtest prints a failing parameter with this.
inline void PrintTo(const Case& c, std::ostream* os) { *os << c.describe(); }

// ---- the problem as the reference sees it

struct Problem {
  int64_t B = 1, Hq = 1, Hkv = 1, Lq = 1, Lk = 1, Dqk = 1, Dv = 1;
  int32_t dtype = LONGATTN_FLOAT32;
  std::vector<float> q, k, v;  // dense [B, H, L, D]; values exactly representable in dtype
  double scale = 1.0;
  bool causal = false;
  int64_t window = -1;
  double softcap = 0.0;
  std::vector<float> sinks;  // empty or [Hq]
  int32_t mask_kind = LONGATTN_MASK_NONE;
  const uint8_t* mask = nullptr;  // raw mask bytes, read through dims/strides with broadcast
  int64_t mask_dims[4] = {1, 1, 1, 1}, mask_strides[4] = {0, 0, 0, 0};

  // Element offset into the mask for (b, h, i, j); broadcast dims contribute nothing.
  int64_t mask_offset(int64_t b, int64_t h, int64_t i, int64_t j) const {
    const int64_t idx[4] = {b, h, i, j};
    int64_t off = 0;
    for (int a = 0; a < 4; ++a)
      if (mask_dims[a] != 1) off += idx[a] * mask_strides[a];
    return off;
  }
};

struct RefResult {
  std::vector<double> o;    // [B, Hq, Lq, Dv]
  std::vector<double> lse;  // [B, Hq, Lq]; -inf for rows that see no key
};

// Section 1 of DESIGN.md, row by row. T = double: the float64 reference (no rounding anywhere).
// T = float with low_precision: what the same math does in low precision, the yardstick of the
// fp16/bf16 criterion: scores and softmax in float32, P rounded to the dtype, P.V accumulated in
// float32, output rounded to the dtype.
template <class T>
RefResult reference_attention(const Problem& p, bool low_precision = false) {
  RefResult r;
  r.o.assign(size_t(p.B * p.Hq * p.Lq * p.Dv), 0.0);
  r.lse.assign(size_t(p.B * p.Hq * p.Lq), -kInf);
  const int64_t group = p.Hq / p.Hkv, off = p.Lk - p.Lq;
  const T scale = T(p.scale), cap = T(p.softcap), neg_inf = -std::numeric_limits<T>::infinity();
  auto round_p = [&](T x) { return low_precision ? T(round_to_dtype(float(x), p.dtype)) : x; };
  std::vector<T> s(size_t(p.Lk)), acc(size_t(p.Dv));
  for (int64_t b = 0; b < p.B; ++b)
    for (int64_t h = 0; h < p.Hq; ++h) {
      const int64_t kvh = h / group;
      for (int64_t i = 0; i < p.Lq; ++i) {
        const float* qr = &p.q[size_t(((b * p.Hq + h) * p.Lq + i) * p.Dqk)];
        const int64_t hi = p.causal ? std::min(p.Lk - 1, i + off) : p.Lk - 1;
        const int64_t lo = p.window >= 0 ? std::max<int64_t>(0, i + off - p.window) : 0;
        T m = neg_inf;
        for (int64_t j = lo; j <= hi; ++j) {
          const float* kr = &p.k[size_t(((b * p.Hkv + kvh) * p.Lk + j) * p.Dqk)];
          T dot[4] = {0, 0, 0, 0};  // four partial sums: faster, and order does not matter here
          int64_t x = 0;
          for (; x + 4 <= p.Dqk; x += 4)
            for (int u = 0; u < 4; ++u) dot[u] += T(qr[x + u]) * T(kr[x + u]);
          for (; x < p.Dqk; ++x) dot[0] += T(qr[x]) * T(kr[x]);
          T sc = (dot[0] + dot[1] + dot[2] + dot[3]) * scale;
          if (cap > 0) sc = cap * std::tanh(sc / cap);
          if (p.mask_kind == LONGATTN_MASK_BOOLEAN) {
            if (p.mask[p.mask_offset(b, h, i, j)] == 0) sc = neg_inf;
          } else if (p.mask_kind == LONGATTN_MASK_ADDITIVE) {
            float add;
            std::memcpy(&add, p.mask + 4 * p.mask_offset(b, h, i, j), 4);
            sc += T(add);
          }
          s[size_t(j)] = sc;
          m = std::max(m, sc);
        }
        if (m == neg_inf) continue;  // no visible key: O = 0, LSE = -inf (even with sinks)
        const T sink = p.sinks.empty() ? neg_inf : T(p.sinks[size_t(h)]);
        m = std::max(m, sink);
        T sum = p.sinks.empty() ? T(0) : std::exp(sink - m);
        for (int64_t j = lo; j <= hi; ++j) sum += std::exp(s[size_t(j)] - m);
        std::fill(acc.begin(), acc.end(), T(0));
        for (int64_t j = lo; j <= hi; ++j) {
          const T pj = round_p(std::exp(s[size_t(j)] - m) / sum);
          if (pj == 0) continue;
          const float* vr = &p.v[size_t(((b * p.Hkv + kvh) * p.Lk + j) * p.Dv)];
          for (int64_t x = 0; x < p.Dv; ++x) acc[size_t(x)] += pj * T(vr[x]);
        }
        const int64_t row = (b * p.Hq + h) * p.Lq + i;
        for (int64_t x = 0; x < p.Dv; ++x)
          r.o[size_t(row * p.Dv + x)] = low_precision
                                            ? double(round_to_dtype(float(acc[size_t(x)]), p.dtype))
                                            : double(acc[size_t(x)]);
        r.lse[size_t(row)] = double(m + std::log(sum));
      }
    }
  return r;
}

// ---- building a problem and running the library on it

struct RunOutput {
  longattn_status status = LONGATTN_INTERNAL_ERROR;
  std::string message;
  longattn_plan plan{};
  Tensor o, lse;               // the raw output buffers (with guards), for bit comparisons
  std::vector<float> o_dense;  // [B, Hq, Lq, Dv]
  std::vector<float> lse_dense;
  std::string guard_problem;  // "" when nothing outside O and LSE was written
};

// Inputs for a Case: strided buffers with gaps, mask, sinks, the args that point at them, and the
// same data densely for the reference.
class Fixture {
 public:
  explicit Fixture(const Case& c) : c_(c) {
    std::mt19937 rng(c.seed());
    std::normal_distribution<float> normal(0.0f, 1.0f);
    if (c.kv_scales) {
      // Few significant bits, so an FP8 value times its scale is exact in float32 (the reference
      // and the library then see the same dequantized inputs).
      const float choices[] = {0.75f, 0.021484375f, 3.125f, 0.3046875f, 1.5f};
      for (int64_t h = 0; h < (c.kv_scales == 2 ? c.kv_heads : 1); ++h) {
        k_scale_.push_back(choices[h % 5]);
        v_scale_.push_back(choices[(h + 2) % 5]);
      }
      if (c.k_eq_v) v_scale_ = k_scale_;  // one buffer: one scale
    }
    q_ = fill(c.q_heads, c.q_len, c.dqk, c.q_amp, rng, &p_.q);
    k_ = fill(c.kv_heads, c.kv_len, c.dqk, 1.0f, rng, &p_.k, &k_scale_);
    if (c.k_eq_v) {
      // One buffer: V is the first dv columns of each K row (MLA when dv < dqk).
      for (size_t row = 0; row < p_.k.size() / size_t(c.dqk); ++row)
        p_.v.insert(p_.v.end(), p_.k.begin() + row * c.dqk, p_.k.begin() + row * c.dqk + c.dv);
    } else {
      v_ = fill(c.kv_heads, c.kv_len, c.dv, 1.0f, rng, &p_.v, &v_scale_);
    }
    p_.B = c.batch, p_.Hq = c.q_heads, p_.Hkv = c.kv_heads, p_.Lq = c.q_len, p_.Lk = c.kv_len;
    p_.Dqk = c.dqk, p_.Dv = c.dv, p_.dtype = c.dtype;
    // args.scale is a float32, so the default is the float32 1/sqrt(d): an IEEE square root and
    // division, each correctly rounded. The reference then computes exactly with that value.
    p_.scale = double(c.scale != 0 ? c.scale : 1.0f / std::sqrt(float(c.dqk)));
    p_.causal = c.causal, p_.window = c.window, p_.softcap = c.softcap;
    if (c.sink_amp > 0)
      for (int64_t h = 0; h < c.q_heads; ++h) p_.sinks.push_back(c.sink_amp * normal(rng));
    if (c.mask_kind != LONGATTN_MASK_NONE) build_mask(rng);

    longattn_args_init(&args_);
    o_ = new_output();  // so that args() is complete; run() points O and LSE at fresh buffers
    lse_ = new_lse();
    args_.o = o_.data();
    args_.lse = c.lse ? static_cast<float*>(lse_.data()) : nullptr;
    args_.q = q_.data();
    args_.k = k_.data();
    args_.v = c.k_eq_v ? k_.data() : v_.data();
    args_.dtype = c.dtype;
    args_.device = LONGATTN_DEVICE_CPU;
    args_.batch = c.batch, args_.q_heads = c.q_heads, args_.kv_heads = c.kv_heads;
    args_.q_len = c.q_len, args_.kv_len = c.kv_len;
    args_.head_dim_qk = c.dqk, args_.head_dim_v = c.dv;
    args_.q_strides = q_.strides();
    args_.k_strides = k_.strides();
    args_.v_strides = c.k_eq_v ? k_.strides() : v_.strides();
    args_.o_strides = make_strides(c.out_layout, c.q_heads, c.q_len, c.dv);
    args_.scale = c.scale;
    args_.causal = c.causal ? 1 : 0;
    args_.window_left = c.window;
    args_.softcap = c.softcap;
    args_.sinks = p_.sinks.empty() ? nullptr : p_.sinks.data();
    args_.kv_dtype = c.kv_dtype;
    args_.kv_scale_per_head = c.kv_scales == 2 ? 1 : 0;
    args_.k_scale = k_scale_.empty() ? nullptr : k_scale_.data();
    args_.v_scale = v_scale_.empty() ? nullptr : v_scale_.data();
    if (c.mask_kind != LONGATTN_MASK_NONE) {
      args_.mask.kind = c.mask_kind;
      args_.mask.data = mask_bytes_.data();
      for (int a = 0; a < 4; ++a) {
        args_.mask.dims[a] = p_.mask_dims[a];
        args_.mask.strides[a] = p_.mask_strides[a];
      }
    }
    snapshot_ = inputs();
  }

  const Case& kase() const { return c_; }
  const Problem& problem() const { return p_; }
  const longattn_args& args() const { return args_; }

  // Fresh sentinel-filled O (and LSE) for one run.
  Tensor new_output() const {
    return Tensor(c_.batch, c_.q_heads, c_.q_len, c_.dv, c_.dtype, c_.out_layout, kOutputSentinel);
  }
  Tensor new_lse() const {
    return Tensor(c_.batch, c_.q_heads, c_.q_len, 1, LONGATTN_FLOAT32, Layout::kContiguous,
                  kOutputSentinel);
  }

  // Runs `path` on fresh outputs (run_with: on edited args, e.g. a K/V slice).
  RunOutput run(int32_t path, longattn_options options) const {
    return run_with(path, options, args_);
  }
  // With `prepared`, through longattn_run_prepared (options then give only workspace and log;
  // inherit: none, those of prepare).
  RunOutput run_with(int32_t path, longattn_options options, longattn_args args,
                     longattn_prepared* prepared = nullptr, bool inherit = false) const {
    RunOutput out;
    out.o = new_output();
    out.lse = new_lse();
    args.o = out.o.data();
    args.lse = c_.lse ? static_cast<float*>(out.lse.data()) : nullptr;
    options.path = path;
    out.status =
        prepared ? longattn_run_prepared(prepared, &args, inherit ? nullptr : &options, &out.plan)
                 : longattn_attention(&args, &options, &out.plan);
    out.message = longattn_last_error();
    out.guard_problem = out.o.untouched_outside(kOutputSentinel);
    if (out.guard_problem.empty()) out.guard_problem = out.lse.untouched_outside(kOutputSentinel);
    if (!out.guard_problem.empty()) out.guard_problem = "after " + out.guard_problem;
    if (!c_.lse && out.guard_problem.empty())  // lse == NULL: no byte of the buffer may change
      for (uint8_t byte : out.lse.bytes())
        if (byte != kOutputSentinel) {
          out.guard_problem = "LSE buffer written although args.lse was NULL";
          break;
        }
    out.o_dense = out.o.dense();
    out.lse_dense = out.lse.dense();
    return out;
  }

  // "" when Q, K, V, the mask, the sinks and the FP8 scales (including gaps and guards) are
  // byte-identical to what the fixture built.
  std::string inputs_changed() const {
    std::vector<std::vector<uint8_t>> now = inputs();
    const char* names[] = {"q", "k", "v", "mask", "sinks", "k_scale", "v_scale"};
    for (size_t i = 0; i < now.size(); ++i)
      if (now[i] != snapshot_[i]) return std::string("input ") + names[i] + " was modified";
    return "";
  }

 private:
  // Q in the case's dtype; with `scales`, K or V in its FP8 kv_dtype: each value x stored as x /
  // scale, read back as the stored code times scale, and a few outlier channels (x 12) per head as
  // FP8 caches hold them.
  Tensor fill(int64_t heads, int64_t len, int64_t d, float amp, std::mt19937& rng,
              std::vector<float>* dense, const std::vector<float>* scales = nullptr) {
    std::normal_distribution<float> normal(0.0f, 1.0f);
    const bool fp8 = scales && c_.kv_dtype;
    Tensor t(c_.batch, heads, len, d, fp8 ? c_.kv_dtype : c_.dtype, c_.in_layout, kInputGap);
    dense->resize(size_t(c_.batch * heads * len * d));
    size_t n = 0;
    for (int64_t b = 0; b < c_.batch; ++b)
      for (int64_t h = 0; h < heads; ++h) {
        const float scale = fp8 && !scales->empty() ? (*scales)[size_t(h) % scales->size()] : 1.f;
        for (int64_t l = 0; l < len; ++l)
          for (int64_t x = 0; x < d; ++x) {
            const float v = amp * normal(rng) * (fp8 && x % 37 == 5 ? 12.f : 1.f);
            (*dense)[n++] = fp8 ? t.set(t.offset(b, h, l, x), v / scale) * scale
                                : t.set(t.offset(b, h, l, x), v);
          }
      }
    return t;
  }

  // Random visibility (boolean) or random biases with some -inf (additive); when the mask has a
  // full query dim, every 7th row is fully hidden so the "no visible key" rule is exercised.
  void build_mask(std::mt19937& rng) {
    const int64_t full[4] = {c_.batch, c_.q_heads, c_.q_len, c_.kv_len};
    for (int a = 0; a < 4; ++a) p_.mask_dims[a] = c_.mask_full[a] ? full[a] : 1;
    // Innermost-first strides; padded masks add a gap after every row and plane.
    const int64_t pad = c_.mask_padded ? 3 : 0;
    int64_t stride = 1;
    for (int a = 3; a >= 0; --a) {
      p_.mask_strides[a] = p_.mask_dims[a] == 1 ? 987654 : stride;  // ignored where dims == 1
      if (p_.mask_dims[a] != 1) stride = stride * p_.mask_dims[a] + pad;
    }
    const int64_t es = c_.mask_kind == LONGATTN_MASK_BOOLEAN ? 1 : 4;
    mask_bytes_.assign(size_t(stride * es), kInputGap);
    std::uniform_real_distribution<float> uni(0.0f, 1.0f);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    const int64_t* d = p_.mask_dims;
    for (int64_t b = 0; b < d[0]; ++b)
      for (int64_t h = 0; h < d[1]; ++h)
        for (int64_t i = 0; i < d[2]; ++i) {
          const bool hidden_row = d[2] > 1 && i % 7 == 3;
          for (int64_t j = 0; j < d[3]; ++j) {
            int64_t off = p_.mask_offset(b, h, i, j);
            const bool hide = hidden_row || uni(rng) < 0.25f;
            if (c_.mask_kind == LONGATTN_MASK_BOOLEAN) {
              mask_bytes_[size_t(off)] = hide ? 0 : uint8_t(1 + (j % 3) * 70);  // any nonzero
            } else {
              float add = hide ? -std::numeric_limits<float>::infinity() : normal(rng);
              std::memcpy(&mask_bytes_[size_t(4 * off)], &add, 4);
            }
          }
        }
    p_.mask_kind = c_.mask_kind;
    p_.mask = mask_bytes_.data();
  }

  std::vector<std::vector<uint8_t>> inputs() const {
    auto bytes_of = [](const std::vector<float>& x) {
      std::vector<uint8_t> b(x.size() * 4);
      if (!b.empty()) std::memcpy(b.data(), x.data(), b.size());
      return b;
    };
    return {q_.bytes(),         k_.bytes(),         v_.bytes(),        mask_bytes_,
            bytes_of(p_.sinks), bytes_of(k_scale_), bytes_of(v_scale_)};
  }

  Case c_;
  Problem p_;
  Tensor q_, k_, v_, o_, lse_;
  std::vector<float> k_scale_, v_scale_;
  std::vector<uint8_t> mask_bytes_;
  longattn_args args_{};
  std::vector<std::vector<uint8_t>> snapshot_;
};

// ---- comparisons

// Rows that see no key must be exactly O = 0 and LSE = -inf. "" when they are.
inline std::string check_empty_rows(const Problem& p, const RefResult& ref, const RunOutput& out,
                                    bool with_lse) {
  for (size_t row = 0; row < ref.lse.size(); ++row) {
    if (ref.lse[row] != -kInf) continue;
    for (int64_t x = 0; x < p.Dv; ++x)
      if (out.o_dense[row * size_t(p.Dv) + size_t(x)] != 0.0f) {
        std::ostringstream s;
        s << "row " << row << " sees no key but O[" << x
          << "] = " << out.o_dense[row * size_t(p.Dv) + size_t(x)] << " (want 0)";
        return s.str();
      }
    if (with_lse && out.lse_dense[row] != -std::numeric_limits<float>::infinity()) {
      std::ostringstream s;
      s << "row " << row << " sees no key but LSE = " << out.lse_dense[row] << " (want -inf)";
      return s.str();
    }
  }
  return "";
}

struct Errors {
  double o_abs = 0;    // max |o - ref|; inf if anything is NaN
  double ref_max = 0;  // max |ref|
  size_t o_where = 0;  // index of the worst element
  double lse_rel = 0;  // max |lse - ref| / (1 + |ref|) over rows that see a key
  size_t lse_where = 0;
  double o_got = 0, o_want = 0, lse_got = 0, lse_want = 0;
};

// Errors of o (dense [B, Hq, Lq, Dv]) and lse (dense [B, Hq, Lq], or nullptr) against ref.
template <class OVec, class LVec>
Errors measure(const RefResult& ref, const OVec& o, const LVec* lse) {
  Errors e;
  e.o_abs = -1;
  for (size_t i = 0; i < ref.o.size(); ++i) {
    e.ref_max = std::max(e.ref_max, std::abs(ref.o[i]));
    double d = std::abs(double(o[i]) - ref.o[i]);
    if (std::isnan(d)) d = kInf;
    if (d > e.o_abs) e.o_abs = d, e.o_where = i, e.o_got = double(o[i]), e.o_want = ref.o[i];
  }
  e.o_abs = std::max(e.o_abs, 0.0);
  if (lse)
    for (size_t r = 0; r < ref.lse.size(); ++r) {
      if (ref.lse[r] == -kInf) continue;
      double d = std::abs(double((*lse)[r]) - ref.lse[r]) / (1.0 + std::abs(ref.lse[r]));
      if (std::isnan(d)) d = kInf;
      if (d > e.lse_rel)
        e.lse_rel = d, e.lse_where = r, e.lse_got = double((*lse)[r]), e.lse_want = ref.lse[r];
    }
  return e;
}

inline std::string describe(const Errors& e, const Problem& p) {
  std::ostringstream s;
  s.precision(9);
  s << "max|o-ref|=" << e.o_abs << " (rel " << e.o_abs / std::max(e.ref_max, 1e-300) << ") at row "
    << e.o_where / size_t(p.Dv) << " col " << e.o_where % size_t(p.Dv) << " got " << e.o_got
    << " want " << e.o_want << "; max|ref|=" << e.ref_max << "; lse rel err " << e.lse_rel
    << " at row " << e.lse_where << " got " << e.lse_got << " want " << e.lse_want;
  return s.str();
}

inline longattn_options default_options() {
  longattn_options o;
  longattn_options_init(&o);
  return o;
}

// K and V of `a` copied into a shuffled pool of `page`-token blocks; the returned args read them
// through the block table.
struct PagedCopy {
  std::vector<uint8_t> k_pool, v_pool;
  std::vector<int32_t> table;
  longattn_args args;
};

inline PagedCopy make_paged(const longattn_args& a, int64_t page, bool k_eq_v, uint32_t seed) {
  PagedCopy p;
  const int64_t es = dtype_size(longattn::numeric::kv_dtype_or_same(a.dtype, a.kv_dtype));
  const int64_t pages = (a.kv_len + page - 1) / page, blocks = a.batch * pages + 3;
  std::vector<int32_t> ids(static_cast<size_t>(blocks));
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), std::mt19937(seed));
  p.table.assign(ids.begin(), ids.begin() + a.batch * pages);
  // Pool layout [block, head, slot, d]; unused slots keep a NaN pattern that must never be read.
  const int64_t d = std::max(a.head_dim_qk, a.head_dim_v);
  const longattn_strides pool{a.kv_heads * page * d, page * d, d};
  p.k_pool.assign(static_cast<size_t>(blocks * pool.batch * es), 0xff);
  p.v_pool.assign(p.k_pool.size(), 0xff);
  for (int64_t b = 0; b < a.batch; ++b)
    for (int64_t h = 0; h < a.kv_heads; ++h)
      for (int64_t j = 0; j < a.kv_len; ++j) {
        const int64_t dst = p.table[size_t(b * pages + j / page)] * pool.batch + h * pool.head +
                            (j % page) * pool.token;
        auto src = [&](const void* base, const longattn_strides& s) {
          return static_cast<const uint8_t*>(base) + (b * s.batch + h * s.head + j * s.token) * es;
        };
        std::memcpy(&p.k_pool[size_t(dst * es)], src(a.k, a.k_strides), size_t(a.head_dim_qk * es));
        std::memcpy(&p.v_pool[size_t(dst * es)], src(a.v, a.v_strides), size_t(a.head_dim_v * es));
      }
  p.args = a;
  p.args.k = p.k_pool.data();
  p.args.v = k_eq_v ? p.k_pool.data() : p.v_pool.data();
  p.args.k_strides = p.args.v_strides = pool;
  p.args.block_table = p.table.data();
  p.args.block_table_stride = pages;
  p.args.page_size = page;
  p.args.num_blocks = blocks;
  return p;
}

}  // namespace longattn_test
