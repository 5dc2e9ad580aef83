// Argument validation: every check names the argument and the allowed values.
#pragma once

#include "longattn/longattn.h"

namespace longattn::detail {

constexpr int64_t kMaxHeadDim = 512;

// Throws Failure(LONGATTN_INVALID_ARGUMENT, ...) on the first invalid field.
void validate_args(const longattn_args* args);
void validate_options(const longattn_options* options);

// 1/sqrt(Dqk) when args.scale == 0.
float effective_scale(const longattn_args& args);

}  // namespace longattn::detail
