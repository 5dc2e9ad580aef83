// The unfused CUDA path, what runtimes without a fused kernel do: S = Q K^T materialized in
// float32 by a batched cuBLAS GEMM, a softmax kernel with every mask feature writing P in the
// input dtype, then O = P V by a second batched GEMM. Any head dim, any strides, any base
// alignment and paged K/V; transient memory grows with q_len x kv_len (README.md, "Paths and the
// router").
//
// cuBLAS's pointer-array GEMMs cannot see the matrix addresses, so they assume each matrix starts
// on 16 bytes (cuBLAS docs, cublas<t>gemmBatched: "pointers ... must be properly aligned"); a
// misaligned one faults or is read and written at the 16-byte boundary below it. So the GEMMs
// only ever get 16-byte aligned matrices with rows at least a row long: a tensor for which that
// cannot be proven from its base pointer and strides (or paged K/V) is first copied to a packed
// buffer (and O is computed there and copied out, element by element).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>

#include "longattn/longattn.h"

namespace longattn::cuda {

enum UnfusedTensor { kQ = 0, kK = 1, kV = 2, kO = 3 };

struct UnfusedLayout {
  int64_t scores_bytes = 0;   // float32 [B, Hq, Lq, Lk], one matrix every scores_matrix floats
  int64_t probs_bytes = 0;    // dtype [B, Hq, Lq, Lk], one matrix every probs_matrix elements
  int64_t pointer_bytes = 0;  // the six per-(batch, head) pointer arrays of the batched GEMMs
  int64_t cublas_bytes = 0;   // cuBLAS workspace (so cuBLAS allocates nothing of its own)
  int64_t scores_matrix = 0, probs_matrix = 0;  // padded so every matrix starts on 16 bytes
  // Q, K, V, O packed [B, H, L, staged_ld] where they cannot be used in place; 0 bytes otherwise.
  int64_t staged_bytes[4] = {0, 0, 0, 0};
  int64_t staged_ld[4] = {0, 0, 0, 0};  // elements, a multiple of 16 bytes
};
struct UnfusedBuffers {
  char* scores = nullptr;
  char* probs = nullptr;
  char* pointers = nullptr;
  char* cublas = nullptr;
  char* staged[4] = {nullptr, nullptr, nullptr, nullptr};
};

// "" when the path can run args (sizes within cuBLAS's and the kernels' 32-bit counts).
std::string unfused_unsupported(const longattn_args& a);
// Byte sizes of the buffers; throws Failure (via the core's checked arithmetic) on overflow.
UnfusedLayout unfused_layout(const longattn_args& a);
// Enqueues the steps on `stream`; "" on success, else the CUDA or cuBLAS error.
std::string unfused_run(const longattn_args& a, const UnfusedBuffers& buffers, cudaStream_t stream);

// The softmax kernel, the pointer-array kernel and the copy kernel (softmax_cuda.cu).
struct SoftmaxParams {
  float* scores;  // [B * Hq matrices of Lq x Lk] raw Q.K, rewritten in place as masked scores
  void* probs;    // the same shape in dtype: P
  int64_t scores_matrix, probs_matrix;  // elements between two (batch, head) matrices
  float* lse;                           // [B, Hq, Lq] or null
  int32_t dtype;
  int64_t batch, q_heads, q_len, kv_len;
  float scale, softcap;
  int32_t causal;
  int64_t window_left;
  const float* sinks;
  int32_t mask_kind;
  const void* mask;        // float32 masks may sit at any byte address
  int64_t mask_stride[4];  // 0 where the mask broadcasts
};
cudaError_t softmax_launch(const SoftmaxParams& p, cudaStream_t stream);

// ptrs[i] = base + (i / per_batch) * batch_stride + ((i % per_batch) / group) * head_stride, in
// bytes, for i < count: the per-(batch, head) matrix addresses of a batched GEMM.
cudaError_t pointers_launch(void** ptrs, int64_t count, const void* base, int64_t per_batch,
                            int64_t group, int64_t batch_stride, int64_t head_stride,
                            cudaStream_t stream);

// Copies between a strided (or paged) [outer, heads, len, dim] tensor and a packed one of row
// pitch ld (16-byte aligned). gather: strided -> packed, the pad columns [dim, ld) zeroed;
// otherwise packed -> strided, writing exactly the tensor's elements.
struct CopyParams {
  char* strided;  // element (b, h, t, 0) at strided + b*stride[0] + h*stride[1] + t*stride[2]
  char* packed;
  int64_t stride[3];  // bytes
  int64_t outer, heads, len, dim, ld;
  int32_t elem_bytes;
  const int32_t* block_table;  // paged: b's token t in block table[b * table_stride + t / page]
  int64_t table_stride, page_size, num_blocks;  // ids outside [0, num_blocks) read block 0
  bool gather;
};
cudaError_t copy_launch(const CopyParams& p, cudaStream_t stream);

}  // namespace longattn::cuda
