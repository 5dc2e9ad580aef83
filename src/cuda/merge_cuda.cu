// The split_kv merge: one block per output row. Its threads share the splits: each split's weight
// exp(lse_s - lse) is computed once, in parallel, into shared memory; then every thread sums a
// float4 column over a subset of the splits with several loads in flight, and the subsets are
// added in a fixed order (deterministic). Decode has few rows and up to ~128 splits, so a warp
// per row walking the splits one load at a time (three passes) left the merge latency-bound.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math_constants.h>

#include "cuda/merge_cuda.hpp"
#include "longattn/longattn.h"

namespace longattn::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kUnroll = 8;  // partial loads in flight per thread
constexpr int kMaxSharedSplits = 8192;

// Block-wide max or sum (op 0 / 1) of one value per thread; every thread gets the result.
__device__ __forceinline__ float block_reduce(float v, bool sum, float* scratch) {
#pragma unroll
  for (int d = 16; d > 0; d /= 2) {
    const float o = __shfl_xor_sync(0xffffffffu, v, d);
    v = sum ? v + o : fmaxf(v, o);
  }
  __syncthreads();  // scratch may still be read by a previous reduction
  if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = v;
  __syncthreads();
  v = scratch[0];
#pragma unroll
  for (int w = 1; w < kWarps; ++w) v = sum ? v + scratch[w] : fmaxf(v, scratch[w]);
  return v;
}

__global__ void __launch_bounds__(kThreads) merge_kernel(const MergeParams p) {
  extern __shared__ float s_weight[];  // [splits]
  __shared__ float s_scratch[kWarps];
  __shared__ float4 s_acc[kThreads];  // per-thread column sums, added across split groups
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  // Launched as a programmatic dependent: the partials are complete once this returns. (A no-op
  // for an ordinary launch.)
  asm volatile("griddepcontrol.wait;" ::: "memory");
  // A decode kernel launched as a programmatic dependent of this one may be placed now (it waits
  // for this grid's results before it reads anything).
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
  const int t = threadIdx.x;
  const int64_t rows = int64_t(p.batch) * p.q_heads * p.q_len;
  const int64_t row = blockIdx.x;
  const int i = int(row % p.q_len), h = int(row / p.q_len % p.q_heads);
  const int b = int(row / (int64_t(p.q_len) * p.q_heads));

  float mx = -CUDART_INF_F;
  for (int s = t; s < p.splits; s += kThreads) mx = fmaxf(mx, p.lse_part[s * rows + row]);
  mx = block_reduce(mx, false, s_scratch);
  // All splits empty: the row saw no key, O = 0 and LSE = -inf (sinks or not).
  const bool empty = mx == -CUDART_INF_F;
  const float sink = p.sinks && !empty ? p.sinks[h] : -CUDART_INF_F;
  const float ref = fmaxf(mx, sink);
  float part = 0.f;
  for (int s = t; s < p.splits; s += kThreads) {
    // An empty split (LSE -inf) weighs exactly 0: its partial O is never read.
    const float w = empty ? 0.f : expf(p.lse_part[s * rows + row] - ref);
    s_weight[s] = w;
    part += w;
  }
  const float den = (empty ? 1.f : expf(sink - ref)) + block_reduce(part, true, s_scratch);
  const float inv = 1.f / den;  // block_reduce synchronized: s_weight is complete

  // Threads as (split group, float4 column): groups x cols4 <= kThreads.
  const int cols4 = p.head_dim_v / 4;
  const int groups = cols4 >= kThreads ? 1 : kThreads / cols4;
  const int group = t / cols4;
  char* o_row = static_cast<char*>(p.o) +
                (b * p.o_stride[0] + h * p.o_stride[1] + int64_t(i) * p.o_stride[2]) *
                    (p.dtype == LONGATTN_FLOAT32 ? 4 : 2);
  for (int c0 = 0; c0 < cols4; c0 += kThreads) {  // more than one pass only when Dv > 1024
    const int c4 = c0 + t % cols4;
    float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
    if (group < groups && c4 < cols4) {
      const float* col = p.o_part + row * p.head_dim_v + 4 * c4;
      const int64_t step = rows * p.head_dim_v;
      int s = group;
      for (; s + (kUnroll - 1) * groups < p.splits; s += kUnroll * groups) {
        float4 x[kUnroll];
        float w[kUnroll];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          w[u] = s_weight[s + u * groups];
          x[u] = *reinterpret_cast<const float4*>(col + (s + u * groups) * step);
        }
#pragma unroll
        for (int u = 0; u < kUnroll; ++u)
          if (w[u] != 0.f)  // 0 * a partial of an empty split stays out (it is 0, never NaN)
            acc.x += w[u] * x[u].x, acc.y += w[u] * x[u].y, acc.z += w[u] * x[u].z,
                acc.w += w[u] * x[u].w;
      }
      for (; s < p.splits; s += groups) {
        const float w = s_weight[s];
        if (w == 0.f) continue;
        const float4 x = *reinterpret_cast<const float4*>(col + s * step);
        acc.x += w * x.x, acc.y += w * x.y, acc.z += w * x.z, acc.w += w * x.w;
      }
    }
    if (groups > 1) {
      s_acc[t] = acc;
      __syncthreads();
      if (group == 0) {
        for (int g = 1; g < groups; ++g) {
          const float4 x = s_acc[g * cols4 + t];
          acc.x += x.x, acc.y += x.y, acc.z += x.z, acc.w += x.w;
        }
      }
    }
    if (group != 0 || c4 >= cols4) continue;
    acc.x *= inv, acc.y *= inv, acc.z *= inv, acc.w *= inv;
    if (p.dtype == LONGATTN_FLOAT32) {
      *reinterpret_cast<float4*>(o_row + c4 * 16) = acc;
    } else if (p.dtype == LONGATTN_FLOAT16) {
      __half2 v[2] = {__floats2half2_rn(acc.x, acc.y), __floats2half2_rn(acc.z, acc.w)};
      *reinterpret_cast<uint2*>(o_row + c4 * 8) = *reinterpret_cast<uint2*>(v);
    } else {
      __nv_bfloat162 v[2] = {__floats2bfloat162_rn(acc.x, acc.y),
                             __floats2bfloat162_rn(acc.z, acc.w)};
      *reinterpret_cast<uint2*>(o_row + c4 * 8) = *reinterpret_cast<uint2*>(v);
    }
  }
  if (p.lse && t == 0) p.lse[row] = empty ? -CUDART_INF_F : ref + logf(den);
}

}  // namespace

cudaError_t merge_launch(const MergeParams& p, cudaStream_t stream, bool programmatic) {
  const int64_t rows = int64_t(p.batch) * p.q_heads * p.q_len;
  if (p.head_dim_v % 4 != 0 || rows > 0x7fffffff || p.splits < 1 || p.splits > kMaxSharedSplits)
    return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  const size_t smem = size_t(p.splits) * sizeof(float);
  if (!programmatic) {
    merge_kernel<<<unsigned(rows), kThreads, smem, stream>>>(p);
    return cudaGetLastError();
  }
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(unsigned(rows));
  config.blockDim = dim3(kThreads);
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  config.attrs = attr;
  config.numAttrs = 1;
  return cudaLaunchKernelEx(&config, merge_kernel, p);
}

}  // namespace longattn::cuda
