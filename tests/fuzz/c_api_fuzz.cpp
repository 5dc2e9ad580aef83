// libFuzzer target over the C API (issue 20 item 7). The input decodes into a longattn_args and a
// longattn_options whose every field may hold garbage (negative or huge sizes, odd strides,
// aliasing outputs, NULL pointers, bad mask dims/strides, out-of-range block ids, NaN/inf scale and
// softcap, bad enums); buffers are allocated for real when the sizes are tiny, so valid inputs run
// on the CPU paths. Checked on every input:
//   - no crash, hang or sanitizer report;
//   - a non-OK status comes with a message that names an argument (a field token, below);
//   - plan.reason is NUL-terminated;
//   - after every call, the bytes around and between O's rows and around LSE are untouched and
//     the inputs (Q, K, V, mask, sinks, block table) are byte-identical.
// An all-zero input decodes to a small valid float32 problem (every selector's 0 is "valid").
#include <fuzzer/FuzzedDataProvider.h>

#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "longattn/longattn.h"

namespace {

constexpr int64_t kMaxElems = 1 << 12;  // a buffer we allocate for real (per tensor)
constexpr int64_t kMaxWork = 1 << 15;   // B*Hq*Lq*Lk*(Dqk+Dv) of a problem we let run
constexpr size_t kGuard = 64;           // guard bytes before and after every buffer
constexpr uint8_t kSentinel = 0xa5;     // output bytes the library must not write
constexpr int64_t kI64Max = std::numeric_limits<int64_t>::max();

// Garbage sizes make a caller's arithmetic wrap; wrapped here too (signed overflow is UB).
int64_t wadd(int64_t a, int64_t b) { return int64_t(uint64_t(a) + uint64_t(b)); }
int64_t wmul(int64_t a, int64_t b) { return int64_t(uint64_t(a) * uint64_t(b)); }

const longattn_args* g_args = nullptr;  // the case being run, printed with a failure
const longattn_options* g_options = nullptr;

// Prints the case being run (with a failure, or before every case under
// LONGATTN_FUZZ_VERBOSE=1, to see what a sanitizer report was about).
void describe_case() {
  if (const longattn_args* a = g_args) {
    std::fprintf(
        stderr,
        "  dtype %d device %d B %lld Hq %lld Hkv %lld Lq %lld Lk %lld Dqk %lld Dv %lld\n"
        "  strides q {%lld %lld %lld} k {%lld %lld %lld} v {%lld %lld %lld} o {%lld %lld "
        "%lld}\n  scale %g softcap %g causal %d window %lld sinks %p lse %p o %p q %p k %p "
        "v %p\n  mask kind %d data %p dims {%lld %lld %lld %lld} strides {%lld %lld %lld "
        "%lld}\n  block_table %p stride %lld page %lld blocks %lld\n",
        a->dtype, a->device, (long long)a->batch, (long long)a->q_heads, (long long)a->kv_heads,
        (long long)a->q_len, (long long)a->kv_len, (long long)a->head_dim_qk,
        (long long)a->head_dim_v, (long long)a->q_strides.batch, (long long)a->q_strides.head,
        (long long)a->q_strides.token, (long long)a->k_strides.batch, (long long)a->k_strides.head,
        (long long)a->k_strides.token, (long long)a->v_strides.batch, (long long)a->v_strides.head,
        (long long)a->v_strides.token, (long long)a->o_strides.batch, (long long)a->o_strides.head,
        (long long)a->o_strides.token, (double)a->scale, (double)a->softcap, a->causal,
        (long long)a->window_left, (const void*)a->sinks, (void*)a->lse, a->o, a->q, a->k, a->v,
        a->mask.kind, a->mask.data, (long long)a->mask.dims[0], (long long)a->mask.dims[1],
        (long long)a->mask.dims[2], (long long)a->mask.dims[3], (long long)a->mask.strides[0],
        (long long)a->mask.strides[1], (long long)a->mask.strides[2], (long long)a->mask.strides[3],
        (const void*)a->block_table, (long long)a->block_table_stride, (long long)a->page_size,
        (long long)a->num_blocks);
    const longattn_options* o = g_options;
    std::fprintf(stderr, "  kv_dtype %d per_head %d k_scale %p v_scale %p\n", a->kv_dtype,
                 a->kv_scale_per_head, (const void*)a->k_scale, (const void*)a->v_scale);
    std::fprintf(stderr,
                 "  options: path %d budget %lld threads %d workspace %p bytes %lld splits %d\n",
                 o->path, (long long)o->memory_budget, o->num_threads, o->workspace,
                 (long long)o->workspace_bytes, o->num_splits);
  }
}

[[noreturn]] void die(const char* what, const std::string& detail) {
  std::fprintf(stderr, "c_api_fuzz: %s: %s\n", what, detail.c_str());
  describe_case();
  std::abort();
}

// ---- decoding: each selector's 0 is the valid, ordinary choice ----------------------------------

int64_t garbage_i64(FuzzedDataProvider& in) {
  static const int64_t kValues[] = {0,
                                    -1,
                                    -2,
                                    2,
                                    513,
                                    577,
                                    1 << 20,
                                    int64_t(1) << 31,
                                    int64_t(1) << 40,
                                    kI64Max,
                                    kI64Max - 1,
                                    std::numeric_limits<int64_t>::min()};
  if (in.ConsumeBool()) return in.PickValueInArray(kValues);
  return in.ConsumeIntegral<int64_t>();
}

// A size: usually in [1, max_small], sometimes a garbage value.
int64_t size_field(FuzzedDataProvider& in, int64_t max_small) {
  if (in.ConsumeIntegralInRange<int>(0, 15) != 15)
    return 1 + in.ConsumeIntegralInRange<int64_t>(0, max_small - 1);
  return garbage_i64(in);
}

float garbage_float(FuzzedDataProvider& in) {
  const float inf = std::numeric_limits<float>::infinity();
  static const float kValues[] = {0.f,
                                  1.f,
                                  -1.f,
                                  -0.f,
                                  NAN,
                                  inf,
                                  -inf,
                                  1e-45f,
                                  1e-30f,
                                  1e30f,
                                  std::numeric_limits<float>::max(),
                                  0.125f,
                                  50.f};
  if (in.ConsumeBool()) return in.PickValueInArray(kValues);
  return in.ConsumeFloatingPoint<float>();
}

int32_t enum_field(FuzzedDataProvider& in, int32_t valid_count) {
  switch (in.ConsumeIntegralInRange<int>(0, 7)) {
    case 6:
      return valid_count;  // one past the last value
    case 7:
      return in.ConsumeIntegral<int32_t>();
    default:
      return in.ConsumeIntegralInRange<int32_t>(0, valid_count - 1);
  }
}

// Element strides of a [n0, n1, n2, d] tensor: contiguous, padded, tokens-major, broadcast
// (zero), or garbage.
longattn_strides strides_field(FuzzedDataProvider& in, int64_t h, int64_t l, int64_t d) {
  auto mul = wmul;
  switch (in.ConsumeIntegralInRange<int>(0, 7)) {
    case 1: {
      int64_t token = wadd(d, 3), head = wadd(mul(l, token), 5);
      return {wadd(mul(h, head), 7), head, token};
    }
    case 2:
      return {mul(mul(l, h), d), d, mul(h, d)};
    case 3:
      return {0, 0, 0};
    case 4:
      return {garbage_i64(in), garbage_i64(in), garbage_i64(in)};
    case 5:  // a small odd token stride that may make rows overlap
      return {mul(mul(h, l), d), mul(l, d), in.ConsumeIntegralInRange<int64_t>(-1, 9)};
    default:
      return {mul(mul(h, l), d), mul(l, d), d};
  }
}

// ---- buffers ------------------------------------------------------------------------------------

// Highest element index + 1 that a [sizes] tensor with `strides` touches, or -1 when a size is
// below 1, a stride is negative, or the extent passes kMaxElems.
int64_t extent_elems(const int64_t* sizes, const int64_t* strides, int n, int64_t inner) {
  if (inner < 1 || inner > kMaxElems) return -1;
  int64_t last = inner;
  for (int i = 0; i < n; ++i) {
    if (sizes[i] < 1 || sizes[i] > kMaxElems || strides[i] < 0) return -1;
    if (sizes[i] == 1) continue;
    if (strides[i] > kMaxElems) return -1;
    last += (sizes[i] - 1) * strides[i];
    if (last > kMaxElems) return -1;
  }
  return last;
}

// A byte buffer with guards. Inputs are filled from the fuzzer's bytes; outputs with kSentinel.
struct Buffer {
  std::vector<uint8_t> bytes;  // [guard][body][guard]
  size_t body = 0;
  uint8_t* data() { return bytes.data() + kGuard; }
  void make(size_t n, uint8_t fill) {
    body = n;
    bytes.assign(n + 2 * kGuard, fill);
  }
};

// Values for an input: mostly small normal-ish numbers, sometimes raw bits (NaN, inf, huge).
void fill_input(Buffer& b, int32_t dtype, uint32_t seed, bool raw) {
  uint32_t x = seed | 1;
  auto next = [&] { return x ^= x << 13, x ^= x >> 17, x ^= x << 5; };
  if (raw) {
    for (size_t i = 0; i < b.body; ++i) b.data()[i] = uint8_t(next());
    return;
  }
  const size_t es = dtype == LONGATTN_FLOAT32 ? 4 : 2;
  for (size_t i = 0; i + es <= b.body; i += es) {
    float f = (int32_t(next() % 2001) - 1000) / 500.f;
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if (es == 4)
      std::memcpy(b.data() + i, &u, 4);
    else {  // bf16 and f16 both take the upper half: any 16 bits are a value of either
      uint16_t h = uint16_t(u >> 16);
      std::memcpy(b.data() + i, &h, 2);
    }
  }
}

// ---- the message check
// ----------------------------------------------------------------------------

// Every argument and option a rejection may name. A token matches only as a whole identifier (so
// "q" is not found inside "queries").
const char* const kFields[] = {"args",
                               "options",
                               "plan",
                               "bytes",
                               "q",
                               "k",
                               "v",
                               "o",
                               "lse",
                               "dtype",
                               "device",
                               "batch",
                               "q_heads",
                               "kv_heads",
                               "q_len",
                               "kv_len",
                               "head_dim_qk",
                               "head_dim_v",
                               "q_strides",
                               "k_strides",
                               "v_strides",
                               "o_strides",
                               "scale",
                               "softcap",
                               "window_left",
                               "causal",
                               "sinks",
                               "mask.kind",
                               "mask.data",
                               "mask.dims",
                               "mask.strides",
                               "block_table",
                               "block_table_stride",
                               "page_size",
                               "num_blocks",
                               "kv_dtype",
                               "kv_scale_per_head",
                               "k_scale",
                               "v_scale",
                               "options.path",
                               "options.memory_budget",
                               "options.num_threads",
                               "options.workspace",
                               "options.workspace_bytes",
                               "options.num_splits",
                               "n",
                               "rows",
                               "dv",
                               "o_parts",
                               "lse_parts"};

bool ident_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.';
}

