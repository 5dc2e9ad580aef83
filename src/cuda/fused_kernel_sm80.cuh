// The CUDA fused prefill kernel (flash attention 2 style) on mma.sync tensor cores, sm_80 and
// newer.
//
// One block computes block_q packed rows of one (batch, kv head). GQA packing: packed row R is
// query R / g of head kv_head * g + R % g, so the g heads that share a KV head read each K/V tile
// once, and under causal masking a tile's rows span few query positions (a tight band). The block
// walks the key tiles of its visible band only (tiles outside the causal/window band are never
// loaded), keeping an online softmax: per row the running max m and sum l, and O in registers.
//
// Per tile: S = Q K^T (ldmatrix + mma), scale/softcap/mask, row max, P = exp2(S - m), O += P V.
// K/V tiles stream through a ring of `stages` shared-memory slots filled by cp.async, one
// __syncthreads per tile. With split > 1 (head_dim 512, and the decode shapes) a row group's warps
// split the keys of S and the columns of O; they exchange row maxima and P through shared memory
// on a named barrier.
//
// split_kv (params.splits > 1): blockIdx.x also picks a slice of the band's key tiles; the block
// writes a float32 partial O and its LSE, and merge_cuda.cu combines the slices (adding sinks).
// Decode (kDecode): the same code with 16-row tiles (fused_traits), for q_len x group <= 16.
//
// Reads: traits (fused_traits_cuda.hpp) -> shared layout -> loaders -> scores -> main loop ->
// epilogue -> host launch.
#pragma once

#include <cuda_runtime.h>
#include <math_constants.h>

#include <cstdint>

#include "cuda/block_table_cuda.hpp"
#include "cuda/fused_common_cuda.cuh"
#include "cuda/fused_cuda.hpp"
#include "cuda/kernel_info_cache_cuda.hpp"
#include "cuda/launch_config_cuda.hpp"
#include "cuda/ptx_sm80.cuh"

namespace longattn::cuda {

// The code being compiled is for sm_90 (227 KB of shared memory) or sm_80-class parts.
__host__ __device__ constexpr SmemClass compiled_smem_class() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  return SmemClass::kSm90;
#else
  return SmemClass::kSm80;
#endif
}

// Eight elements (one 16-byte chunk of the tile) of a row, through registers, rounded to the MMA
// type: the first `n` from `src`, the rest zeros. `vec`: the chunk is whole and starts on 16 bytes
// (float32: on 32). Otherwise element loads, which never touch a byte past the row.
template <Mma16 kType>
__device__ __forceinline__ uint4 load_chunk(const char* src, int n, bool input_f32, bool vec) {
  if (!input_f32) {
    if (vec) return __ldg(reinterpret_cast<const uint4*>(src));
    const unsigned short* s = reinterpret_cast<const unsigned short*>(src);
    uint32_t w[4];
#pragma unroll
    for (int e = 0; e < 4; ++e)
      w[e] = uint32_t(2 * e < n ? __ldg(s + 2 * e) : 0) |
             uint32_t(2 * e + 1 < n ? __ldg(s + 2 * e + 1) : 0) << 16;
    return make_uint4(w[0], w[1], w[2], w[3]);
  }
  const float* s = reinterpret_cast<const float*>(src);
  float x[8];
  if (vec) {
    const float4 a = __ldg(reinterpret_cast<const float4*>(s)),
                 b = __ldg(reinterpret_cast<const float4*>(s) + 1);
    x[0] = a.x, x[1] = a.y, x[2] = a.z, x[3] = a.w, x[4] = b.x, x[5] = b.y, x[6] = b.z, x[7] = b.w;
  } else {
#pragma unroll
    for (int e = 0; e < 8; ++e) x[e] = e < n ? __ldg(s + e) : 0.f;
  }
  return make_uint4(ptx::pack2<kType>(x[0], x[1]), ptx::pack2<kType>(x[2], x[3]),
                    ptx::pack2<kType>(x[4], x[5]), ptx::pack2<kType>(x[6], x[7]));
}

// Loads a [kRows, kCols] tile into shared memory (row pitch kCols + 8). row_ptr(r) is the byte
// address of row r, or null for a row past the end (written as zeros); each row has `cols` real
// elements and columns [cols, kCols) are written as zeros (a padded head dim). 16-bit inputs on
// 16-byte rows go through cp.async, a partial last chunk with src-size < 16 (zero-filled);
// float32 inputs and unaligned rows (`narrow`) are loaded, rounded to the MMA type and stored
// (synchronously).
template <int kRows, int kCols, int kThreads, Mma16 kType, class RowPtr>
__device__ __forceinline__ void load_tile(void* dst, RowPtr row_ptr, const void* any_valid,
                                          int cols, bool input_f32, bool narrow) {
  using T = typename MmaElement<kType>::Type;
  constexpr int kChunks = kCols / 8;  // 8 elements: 16 bytes of T, 32 of float
  constexpr int kTotal = kRows * kChunks;
  T* tile = static_cast<T*>(dst);
  if (!input_f32 && !narrow) {
#pragma unroll
    for (int base = 0; base < kTotal; base += kThreads) {
      const int idx = base + int(threadIdx.x);
      if (kTotal % kThreads != 0 && idx >= kTotal) break;
      const int r = idx / kChunks, c = idx % kChunks;
      const char* src = row_ptr(r);
      const int bytes = src ? min(max(2 * (cols - c * 8), 0), 16) : 0;
      ptx::cp_async(ptx::smem_addr(tile + r * FusedTraits::pitch(kCols) + c * 8),
                    bytes ? src + c * 16 : any_valid, bytes);
    }
    return;
  }
  // Not unrolled: the loads pass through registers while O is live, and these paths are the
  // convenience ones, not the fast one.
  const int esize = input_f32 ? 4 : 2;
#pragma unroll 1
  for (int idx = threadIdx.x; idx < kTotal; idx += kThreads) {
    const int r = idx / kChunks, c = idx % kChunks;
    const char* src = row_ptr(r);
    const int n = min(cols - c * 8, 8);
    uint4 packed = make_uint4(0, 0, 0, 0);
    if (src && n > 0)
      packed = load_chunk<kType>(src + c * 8 * esize, n, input_f32, !narrow && n == 8);
    *reinterpret_cast<uint4*>(tile + r * FusedTraits::pitch(kCols) + c * 8) = packed;
  }
}

