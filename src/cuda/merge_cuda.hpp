// Combines the split_kv partial results through their LSEs on the GPU, as core/merge.hpp does on
// the CPU.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace longattn::cuda {

struct MergeParams {
  const float* o_part;    // [splits, B, Hq, Lq, Dv]
  const float* lse_part;  // [splits, B, Hq, Lq], natural log; -inf: the split saw no key
  int32_t splits;
  void* o;              // [B, Hq, Lq, Dv] with o_stride, dtype below
  int64_t o_stride[3];  // batch, head, token (elements)
  int32_t o_vec;        // every O row starts on 4 elements: 4 columns stored as one
  float* lse;           // [B, Hq, Lq] or null
  int32_t dtype;        // longattn_dtype of o
  int32_t batch, q_heads, q_len, head_dim_v;
  const float* sinks;  // [Hq] or null: joins the denominator once, here
};

// Any head_dim_v >= 1 (partials rows are head_dim_v floats). programmatic: launch as a
// programmatic dependent of the kernel before it on the stream (sm_90+: its blocks start while
// that kernel drains and wait for its results on the device, which hides the launch gap).
cudaError_t merge_launch(const MergeParams& p, cudaStream_t stream, bool programmatic = false);

}  // namespace longattn::cuda