bool names_a_field(const std::string& msg) {
  for (size_t i = 0; i < msg.size();) {
    if (!ident_char(msg[i])) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < msg.size() && ident_char(msg[j])) ++j;
    std::string token = msg.substr(i, j - i);
    while (!token.empty() && token.back() == '.') token.pop_back();  // end of a sentence
    for (const char* f : kFields)
      if (token == f) return true;
    i = j;
  }
  return false;
}

// A non-OK status must explain itself. An invalid argument: the message names it and says what
// is allowed (or why the value cannot be). Over budget: it names options.memory_budget.
// Unsupported: it names the argument no path takes. Nothing else may come from tiny host inputs.
void check_error(longattn_status st, const char* call) {
  if (st == LONGATTN_OK) return;
  const std::string msg = longattn_last_error();
  if (msg.empty()) die(call, "non-OK status with an empty longattn_last_error()");
  auto has = [&](const char* p) { return msg.find(p) != std::string::npos; };
  switch (st) {
    case LONGATTN_INVALID_ARGUMENT:
      if (!names_a_field(msg)) die(call, "message names no argument: " + msg);
      if (!has("must") && !has("allowed") && !has("needs") && !has("overflows") &&
          !has("overlap") && !has("NULL") && !has("smaller than"))
        die(call, "message does not say what is allowed: " + msg);
      break;
    case LONGATTN_OVER_BUDGET:
      if (!has("options.memory_budget")) die(call, "over budget without the budget: " + msg);
      break;
    case LONGATTN_UNSUPPORTED:
      if (!names_a_field(msg)) die(call, "message names no argument: " + msg);
      break;
    default:
      die(call, std::string(longattn_status_string(st)) + ": " + msg);
  }
}