// A K or V tile: rows j0 + r at `rows` + r * row_bytes, valid while r < valid_rows, `cols` real
// elements each. The address steps by a constant per iteration, which keeps the unrolled cp.async
// loop to few registers; a thread's chunk column is fixed, so its src-size is too.
template <int kRows, int kCols, int kThreads, Mma16 kType>
__device__ __forceinline__ void load_kv_tile(void* dst, const char* rows, int64_t row_bytes,
                                             int64_t valid_rows, int cols, bool input_f32,
                                             bool narrow) {
  constexpr int kChunks = kCols / 8;
  if (input_f32 || narrow || kThreads % kChunks != 0) {
    load_tile<kRows, kCols, kThreads, kType>(
        dst, [&](int r) { return r < valid_rows ? rows + r * row_bytes : nullptr; }, rows, cols,
        input_f32, narrow);
    return;
  }
  using T = typename MmaElement<kType>::Type;
  constexpr int kRowsPerPass = kThreads / kChunks;
  const int r0 = int(threadIdx.x) / kChunks, c = int(threadIdx.x) % kChunks;
  // Bytes of this thread's chunk inside the row; a chunk wholly past it reads nothing (its address
  // stays at the row start, which exists).
  const int bytes = min(max(2 * (cols - c * 8), 0), 16);
  if (bytes == 0) valid_rows = 0;
  const char* src = rows + r0 * row_bytes + c * 16;
  uint32_t d = ptx::smem_addr(static_cast<T*>(dst) + r0 * FusedTraits::pitch(kCols) + c * 8);
#pragma unroll 4
  for (int r = r0; r < kRows; r += kRowsPerPass) {
    ptx::cp_async(d, r < valid_rows ? src : rows, r < valid_rows ? bytes : 0);
    src += kRowsPerPass * row_bytes;
    d += kRowsPerPass * FusedTraits::pitch(kCols) * int(sizeof(T));
  }
}

// Whether this compilation pass has the FP8-cache kernels' code: they are compiled for sm_90 only
// (cvt from e4m3/e5m2 needs sm_89; keeping them out of the sm_80 pass halves their build time). The
// host runs them only where the driver picked that code (backend_cuda.cpp checks the kernel's
// arch).
__host__ __device__ constexpr bool fp8_kernels_compiled() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  return true;
#else
  return false;
#endif
}

// Two FP8 codes (the low 16 bits of `codes`, kind LONGATTN_FLOAT8_E4M3 = 3 or _E5M2 = 4) as a pair
// of the MMA type, exactly: every e4m3 and e5m2 value (NaN and infinities included) is an f16 and a
// bf16 value.
template <Mma16 kType>
__device__ __forceinline__ uint32_t fp8x2_to(uint32_t codes, int kind) {
  uint32_t h = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  const uint16_t c = static_cast<uint16_t>(codes);
  if (kind == 3)
    asm("cvt.rn.f16x2.e4m3x2 %0, %1;\n" : "=r"(h) : "h"(c));
  else
    asm("cvt.rn.f16x2.e5m2x2 %0, %1;\n" : "=r"(h) : "h"(c));
#else
  (void)codes, (void)kind;
  __trap();
#endif
  if constexpr (kType == Mma16::kF16) {
    return h;
  } else {
    const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&h));
    return ptx::pack2<kType>(f.x, f.y);
  }
}

// The scale of Q K^T: args.scale, times an FP8 cache's k_scale (of this KV head).
template <bool kFp8>
__device__ __forceinline__ float qk_scale(const FusedParams& p, int kv_head) {
  if constexpr (kFp8) {
    if (p.k_scale) return p.scale * p.k_scale[p.kv_scale_per_head ? kv_head : 0];
  }
  return p.scale;
}

// Where key j of one (batch, KV head) starts: through the batch's block table row when paged, any
// page size.
struct KvRows {
  const char* base;                    // the tensor at this KV head
  int64_t outer_stride, token_stride;  // bytes
  const int32_t* table;                // this batch's block table row, or null
  int64_t page_size, num_blocks;
  int b;
  __device__ __forceinline__ const char* row(int64_t j) const {
    if (!table) return base + b * outer_stride + j * token_stride;
    return base + pool_block(table[j / page_size], num_blocks) * outer_stride +
           (j % page_size) * token_stride;
  }
};

