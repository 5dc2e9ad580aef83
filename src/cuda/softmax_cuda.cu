// The unfused path's softmax: one block per query row rewrites its float32 scores as masked,
// softcapped scores (README.md, "Semantics"), then writes P = exp(s - max) / sum in the input
// dtype and the row's LSE. Rows that see no key get P = 0 and LSE = -inf. Also the unfused path's
// helpers: the pointer arrays of its batched GEMMs and the copies to and from packed buffers.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math_constants.h>

#include <algorithm>
#include <cstdint>

#include "cuda/block_table_cuda.hpp"
#include "cuda/unfused_cuda.hpp"

namespace longattn::cuda {
namespace {

constexpr int kThreads = 256;

// A float32 mask element; the C API takes the mask as untyped memory, so it may be misaligned.
__device__ __forceinline__ float load_f32(const void* base, int64_t i) {
  const uint8_t* b = static_cast<const uint8_t*>(base) + 4 * i;
  if (reinterpret_cast<uintptr_t>(b) % 4 == 0) return *reinterpret_cast<const float*>(b);
  return __uint_as_float(uint32_t(b[0]) | uint32_t(b[1]) << 8 | uint32_t(b[2]) << 16 |
                         uint32_t(b[3]) << 24);
}

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
  const int64_t matrix = row / p.q_len;
  float* s = p.scores + matrix * p.scores_matrix + i * p.kv_len;
  const int64_t mask_row = b * p.mask_stride[0] + h * p.mask_stride[1] + i * p.mask_stride[2];

  float mx = -CUDART_INF_F;
  for (int64_t j = threadIdx.x; j < p.kv_len; j += kThreads) {
    float x = -CUDART_INF_F;
    if (j >= lo && j < hi) {
      x = s[j] * p.scale;
      if (p.softcap > 0.f) x = p.softcap * tanhf(x / p.softcap);
      const int64_t at = mask_row + j * p.mask_stride[3];
      if (p.mask_kind == 1 && !static_cast<const uint8_t*>(p.mask)[at]) x = -CUDART_INF_F;
      if (p.mask_kind == 2) x += load_f32(p.mask, at);
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
    const int64_t at = matrix * p.probs_matrix + i * p.kv_len + j;
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

// One thread per copy unit (a whole element, or a byte where the strided base is not aligned to
// the element), grid-stride; x numbers the packed buffer's units in order.
template <class Unit>
__global__ void copy_kernel(const CopyParams p) {
  const int64_t units = p.elem_bytes / int64_t(sizeof(Unit));
  const int64_t row_units = p.ld * units, total = p.outer * p.heads * p.len * row_units;
  for (int64_t x = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; x < total;
       x += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = x / row_units, u = x % row_units;
    const int64_t t = r % p.len, h = r / p.len % p.heads, b = r / (p.len * p.heads);
    Unit* packed = reinterpret_cast<Unit*>(p.packed) + x;
    const bool inside = u < p.dim * units;
    if (!inside) {
      if (p.gather) *packed = Unit(0);
      continue;
    }
    int64_t outer = b, slot = t;
    if (p.block_table) {
      outer = pool_block(p.block_table[b * p.table_stride + t / p.page_size], p.num_blocks);
      slot = t % p.page_size;
    }
    Unit* strided = reinterpret_cast<Unit*>(p.strided + outer * p.stride[0] + h * p.stride[1] +
                                            slot * p.stride[2]) +
                    u;
    if (p.gather)
      *packed = *strided;
    else
      *strided = *packed;
  }
}

}  // namespace

cudaError_t copy_launch(const CopyParams& p, cudaStream_t stream) {
  const int64_t total = p.outer * p.heads * p.len * p.ld;
  if (total == 0) return cudaSuccess;
  constexpr int64_t kMaxBlocks = 1 << 16;  // grid-stride beyond
  const unsigned blocks =
      unsigned(std::min<int64_t>((total + kThreads - 1) / kThreads, kMaxBlocks));
  const uintptr_t at = reinterpret_cast<uintptr_t>(p.strided);
  if (p.elem_bytes == 4 && at % 4 == 0)
    copy_kernel<uint32_t><<<blocks, kThreads, 0, stream>>>(p);
  else if (p.elem_bytes == 2 && at % 2 == 0)
    copy_kernel<uint16_t><<<blocks, kThreads, 0, stream>>>(p);
  else
    copy_kernel<uint8_t><<<blocks, kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

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
