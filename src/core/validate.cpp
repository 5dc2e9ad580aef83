#include "core/validate.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "core/detail.hpp"

namespace longattn::detail {
namespace {

#define LONGATTN_REQUIRE(cond, ...)                            \
  do {                                                         \
    if (!(cond)) fail(LONGATTN_INVALID_ARGUMENT, __VA_ARGS__); \
  } while (0)

struct Dim {
  int64_t size, stride;
};

// Byte extent [0, extent) that a [dims..., inner] tensor touches; fails on int64 overflow.
int64_t extent_bytes(const Dim* dims, int n, int64_t inner, int64_t elem, const char* name) {
  int64_t last = inner;  // elements
  for (int i = 0; i < n; ++i)
    last = checked_add(last, checked_mul(dims[i].size - 1, dims[i].stride, name), name);
  return checked_mul(last, elem, name);
}

void check_strides(const char* name, const longattn_strides& s, int64_t b, int64_t h, int64_t l,
                   int64_t d, int64_t elem) {
  LONGATTN_REQUIRE(s.batch >= 0 && s.head >= 0 && s.token >= 0,
                   "%s = {batch %lld, head %lld, token %lld}: strides must be >= 0 (in elements; "
                   "the head_dim axis is contiguous)",
                   name, (long long)s.batch, (long long)s.head, (long long)s.token);
  Dim dims[3] = {{b, s.batch}, {h, s.head}, {l, s.token}};
  extent_bytes(dims, 3, d, elem, name);
}

// Output rows must not overlap each other, or two rows would race and one would be lost.
void check_no_self_overlap(const char* name, const longattn_strides& s, int64_t b, int64_t h,
                           int64_t l, int64_t d) {
  Dim dims[3] = {{b, s.batch}, {h, s.head}, {l, s.token}};
  std::sort(dims, dims + 3, [](Dim x, Dim y) { return x.stride < y.stride; });
  int64_t extent = d;  // elements spanned by the inner dims
  for (const Dim& dim : dims) {
    if (dim.size == 1) continue;
    LONGATTN_REQUIRE(dim.stride >= extent,
                     "%s = {batch %lld, head %lld, token %lld}: output rows overlap (a stride of "
                     "%lld is smaller than the %lld elements it must step over)",
                     name, (long long)s.batch, (long long)s.head, (long long)s.token,
                     (long long)dim.stride, (long long)extent);
    extent = dim.stride * (dim.size - 1) + extent;
  }
}

bool overlaps(const void* a, int64_t a_bytes, const void* b, int64_t b_bytes) {
  auto x = reinterpret_cast<uintptr_t>(a), y = reinterpret_cast<uintptr_t>(b);
  return x < y + static_cast<uintptr_t>(b_bytes) && y < x + static_cast<uintptr_t>(a_bytes);
}

}  // namespace

void validate_args(const longattn_args* args) {
  LONGATTN_REQUIRE(args != nullptr, "args is NULL");
  const longattn_args& a = *args;
  LONGATTN_REQUIRE(a.dtype >= LONGATTN_FLOAT32 && a.dtype <= LONGATTN_BFLOAT16,
                   "dtype = %d: allowed values are LONGATTN_FLOAT32 (0), LONGATTN_FLOAT16 (1), "
                   "LONGATTN_BFLOAT16 (2)%s",
                   a.dtype,
                   is_fp8(a.dtype) ? " (Q and O in FP8 are not supported; an FP8 KV cache is "
                                     "kv_dtype = LONGATTN_FLOAT8_E4M3 or _E5M2)"
                                   : "");
  LONGATTN_REQUIRE(a.kv_dtype == 0 || a.kv_dtype == a.dtype || is_fp8(a.kv_dtype),
                   "kv_dtype = %d: allowed values are 0 or dtype (= %d; K and V in dtype), "
                   "LONGATTN_FLOAT8_E4M3 (3), LONGATTN_FLOAT8_E5M2 (4)",
                   a.kv_dtype, a.dtype);
  if (!is_fp8(a.kv_dtype)) {
    LONGATTN_REQUIRE(!a.k_scale && !a.v_scale && a.kv_scale_per_head == 0,
                     "%s is set but kv_dtype = %d: the K/V scales must be NULL (0) unless the "
                     "cache is FP8 (kv_dtype = LONGATTN_FLOAT8_E4M3 or _E5M2)",
                     a.k_scale   ? "k_scale"
                     : a.v_scale ? "v_scale"
                                 : "kv_scale_per_head",
                     a.kv_dtype);
  } else {
    LONGATTN_REQUIRE(a.kv_scale_per_head == 0 || a.kv_scale_per_head == 1,
                     "kv_scale_per_head = %d: must be 0 (one scale for all KV heads) or 1 (one "
                     "per KV head)",
                     a.kv_scale_per_head);
    for (const float* scale : {a.k_scale, a.v_scale})
      LONGATTN_REQUIRE(reinterpret_cast<uintptr_t>(scale) % 4 == 0,
                       "%s = %p is not 4-byte aligned: scales are float32 and must start on 4 "
                       "bytes",
                       scale == a.k_scale ? "k_scale" : "v_scale", (const void*)scale);
  }
  LONGATTN_REQUIRE(
      a.device == LONGATTN_DEVICE_CPU || a.device == LONGATTN_DEVICE_CUDA,
      "device = %d: allowed values are LONGATTN_DEVICE_CPU (0), LONGATTN_DEVICE_CUDA (1)",
      a.device);
  LONGATTN_REQUIRE(a.q && a.k && a.v && a.o,
                   "%s is NULL: q, k, v and o must point to the tensors (lse may be NULL)",
                   !a.q   ? "q"
                   : !a.k ? "k"
                   : !a.v ? "v"
                          : "o");
  const struct {
    const char* name;
    int64_t value;
  } sizes[] = {{"batch", a.batch},
               {"q_heads", a.q_heads},
               {"kv_heads", a.kv_heads},
               {"q_len", a.q_len},
               {"kv_len", a.kv_len}};
  for (const auto& s : sizes)
    LONGATTN_REQUIRE(s.value >= 1, "%s = %lld: must be >= 1", s.name, (long long)s.value);
  LONGATTN_REQUIRE(a.head_dim_qk >= 1 && a.head_dim_qk <= kMaxHeadDimQk,
                   "head_dim_qk = %lld: allowed values are 1 to %lld", (long long)a.head_dim_qk,
                   (long long)kMaxHeadDimQk);
  LONGATTN_REQUIRE(a.head_dim_v >= 1 && a.head_dim_v <= kMaxHeadDimV,
                   "head_dim_v = %lld: allowed values are 1 to %lld", (long long)a.head_dim_v,
                   (long long)kMaxHeadDimV);
  LONGATTN_REQUIRE(a.q_heads % a.kv_heads == 0,
                   "q_heads = %lld, kv_heads = %lld: q_heads must be a multiple of kv_heads (GQA)",
                   (long long)a.q_heads, (long long)a.kv_heads);
  LONGATTN_REQUIRE(std::isfinite(a.scale),
                   "scale = %g: must be finite (0 means 1/sqrt(head_dim_qk))", (double)a.scale);
  LONGATTN_REQUIRE(std::isfinite(a.softcap) && a.softcap >= 0,
                   "softcap = %g: must be 0 (off) or a finite value > 0", (double)a.softcap);
  LONGATTN_REQUIRE(a.window_left >= -1,
                   "window_left = %lld: must be -1 (no window) or >= 0 (keys before the query)",
                   (long long)a.window_left);
  LONGATTN_REQUIRE(a.causal == 0 || a.causal == 1, "causal = %d: must be 0 or 1", a.causal);

  const bool paged = a.block_table != nullptr;
  if (paged) {
    LONGATTN_REQUIRE(a.page_size >= 1, "page_size = %lld: a paged K/V needs page_size >= 1",
                     (long long)a.page_size);
    LONGATTN_REQUIRE(a.num_blocks >= 1, "num_blocks = %lld: a paged K/V needs num_blocks >= 1",
                     (long long)a.num_blocks);
    const int64_t pages = ceil_div(a.kv_len, a.page_size);
    LONGATTN_REQUIRE(a.batch == 1 || a.block_table_stride >= pages,
                     "block_table_stride = %lld: must be >= ceil(kv_len / page_size) = %lld",
                     (long long)a.block_table_stride, (long long)pages);
    // The table lives in host memory for CPU runs: every entry a run will read is checked.
    if (a.device == LONGATTN_DEVICE_CPU)
      for (int64_t b = 0; b < a.batch; ++b)
        for (int64_t p = 0; p < pages; ++p) {
          int64_t id = a.block_table[b * a.block_table_stride + p];
          LONGATTN_REQUIRE(id >= 0 && id < a.num_blocks,
                           "block_table[%lld][%lld] = %lld: block ids must be in [0, num_blocks = "
                           "%lld)",
                           (long long)b, (long long)p, (long long)id, (long long)a.num_blocks);
        }
  }
  // A paged K/V spans [num_blocks, kv_heads, page_size] (its batch stride steps between blocks).
  const int64_t kv_outer = paged ? a.num_blocks : a.batch,
                kv_tokens = paged ? a.page_size : a.kv_len;
  const int64_t elem = dtype_bytes(a.dtype), kv_elem = dtype_bytes(kv_dtype_of(a));
  check_strides("q_strides", a.q_strides, a.batch, a.q_heads, a.q_len, a.head_dim_qk, elem);
  check_strides("k_strides", a.k_strides, kv_outer, a.kv_heads, kv_tokens, a.head_dim_qk, kv_elem);
  check_strides("v_strides", a.v_strides, kv_outer, a.kv_heads, kv_tokens, a.head_dim_v, kv_elem);
  check_strides("o_strides", a.o_strides, a.batch, a.q_heads, a.q_len, a.head_dim_v, elem);
  check_no_self_overlap("o_strides", a.o_strides, a.batch, a.q_heads, a.q_len, a.head_dim_v);
  // Byte counts of whole tensors must fit int64 too (they size allocations and copies).
  checked_mul(checked_mul(checked_mul(a.batch, a.q_heads, "q"), a.q_len, "q"),
              checked_mul(a.head_dim_qk + a.head_dim_v, elem, "q"), "q");
  checked_mul(checked_mul(checked_mul(a.batch, a.kv_heads, "k"), a.kv_len, "k"),
              checked_mul(a.head_dim_qk + a.head_dim_v, kv_elem, "k"), "k");

  const longattn_mask& m = a.mask;
  int64_t mask_bytes = 0;
  LONGATTN_REQUIRE(m.kind >= LONGATTN_MASK_NONE && m.kind <= LONGATTN_MASK_ADDITIVE,
                   "mask.kind = %d: allowed values are LONGATTN_MASK_NONE (0), "
                   "LONGATTN_MASK_BOOLEAN (1), LONGATTN_MASK_ADDITIVE (2)",
                   m.kind);
  if (m.kind != LONGATTN_MASK_NONE) {
    LONGATTN_REQUIRE(m.data != nullptr, "mask.data is NULL but mask.kind is %s",
                     m.kind == LONGATTN_MASK_BOOLEAN ? "BOOLEAN" : "ADDITIVE");
    const int64_t full[4] = {a.batch, a.q_heads, a.q_len, a.kv_len};
    const char* axis[4] = {"batch", "q_heads", "q_len", "kv_len"};
    Dim md[4];
    for (int i = 0; i < 4; ++i) {
      LONGATTN_REQUIRE(m.dims[i] == 1 || m.dims[i] == full[i],
                       "mask.dims[%d] = %lld: must be 1 (broadcast) or %s = %lld to broadcast to "
                       "[batch, q_heads, q_len, kv_len]",
                       i, (long long)m.dims[i], axis[i], (long long)full[i]);
      LONGATTN_REQUIRE(m.dims[i] == 1 || m.strides[i] >= 0, "mask.strides[%d] = %lld: must be >= 0",
                       i, (long long)m.strides[i]);
      md[i] = {m.dims[i], m.dims[i] == 1 ? 0 : m.strides[i]};
    }
    mask_bytes = extent_bytes(md, 4, 1, m.kind == LONGATTN_MASK_BOOLEAN ? 1 : 4,
                              "the mask (mask.dims by mask.strides)");
  }

  // Inputs are never written: neither output may share memory with an input, nor LSE with O.
  struct Region {
    const char* name;
    const void* p;
    int64_t bytes;
  };
  auto tensor_bytes = [&](int64_t outer, const longattn_strides& s, int64_t h, int64_t l, int64_t d,
                          int64_t bytes, const char* name) {
    Dim dims[3] = {{outer, s.batch}, {h, s.head}, {l, s.token}};
    return extent_bytes(dims, 3, d, bytes, name);
  };
  const int64_t scales =
      a.kv_scale_per_head ? checked_mul(a.kv_heads, 4, "k_scale and v_scale") : 4;
  Region inputs[8] = {
      {"q", a.q, tensor_bytes(a.batch, a.q_strides, a.q_heads, a.q_len, a.head_dim_qk, elem, "q")},
      {"k", a.k,
       tensor_bytes(kv_outer, a.k_strides, a.kv_heads, kv_tokens, a.head_dim_qk, kv_elem, "k")},
      {"v", a.v,
       tensor_bytes(kv_outer, a.v_strides, a.kv_heads, kv_tokens, a.head_dim_v, kv_elem, "v")},
      {"sinks", a.sinks, a.sinks ? checked_mul(a.q_heads, 4, "sinks") : 0},
      {"mask.data", m.kind != LONGATTN_MASK_NONE ? m.data : nullptr, mask_bytes},
      {"block_table", a.block_table, 0},
      {"k_scale", a.k_scale, a.k_scale ? scales : 0},
      {"v_scale", a.v_scale, a.v_scale ? scales : 0}};
  if (paged) {
    const int64_t rows_before_last =
        a.batch == 1 ? 0 : checked_mul(a.block_table_stride, a.batch - 1, "block_table");
    inputs[5].bytes =
        checked_mul(checked_add(rows_before_last, ceil_div(a.kv_len, a.page_size), "block_table"),
                    4, "block_table");
  }
  const Region o = {
      "o", a.o, tensor_bytes(a.batch, a.o_strides, a.q_heads, a.q_len, a.head_dim_v, elem, "o")};
  const Region lse = {"lse", a.lse,
                      a.lse ? checked_mul(checked_mul(a.batch, a.q_heads, "lse"),
                                          checked_mul(a.q_len, 4, "lse"), "lse")
                            : 0};
  for (const Region& out : {o, lse})
    for (const Region& in : inputs)
      LONGATTN_REQUIRE(!out.p || !in.p || !overlaps(out.p, out.bytes, in.p, in.bytes),
                       "%s overlaps %s: the outputs (o, lse) must not share memory with an input",
                       out.name, in.name);
  LONGATTN_REQUIRE(!a.lse || !overlaps(a.lse, lse.bytes, a.o, o.bytes),
                   "lse overlaps o: they must not share memory");
}

void validate_options(const longattn_options* options) {
  LONGATTN_REQUIRE(options != nullptr, "options is NULL (use longattn_options_init)");
  const longattn_options& o = *options;
  LONGATTN_REQUIRE(o.path >= LONGATTN_PATH_AUTO && o.path <= LONGATTN_PATH_SPLIT_KV,
                   "options.path = %d: allowed values are AUTO (0), REFERENCE (1), UNFUSED (2), "
                   "FUSED (3), SPLIT_KV (4)",
                   o.path);
  LONGATTN_REQUIRE(o.memory_budget >= -1,
                   "options.memory_budget = %lld: must be -1 (no limit) or a byte count >= 0",
                   (long long)o.memory_budget);
  LONGATTN_REQUIRE(o.num_threads >= 0 && o.num_threads <= 4096,
                   "options.num_threads = %d: must be 0 (all cores) to 4096", o.num_threads);
  LONGATTN_REQUIRE(o.num_splits >= 0 && o.num_splits <= kMaxNumSplits,
                   "options.num_splits = %d: must be 0 (the backend chooses) or 1 to %d",
                   o.num_splits, kMaxNumSplits);
  LONGATTN_REQUIRE(
      o.num_splits <= 1 || o.path == LONGATTN_PATH_AUTO || o.path == LONGATTN_PATH_SPLIT_KV,
      "options.num_splits = %d with options.path = %s: must be 0 or 1 unless options.path is "
      "SPLIT_KV or AUTO (only they split the keys)",
      o.num_splits, longattn_path_name(o.path));
  LONGATTN_REQUIRE(o.workspace_bytes >= 0, "options.workspace_bytes = %lld: must be >= 0",
                   (long long)o.workspace_bytes);
  LONGATTN_REQUIRE(o.workspace != nullptr || o.workspace_bytes == 0,
                   "options.workspace is NULL but options.workspace_bytes = %lld",
                   (long long)o.workspace_bytes);
  LONGATTN_REQUIRE(reinterpret_cast<uintptr_t>(o.workspace) % 64 == 0,
                   "options.workspace must be 64-byte aligned");
}

float effective_scale(const longattn_args& a) {
  return a.scale != 0.f ? a.scale : 1.f / std::sqrt(static_cast<float>(a.head_dim_qk));
}

}  // namespace longattn::detail