// A K or V tile of an FP8 cache (keys j0.., `kind`, see fp8x2_to): each 8-element chunk is 8
// codes read through registers, converted and stored as 16 bytes of the MMA type. Rows from
// valid_rows on and columns from `cols` on are zeros. A tile inside one page (or contiguous) steps
// rows by the token stride; one that crosses pages looks each row up. A thread issues up to 4
// chunks' loads before it converts any, so their latencies overlap.
template <int kRows, int kCols, int kThreads, Mma16 kType>
__device__ __forceinline__ void load_fp8_tile(void* dst, KvRows rows, int64_t j0,
                                              int64_t valid_rows, int cols, int kind) {
  using T = typename MmaElement<kType>::Type;
  constexpr int kChunks = kCols / 8, kTotal = kRows * kChunks;
  constexpr int kPer = (kTotal + kThreads - 1) / kThreads;  // chunks per thread
  constexpr int kBatch = kPer < 4 ? kPer : 4;
  T* tile = static_cast<T*>(dst);
  const bool one_page = !rows.table || j0 % rows.page_size + kRows <= rows.page_size;
  const char* first_row = rows.row(j0);
#pragma unroll 1
  for (int first = 0; first < kPer; first += kBatch) {
    uint2 codes[kBatch];
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      const int idx = (first + u) * kThreads + int(threadIdx.x);
      const int r = idx / kChunks, c = idx % kChunks, n = min(cols - c * 8, 8);
      codes[u] = make_uint2(0, 0);
      if (first + u >= kPer || idx >= kTotal || r >= valid_rows || n <= 0) continue;
      const unsigned char* src = reinterpret_cast<const unsigned char*>(
          (one_page ? first_row + r * rows.token_stride : rows.row(j0 + r)) + c * 8);
      if (n == 8 && reinterpret_cast<uintptr_t>(src) % 8 == 0) {
        codes[u] = __ldg(reinterpret_cast<const uint2*>(src));
      } else {  // a partial chunk or an unaligned row: bytes, never one past the row
        uint32_t w[2] = {0, 0};
#pragma unroll
        for (int e = 0; e < 8; ++e)
          if (e < n) w[e / 4] |= uint32_t(__ldg(src + e)) << (8 * (e % 4));
        codes[u] = make_uint2(w[0], w[1]);
      }
    }
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      const int idx = (first + u) * kThreads + int(threadIdx.x);
      if (first + u >= kPer || idx >= kTotal) continue;
      const int r = idx / kChunks, c = idx % kChunks;
      uint32_t out[4];
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const uint32_t w = e < 2 ? codes[u].x : codes[u].y, sh = 16 * (e % 2);
        out[e] = fp8x2_to<kType>(w >> sh, kind);
      }
      *reinterpret_cast<uint4*>(tile + r * FusedTraits::pitch(kCols) + c * 8) =
          make_uint4(out[0], out[1], out[2], out[3]);
    }
  }
}

// The asynchronous FP8 path (rows on 16 bytes): a tile's codes land by cp.async, 16 a chunk, at
// the end of its K (or V) region (rows kCols bytes apart), and widen_fp8_tile turns them into the
// MMA type in place once they have landed. In place is safe chunk by chunk in index order: the
// 16-bit chunks written so far end below the first code not yet read (each row grows from kCols
// to 2 kCols + 16 bytes, and the codes sit at the region's end).
template <int kRows, int kCols>
__device__ __forceinline__ constexpr uint32_t fp8_codes_offset() {
  return uint32_t(kRows) * FusedTraits::pitch(kCols) * 2 - uint32_t(kRows) * kCols;
}

template <int kRows, int kCols, int kThreads>
__device__ __forceinline__ void issue_fp8_tile(uint32_t region, KvRows rows, int64_t j0,
                                               int64_t valid_rows, int cols) {
  constexpr int kChunks = kCols / 16, kTotal = kRows * kChunks;
  const uint32_t codes = region + fp8_codes_offset<kRows, kCols>();
  const bool one_page = !rows.table || j0 % rows.page_size + kRows <= rows.page_size;
  const char* first_row = rows.row(j0);
#pragma unroll 1
  for (int idx = int(threadIdx.x); idx < kTotal; idx += kThreads) {
    const int r = idx / kChunks, c = idx % kChunks;
    const int bytes = r < valid_rows ? min(max(cols - c * 16, 0), 16) : 0;
    const char* src =
        bytes ? (one_page ? first_row + r * rows.token_stride : rows.row(j0 + r)) + c * 16
              : first_row;  // read nothing (src-size 0): zeros
    ptx::cp_async(codes + 16 * idx, src, bytes);
  }
}

template <int kRows, int kCols, int kThreads, Mma16 kType>
__device__ __forceinline__ void widen_fp8_tile(void* region, int kind) {
  using T = typename MmaElement<kType>::Type;
  constexpr int kChunks = kCols / 16, kTotal = kRows * kChunks;
  constexpr int kPer = (kTotal + kThreads - 1) / kThreads;  // chunks per thread
  constexpr int kBatch = kPer < 2 ? kPer : 2;
  const unsigned char* codes =
      static_cast<const unsigned char*>(region) + fp8_codes_offset<kRows, kCols>();
  T* tile = static_cast<T*>(region);
#pragma unroll 1
  for (int first = 0; first < kPer; first += kBatch) {
    uint4 in[kBatch];
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      const int idx = (first + u) * kThreads + int(threadIdx.x);
      in[u] = first + u < kPer && idx < kTotal ? *reinterpret_cast<const uint4*>(codes + 16 * idx)
                                               : make_uint4(0, 0, 0, 0);
    }
    __syncthreads();  // this batch's codes are read before any chunk of it is written
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      const int idx = (first + u) * kThreads + int(threadIdx.x);
      if (first + u >= kPer || idx >= kTotal) continue;
      const int r = idx / kChunks, c = idx % kChunks;
      const uint32_t w[4] = {in[u].x, in[u].y, in[u].z, in[u].w};
      uint32_t out[8];
#pragma unroll
      for (int e = 0; e < 8; ++e) out[e] = fp8x2_to<kType>(w[e / 2] >> (16 * (e % 2)), kind);
      uint4* dst = reinterpret_cast<uint4*>(tile + r * FusedTraits::pitch(kCols) + c * 16);
      dst[0] = make_uint4(out[0], out[1], out[2], out[3]);
      dst[1] = make_uint4(out[4], out[5], out[6], out[7]);
    }
    __syncthreads();  // (the last batch: the tile is whole before any warp reads it)
  }
}

