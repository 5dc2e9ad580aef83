// The CUDA backend's policy: every choice a CUDA plan carries (the compiled kernel, its tiles, the
// split count, AUTO's split_kv and the launch modes) is made here, once per plan; the backend,
// the launch code and the standalone GPU test only read it.
#pragma once

#include <string>

#include "cuda/fused_cuda.hpp"
#include "longattn/longattn.h"

namespace longattn::cuda {

// The compiled kernel that runs `a` on the current device (prefill or decode shapes): the sm90a
// kernel wherever it can run prefill, the portable kernel otherwise and for decode shapes whose
// pages fit its tiles.
cudaError_t kernel_for(const longattn_args& a, FusedKernelInfo* info);

// split_kv: how many K/V slices per row fill the GPU. Few (batch, kv head, query tile) blocks
// leave SMs idle; splitting each row's keys multiplies the blocks. Decode kernels: one block per
// SM (as many splits as fit). Prefill: the smallest count whose last wave is nearly as full as the
// best. Either way at least kMinTilesPerSplit key tiles per slice. 1 when splitting cannot help.
constexpr int kMinTilesPerSplit = 4;
constexpr int kMaxSplits = 128;
int choose_splits(const longattn_args& a, const FusedKernelInfo& info, int sm_count);

// AUTO's choice (PathList::split_pays): split_kv when the fused grid of `blocks` blocks leaves
// SMs idle, the rows are long enough and choose_splits finds a count above one.
bool split_pays(const longattn_args& a, const FusedKernelInfo& info, int sm_count, int64_t blocks,
                std::string* why);

// Launch modes on sm_90+: the decode kernel and the split_kv merge are launched as programmatic
// dependents of the kernel before them (their launch overlaps its last blocks).
bool programmatic_fused(const FusedKernelInfo& info);
bool programmatic_merge(const FusedKernelInfo& info);

}  // namespace longattn::cuda
