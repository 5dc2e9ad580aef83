// Addressing and masking shared by every CPU path: where a row lives, which keys a query row sees
// (bottom-right causal, left window: README.md, "Semantics"), and the array mask.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "longattn/longattn.h"

namespace longattn::cpu {

// Keys [lo, hi) that query row i may see by the causal and window bounds (empty when lo >= hi).
struct Band {
  int64_t lo, hi;
};

inline Band visible_band(const longattn_args& a, int64_t i) {
  int64_t diag = i + (a.kv_len - a.q_len);  // the key aligned with query i (bottom-right)
  Band b{0, a.kv_len};
  if (a.causal) b.hi = std::min(b.hi, diag + 1);
  // diag > W, not diag - W > 0: a window near INT64_MAX would overflow the subtraction.
  if (a.window_left >= 0 && diag > a.window_left) b.lo = diag - a.window_left;
  return b;
}

template <class T>
inline const T* row_ptr(const void* base, const longattn_strides& s, int64_t b, int64_t h,
                        int64_t l) {
  return static_cast<const T*>(base) + b * s.batch + h * s.head + l * s.token;
}

inline int64_t elem_offset(const longattn_strides& s, int64_t b, int64_t h, int64_t l) {
  return b * s.batch + h * s.head + l * s.token;
}

// Element offset of token j of K or V (strides s) for batch b, KV head h: through the block table
// when the K/V is paged.
inline int64_t kv_offset(const longattn_args& a, const longattn_strides& s, int64_t b, int64_t h,
                         int64_t j) {
  if (!a.block_table) return elem_offset(s, b, h, j);
  const int64_t block = a.block_table[b * a.block_table_stride + j / a.page_size];
  return block * s.batch + h * s.head + (j % a.page_size) * s.token;
}

// The mask of one (b, h, i) row: value j is at data[j * step].
struct MaskRow {
  int32_t kind = LONGATTN_MASK_NONE;
  const uint8_t* boolean = nullptr;
  const float* additive = nullptr;
  int64_t step = 0;

  // Applies the mask to a (softcapped) score.
  float apply(int64_t j, float s) const {
    if (kind == LONGATTN_MASK_BOOLEAN) return boolean[j * step] ? s : -INFINITY;
    if (kind == LONGATTN_MASK_ADDITIVE) return s + additive[j * step];
    return s;
  }
  double apply(int64_t j, double s) const {
    if (kind == LONGATTN_MASK_BOOLEAN) return boolean[j * step] ? s : -INFINITY;
    if (kind == LONGATTN_MASK_ADDITIVE) return s + double(additive[j * step]);
    return s;
  }
};

inline MaskRow mask_row(const longattn_args& a, int64_t b, int64_t h, int64_t i) {
  const longattn_mask& m = a.mask;
  MaskRow r;
  r.kind = m.kind;
  if (m.kind == LONGATTN_MASK_NONE) return r;
  auto stride = [&](int d) { return m.dims[d] == 1 ? 0 : m.strides[d]; };
  int64_t off = b * stride(0) + h * stride(1) + i * stride(2);
  r.step = stride(3);
  if (m.kind == LONGATTN_MASK_BOOLEAN)
    r.boolean = static_cast<const uint8_t*>(m.data) + off;
  else
    r.additive = static_cast<const float*>(m.data) + off;
  return r;
}

}  // namespace longattn::cpu