// acc[mt][n] += a[mt] * B over one k = 16 step, for each of the warp's kM m-tiles: B is kN / 2
// pairs of n8 blocks, each pair one ldmatrix.x4 (.trans for V, which is stored key-major) at
// b_addr(pair).
template <Mma16 kType, bool kTransB, int kM, int kN, class BAddr>
__device__ __forceinline__ void mma_k16(float (&acc)[kM][kN][4], const uint32_t (&a)[kM][4],
                                        BAddr b_addr) {
#pragma unroll
  for (int np = 0; np < kN / 2; ++np) {
    uint32_t b[4];
    if constexpr (kTransB)
      ptx::ldmatrix_x4_trans(b, b_addr(np));
    else
      ptx::ldmatrix_x4(b, b_addr(np));
#pragma unroll
    for (int mt = 0; mt < kM; ++mt) {
      ptx::mma_16816<kType>(acc[mt][2 * np], a[mt], b[0], b[1]);
      ptx::mma_16816<kType>(acc[mt][2 * np + 1], a[mt], b[2], b[3]);
    }
  }
}

// The kernel's body; kKv: how it reads K and V tiles (KvRead), each its own instantiation so that
// the strided 16-bit kernels carry none of the other loaders' code or registers.
template <int kDqk, int kDv, Mma16 kType, bool kDecode, KvRead kKv>
__device__ __forceinline__ void fused_sm80_body(const FusedParams& p) {
  using T = typename MmaElement<kType>::Type;
  constexpr bool kFp8 = kKv == KvRead::kFp8;
  constexpr FusedTraits kT = fused_traits(kDqk, kDv, compiled_smem_class(), kDecode);
  constexpr FusedTraits kT80 = fused_traits(kDqk, kDv, SmemClass::kSm80, kDecode);
  constexpr int kThreads = kT.threads(), kSplit = kT.split, kM = kT.m_tiles;
  constexpr int kBQ = kT.block_q(), kBK = kT.block_k, kStages = kT.stages;
  constexpr int kGroupRows = kT.rows_per_group();
  constexpr int kKeysPerWarp = kBK / kSplit, kDvPerWarp = kDv / kSplit;
  constexpr int kNS = kKeysPerWarp / 8, kNO = kDvPerWarp / 8;  // n8 blocks of S and of O
  constexpr int kQP = FusedTraits::pitch(kDqk), kVP = FusedTraits::pitch(kDv);
  constexpr int kPP = FusedTraits::pitch(kBK);
  static_assert(kDqk % 16 == 0 && kNS % 2 == 0 && kNO % 2 == 0, "tiles must be 16-aligned");
  static_assert(kT.threads() == kT80.threads() && kBQ == kT80.block_q(),
                "the arch classes must share the grid");

  // Shared layout: Q [block_q][Dqk], then `stages` slots of K [block_k][Dqk] + V [block_k][Dv],
  // then (split > 1) P [block_q][block_k], row maxima and row sums [block_q][split].
  extern __shared__ __align__(16) unsigned char smem[];
  T* s_q = reinterpret_cast<T*>(smem);
  T* s_kv = s_q + kT.q_elems();
  T* s_p = s_kv + kStages * kT.stage_elems();
  float* s_max = reinterpret_cast<float*>(s_p + kT.p_elems());
  float* s_sum = s_max + kBQ * kSplit;

  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int group = warp / kSplit, part = warp % kSplit;
  const int g = p.group;
  const int64_t rows = int64_t(p.q_len) * g;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  // Launched as a programmatic dependent (decode, launch_cuda.cpp), the block may start while the
  // kernel before it drains: nothing is read or written before that kernel's results are visible.
  // (A no-op for an ordinary launch.)
  asm volatile("griddepcontrol.wait;" ::: "memory");
  // split_kv: let the merge kernel, launched as a programmatic dependent (launch_cuda.cpp), be
  // scheduled now; it waits (griddepcontrol.wait) until this grid has finished and flushed.
  if (p.splits > 1) asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
  // This block's work item (x: query tile and split, then the head, then the batch) and its band.
  const WorkTile wt = work_tile(
      p, (int64_t(blockIdx.z) * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x, kBQ, kBK);
  const int kv_head = wt.kv_head, b = wt.b, split = wt.split;
  const int64_t row0 = wt.row0, i_first = wt.i_first, i_last = wt.i_last;
  const int t_begin = wt.t_begin, n_tiles = wt.n_tiles;
  const int64_t off = int64_t(p.kv_len) - p.q_len;
  const bool input_f32 = p.input_f32 != 0, narrow = p.narrow_rows != 0;
  const int esize = input_f32 ? 4 : 2, kv_esize = kFp8 ? 1 : esize;
  // V read from K's tile needs K's row pitch, so a kernel padded to unequal dims loads V apart.
  // Only the row-lookup list pads equal dims to an unequal pair (576/512; the others hold 512/512,
  // a test checks it), so only the row kernels test the dims (with the flag held in a register);
  // the others read p.kv_shared where used (a hoisted copy changes ptxas's register allocation of
  // every strided kernel).
  const bool rows_kv_shared = kDqk == kDv && p.kv_shared != 0;
  auto kv_shared = [&] {
    if constexpr (kKv == KvRead::kPagedRows) return rows_kv_shared;
    return p.kv_shared != 0;
  };

  const char* q_bytes = static_cast<const char*>(p.q);
  // First row of the key tile at j0 in a K or V tensor (through the block table when paged).
  auto tile_rows = [&](const void* base, const int64_t* stride, int64_t j0) {
    int64_t outer = b, slot = j0;
    if (p.block_table) {
      outer = pool_block(p.block_table[b * p.block_table_stride + j0 / p.page_size], p.num_blocks);
      slot = j0 % p.page_size;
    }
    return static_cast<const char*>(base) +
           (outer * stride[0] + int64_t(kv_head) * stride[1] + slot * stride[2]) * kv_esize;
  };
  // Where the rows of a K or V tensor are, for this (batch, KV head): the row lookups.
  auto rows_of = [&](const void* base, const int64_t* stride) {
    return KvRows{static_cast<const char*>(base) + int64_t(kv_head) * stride[1] * kv_esize,
                  stride[0] * kv_esize,
                  stride[2] * kv_esize,
                  p.block_table ? p.block_table + b * p.block_table_stride : nullptr,
                  p.page_size,
                  p.num_blocks,
                  b};
  };
  auto load_kv = [&](int tile, int slot) {
    const int64_t j0 = int64_t(t_begin + tile) * kBK;
    T* s_k = s_kv + slot * kT.stage_elems();
    if constexpr (kKv == KvRead::kPagedRows) {  // pages split the key tile: rows one by one
      const KvRows k_rows = rows_of(p.k, p.k_stride), v_rows = rows_of(p.v, p.v_stride);
      load_tile<kBK, kDqk, kThreads, kType>(
          s_k, [&](int r) { return j0 + r < p.kv_len ? k_rows.row(j0 + r) : nullptr; },
          k_rows.row(j0), p.head_dim_qk, input_f32, narrow);
      if (!kv_shared())
        load_tile<kBK, kDv, kThreads, kType>(
            s_k + kT.k_elems(),
            [&](int r) { return j0 + r < p.kv_len ? v_rows.row(j0 + r) : nullptr; }, v_rows.row(j0),
            p.head_dim_v, input_f32, narrow);
      return;
    }
    if constexpr (kFp8) {
      if (p.kv_fp8_async) {  // widened by widen_fp8_tile in the tile's iteration
        issue_fp8_tile<kBK, kDqk, kThreads>(ptx::smem_addr(s_k), rows_of(p.k, p.k_stride), j0,
                                            p.kv_len - j0, p.head_dim_qk);
        if (!kv_shared())
          issue_fp8_tile<kBK, kDv, kThreads>(ptx::smem_addr(s_k + kT.k_elems()),
                                             rows_of(p.v, p.v_stride), j0, p.kv_len - j0,
                                             p.head_dim_v);
        return;
      }
      load_fp8_tile<kBK, kDqk, kThreads, kType>(s_k, rows_of(p.k, p.k_stride), j0, p.kv_len - j0,
                                                p.head_dim_qk, p.kv_fp8);
      if (!kv_shared())
        load_fp8_tile<kBK, kDv, kThreads, kType>(s_k + kT.k_elems(), rows_of(p.v, p.v_stride), j0,
                                                 p.kv_len - j0, p.head_dim_v, p.kv_fp8);
      return;
    }
    load_kv_tile<kBK, kDqk, kThreads, kType>(s_k, tile_rows(p.k, p.k_stride, j0),
                                             p.k_stride[2] * esize, p.kv_len - j0, p.head_dim_qk,
                                             input_f32, narrow);
    if (!kv_shared())
      load_kv_tile<kBK, kDv, kThreads, kType>(s_k + kT.k_elems(), tile_rows(p.v, p.v_stride, j0),
                                              p.v_stride[2] * esize, p.kv_len - j0, p.head_dim_v,
                                              input_f32, narrow);
  };

  // Prologue: Q and the first tiles in flight (Q rides in the first group).
  load_tile<kBQ, kDqk, kThreads, kType>(
      s_q,
      [&](int r) -> const char* {
        const int64_t R = row0 + r;
        if (R >= rows) return nullptr;
        const int64_t head = int64_t(kv_head) * g + R % g;
        return q_bytes +
               (b * p.q_stride[0] + head * p.q_stride[1] + (R / g) * p.q_stride[2]) * esize;
      },
      p.q, p.head_dim_qk, input_f32, narrow);
  constexpr int kPrologue = kStages > 1 ? kStages - 1 : 1;
#pragma unroll
  for (int s = 0; s < kPrologue; ++s) {
    if (s < n_tiles) load_kv(s, s);
    ptx::cp_async_commit();
  }

  // This thread's rows: MMA fragment rows lane/4 and lane/4 + 8 of each m-tile.
  int row_i[kM][2], row_head[kM][2];
#pragma unroll
  for (int mt = 0; mt < kM; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t R = row0 + group * kGroupRows + mt * 16 + h * 8 + lane / 4;
      row_i[mt][h] = R < rows ? int(R / g) : p.q_len;  // q_len marks a padding row
      row_head[mt][h] = kv_head * g + int(R % g);
    }

  float o[kM][kNO][4];
  float m[kM][2], l[kM][2];
#pragma unroll
  for (int mt = 0; mt < kM; ++mt) {
#pragma unroll
    for (int n = 0; n < kNO; ++n) o[mt][n][0] = o[mt][n][1] = o[mt][n][2] = o[mt][n][3] = 0.f;
    m[mt][0] = m[mt][1] = -CUDART_INF_F;
    l[mt][0] = l[mt][1] = 0.f;
  }

  // Per-lane ldmatrix addresses (bytes); the loops below add compile-time offsets.
  const uint32_t q_lane =
      ptx::smem_addr(s_q) + ((group * kGroupRows + lane % 16) * kQP + (lane / 16) * 8) * 2;
  const uint32_t k_lane =
      ((part * kKeysPerWarp + lane % 8 + (lane / 16) * 8) * kQP + ((lane / 8) % 2) * 8) * 2;
  const uint32_t v_lane =
      ((lane % 8 + ((lane / 8) % 2) * 8) * kVP + part * kDvPerWarp + (lane / 16) * 8) * 2;
  const uint32_t p_lane =
      ptx::smem_addr(s_p) + ((group * kGroupRows + lane % 16) * kPP + (lane / 16) * 8) * 2;
  // An FP8 cache's k_scale joins the score scale (its v_scale, O's factor in the epilogue).
  const float scale_log2 = qk_scale<kFp8>(p, kv_head) * kLog2e;

  for (int t = 0; t < n_tiles; ++t) {
    if constexpr (kStages > 1) {
      ptx::cp_async_wait<kStages - 2>();  // tile t has landed
      __syncthreads();                    // ... for all threads; tile t-1's slot is free
      if (t + kStages - 1 < n_tiles) load_kv(t + kStages - 1, (t + kStages - 1) % kStages);
      ptx::cp_async_commit();
    } else {
      if (t > 0) {
        __syncthreads();  // every warp is done with the only slot
        load_kv(t, 0);
        ptx::cp_async_commit();
      }
      ptx::cp_async_wait<0>();
      __syncthreads();
    }
    if constexpr (kFp8) {
      if (p.kv_fp8_async) {
        T* slot = s_kv + (t % kStages) * kT.stage_elems();
        widen_fp8_tile<kBK, kDqk, kThreads, kType>(slot, p.kv_fp8);
        if (!kv_shared()) widen_fp8_tile<kBK, kDv, kThreads, kType>(slot + kT.k_elems(), p.kv_fp8);
      }
    }
    const T* s_k = s_kv + (t % kStages) * kT.stage_elems();
    const uint32_t k_base = ptx::smem_addr(s_k);
    const uint32_t v_base = kv_shared() ? k_base : ptx::smem_addr(s_k + kT.k_elems());
    const int64_t j0 = int64_t(t_begin + t) * kBK;

    // S = Q K^T for this warp's rows and keys.
    float s[kM][kNS][4];
#pragma unroll
    for (int mt = 0; mt < kM; ++mt)
#pragma unroll
      for (int n = 0; n < kNS; ++n) s[mt][n][0] = s[mt][n][1] = s[mt][n][2] = s[mt][n][3] = 0.f;
#pragma unroll
    for (int ks = 0; ks < kDqk / 16; ++ks) {
      uint32_t qa[kM][4];
#pragma unroll
      for (int mt = 0; mt < kM; ++mt)
        ptx::ldmatrix_x4(qa[mt], q_lane + (mt * 16 * kQP + ks * 16) * 2);
      mma_k16<kType, false>(
          s, qa, [&](int np) { return k_base + k_lane + (np * 16 * kQP + ks * 16) * 2; });
    }

    // Scores in log2 units. Tiles inside every row's band, with no softcap or mask, only scale.
    const bool plain = j0 + kBK <= p.kv_len && (!p.causal || j0 + kBK - 1 <= i_first + off) &&
                       (p.window_left < 0 || j0 >= i_last + off - p.window_left) &&
                       p.mask_kind == 0 && p.softcap == 0.f;
    if (plain) {
#pragma unroll
      for (int mt = 0; mt < kM; ++mt)
#pragma unroll
        for (int n = 0; n < kNS; ++n)
#pragma unroll
          for (int e = 0; e < 4; ++e) s[mt][n][e] *= scale_log2;
    } else {
      const bool elementwise = p.mask_kind != 0 || p.softcap > 0.f;
      const float scale = qk_scale<kFp8>(p, kv_head);
#pragma unroll
      for (int mt = 0; mt < kM; ++mt)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          // The row's visible keys as tile columns [c_lo, c_hi): bounds, causal, window.
          const int64_t i = row_i[mt][h];
          int64_t lo_j = 0, hi_j = i < p.q_len ? p.kv_len : 0;
          if (p.causal) hi_j = min(hi_j, i + off + 1);
          if (p.window_left >= 0) lo_j = max(lo_j, i + off - p.window_left);
          const int c_lo = int(min(max(lo_j - j0, int64_t(0)), int64_t(kBK)));
          const int c_hi = int(min(max(hi_j - j0, int64_t(0)), int64_t(kBK)));
          const int64_t mask_row =
              b * p.mask_stride[0] + row_head[mt][h] * p.mask_stride[1] + i * p.mask_stride[2];
#pragma unroll
          for (int n = 0; n < kNS; ++n)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              const int col = part * kKeysPerWarp + n * 8 + 2 * (lane % 4) + e;
              float& x = s[mt][n][2 * h + e];
              if (col < c_lo || col >= c_hi) {
                x = -CUDART_INF_F;
              } else if (elementwise) {
                x = capped_masked<true>(p, x * scale, mask_row + (j0 + col) * p.mask_stride[3]) *
                    kLog2e;
              } else {
                x *= scale_log2;
              }
            }
        }
    }

    // Online softmax: new row max (over the row group's warps when split), rescale O and l.
    float mx[kM][2];
#pragma unroll
    for (int mt = 0; mt < kM; ++mt)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float v = -CUDART_INF_F;
#pragma unroll
        for (int n = 0; n < kNS; ++n) v = fmaxf(v, fmaxf(s[mt][n][2 * h], s[mt][n][2 * h + 1]));
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
        mx[mt][h] = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
      }
    if constexpr (kSplit > 1) {
      if (lane % 4 == 0)
#pragma unroll
        for (int mt = 0; mt < kM; ++mt)
#pragma unroll
          for (int h = 0; h < 2; ++h)
            s_max[(group * kGroupRows + mt * 16 + h * 8 + lane / 4) * kSplit + part] = mx[mt][h];
      ptx::named_barrier(1 + group, 32 * kSplit);
#pragma unroll
      for (int mt = 0; mt < kM; ++mt)
#pragma unroll
        for (int h = 0; h < 2; ++h)
#pragma unroll
          for (int w = 0; w < kSplit; ++w)
            mx[mt][h] = fmaxf(
                mx[mt][h], s_max[(group * kGroupRows + mt * 16 + h * 8 + lane / 4) * kSplit + w]);
    }
