// Paged K/V on CUDA when the host cannot check the block table: during graph capture the table is
// read only when the graph runs (its ids change between replays), so the kernels never trust it.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "longattn/longattn.h"

namespace longattn::cuda {

#ifdef __CUDACC__
// The pool block a portable kernel reads for a table entry: an id outside [0, num_blocks) reads
// block 0, never memory outside the pool. (The sm90a kernel's TMA zero-fills such blocks.)
__device__ __forceinline__ int64_t pool_block(int32_t id, int64_t num_blocks) {
  return id >= 0 && id < num_blocks ? id : 0;
}
#endif

// After a run whose table the host did not check: every O element and LSE value of a batch entry
// whose table (its first ceil(kv_len / page_size) ids) holds an id outside [0, num_blocks) becomes
// NaN, so the caller sees the error instead of attention over the wrong keys.
cudaError_t poison_bad_blocks_launch(const longattn_args& a, cudaStream_t stream);

}  // namespace longattn::cuda