void check_reason(const longattn_plan& p, const char* call) {
  if (!std::memchr(p.reason, 0, sizeof p.reason)) die(call, "plan.reason is not NUL-terminated");
}

// ---- one fuzz case
// --------------------------------------------------------------------------------

struct Case {
  longattn_args a;
  longattn_options opt;
  Buffer q, k, v, o, lse, mask, sinks, table, ws, scales;
  bool runnable = true;           // every tensor the args describe lies in a buffer we own
  std::vector<uint8_t> o_inside;  // 1 where O's elements are (the library may write them)
  std::vector<std::vector<uint8_t>> snapshot;

  std::vector<std::vector<uint8_t>> inputs() const {
    return {q.bytes, k.bytes, v.bytes, mask.bytes, sinks.bytes, table.bytes, scales.bytes};
  }

  // Checks that nothing outside O's elements and LSE's [B*Hq*Lq] floats changed, and no input.
  void check_untouched(const char* call) const {
    const char* names[] = {"q", "k", "v", "mask", "sinks", "block_table", "k_scale/v_scale"};
    const std::vector<std::vector<uint8_t>> now = inputs();
    for (size_t i = 0; i < now.size(); ++i)
      if (now[i] != snapshot[i]) die(call, std::string("input ") + names[i] + " was modified");
    for (size_t i = 0; i < o.bytes.size(); ++i) {
      const bool inside = i >= kGuard && i < kGuard + o.body && o_inside[i - kGuard];
      if (!inside && o.bytes[i] != kSentinel) die(call, "O written outside its elements");
    }
    for (size_t i = 0; i < lse.bytes.size(); ++i) {
      const bool inside = i >= kGuard && i < kGuard + lse.body;
      if (!inside && lse.bytes[i] != kSentinel) die(call, "LSE written outside its elements");
    }
    if (!a.lse)
      for (uint8_t b : lse.bytes)
        if (b != kSentinel) die(call, "LSE buffer written although args.lse is NULL");
  }
};

// A [n0, n1, n2, d] tensor: allocated if small and well-formed; else `runnable` drops and the
// pointer aims at a 1-byte placeholder (planning never dereferences Q, K, V, O).
size_t elem_size(int32_t dtype) {
  return dtype == LONGATTN_FLOAT16 || dtype == LONGATTN_BFLOAT16 ? 2 : 4;
}