#pragma unroll
    for (int mt = 0; mt < kM; ++mt)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const float m_new = fmaxf(m[mt][h], mx[mt][h]);
        // A row with nothing visible yet keeps m = -inf; subtracting 0 keeps exp2 at 0, not NaN.
        const float base = m_new == -CUDART_INF_F ? 0.f : m_new;
        const float corr = ptx::exp2_approx(m[mt][h] - base);
        m[mt][h] = m_new;
        l[mt][h] *= corr;
#pragma unroll
        for (int n = 0; n < kNO; ++n) o[mt][n][2 * h] *= corr, o[mt][n][2 * h + 1] *= corr;
#pragma unroll
        for (int n = 0; n < kNS; ++n) {
          s[mt][n][2 * h] = ptx::exp2_approx(s[mt][n][2 * h] - base);
          s[mt][n][2 * h + 1] = ptx::exp2_approx(s[mt][n][2 * h + 1] - base);
          l[mt][h] += s[mt][n][2 * h] + s[mt][n][2 * h + 1];
        }
      }

    // O += P V. The S accumulator layout is the A-fragment layout, so P stays in registers unless
    // the row group split its keys across warps.
    if constexpr (kSplit == 1) {
#pragma unroll
      for (int kk = 0; kk < kNS / 2; ++kk) {
        uint32_t pa[kM][4];
#pragma unroll
        for (int mt = 0; mt < kM; ++mt) {
          pa[mt][0] = ptx::pack2<kType>(s[mt][2 * kk][0], s[mt][2 * kk][1]);
          pa[mt][1] = ptx::pack2<kType>(s[mt][2 * kk][2], s[mt][2 * kk][3]);
          pa[mt][2] = ptx::pack2<kType>(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
          pa[mt][3] = ptx::pack2<kType>(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
        }
        mma_k16<kType, true>(
            o, pa, [&](int np) { return v_base + v_lane + (kk * 16 * kVP + np * 16) * 2; });
      }
    } else {
#pragma unroll
      for (int mt = 0; mt < kM; ++mt)
#pragma unroll
        for (int n = 0; n < kNS; ++n)
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int row = group * kGroupRows + mt * 16 + h * 8 + lane / 4;
            const int col = part * kKeysPerWarp + n * 8 + 2 * (lane % 4);
            *reinterpret_cast<uint32_t*>(s_p + row * kPP + col) =
                ptx::pack2<kType>(s[mt][n][2 * h], s[mt][n][2 * h + 1]);
          }
      ptx::named_barrier(1 + group, 32 * kSplit);
#pragma unroll
      for (int kk = 0; kk < kBK / 16; ++kk) {
        uint32_t pa[kM][4];
#pragma unroll
        for (int mt = 0; mt < kM; ++mt)
          ptx::ldmatrix_x4(pa[mt], p_lane + (mt * 16 * kPP + kk * 16) * 2);
        mma_k16<kType, true>(
            o, pa, [&](int np) { return v_base + v_lane + (kk * 16 * kVP + np * 16) * 2; });
      }
    }
  }
  ptx::cp_async_wait<0>();  // nothing may land in shared memory after the block exits

  // Epilogue: full row sums, sinks, 1/l, LSE; each thread stores its fragment columns.
