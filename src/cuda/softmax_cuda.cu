// The unfused path's softmax: one block per query row rewrites its float32 scores as masked,
// softcapped scores (DESIGN.md 1), then writes P = exp(s - max) / sum in the input dtype and the
// row's LSE. Rows that see no key get P = 0 and LSE = -inf.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math_constants.h>

#include "cuda/unfused_cuda.hpp"

namespace longattn::cuda {
namespace {

constexpr int kThreads = 256;

// Reduces over the block; every thread gets the result. `scratch` holds one float per warp.
template <bool kMax>
__device__ float block_reduce(float v, float* scratch) {
  for (int o = 16; o > 0; o /= 2) {
    const float w = __shfl_xor_sync(0xffffffffu, v, o);
    v = kMax ? fmaxf(v, w) : v + w;
  }
  __syncthreads();  // scratch may still be read from the previous reduction
  if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = v;
  __syncthreads();
  v = kMax ? -CUDART_INF_F : 0.f;
  for (int w = 0; w < kThreads / 32; ++w) v = kMax ? fmaxf(v, scratch[w]) : v + scratch[w];
  return v;
}

__global__ void __launch_bounds__(kThreads) softmax_kernel(const SoftmaxParams p) {
  __shared__ float scratch[kThreads / 32];
  const int64_t row = blockIdx.x;
  const int64_t i = row % p.q_len, h = row / p.q_len % p.q_heads;
  const int64_t b = row / (p.q_len * p.q_heads);
  const int64_t diag = i + p.kv_len - p.q_len;  // bottom-right causal
  const int64_t lo = p.window_left >= 0 ? max(int64_t(0), diag - p.window_left) : 0;
  const int64_t hi = p.causal ? min(p.kv_len, diag + 1) : p.kv_len;  // visible: [lo, hi)
  float* s = p.scores + row * p.kv_len;
  const int64_t mask_row = b * p.mask_stride[0] + h * p.mask_stride[1] + i * p.mask_stride[2];

  float mx = -CUDART_INF_F;
  for (int64_t j = threadIdx.x; j < p.kv_len; j += kThreads) {
    float x = -CUDART_INF_F;
    if (j >= lo && j < hi) {
      x = s[j] * p.scale;
      if (p.softcap > 0.f) x = p.softcap * tanhf(x / p.softcap);
      const int64_t at = mask_row + j * p.mask_stride[3];
      if (p.mask_kind == 1 && !static_cast<const uint8_t*>(p.mask)[at]) x = -CUDART_INF_F;
      if (p.mask_kind == 2) x += static_cast<const float*>(p.mask)[at];
    }
    s[j] = x;
    mx = fmaxf(mx, x);
  }
  mx = block_reduce<true>(mx, scratch);
  const bool empty = mx == -CUDART_INF_F;
  const float sink = p.sinks && !empty ? p.sinks[h] : -CUDART_INF_F;
  const float ref = empty ? 0.f : fmaxf(mx, sink);
  float sum = 0.f;
  for (int64_t j = threadIdx.x; j < p.kv_len; j += kThreads) sum += expf(s[j] - ref);
  sum = block_reduce<false>(sum, scratch) + (p.sinks && !empty ? expf(sink - ref) : 0.f);
  const float inv = empty ? 0.f : 1.f / sum;
  for (int64_t j = threadIdx.x; j < p.kv_len; j += kThreads) {
    const float x = expf(s[j] - ref) * inv;
    const int64_t at = row * p.kv_len + j;
    if (p.dtype == 0)
      static_cast<float*>(p.probs)[at] = x;
    else if (p.dtype == 1)
      static_cast<__half*>(p.probs)[at] = __float2half_rn(x);
    else
      static_cast<__nv_bfloat16*>(p.probs)[at] = __float2bfloat16_rn(x);
  }
  if (p.lse && threadIdx.x == 0) p.lse[row] = empty ? -CUDART_INF_F : ref + logf(sum);
}

__global__ void pointers_kernel(void** ptrs, int64_t count, const char* base, int64_t per_batch,
                                int64_t group, int64_t batch_stride, int64_t head_stride) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i < count)
    ptrs[i] = const_cast<char*>(base) + (i / per_batch) * batch_stride +
              ((i % per_batch) / group) * head_stride;
}

}  // namespace

cudaError_t softmax_launch(const SoftmaxParams& p, cudaStream_t stream) {
  const int64_t rows = p.batch * p.q_heads * p.q_len;
  if (rows > 0x7fffffff) return cudaErrorInvalidValue;
  softmax_kernel<<<unsigned(rows), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

cudaError_t pointers_launch(void** ptrs, int64_t count, const void* base, int64_t per_batch,
                            int64_t group, int64_t batch_stride, int64_t head_stride,
                            cudaStream_t stream) {
  const int64_t blocks = (count + 255) / 256;
  if (blocks > 0x7fffffff) return cudaErrorInvalidValue;
  pointers_kernel<<<unsigned(blocks), 256, 0, stream>>>(
      ptrs, count, static_cast<const char*>(base), per_batch, group, batch_stride, head_stride);
  return cudaGetLastError();
}

}  // namespace longattn::cuda
