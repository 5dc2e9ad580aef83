// The fused and split_kv launch sequences, shared by the backend (backend_cuda.cpp) and the
// standalone GPU test, so the test exercises exactly what the library runs.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "cuda/fused_cuda.hpp"
#include "longattn/longattn.h"

namespace longattn::cuda {

// The compiled kernel that would run `a` on the current device (prefill or decode shapes).
cudaError_t kernel_for(const longattn_args& a, FusedKernelInfo* info);

// split_kv: how many K/V slices per row fill the GPU. Few (batch, kv head, query tile) blocks
// leave SMs idle; splitting each row's keys multiplies the blocks. Decode kernels: one block per
// SM (as many splits as fit). Prefill: the smallest count whose last wave is nearly as full as the
// best. Either way at least kMinTilesPerSplit key tiles per slice.
constexpr int kMinTilesPerSplit = 4;
constexpr int kMaxSplits = 128;
int choose_splits(const longattn_args& a, const FusedKernelInfo& info, int sm_count);

// Float32 elements of the split_kv partials: o_part [splits, B, Hq, Lq, Dv], lse_part [.., Lq].
int64_t split_o_floats(const longattn_args& a, int splits);
int64_t split_lse_floats(const longattn_args& a, int splits);

// splits == 1: one fused launch writes O and LSE. splits > 1: the fused kernel writes partials
// into o_part / lse_part, then the merge kernel writes O and LSE (and adds the sinks).
// merge: how the merge is launched; fused: how the decode kernel is (kDefault: what the library
// uses; kProgrammatic: as a programmatic dependent of the kernel before it, sm_90+).
enum class MergeLaunch { kDefault, kPlain, kProgrammatic };
cudaError_t run_fused(const longattn_args& a, int splits, float* o_part, float* lse_part,
                      cudaStream_t stream, MergeLaunch merge = MergeLaunch::kDefault,
                      MergeLaunch fused = MergeLaunch::kDefault);
// The same with the kernel already chosen (kernel_for on args of the same shape and alignment).
cudaError_t launch_fused(const longattn_args& a, const FusedKernelInfo& ki, int splits,
                         float* o_part, float* lse_part, cudaStream_t stream,
                         MergeLaunch merge = MergeLaunch::kDefault,
                         MergeLaunch fused = MergeLaunch::kDefault);

}  // namespace longattn::cuda