#pragma unroll
  for (int mt = 0; mt < kM; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      l[mt][h] += __shfl_xor_sync(0xffffffffu, l[mt][h], 1);
      l[mt][h] += __shfl_xor_sync(0xffffffffu, l[mt][h], 2);
    }
  if constexpr (kSplit > 1) {
    if (lane % 4 == 0)
#pragma unroll
      for (int mt = 0; mt < kM; ++mt)
#pragma unroll
        for (int h = 0; h < 2; ++h)
          s_sum[(group * kGroupRows + mt * 16 + h * 8 + lane / 4) * kSplit + part] = l[mt][h];
    ptx::named_barrier(1 + group, 32 * kSplit);
#pragma unroll
    for (int mt = 0; mt < kM; ++mt)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float sum = 0.f;
#pragma unroll
        for (int w = 0; w < kSplit; ++w)
          sum += s_sum[(group * kGroupRows + mt * 16 + h * 8 + lane / 4) * kSplit + w];
        l[mt][h] = sum;
      }
  }
#pragma unroll
  for (int mt = 0; mt < kM; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int i = row_i[mt][h], head = row_head[mt][h];
      if (i >= p.q_len) continue;
      float inv, lse;
      finish_row(p, head, m[mt][h], l[mt][h], &inv, &lse);
      if constexpr (kFp8) {
        if (p.v_scale) inv *= p.v_scale[p.kv_scale_per_head ? kv_head : 0];
      }
      const int64_t row = (int64_t(b) * p.q_heads + head) * p.q_len + i;  // [B, Hq, Lq]
      if (p.splits > 1) {
        // A partial result over this block's keys, float32; merge_kernel adds sinks and combines.
        const int64_t part_row = int64_t(split) * p.batch * p.q_heads * p.q_len + row;
        // Rows of the real head_dim_v (the memory model's size), so an odd one stores singly.
        char* o_row = reinterpret_cast<char*>(p.o_part + part_row * p.head_dim_v);
#pragma unroll
        for (int n = 0; n < kNO; ++n)
          store_o_pair<kType>(o_row, part * kDvPerWarp + n * 8 + 2 * (lane % 4), p.head_dim_v,
                              o[mt][n][2 * h] * inv, o[mt][n][2 * h + 1] * inv, true,
                              p.head_dim_v % 2 == 0);
        if (lane % 4 == 0 && part == 0) p.lse_part[part_row] = lse;
        continue;
      }
      char* o_row = static_cast<char*>(p.o) +
                    (b * p.o_stride[0] + head * p.o_stride[1] + int64_t(i) * p.o_stride[2]) * esize;
#pragma unroll
      for (int n = 0; n < kNO; ++n)
        store_o_pair<kType>(o_row, part * kDvPerWarp + n * 8 + 2 * (lane % 4), p.head_dim_v,
                            o[mt][n][2 * h] * inv, o[mt][n][2 * h + 1] * inv, input_f32,
                            p.o_paired != 0);
      if (p.lse && lane % 4 == 0 && part == 0) p.lse[row] = lse;
    }
}

