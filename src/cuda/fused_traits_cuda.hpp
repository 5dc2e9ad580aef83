// Tile shapes of the CUDA fused prefill kernel (fused_kernel_sm80.cuh), one entry per head dim. The
// kernel and the host (configure, launch, shared-memory sizing) both read this one function, so
// what the router reports is what runs. Plain C++: included by .cpp files compiled without nvcc.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define LONGATTN_HOST_DEVICE __host__ __device__
#else
#define LONGATTN_HOST_DEVICE
#endif

namespace longattn::cuda {

// Shared memory per block: sm_90 (H100/H200) allows 227 KB, sm_80 (A100) 163 KB. The arch class
// changes only block_k and stages (never the rows or warps), so the grid is the same on both.
enum class SmemClass { kSm80 = 0, kSm90 = 1 };
// Dynamic shared memory an sm_90 block may use (227 KB).
constexpr int64_t kSm90SmemBytes = 232448;

struct FusedTraits {
  int head_dim_qk = 0, head_dim_v = 0;
  int warps = 0;    // warps per block
  int split = 1;    // warps sharing one row group: each computes S for block_k / split keys and
                    // accumulates O for head_dim_v / split columns (keeps O in registers at d=512)
  int m_tiles = 1;  // 16-row MMA tiles per warp: two halve shared-memory reads of K and V per FLOP
  int block_k = 0;  // keys per tile
  int stages = 0;   // K/V tiles in flight (cp.async ring)

  LONGATTN_HOST_DEVICE constexpr int threads() const { return warps * 32; }
  LONGATTN_HOST_DEVICE constexpr int rows_per_group() const { return 16 * m_tiles; }
  LONGATTN_HOST_DEVICE constexpr int block_q() const { return warps / split * rows_per_group(); }
  // Shared rows are padded by 16 bytes so that the 8 rows one ldmatrix reads hit 8 distinct bank
  // groups (the row pitch in 16-byte units, head_dim/8 + 1, is odd for every head dim we run).
  LONGATTN_HOST_DEVICE static constexpr int pitch(int cols) { return cols + 8; }
  LONGATTN_HOST_DEVICE constexpr int64_t q_elems() const {
    return int64_t(block_q()) * pitch(head_dim_qk);
  }
  LONGATTN_HOST_DEVICE constexpr int64_t k_elems() const {
    return int64_t(block_k) * pitch(head_dim_qk);
  }
  LONGATTN_HOST_DEVICE constexpr int64_t v_elems() const {
    return int64_t(block_k) * pitch(head_dim_v);
  }
  LONGATTN_HOST_DEVICE constexpr int64_t stage_elems() const { return k_elems() + v_elems(); }
  // With split > 1 the row group's warps exchange P (16-bit) and row maxima/sums (float32).
  LONGATTN_HOST_DEVICE constexpr int64_t p_elems() const {
    return split > 1 ? int64_t(block_q()) * pitch(block_k) : 0;
  }
  LONGATTN_HOST_DEVICE constexpr int64_t reduce_floats() const {
    return split > 1 ? 2 * int64_t(block_q()) * split : 0;
  }
  LONGATTN_HOST_DEVICE constexpr int64_t smem_bytes() const {
    return 2 * (q_elems() + stages * stage_elems() + p_elems()) + 4 * reduce_floats();
  }
};

// Rows of a decode block: query rows x GQA group at most this many take the decode shapes.
constexpr int kDecodeRows = 16;
// Most K/V tiles a decode block keeps in its ring (two in flight while one is used); a fourth
// bought nothing at d = 128 (bench/NOTES.md).
constexpr int kDecodeStages = 3;

// Why these shapes. Prefill: O lives in registers (head_dim_v / 2 floats per thread per m-tile),
// so wide heads get fewer rows per warp; head_dim 512 splits O across two warps. Tiles are as
// wide as the arch class's shared memory allows with two stages in flight.
// Decode (query rows x group <= 16): one 16-row tile whose warps split the keys and the columns
// of O, so no tensor-core work is spent on empty rows and the kernel stays bound by reading K/V;
// up to kDecodeStages stages keep enough bytes in flight.
LONGATTN_HOST_DEVICE constexpr FusedTraits fused_traits(int dqk, int dv, SmemClass smem,
                                                        bool decode) {
  const bool big = smem == SmemClass::kSm90;
  FusedTraits t;
  t.head_dim_qk = dqk;
  t.head_dim_v = dv;
  if (decode) {
    // The widest split whose O columns per warp stay a multiple of 16 (ldmatrix.x4.trans).
    t.split = dv % 64 == 0 ? 4 : dv % 32 == 0 ? 2 : 1;
    if (dv > 256) t.split = 2;  // 16 keys per warp need block_k = 32 x split; 512 fits 32 only
    t.warps = t.split, t.m_tiles = 1;
    t.block_k = dv > 256 ? 32 : 64;
    // As many stages as fit, up to kDecodeStages. On sm_90 the budget is the whole opt-in
    // (227 KB), so d = 256 and 512 get three stages too: with two, only one tile is in flight
    // while the other is used, and the smallest decode shapes are slower (bench/NOTES.md).
    const int64_t budget = big ? kSm90SmemBytes : 140 * 1024;
    for (t.stages = kDecodeStages; t.stages > 1 && t.smem_bytes() > budget;) --t.stages;
  } else if (dqk <= 64 && dv <= 64) {
    t.warps = 4, t.split = 1, t.m_tiles = 2, t.block_k = 64, t.stages = 3;
  } else if (dqk <= 256 && dv <= 256) {
    // Two m-tiles per warp would spill here (O + S need over 200 registers at d=128).
    t.warps = 8, t.split = 1, t.m_tiles = 1, t.block_k = dqk <= 192 || big ? 64 : 32;
    t.stages = 2;
  } else {
    t.warps = 8, t.split = 2, t.m_tiles = 1, t.block_k = 32, t.stages = big ? 2 : 1;
  }
  return t;
}

}  // namespace longattn::cuda

// LONGATTN_FUSED_HEAD_DIMS(X): the (head_dim_qk, head_dim_v) pairs with a compiled kernel.
// scripts/gen_cuda_instances.py writes it and one instantiation file per pair and dtype from the
// same table, so the list and the compiled kernels cannot disagree.
#include "cuda/instantiations/fused_head_dims.inc"