void* tensor(Case& c, Buffer& buf, int64_t n0, int64_t n1, int64_t n2, int64_t d,
             const longattn_strides& s, int32_t dtype, uint8_t fill) {
  const int64_t sizes[3] = {n0, n1, n2}, strides[3] = {s.batch, s.head, s.token};
  const int64_t ext = extent_elems(sizes, strides, 3, d);
  if (ext < 0) c.runnable = false;
  buf.make(ext < 0 ? 1 : size_t(ext) * elem_size(dtype), fill);
  return buf.data();
}

void decode(FuzzedDataProvider& in, Case& c) {
  longattn_args& a = c.a;
  longattn_args_init(&a);
  a.dtype = enum_field(in, 3);
  a.device = in.ConsumeIntegralInRange<int>(0, 15) == 15 ? enum_field(in, 2) : LONGATTN_DEVICE_CPU;
  a.batch = size_field(in, 3);
  a.kv_heads = size_field(in, 3);
  a.q_heads = in.ConsumeIntegralInRange<int>(0, 15) == 15 ? size_field(in, 9)
                                                          : wmul(a.kv_heads, size_field(in, 4));
  // Lengths: short, or long enough that AUTO picks split_kv (1024 keys and more).
  a.q_len = size_field(in, in.ConsumeBool() ? 9 : 70);
  a.kv_len = in.ConsumeIntegralInRange<int>(0, 7) == 7 ? wadd(1000, size_field(in, 200))
                                                       : size_field(in, 40);
  static const int64_t kDims[] = {1,  2,   3,   7,   8,   16,  17,  31, 64,
                                  80, 128, 192, 256, 512, 513, 576, 0,  -1};
  a.head_dim_qk = in.ConsumeBool() ? in.PickValueInArray(kDims) : size_field(in, 40);
  a.head_dim_v = in.ConsumeBool() ? a.head_dim_qk : in.PickValueInArray(kDims);
  const bool paged = in.ConsumeIntegralInRange<int>(0, 7) == 7;
  if (paged) {
    a.page_size = size_field(in, 8);
    a.num_blocks = size_field(in, 12);
    int64_t pages = a.page_size >= 1 && a.kv_len >= 1 && a.kv_len < kMaxElems
                        ? (a.kv_len - 1) / a.page_size + 1
                        : 1;
    a.block_table_stride =
        in.ConsumeBool() ? pages + in.ConsumeIntegralInRange<int>(0, 2) : garbage_i64(in);
  }
  // K/V of a paged cache span [num_blocks, kv_heads, page_size]; strides follow that shape.
  const int64_t kv_outer = paged ? a.num_blocks : a.batch, kv_tok = paged ? a.page_size : a.kv_len;
  a.q_strides = strides_field(in, a.q_heads, a.q_len, a.head_dim_qk);
  a.k_strides = strides_field(in, a.kv_heads, kv_tok, a.head_dim_qk);
  a.v_strides = strides_field(in, a.kv_heads, kv_tok, a.head_dim_v);
  a.o_strides = strides_field(in, a.q_heads, a.q_len, a.head_dim_v);
  if (in.ConsumeIntegralInRange<int>(0, 31) == 31)
    longattn_set_contiguous_strides(&a);  // garbage too
  a.scale = in.ConsumeIntegralInRange<int>(0, 3) == 3 ? garbage_float(in) : 0.f;
  a.softcap = in.ConsumeIntegralInRange<int>(0, 3) == 3 ? garbage_float(in) : 0.f;
  a.causal = in.ConsumeIntegralInRange<int>(0, 15) == 15 ? in.ConsumeIntegral<int32_t>()
                                                         : in.ConsumeBool();
  switch (in.ConsumeIntegralInRange<int>(0, 3)) {
    case 1:
      a.window_left = in.ConsumeIntegralInRange<int64_t>(0, 50);
      break;
    case 2:
      a.window_left = garbage_i64(in);
      break;
    default:
      a.window_left = -1;
  }

  // Buffers. The dtype of a bad enum is sized as float32 (it is rejected before any access).
  const uint32_t seed = in.ConsumeIntegral<uint32_t>();
  const bool raw_values = in.ConsumeIntegralInRange<int>(0, 7) == 7;
  a.q = tensor(c, c.q, a.batch, a.q_heads, a.q_len, a.head_dim_qk, a.q_strides, a.dtype, 0);
  a.k = tensor(c, c.k, kv_outer, a.kv_heads, kv_tok, a.head_dim_qk, a.k_strides, a.dtype, 0);
  const bool k_eq_v = in.ConsumeIntegralInRange<int>(0, 7) == 7;
  if (k_eq_v) {
    a.v = a.k;  // k == v layers: one buffer, V's strides and head dim over it
    const int64_t sizes[3] = {kv_outer, a.kv_heads, kv_tok};
    const int64_t strides[3] = {a.v_strides.batch, a.v_strides.head, a.v_strides.token};
    const int64_t ext = extent_elems(sizes, strides, 3, a.head_dim_v);
    if (ext < 0 || size_t(ext) * elem_size(a.dtype) > c.k.body) c.runnable = false;
  } else {
    a.v = tensor(c, c.v, kv_outer, a.kv_heads, kv_tok, a.head_dim_v, a.v_strides, a.dtype, 0);
  }
  fill_input(c.q, a.dtype, seed, raw_values);
  fill_input(c.k, a.dtype, seed * 3, raw_values);
  fill_input(c.v, a.dtype, seed * 5, raw_values);
  a.o = tensor(c, c.o, a.batch, a.q_heads, a.q_len, a.head_dim_v, a.o_strides, a.dtype, kSentinel);
  {  // where O's elements are, for the guard check (when its buffer was allocated)
    c.o_inside.assign(c.o.body, 0);
    const size_t es = elem_size(a.dtype);
    const int64_t sizes[3] = {a.batch, a.q_heads, a.q_len};
    const int64_t strides[3] = {a.o_strides.batch, a.o_strides.head, a.o_strides.token};
    // More rows than kMaxWork never run (plan only: no byte of O may change), and with zero
    // strides their marking would take up to kMaxElems^3 steps.
    if (extent_elems(sizes, strides, 3, a.head_dim_v) >= 0 &&
        double(a.batch) * double(a.q_heads) * double(a.q_len) <= double(kMaxWork))
      for (int64_t b = 0; b < a.batch; ++b)
        for (int64_t h = 0; h < a.q_heads; ++h)
          for (int64_t i = 0; i < a.q_len; ++i) {
            const int64_t off =
                b * a.o_strides.batch + h * a.o_strides.head + i * a.o_strides.token;
            std::fill_n(c.o_inside.begin() + off * es, a.head_dim_v * es, 1);
          }
  }
  int64_t rows = -1;
  if (a.batch >= 1 && a.q_heads >= 1 && a.q_len >= 1 && a.batch <= kMaxElems &&
      a.q_heads <= kMaxElems && a.batch * a.q_heads <= kMaxElems / a.q_len)
    rows = a.batch * a.q_heads * a.q_len;
  c.lse.make(rows > 0 ? size_t(rows) * 4 : 4, kSentinel);
  a.lse =
      in.ConsumeIntegralInRange<int>(0, 3) == 3 ? nullptr : reinterpret_cast<float*>(c.lse.data());
  if (rows < 0) c.runnable = false;

  // Sinks: one logit per query head, possibly NaN or inf.
  if (in.ConsumeIntegralInRange<int>(0, 3) == 3) {
    c.sinks.make(a.q_heads >= 1 && a.q_heads <= kMaxElems ? size_t(a.q_heads) * 4 : 4, 0);
    for (size_t i = 0; i + 4 <= c.sinks.body; i += 4) {
      float f = in.ConsumeBool() ? garbage_float(in) : 0.5f;
      std::memcpy(c.sinks.data() + i, &f, 4);
    }
    if (a.q_heads < 1 || a.q_heads > kMaxElems) c.runnable = false;
    a.sinks = reinterpret_cast<const float*>(c.sinks.data());
  }

  // Mask: kind, dims (full, 1 or garbage), strides (innermost-first or garbage), data.
  longattn_mask& m = a.mask;
  m.kind = in.ConsumeIntegralInRange<int>(0, 3) == 3 ? enum_field(in, 3) : LONGATTN_MASK_NONE;
  if (m.kind != LONGATTN_MASK_NONE) {
    const int64_t full[4] = {a.batch, a.q_heads, a.q_len, a.kv_len};
    int64_t stride = 1;
    for (int d = 3; d >= 0; --d) {
      switch (in.ConsumeIntegralInRange<int>(0, 7)) {
        case 6:
          m.dims[d] = garbage_i64(in);
          break;
        case 7:
          m.dims[d] = wadd(full[d], 1);
          break;
        default:
          m.dims[d] = in.ConsumeBool() ? full[d] : 1;
      }
      m.strides[d] = in.ConsumeIntegralInRange<int>(0, 7) == 7 ? garbage_i64(in) : stride;
      if (m.dims[d] > 1 && m.dims[d] < kMaxElems && stride < kMaxElems) stride *= m.dims[d];
    }
    int64_t mstrides[4];
    for (int d = 0; d < 4; ++d) mstrides[d] = m.dims[d] == 1 ? 0 : m.strides[d];
    const int64_t ext = extent_elems(m.dims, mstrides, 4, 1);
    const size_t es = m.kind == LONGATTN_MASK_ADDITIVE ? 4 : 1;
    c.mask.make(ext > 0 ? size_t(ext) * es : 1, 0);
    if (ext < 0) c.runnable = false;
    fill_input(c.mask, LONGATTN_FLOAT32, seed * 7, in.ConsumeBool());
    if (m.kind == LONGATTN_MASK_ADDITIVE)  // some -inf, so whole rows may be hidden
      for (size_t i = 0; i + 4 <= c.mask.body; i += 4 * (1 + seed % 5)) {
        const float ninf = -std::numeric_limits<float>::infinity();
        std::memcpy(c.mask.data() + i, &ninf, 4);
      }
    m.data = in.ConsumeIntegralInRange<int>(0, 15) == 15 ? nullptr : c.mask.data();
  }

  // Block table: entries in range or not. Its size follows the contract (the library reads
  // (batch - 1) * stride + ceil(kv_len / page_size) entries), so it is only passed when that is
  // small; else the K/V stays contiguous.
  // A stride below ceil(kv_len / page_size) must be rejected before any row past the first is
  // read, so such a table holds one row.
  bool table = false;
  if (paged && a.page_size >= 1 && a.batch >= 1 && a.kv_len >= 1 && a.batch <= kMaxElems &&
      a.kv_len / a.page_size < kMaxElems) {
    const int64_t pages = (a.kv_len - 1) / a.page_size + 1;
    const int64_t stride = a.batch == 1 || a.block_table_stride < pages ? 0 : a.block_table_stride;
    if (stride <= kMaxElems) {
      table = true;
      const int64_t entries = (a.batch - 1) * stride + pages;
      c.table.make(size_t(entries) * 4, 0);
      const bool bad = in.ConsumeIntegralInRange<int>(0, 7) == 7;
      for (int64_t e = 0; e < entries; ++e) {
        int32_t id = a.num_blocks >= 1 ? int32_t(uint64_t(seed + e * 7) %
                                                 uint64_t(std::min<int64_t>(a.num_blocks, 1 << 30)))
                                       : 0;
        if (bad && e % 3 == 1)
          id = in.ConsumeBool() ? -1 : int32_t(std::min<int64_t>(a.num_blocks, INT32_MAX));
        std::memcpy(c.table.data() + 4 * e, &id, 4);
      }
      a.block_table = reinterpret_cast<const int32_t*>(c.table.data());
    }
  }
  if (paged && !table) c.runnable = false;  // K/V buffers were sized for a paged cache

  // Pointers: NULL, or an output aliasing an input (must be rejected: inputs are never written).
  switch (in.ConsumeIntegralInRange<int>(0, 15)) {
    case 1:
      a.q = nullptr;
      break;
    case 2:
      a.k = nullptr;
      break;
    case 3:
      a.v = nullptr;
      break;
    case 4:
      a.o = nullptr;
      break;
    case 5:
      a.o = const_cast<void*>(a.q);
      break;
    case 6:
      a.o = const_cast<void*>(a.v);
      break;
    case 7:
      a.lse = static_cast<float*>(a.o);
      break;
    case 8:
      a.lse = reinterpret_cast<float*>(const_cast<void*>(a.q));
      break;
    case 9:
      a.lse = reinterpret_cast<float*>(const_cast<void*>(a.k));
      break;
    case 10:
      if (a.mask.data) a.o = const_cast<void*>(a.mask.data);
      break;
    case 11:
      if (a.sinks) a.lse = const_cast<float*>(a.sinks);
      break;
    default:
      break;
  }

  // Options. Valid thread counts run on one thread (the fuzzer's time goes into inputs, not
  // thread wake-ups); invalid ones stay, to be rejected.
  longattn_options& o = c.opt;
  longattn_options_init(&o);
  o.path = in.ConsumeBool() ? LONGATTN_PATH_AUTO : enum_field(in, 5);
  switch (in.ConsumeIntegralInRange<int>(0, 7)) {
    case 1:
      o.memory_budget = 0;
      break;
    case 2:
      o.memory_budget = in.ConsumeIntegralInRange<int64_t>(0, 1 << 20);
      break;
    case 3:
      o.memory_budget = garbage_i64(in);
      break;
    default:
      o.memory_budget = -1;
  }
  const int32_t threads =
      in.ConsumeIntegralInRange<int>(0, 15) == 15 ? in.ConsumeIntegral<int32_t>() : 1;
  o.num_threads = threads >= 0 && threads <= 4096 ? 1 : threads;
  switch (in.ConsumeIntegralInRange<int>(0, 7)) {
    case 1: {  // a real workspace, possibly too small
      const size_t bytes = in.ConsumeIntegralInRange<size_t>(0, 1 << 18);
      c.ws.make(bytes, kSentinel);
      // kGuard is a multiple of 64 and vector data is 16-aligned: align the start by hand.
      uint8_t* p = c.ws.data();
      p += (64 - reinterpret_cast<uintptr_t>(p) % 64) % 64;
      o.workspace = p;
      o.workspace_bytes = int64_t(bytes) - (p - c.ws.data());
      if (o.workspace_bytes < 0) o.workspace_bytes = 0;
      break;
    }
    case 2:  // misaligned
      c.ws.make(256, kSentinel);
      o.workspace = c.ws.data() + 1 + (reinterpret_cast<uintptr_t>(c.ws.data()) % 64 == 63);
      o.workspace_bytes = 128;
      break;
    case 3:  // no memory, some bytes claimed; or negative
      o.workspace_bytes = garbage_i64(in);
      break;
    default:
      break;
  }

  // An FP8 cache, decoded last so that earlier inputs mean what they meant (an exhausted input
  // reads 0: no FP8). K and V's buffers, sized for dtype, hold as many 1-byte elements; their
  // bytes are any codes, NaN included. Scales: NULL, one, one per KV head (values possibly NaN,
  // negative or huge), or misaligned; a bad kv_dtype or per-head flag must be rejected.
  switch (in.ConsumeIntegralInRange<int>(0, 7)) {
    case 1:
    case 2:
      a.kv_dtype = LONGATTN_FLOAT8_E4M3;
      break;
    case 3:
      a.kv_dtype = LONGATTN_FLOAT8_E5M2;
      break;
    case 4:
      a.kv_dtype = enum_field(in, 6);
      break;
    default:
      break;
  }
  if (a.kv_dtype != 0) {
    a.kv_scale_per_head =
        in.ConsumeIntegralInRange<int>(0, 15) == 15 ? enum_field(in, 3) : in.ConsumeBool();
    const int64_t n = a.kv_scale_per_head == 1 ? a.kv_heads : 1;
    const bool owned = n >= 1 && n <= kMaxElems;
    c.scales.make(owned ? size_t(n) * 8 + 4 : 8, 0);
    for (size_t i = 0; i + 4 <= c.scales.body; i += 4) {
      const float f = in.ConsumeBool() ? garbage_float(in) : 0.5f + float(i % 3);
      std::memcpy(c.scales.data() + i, &f, 4);
    }
    const float* k_scale = reinterpret_cast<const float*>(c.scales.data());
    const float* v_scale = owned ? k_scale + n : k_scale;
    if (!owned) c.runnable = false;
    switch (in.ConsumeIntegralInRange<int>(0, 7)) {
      case 1:
        break;  // both NULL
      case 2:
        a.k_scale = k_scale;
        break;
      case 3:  // misaligned
        a.v_scale = reinterpret_cast<const float*>(c.scales.data() + 2);
        break;
      default:
        a.k_scale = k_scale, a.v_scale = v_scale;
    }
  } else if (in.ConsumeIntegralInRange<int>(0, 31) == 31) {  // scales without an FP8 cache
    c.scales.make(8, 0);
    a.k_scale = reinterpret_cast<const float*>(c.scales.data());
  }

  // A fixed split count, decoded after the FP8 cache for the same reason: small counts, counts
  // past the key tiles (empty slices), and any int32 to be rejected (or refused off split paths).
  switch (in.ConsumeIntegralInRange<int>(0, 7)) {
    case 1:
    case 2:
      o.num_splits = in.ConsumeIntegralInRange<int32_t>(1, 9);
      break;
    case 3:
      o.num_splits = in.ConsumeIntegral<int32_t>();
      break;
    default:
      break;
  }

  // Too much arithmetic to run in a fuzz iteration: plan only.
  if (c.runnable) {
    double work = double(a.batch) * double(a.q_heads) * double(a.q_len) * double(a.kv_len) *
                  double(a.head_dim_qk + a.head_dim_v);
    if (!(work <= double(kMaxWork))) c.runnable = false;
  }
}