template <int kDqk, int kDv, Mma16 kType, bool kDecode, KvRead kKv>
__global__ void __launch_bounds__(fused_traits(kDqk, kDv, SmemClass::kSm80, kDecode).threads())
    fused_sm80_kernel(const FusedParams p) {
  if constexpr (kKv == KvRead::kFp8 && !fp8_kernels_compiled())
    __trap();  // never launched (see fp8_kernels_compiled)
  else
    fused_sm80_body<kDqk, kDv, kType, kDecode, kKv>(p);
}

// What the driver says about one kernel on `device`, and the shared-memory opt-in it needs.
template <int kDqk, int kDv, Mma16 kType, bool kDecode, KvRead kKv>
cudaError_t query_fused_kernel(int device, FusedKernelInfo* info) {
  auto kernel = fused_sm80_kernel<kDqk, kDv, kType, kDecode, kKv>;
  cudaFuncAttributes attr;
  cudaError_t e = cudaFuncGetAttributes(&attr, kernel);
  if (e != cudaSuccess) return e;
  // The traits follow the code the driver picked for this device, not the device itself: an
  // sm_90 GPU running PTX compiled for sm_80 runs the sm_80 tile shapes.
  info->arch = attr.ptxVersion;
  info->traits =
      fused_traits(kDqk, kDv, attr.ptxVersion >= 90 ? SmemClass::kSm90 : SmemClass::kSm80, kDecode);
  info->smem_bytes = info->traits.smem_bytes();
  info->regs = attr.numRegs;
  info->local_bytes = int(attr.localSizeBytes);
  int optin = 0;
  if ((e = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device)) !=
      cudaSuccess)
    return e;
  info->blocks_per_sm = 0;
  if (info->smem_bytes > optin) return cudaSuccess;  // the caller reports it as unsupported
  if ((e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                int(info->smem_bytes))) != cudaSuccess)
    return e;
  return cudaOccupancyMaxActiveBlocksPerMultiprocessor(
      &info->blocks_per_sm, kernel, info->traits.threads(), size_t(info->smem_bytes));
}

