// The split_kv merge. A block owns one output row and some of its columns (block_cols4); its
// threads are (split group, float4 column). Each thread issues the loads of all its splits' LSEs
// and partial columns at once and keeps an online max, so the whole merge is one round trip to
// L2 plus block-level reductions: decode has few rows and ~66 splits, and the merge runs after
// the fused kernel, so its latency chain is on the critical path (reading the LSEs and reducing
// before loading the partials would add a round trip).
// The groups are added in a fixed order, so the result is deterministic.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math_constants.h>

#include "cuda/launch_config_cuda.hpp"
#include "cuda/merge_cuda.hpp"
#include "longattn/longattn.h"

namespace longattn::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kUnroll = 4;  // splits per thread in one batch of loads

// Float4 columns per block. Many splits (decode: ~66, few rows): 8 columns, so 32 split groups
// cover 128 splits in one batch of loads and a row spreads over several blocks. Few splits
// (prefill split_kv: 2, thousands of rows): as many columns as leave a group per split, so the
// threads are not idle (16 columns at 2 splits would leave 14 of the 16 split groups without a
// split).
__host__ __device__ inline int block_cols4(int cols4, int splits) {
  int groups = 1;
  while (groups < splits && groups < 32) groups *= 2;
  const int cols = kThreads / groups;
  return cols4 < cols ? cols4 : cols;
}

// Four partial columns from c: one float4 where the row pitch (head_dim_v) keeps them on 16 bytes,
// else the `n` (< 4 at the row's end) real ones.
__device__ __forceinline__ float4 load_part4(const float* c, int n, bool vec) {
  if (vec) return *reinterpret_cast<const float4*>(c);
  return make_float4(c[0], n > 1 ? c[1] : 0.f, n > 2 ? c[2] : 0.f, n > 3 ? c[3] : 0.f);
}

// Block-wide max of one value per thread; every thread gets the result.
__device__ __forceinline__ float block_max(float v, float* scratch) {
#pragma unroll
  for (int d = 16; d > 0; d /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, d));
  if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = v;
  __syncthreads();
  v = scratch[0];
#pragma unroll
  for (int w = 1; w < kWarps; ++w) v = fmaxf(v, scratch[w]);
  return v;
}