void run_case(FuzzedDataProvider& in, Case& c) {
  c.snapshot = c.inputs();
  longattn_plan plan;
  std::memset(&plan, 0xab, sizeof plan);
  const longattn_status planned = longattn_plan_attention(&c.a, &c.opt, &plan);
  check_error(planned, "longattn_plan_attention");
  const std::string plan_error = longattn_last_error();
  check_reason(plan, "longattn_plan_attention");
  if ((planned == LONGATTN_OK) != (plan.ok == 1))
    die("longattn_plan_attention", "status and plan.ok disagree");

  int64_t bytes = -7;
  const int32_t path = in.ConsumeBool() ? c.opt.path : enum_field(in, 5);
  const longattn_status counted = longattn_transient_bytes(&c.a, path, &c.opt, &bytes);
  check_error(counted, "longattn_transient_bytes");
  if (counted == LONGATTN_OK && bytes < 0) die("longattn_transient_bytes", "negative byte count");

  // Only args the plan refused, or args whose every tensor we own, may reach a run.
  if (planned == LONGATTN_OK && !c.runnable) return;
  std::memset(&plan, 0xab, sizeof plan);
  const longattn_status ran = longattn_attention(&c.a, &c.opt, &plan);
  check_error(ran, "longattn_attention");
  if (ran == LONGATTN_OK) check_reason(plan, "longattn_attention");
  if (planned != LONGATTN_OK && ran != planned)
    die("longattn_attention", "the run's status (" + std::to_string(ran) + ": " +
                                  longattn_last_error() + ") differs from the plan's (" +
                                  std::to_string(planned) + ": " + plan_error + ")");
  if (ran == LONGATTN_OK && plan.allocated_bytes != plan.transient_bytes)
    die("longattn_attention", "allocated_bytes != transient_bytes");
  c.check_untouched("longattn_attention");
  if (ran != LONGATTN_OK)  // a refused call writes nothing
    for (size_t i = 0; i < c.o.bytes.size(); ++i)
      if (c.o.bytes[i] != kSentinel) die("longattn_attention", "O written by a refused call");
  if (ran == LONGATTN_OK && in.ConsumeBool()) {
    // A prepared plan runs the same decision on the same args: the same bytes, nothing more.
    const std::vector<uint8_t> o_plain = c.o.bytes, lse_plain = c.lse.bytes;
    std::fill(c.o.bytes.begin(), c.o.bytes.end(), kSentinel);
    std::fill(c.lse.bytes.begin(), c.lse.bytes.end(), kSentinel);
    longattn_prepared* prepared = nullptr;
    const longattn_status made = longattn_prepare(&c.a, &c.opt, &prepared, nullptr);
    check_error(made, "longattn_prepare");
    if (made != LONGATTN_OK || !prepared)
      die("longattn_prepare",
          std::string("refused what longattn_attention ran: ") + longattn_last_error());
    const longattn_status again = longattn_run_prepared(prepared, &c.a, nullptr, nullptr);
    check_error(again, "longattn_run_prepared");
    longattn_prepared_free(prepared);
    if (again != LONGATTN_OK) die("longattn_run_prepared", longattn_last_error());
    if (c.o.bytes != o_plain || c.lse.bytes != lse_plain)
      die("longattn_run_prepared", "O or LSE differs from longattn_attention's");
    c.check_untouched("longattn_run_prepared");
  }
  if (c.opt.workspace) {  // past workspace_bytes, the caller's buffer is not the library's
    const uint8_t* end = static_cast<const uint8_t*>(c.opt.workspace) + c.opt.workspace_bytes;
    for (const uint8_t* p = end; p < c.ws.bytes.data() + c.ws.bytes.size(); ++p)
      if (*p != kSentinel) die("longattn_attention", "workspace written past workspace_bytes");
  }
}