template <int kDqk, int kDv, Mma16 kType, bool kDecode, KvRead kKv>
struct FusedQuery {
  static cudaError_t query(int device, FusedKernelInfo* info) {
    return query_fused_kernel<kDqk, kDv, kType, kDecode, kKv>(device, info);
  }
};
template <int kDqk, int kDv, Mma16 kType, bool kDecode, KvRead kKv>
using FusedInfoCache = KernelInfoCache<FusedQuery<kDqk, kDv, kType, kDecode, kKv>>;

template <int kDqk, int kDv, Mma16 kType, bool kDecode, KvRead kKv>
cudaError_t FusedInstance<kDqk, kDv, kType, kDecode, kKv>::info(FusedKernelInfo* info) {
  return FusedInfoCache<kDqk, kDv, kType, kDecode, kKv>::get().lookup(info);
}

template <int kDqk, int kDv, Mma16 kType, bool kDecode, KvRead kKv>
cudaError_t FusedInstance<kDqk, kDv, kType, kDecode, kKv>::launch(const FusedParams& p,
                                                                  cudaStream_t stream,
                                                                  bool programmatic) {
  auto& cache = FusedInfoCache<kDqk, kDv, kType, kDecode, kKv>::get();
  cudaError_t e = cudaSuccess;
  for (int attempt = 0; attempt < 2; ++attempt) {
    FusedKernelInfo ki;
    if ((e = cache.lookup(&ki)) != cudaSuccess) return e;
    if (ki.blocks_per_sm == 0) return cudaErrorInvalidConfiguration;
    const int64_t tiles =
        (int64_t(p.q_len) * p.group + ki.traits.block_q() - 1) / ki.traits.block_q();
    // work_tile numbers the items in 32 bits.
    if (p.splits < 1 || tiles * p.splits * p.kv_heads * p.batch > 0x7fffffff ||
        p.kv_heads > 65535 || p.batch > 65535)
      return cudaErrorInvalidValue;
    const dim3 grid(unsigned(tiles * p.splits), unsigned(p.kv_heads), unsigned(p.batch));
    const LaunchConfig lc(grid, dim3(unsigned(ki.traits.threads())), size_t(ki.smem_bytes), stream,
                          programmatic);
    if ((e = cudaLaunchKernelEx(&lc.config, fused_sm80_kernel<kDqk, kDv, kType, kDecode, kKv>,
                                p)) == cudaSuccess)
      return e;
    cudaGetLastError();
    cache.forget();  // query again (and set the opt-in again) before the one retry
  }
  return e;
}

}  // namespace longattn::cuda
