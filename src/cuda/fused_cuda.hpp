// The CUDA fused prefill kernel as the host sees it: its parameters and entry points. Host C++
// (backend_cuda.cpp, tests) includes this; only the instantiation files include the kernel.
#pragma once

#include <cuda.h>  // CUtensorMap (a plain struct; the driver is reached through the runtime)
#include <cuda_runtime_api.h>

#include <cstdint>

#include "core/numeric.hpp"  // is_fp8
#include "cuda/fused_traits_cuda.hpp"
#include "cuda/score_fields_cuda.hpp"
#include "longattn/longattn.h"

namespace longattn::cuda {

// The 16-bit type the tensor cores multiply. float32 inputs run on the bf16 kernel: each tile is
// rounded to bf16 as it is loaded (bf16 keeps float32's range, so nothing overflows).
enum class Mma16 : int { kBf16 = 0, kF16 = 1 };

// How a portable kernel reads its K and V tiles, each way its own instantiation. kTiles: 16-bit or
// float32 rows a stride apart (contiguous K/V, or pages that hold whole key tiles). kPagedRows: the
// same rows looked up one by one in the block table (pages that split the key tile); a fallback,
// compiled with the prefill tiles only, which decode shapes run too. kFp8: an FP8 cache's codes
// (FusedParams::kv_fp8; rows looked up where a tile crosses pages).
enum class KvRead : int { kTiles = 0, kPagedRows = 1, kFp8 = 2 };

// Everything the kernel reads, in elements unless named bytes. Plain data, passed by value.
struct FusedParams {
  const void* q;
  const void* k;
  const void* v;
  void* o;
  float* lse;  // [batch, q_heads, q_len] contiguous, or null
  int64_t q_stride[3], k_stride[3], v_stride[3], o_stride[3];  // batch, head, token
  int32_t batch, q_heads, kv_heads, group;                     // group = q_heads / kv_heads
  int32_t q_len, kv_len;
  // The real head dims; the kernel's (compile-time) dims may be larger: padded columns are zeros
  // in shared memory and never written to O.
  int32_t head_dim_qk, head_dim_v;
  int32_t input_f32;    // q, k, v, o are float32 (converted per tile); else the Mma16 type
  int32_t narrow_rows;  // some Q, K or V row does not start on 16 bytes: loads go through registers
  int32_t o_paired;     // every O row starts on two elements: column pairs stored as one
  int32_t kv_shared;    // v is k: load each tile once and read it as both
  float scale;          // natural-log units
  float softcap;        // 0: off
  int32_t causal;       // bottom-right aligned
  int64_t window_left;  // -1: none
  const float* sinks;   // [q_heads] or null
  int32_t mask_kind;    // longattn_mask_kind
  const void* mask;
  int64_t mask_stride[4];  // b, h, i, j; 0 where the mask broadcasts
  // split_kv: each row's visible tiles are shared among `splits` blocks, which write float32
  // partials o_part [splits, B, Hq, Lq, Dv] and lse_part [splits, B, Hq, Lq] (no sinks) for
  // merge_kernel. splits == 1: the blocks write O and LSE themselves.
  int32_t splits;
  float* o_part;
  float* lse_part;
  // Paged K/V (see longattn_args): token j of batch b is in block
  // block_table[b * block_table_stride + j / page_size]. The portable kernel steps a key tile's
  // rows by the token stride where page_size is a multiple of block_k (a tile inside one block),
  // else looks each row up (KvRead::kPagedRows); the sm90a kernel loads K/V tiles in TMA
  // boxes of kv_box_rows rows, gcd(page_size, block_k) (block_k when contiguous). Ids outside
  // [0, num_blocks) read block 0 (pool_block).
  const int32_t* block_table;
  int64_t block_table_stride, page_size, num_blocks;
  int32_t kv_box_rows;
  // An FP8 KV cache (LONGATTN_FLOAT8_E4M3 or _E5M2; 0: K and V are the input type), portable
  // kernel only: one-byte elements (strides still count elements), converted exactly to the MMA
  // type; k_scale folds into the score scale and v_scale into O's factor, per KV head when
  // kv_scale_per_head (null: 1).
  int32_t kv_fp8;
  int32_t kv_scale_per_head;
  const float* k_scale;
  const float* v_scale;
  int32_t mask_unaligned;  // an additive mask off 4 bytes: portable kernel only, read bytewise
  int32_t kv_fp8_async;    // an FP8 cache whose rows start on 16 bytes: codes land by cp.async
};

// Whether every row of a [outer, heads, len, dim] tensor starts on a multiple of `bytes`: the
// base and every stride of an axis longer than 1 (a paged K/V steps its outer stride between
// blocks and its token stride within a page).
inline bool rows_aligned(const void* base, const longattn_strides& s, int64_t outer, int64_t heads,
                         int64_t len, int64_t elem_bytes, int64_t bytes) {
  if (reinterpret_cast<uintptr_t>(base) % uint64_t(bytes) != 0) return false;
  const int64_t axes[3][2] = {{s.batch, outer}, {s.head, heads}, {s.token, len}};
  for (const auto& x : axes)
    if (x[1] > 1 && (x[0] * elem_bytes) % bytes != 0) return false;
  return true;
}

// Which of Q, K, V, O have every row on `bytes` (0: q, 1: k, 2: v, 3: o).
inline bool tensor_rows_aligned(const longattn_args& a, int which, int64_t bytes) {
  const int64_t es = a.dtype == LONGATTN_FLOAT32 ? 4 : 2;
  const int64_t kv_es = numeric::is_fp8(a.kv_dtype) ? 1 : es;
  const bool paged = a.block_table != nullptr;
  const int64_t kv_outer = paged ? a.num_blocks : a.batch,
                kv_tokens = paged ? a.page_size : a.kv_len;
  switch (which) {
    case 0:
      return rows_aligned(a.q, a.q_strides, a.batch, a.q_heads, a.q_len, es, bytes);
    case 1:
      return rows_aligned(a.k, a.k_strides, kv_outer, a.kv_heads, kv_tokens, kv_es, bytes);
    case 2:
      return rows_aligned(a.v, a.v_strides, kv_outer, a.kv_heads, kv_tokens, kv_es, bytes);
    default:
      return rows_aligned(a.o, a.o_strides, a.batch, a.q_heads, a.q_len, es, bytes);
  }
}

// The kernel's view of validated args (shared by the backend and the standalone GPU test).
inline FusedParams make_fused_params(const longattn_args& a) {
  FusedParams p{};
  p.q = a.q, p.k = a.k, p.v = a.v, p.o = a.o, p.lse = a.lse;
  const longattn_strides* from[4] = {&a.q_strides, &a.k_strides, &a.v_strides, &a.o_strides};
  int64_t* to[4] = {p.q_stride, p.k_stride, p.v_stride, p.o_stride};
  for (int t = 0; t < 4; ++t) {
    to[t][0] = from[t]->batch, to[t][1] = from[t]->head, to[t][2] = from[t]->token;
  }
  p.batch = int32_t(a.batch), p.q_heads = int32_t(a.q_heads), p.kv_heads = int32_t(a.kv_heads);
  p.group = int32_t(a.q_heads / a.kv_heads);
  p.q_len = int32_t(a.q_len), p.kv_len = int32_t(a.kv_len);
  p.head_dim_qk = int32_t(a.head_dim_qk), p.head_dim_v = int32_t(a.head_dim_v);
  p.input_f32 = a.dtype == LONGATTN_FLOAT32;
  // (An FP8 cache's K and V have a loader of their own.)
  p.narrow_rows = !(tensor_rows_aligned(a, 0, 16) &&
                    (numeric::is_fp8(a.kv_dtype) ||
                     (tensor_rows_aligned(a, 1, 16) && tensor_rows_aligned(a, 2, 16))));
  p.o_paired = tensor_rows_aligned(a, 3, 2 * (p.input_f32 ? 4 : 2));
  p.kv_shared = a.k == a.v && a.head_dim_qk == a.head_dim_v &&
                a.k_strides.batch == a.v_strides.batch && a.k_strides.head == a.v_strides.head &&
                a.k_strides.token == a.v_strides.token;
  set_score_fields(a, &p);
  p.splits = 1;
  p.block_table = a.block_table;
  p.block_table_stride = a.block_table_stride;
  p.page_size = a.page_size;
  p.num_blocks = a.num_blocks;
  p.mask_unaligned =
      a.mask.kind == LONGATTN_MASK_ADDITIVE && reinterpret_cast<uintptr_t>(a.mask.data) % 4 != 0;
  if (numeric::is_fp8(a.kv_dtype)) {
    p.kv_fp8 = a.kv_dtype, p.kv_scale_per_head = a.kv_scale_per_head;
    p.k_scale = a.k_scale, p.v_scale = a.v_scale;
    p.kv_fp8_async = tensor_rows_aligned(a, 1, 16) && tensor_rows_aligned(a, 2, 16);
  }
  return p;
}

inline Mma16 mma_type_for(int32_t dtype) {
  return dtype == LONGATTN_FLOAT16 ? Mma16::kF16 : Mma16::kBf16;
}

// What one compiled kernel is on the current device: the traits of the arch its code was built
// for (which the launch must use), shared memory, registers and spills, as the driver reports.
struct FusedKernelInfo {
  int family = 80;      // 80: the portable kernel (fused_kernel_sm80.cuh); 90: the sm_90a kernel
  bool decode = false;  // family 80: the decode tile shapes (fused_use_decode)
  KvRead kv_read = KvRead::kTiles;            // family 80: its K/V loader
  int head_dim_qk = 0, head_dim_v = 0;        // the compiled dims: the real ones, padded
  int block_q = 0, block_k = 0, threads = 0;  // packed query rows and keys per tile, per block
  FusedTraits traits;                         // family 80 only
  int64_t smem_bytes = 0;
  int regs = 0;
  int local_bytes = 0;            // spills: should be 0
  int arch = 0;                   // 80, 90, ...: the virtual arch of the code the driver runs
  int blocks_per_sm = 0;          // occupancy; 0 when the device's shared memory is too small
  int sm_count = 0;               // the device's multiprocessors (sm_90a kernel only)
  int* sched_counters = nullptr;  // the persistent schedule's counters (sm_90a kernel only)
};

// One compiled kernel; the generated files in instantiations/ instantiate it. kDecode selects the
// decode tile shapes (fused_traits).
template <int kDqk, int kDv, Mma16 kType, bool kDecode, KvRead kKv = KvRead::kTiles>
struct FusedInstance {
  static cudaError_t info(FusedKernelInfo* info);
  // programmatic: launch as a programmatic dependent of the kernel before it on the stream (sm_90+)
  static cudaError_t launch(const FusedParams& p, cudaStream_t stream, bool programmatic);
};

// One compiled sm_90a kernel (fused_kernel_sm90.cuh); the tensor maps describe K and V for TMA.
template <int kDqk, int kDv, Mma16 kType>
struct Sm90Instance {
  static cudaError_t info(FusedKernelInfo* info);
  static cudaError_t launch(const FusedParams& p, const CUtensorMap& k_map,
                            const CUtensorMap& v_map, cudaStream_t stream);
};

// The persistent sm_90a schedule's counter pair for launches on `stream` on the current device
// (launch_cuda.cpp): a slot of its own per stream, or -1 (the launch runs one item per block)
// while the stream is being captured into a graph (a graph may be replayed on another stream,
// alongside this one) or once every slot is taken.
constexpr int kSchedCounterSlots = 256;
int sched_counter_slot(cudaStream_t stream);

// Dispatch over the compiled (head_dim_qk, head_dim_v) pairs (fused_dispatch_cuda.cpp).
// fused_padded_head_dims: the compiled pair that runs real head dims (dqk, dv) with K/V read as
// `kv`, the cheapest with both dims at least as wide; false when none is (dims over 576/512).
// fused_kernel_info and fused_launch take the real dims and use this pair.
bool fused_padded_head_dims(int64_t dqk, int64_t dv, int* pad_qk, int* pad_v,
                            KvRead kv = KvRead::kTiles);
const char* fused_head_dims_list();  // "64/64, 80/80, ..." for messages
cudaError_t fused_kernel_info(int dqk, int dv, Mma16 type, bool decode, KvRead kv,
                              FusedKernelInfo* info);
cudaError_t fused_launch(int dqk, int dv, Mma16 type, bool decode, KvRead kv, const FusedParams& p,
                         cudaStream_t stream, bool programmatic = false);
// The same for the sm_90a kernels (fused_sm90_head_dims.inc); the sm90 entry points below take
// the real dims too.
bool fused_sm90_padded_head_dims(int64_t dqk, int64_t dv, int* pad_qk, int* pad_v);
cudaError_t fused_sm90_kernel_info(int dqk, int dv, Mma16 type, FusedKernelInfo* info);
cudaError_t fused_sm90_launch(int dqk, int dv, Mma16 type, const FusedParams& p,
                              const CUtensorMap& k_map, const CUtensorMap& v_map,
                              cudaStream_t stream);
// Whether the decode shapes serve these args: few query rows per KV head.
inline bool fused_use_decode(const longattn_args& a) {
  return a.q_len * (a.q_heads / a.kv_heads) <= kDecodeRows;
}

}  // namespace longattn::cuda
