// Argument validation: every check names the argument and the allowed values.
#pragma once

#include "longattn/longattn.h"

namespace longattn::detail {

// Head dims: V up to 512; Q.K up to 576, for MLA (DeepSeek-V3, Kimi K2) whose 576-wide keys hold
// the 512-wide values in their first columns (v == k, head_dim_v < head_dim_qk).
constexpr int64_t kMaxHeadDimQk = 576;
constexpr int64_t kMaxHeadDimV = 512;
// options.num_splits: a fixed split count of up to this many slices (partials are counted in the
// plan's transient bytes like any other split count).
constexpr int32_t kMaxNumSplits = 1024;

// Throws Failure(LONGATTN_INVALID_ARGUMENT, ...) on the first invalid field.
void validate_args(const longattn_args* args);
void validate_options(const longattn_options* options);

// 1/sqrt(Dqk) when args.scale == 0.
float effective_scale(const longattn_args& args);

// An FP8 cache's scale (args.k_scale or args.v_scale) for KV head kvh: 1 when NULL. Reads host
// memory: the CPU backend's.
inline float kv_scale(const longattn_args& a, const float* scale, int64_t kvh) {
  return scale ? scale[a.kv_scale_per_head ? kvh : 0] : 1.f;
}

}  // namespace longattn::detail
