// The score transform's arguments as the CUDA kernels read them: scale, softcap, causal, window,
// sinks and the array mask. FusedParams (fused kernels) and SoftmaxParams (the unfused path's
// softmax) both carry these fields under the same names; one function fills them.
#pragma once

#include <cmath>

#include "longattn/longattn.h"

namespace longattn::cuda {

template <class Params>
void set_score_fields(const longattn_args& a, Params* p) {
  p->scale = a.scale != 0.f ? a.scale : 1.f / std::sqrt(float(a.head_dim_qk));  // as validate.cpp
  p->softcap = a.softcap;
  p->causal = a.causal;
  p->window_left = a.window_left;
  p->sinks = a.sinks;
  p->mask_kind = a.mask.kind;
  p->mask = a.mask.data;
  // A dimension of size 1 broadcasts: its stride is 0 whatever the caller passed.
  for (int d = 0; d < 4; ++d)
    p->mask_stride[d] =
        a.mask.kind != LONGATTN_MASK_NONE && a.mask.dims[d] != 1 ? a.mask.strides[d] : 0;
}

}  // namespace longattn::cuda