// Four blocks per SM (64 registers): the prefill merge has thousands of rows, and its loads in
// flight come from resident blocks.
__global__ void __launch_bounds__(kThreads, 4) merge_kernel(const MergeParams p) {
  __shared__ float s_scratch[kWarps];
  __shared__ float s_den[kThreads];   // per split group
  __shared__ float4 s_acc[kThreads];  // per thread: its group's column sum
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
  const int cols4 = (p.head_dim_v + 3) / 4;
  const int cols = block_cols4(cols4, p.splits);
  const int groups = kThreads / cols;
  const int group = t / cols;
  const int c4 = int(blockIdx.y) * cols + t % cols;
  const bool active = group < groups && c4 < cols4;
  const int n = min(p.head_dim_v - 4 * c4, 4);  // real columns of this thread (active ones)
  const bool vec_load = p.head_dim_v % 4 == 0;

  // This thread's splits s = group, group + groups, ...: an online softmax merge over them.
  // An empty split (LSE -inf) weighs exactly 0, and its partial (0) is left out.
  float m = -CUDART_INF_F, den = 0.f;
  float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
  const float* col = p.o_part + row * p.head_dim_v + 4 * c4;
  const int64_t step = rows * p.head_dim_v;
  for (int s0 = group; active && s0 < p.splits; s0 += kUnroll * groups) {
    float lse[kUnroll];
    float4 x[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int s = s0 + u * groups;
      lse[u] = s < p.splits ? p.lse_part[s * rows + row] : -CUDART_INF_F;
      x[u] =
          s < p.splits ? load_part4(col + s * step, n, vec_load) : make_float4(0.f, 0.f, 0.f, 0.f);
    }
    float m_new = m;
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) m_new = fmaxf(m_new, lse[u]);
    if (m_new == -CUDART_INF_F) continue;
    const float corr = m == -CUDART_INF_F ? 0.f : expf(m - m_new);
    acc.x *= corr, acc.y *= corr, acc.z *= corr, acc.w *= corr, den *= corr;
    m = m_new;
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      if (lse[u] == -CUDART_INF_F) continue;
      const float w = expf(lse[u] - m);
      acc.x += w * x[u].x, acc.y += w * x[u].y, acc.z += w * x[u].z, acc.w += w * x[u].w;
      den += w;
    }
  }

  // The row's max over every split; all splits empty: the row saw no key, O = 0 and LSE = -inf
  // (sinks or not).
  const float mx = block_max(m, s_scratch);
  const bool empty = mx == -CUDART_INF_F;
  const float sink = p.sinks && !empty ? p.sinks[h] : -CUDART_INF_F;
  const float ref = fmaxf(mx, sink);
  const float f = m == -CUDART_INF_F ? 0.f : expf(m - ref);
  acc.x *= f, acc.y *= f, acc.z *= f, acc.w *= f;
  s_acc[t] = acc;
  if (t % cols == 0) s_den[group] = den * f;  // the same for every column of a group
  __syncthreads();
  if (group != 0 || !active) return;
  float total = empty ? 1.f : expf(sink - ref);
  for (int g = 0; g < groups; ++g) total += s_den[g];
  for (int g = 1; g < groups; ++g) {
    const float4 y = s_acc[g * cols + t];
    acc.x += y.x, acc.y += y.y, acc.z += y.z, acc.w += y.w;
  }
  const float inv = 1.f / total;
  acc.x *= inv, acc.y *= inv, acc.z *= inv, acc.w *= inv;
  char* o_row = static_cast<char*>(p.o) +
                (b * p.o_stride[0] + h * p.o_stride[1] + int64_t(i) * p.o_stride[2]) *
                    (p.dtype == LONGATTN_FLOAT32 ? 4 : 2);
  const float v[4] = {acc.x, acc.y, acc.z, acc.w};
  if (p.dtype == LONGATTN_FLOAT32) {
    float* o = reinterpret_cast<float*>(o_row) + 4 * c4;
    if (n == 4 && p.o_vec)
      *reinterpret_cast<float4*>(o) = acc;
    else
#pragma unroll
      for (int e = 0; e < 4; ++e)
        if (e < n) o[e] = v[e];
  } else {
    unsigned short h[4];
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      if (p.dtype == LONGATTN_FLOAT16) {
        const __half x = __float2half_rn(v[e]);
        h[e] = *reinterpret_cast<const unsigned short*>(&x);
      } else {
        const __nv_bfloat16 x = __float2bfloat16_rn(v[e]);
        h[e] = *reinterpret_cast<const unsigned short*>(&x);
      }
    }
    unsigned short* o = reinterpret_cast<unsigned short*>(o_row) + 4 * c4;
    if (n == 4 && p.o_vec)
      *reinterpret_cast<uint2*>(o) =
          make_uint2(h[0] | uint32_t(h[1]) << 16, h[2] | uint32_t(h[3]) << 16);
    else
#pragma unroll
      for (int e = 0; e < 4; ++e)
        if (e < n) o[e] = h[e];
  }
  if (p.lse && blockIdx.y == 0 && t == 0) p.lse[row] = empty ? -CUDART_INF_F : ref + logf(total);
}

}  // namespace

cudaError_t merge_launch(const MergeParams& p, cudaStream_t stream, bool programmatic) {
  const int64_t rows = int64_t(p.batch) * p.q_heads * p.q_len;
  if (p.head_dim_v < 1 || rows > 0x7fffffff || p.splits < 1) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  const int cols4 = (p.head_dim_v + 3) / 4;
  const int cols = block_cols4(cols4, p.splits);
  const int col_blocks = (cols4 + cols - 1) / cols;
  const LaunchConfig lc(dim3(unsigned(rows), unsigned(col_blocks)), dim3(kThreads), 0, stream,
                        programmatic);
  return cudaLaunchKernelEx(&lc.config, merge_kernel, p);
}

}  // namespace longattn::cuda
