// The fused and split_kv launch sequences, shared by the backend (backend_cuda.cpp) and the
// standalone GPU test, so the test exercises exactly what the library runs. They read the choices
// of policy_cuda.hpp.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "cuda/fused_cuda.hpp"
#include "cuda/policy_cuda.hpp"
#include "longattn/longattn.h"

namespace longattn::cuda {

// Whether TMA can describe K and V for tiles of block_k keys (16-byte aligned bases and strides,
// sizes in range).
bool kv_maps_encode(const longattn_args& a, int block_k);

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
