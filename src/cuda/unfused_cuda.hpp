// The unfused CUDA path, what runtimes without a fused kernel do: S = Q K^T materialized in
// float32 by a batched cuBLAS GEMM, a softmax kernel with every mask feature writing P in the
// input dtype, then O = P V by a second batched GEMM. Any head dim and any strides; transient
// memory grows with q_len x kv_len (DESIGN.md 2).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>

#include "longattn/longattn.h"

namespace longattn::cuda {

struct UnfusedLayout {
  int64_t scores_bytes = 0;   // float32 [B, Hq, Lq, Lk]
  int64_t probs_bytes = 0;    // dtype [B, Hq, Lq, Lk]
  int64_t pointer_bytes = 0;  // the six per-(batch, head) pointer arrays of the batched GEMMs
  int64_t cublas_bytes = 0;   // cuBLAS workspace (so cuBLAS allocates nothing of its own)
};
struct UnfusedBuffers {
  char* scores = nullptr;
  char* probs = nullptr;
  char* pointers = nullptr;
  char* cublas = nullptr;
};

// "" when the path can run args (sizes within cuBLAS's int32, token strides >= head dims).
std::string unfused_unsupported(const longattn_args& a);
// Byte sizes of the buffers; throws Failure (via the core's checked arithmetic) on overflow.
UnfusedLayout unfused_layout(const longattn_args& a);
// Enqueues the three steps on `stream`; "" on success, else the CUDA or cuBLAS error.
std::string unfused_run(const longattn_args& a, const UnfusedBuffers& buffers, cudaStream_t stream);

// The softmax kernel and the pointer-array kernel (softmax_cuda.cu).
struct SoftmaxParams {
  float* scores;  // [rows, Lk] raw Q.K, rewritten in place as masked scores
  void* probs;    // [rows, Lk] in dtype: P
  float* lse;     // [B, Hq, Lq] or null
  int32_t dtype;
  int64_t batch, q_heads, q_len, kv_len;
  float scale, softcap;
  int32_t causal;
  int64_t window_left;
  const float* sinks;
  int32_t mask_kind;
  const void* mask;
  int64_t mask_stride[4];  // 0 where the mask broadcasts
};
cudaError_t softmax_launch(const SoftmaxParams& p, cudaStream_t stream);

// ptrs[i] = base + (i / per_batch) * batch_stride + ((i % per_batch) / group) * head_stride, in
// bytes, for i < count: the per-(batch, head) matrix addresses of a batched GEMM.
cudaError_t pointers_launch(void** ptrs, int64_t count, const void* base, int64_t per_batch,
                            int64_t group, int64_t batch_stride, int64_t head_stride,
                            cudaStream_t stream);

}  // namespace longattn::cuda