// merge_states with garbage n, rows, dv; buffers for real when small.
void run_merge(FuzzedDataProvider& in) {
  const int64_t n = size_field(in, 4), rows = wadd(size_field(in, 6), -1),
                dv = in.ConsumeBool() ? size_field(in, 16) : garbage_i64(in);
  const bool small = n >= 1 && n <= 8 && rows >= 0 && rows <= 64 && dv >= 1 && dv <= 512;
  const size_t parts = small ? size_t(n * rows * dv) : 1, lses = small ? size_t(n * rows) : 1;
  Buffer o_parts, lse_parts, o, lse;
  o_parts.make(parts * 4, 0);
  lse_parts.make(lses * 4, 0);
  o.make(small ? size_t(rows * dv) * 4 : 4, kSentinel);
  lse.make(small ? size_t(rows) * 4 : 4, kSentinel);
  fill_input(o_parts, LONGATTN_FLOAT32, in.ConsumeIntegral<uint32_t>(), in.ConsumeBool());
  for (size_t i = 0; i < lses; ++i) {
    float f = in.ConsumeBool() ? garbage_float(in) : float(i % 5) - 2.f;
    std::memcpy(lse_parts.data() + 4 * i, &f, 4);
  }
  const float* op = reinterpret_cast<const float*>(o_parts.data());
  const float* lp = reinterpret_cast<const float*>(lse_parts.data());
  float* oo = reinterpret_cast<float*>(o.data());
  float* lo = in.ConsumeBool() ? reinterpret_cast<float*>(lse.data()) : nullptr;
  switch (in.ConsumeIntegralInRange<int>(0, 7)) {
    case 1:
      op = nullptr;
      break;
    case 2:
      lp = nullptr;
      break;
    case 3:
      oo = nullptr;
      break;
    default:
      break;
  }
  // Valid sizes we did not allocate would be read for real: only small or rejected ones run.
  int64_t total;
  const bool rejected = n < 1 || rows < 0 || dv < 1 || dv > 512 || !op || !lp || !oo ||
                        __builtin_mul_overflow(rows, dv, &total) ||
                        __builtin_mul_overflow(total, n, &total) ||
                        __builtin_mul_overflow(total, int64_t(4), &total);
  if (!small && !rejected) return;
  const std::vector<uint8_t> before_o = o_parts.bytes, before_l = lse_parts.bytes;
  const longattn_status st = longattn_merge_states(n, rows, dv, op, lp, oo, lo);
  check_error(st, "longattn_merge_states");
  if (rejected && st == LONGATTN_OK) die("longattn_merge_states", "accepted invalid sizes");
  if (o_parts.bytes != before_o || lse_parts.bytes != before_l)
    die("longattn_merge_states", "an input was modified");
  for (size_t i = 0; i < kGuard; ++i)
    if (o.bytes[i] != kSentinel || o.bytes[o.bytes.size() - 1 - i] != kSentinel ||
        lse.bytes[i] != kSentinel || lse.bytes[lse.bytes.size() - 1 - i] != kSentinel)
      die("longattn_merge_states", "written outside o or lse");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  if (in.ConsumeIntegralInRange<int>(0, 7) == 7) {
    run_merge(in);
    return 0;
  }
  Case c;
  decode(in, c);
  g_args = &c.a, g_options = &c.opt;
  static const bool verbose = std::getenv("LONGATTN_FUZZ_VERBOSE") != nullptr;
  if (verbose) describe_case();
  run_case(in, c);
  g_args = nullptr, g_options = nullptr;
  return 0;
}
