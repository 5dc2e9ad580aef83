// What both CUDA fused kernels (fused_kernel_sm80.cuh, fused_kernel_sm90.cuh) compute alike: the
// MMA element type, score modifiers (softcap, array masks), a block's work item and key band, and
// a finished row's output scale and LSE. Device code; included by the kernel headers only.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math_constants.h>

#include <cstdint>

#include "cuda/fused_cuda.hpp"
#include "cuda/ptx_sm80.cuh"  // exp2_approx

namespace longattn::cuda {

template <Mma16 kType>
struct MmaElement;
template <>
struct MmaElement<Mma16::kBf16> {
  using Type = __nv_bfloat16;
};
template <>
struct MmaElement<Mma16::kF16> {
  using Type = __half;
};

// Stores O columns col and col + 1 of a row, each only below dv: as one pair where the row starts
// on a pair (`paired`), else element by element (odd strides, 2-byte-offset bases, odd dv).
template <Mma16 kType>
__device__ __forceinline__ void store_o_pair(char* o_row, int col, int dv, float x, float y,
                                             bool input_f32, bool paired) {
  if (col >= dv) return;
  const bool both = col + 1 < dv;
  if (input_f32) {
    float* o = reinterpret_cast<float*>(o_row) + col;
    if (both && paired) {
      *reinterpret_cast<float2*>(o) = make_float2(x, y);
    } else {
      o[0] = x;
      if (both) o[1] = y;
    }
    return;
  }
  const uint32_t v = ptx::pack2<kType>(x, y);
  unsigned short* o = reinterpret_cast<unsigned short*>(o_row) + col;
  if (both && paired) {
    *reinterpret_cast<uint32_t*>(o) = v;
  } else {
    o[0] = static_cast<unsigned short>(v & 0xffffu);
    if (both) o[1] = static_cast<unsigned short>(v >> 16);
  }
}

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// tanh through one exponential: accurate in absolute terms (what a softcapped logit needs), unlike
// tanh.approx whose ~2^-11 relative error becomes a visible logit error at caps of 30 or 50.
__device__ __forceinline__ float tanh_abs_accurate(float x) {
  x = fminf(fmaxf(x, -15.f), 15.f);  // tanh(15) rounds to 1; keeps exp finite
  return 1.f - __fdividef(2.f, __expf(2.f * x) + 1.f);
}

// softcap, then the array mask (README.md, "Semantics"), in natural-log units; `at` is the mask
// element. kAnyAlignment (the portable kernel): an additive mask off 4 bytes is read bytewise; the
// sm_90a kernel is not chosen for one (policy_cuda.cpp).
template <bool kAnyAlignment = false>
__device__ __forceinline__ float capped_masked(const FusedParams& p, float x, int64_t at) {
  if (p.softcap > 0.f) x = p.softcap * tanh_abs_accurate(x / p.softcap);
  if (p.mask_kind == 1) {  // LONGATTN_MASK_BOOLEAN
    if (!static_cast<const uint8_t*>(p.mask)[at]) x = -CUDART_INF_F;
  } else if (p.mask_kind == 2) {  // LONGATTN_MASK_ADDITIVE
    if (kAnyAlignment && p.mask_unaligned) {
      const uint8_t* m = static_cast<const uint8_t*>(p.mask) + 4 * at;
      x += __uint_as_float(uint32_t(m[0]) | uint32_t(m[1]) << 8 | uint32_t(m[2]) << 16 |
                           uint32_t(m[3]) << 24);
    } else {
      x += static_cast<const float*>(p.mask)[at];
    }
  }
  return x;
}

// One block's work: a query tile of one (batch, kv head) and, with split_kv, one slice of its key
// band. Items are numbered head by head, so the blocks running at any time share a few heads' K
// and V in L2, and within a head the heaviest first: the last query tiles see the most keys under
// causal masking, so no long tile starts last. The hardware starts blocks in this order, a new one
// whenever one finishes; the sm_90a kernel's persistent blocks take items in the same order
// (fused_kernel_sm90.cuh). Static persistent orders are slower (bench/NOTES.md): all heads'
// longest tiles first loses the L2 reuse; head by head leaves blocks idle behind long causal
// tiles; balanced pairs of tiles r and tiles - 1 - r let one slow block hold up the end.
struct WorkTile {
  int b, kv_head, split;
  int64_t row0, row_end;    // packed rows [row0, row_end)
  int64_t i_first, i_last;  // their query positions
  int t_begin, n_tiles;     // key tiles [t_begin, t_begin + n_tiles) of the band
};

// Index math in 32 bits (a 64-bit division is a subroutine call, whose saved registers spill in
// the persistent loop): the launchers keep work items under 2^31 and the backend packed rows
// (q_len * group) under 2^31.
__device__ __forceinline__ WorkTile work_tile(const FusedParams& p, int64_t work, int block_q,
                                              int block_k) {
  const int rows = p.q_len * p.group;
  const int tiles = (rows + block_q - 1) / block_q;
  const int w = int(work);
  WorkTile wt;
  wt.split = w % p.splits;
  const int q_tile = tiles - 1 - (w / p.splits) % tiles;
  const int head = w / p.splits / tiles;
  wt.kv_head = head % p.kv_heads, wt.b = head / p.kv_heads;
  wt.row0 = int64_t(q_tile) * block_q;
  wt.row_end = min(wt.row0 + block_q, int64_t(rows));
  const int64_t off = int64_t(p.kv_len) - p.q_len;
  wt.i_first = int(wt.row0) / p.group, wt.i_last = int(wt.row_end - 1) / p.group;
  // The key band: union of the rows' [i + off - W, i + off] (bottom-right causal).
  int64_t lo = 0, hi = p.kv_len;
  if (p.causal) hi = min(hi, wt.i_last + off + 1);
  if (p.window_left >= 0) lo = max(lo, wt.i_first + off - p.window_left);
  wt.t_begin = int(lo / block_k);
  wt.n_tiles = hi > lo ? int((hi + block_k - 1) / block_k) - wt.t_begin : 0;
  if (p.splits > 1) {  // split_kv: an equal share of the band's tiles
    const int per = (wt.n_tiles + p.splits - 1) / p.splits;
    wt.t_begin += wt.split * per;
    wt.n_tiles = max(0, min(per, wt.n_tiles - wt.split * per));
  }
  return wt;
}

// A finished row (running max m and sum l in log2 units): the factor its O accumulator is scaled
// by, and its LSE (natural log). A row that saw no key gives O = 0 and LSE = -inf. With sinks (and
// no split_kv, where the merge adds them) the sink joins the denominator and carries no value.
__device__ __forceinline__ void finish_row(const FusedParams& p, int head, float m, float l,
                                           float* o_scale, float* lse) {
  *o_scale = 0.f, *lse = -CUDART_INF_F;
  if (m == -CUDART_INF_F) return;
  float scale = 1.f;
  if (p.sinks && p.splits == 1) {
    const float sink = p.sinks[head] * kLog2e, mf = fmaxf(m, sink);
    scale = ptx::exp2_approx(m - mf);
    l = l * scale + ptx::exp2_approx(sink - mf);
    m = mf;
  }
  *o_scale = scale / l;
  *lse = (m + log2f(l)) * kLn2;
}

}  // namespace longattn::cuda
