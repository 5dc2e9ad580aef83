// The split_kv merge: one warp per output row reads every split's LSE, weighs the float32 partial
// rows by exp(lse_s - lse) and writes O in the output dtype and strides.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math_constants.h>

#include "cuda/merge_cuda.hpp"
#include "longattn/longattn.h"

namespace longattn::cuda {
namespace {

constexpr int kWarpsPerBlock = 8;

__global__ void __launch_bounds__(kWarpsPerBlock * 32) merge_kernel(const MergeParams p) {
  const int lane = threadIdx.x % 32;
  const int64_t rows = int64_t(p.batch) * p.q_heads * p.q_len;
  const int64_t row = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (row >= rows) return;
  const int i = int(row % p.q_len), h = int(row / p.q_len % p.q_heads);
  const int b = int(row / (int64_t(p.q_len) * p.q_heads));

  float mx = -CUDART_INF_F;
  for (int s = 0; s < p.splits; ++s) mx = fmaxf(mx, p.lse_part[s * rows + row]);
  // All splits empty: the row saw no key, O = 0 and LSE = -inf (sinks or not).
  const bool empty = mx == -CUDART_INF_F;
  const float sink = p.sinks && !empty ? p.sinks[h] : -CUDART_INF_F;
  const float ref = fmaxf(mx, sink);
  float den = empty ? 1.f : expf(sink - ref);
  for (int s = 0; s < p.splits && !empty; ++s) den += expf(p.lse_part[s * rows + row] - ref);

  char* o_row = static_cast<char*>(p.o) +
                (b * p.o_stride[0] + h * p.o_stride[1] + int64_t(i) * p.o_stride[2]) *
                    (p.dtype == LONGATTN_FLOAT32 ? 4 : 2);
  for (int c = lane * 4; c < p.head_dim_v; c += 128) {
    float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
    for (int s = 0; s < p.splits && !empty; ++s) {
      const float w = expf(p.lse_part[s * rows + row] - ref) / den;
      if (w == 0.f) continue;  // an empty split's partial O is 0 and its weight exactly 0
      const float4 x =
          *reinterpret_cast<const float4*>(p.o_part + (s * rows + row) * p.head_dim_v + c);
      acc.x += w * x.x, acc.y += w * x.y, acc.z += w * x.z, acc.w += w * x.w;
    }
    if (p.dtype == LONGATTN_FLOAT32) {
      *reinterpret_cast<float4*>(o_row + c * 4) = acc;
    } else if (p.dtype == LONGATTN_FLOAT16) {
      __half2 v[2] = {__floats2half2_rn(acc.x, acc.y), __floats2half2_rn(acc.z, acc.w)};
      *reinterpret_cast<uint2*>(o_row + c * 2) = *reinterpret_cast<uint2*>(v);
    } else {
      __nv_bfloat162 v[2] = {__floats2bfloat162_rn(acc.x, acc.y),
                             __floats2bfloat162_rn(acc.z, acc.w)};
      *reinterpret_cast<uint2*>(o_row + c * 2) = *reinterpret_cast<uint2*>(v);
    }
  }
  if (p.lse && lane == 0) p.lse[row] = empty ? -CUDART_INF_F : ref + logf(den);
}

}  // namespace

cudaError_t merge_launch(const MergeParams& p, cudaStream_t stream) {
  const int64_t rows = int64_t(p.batch) * p.q_heads * p.q_len;
  const int64_t blocks = (rows + kWarpsPerBlock - 1) / kWarpsPerBlock;
  if (p.head_dim_v % 4 != 0 || blocks > 0x7fffffff) return cudaErrorInvalidValue;
  merge_kernel<<<unsigned(blocks), kWarpsPerBlock * 32, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace longattn::cuda
