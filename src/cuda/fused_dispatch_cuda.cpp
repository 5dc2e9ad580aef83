// Host dispatch from runtime head dims and dtype to the compiled fused kernels (the generated
// list in instantiations/fused_head_dims.inc).
#include <string>

#include "cuda/fused_cuda.hpp"
#include "cuda/fused_traits_sm90.hpp"

namespace longattn::cuda {

bool fused_has_kernel(int64_t dqk, int64_t dv) {
#define LONGATTN_X(a, b) \
  if (dqk == a && dv == b) return true;
  LONGATTN_FUSED_HEAD_DIMS(LONGATTN_X)
#undef LONGATTN_X
  return false;
}

const char* fused_head_dims_list() {
  static const std::string list = [] {
    std::string s;
#define LONGATTN_X(a, b) s += (s.empty() ? "" : ", ") + std::to_string(a) + "/" + std::to_string(b);
    LONGATTN_FUSED_HEAD_DIMS(LONGATTN_X)
#undef LONGATTN_X
    return s;
  }();
  return list.c_str();
}

// One (head dims) entry: the four compiled kernels (type x decode).
#define LONGATTN_PICK(a, b, call)                                    \
  if (dqk == a && dv == b) {                                         \
    if (type == Mma16::kF16)                                         \
      return decode ? FusedInstance<a, b, Mma16::kF16, true>::call   \
                    : FusedInstance<a, b, Mma16::kF16, false>::call; \
    return decode ? FusedInstance<a, b, Mma16::kBf16, true>::call    \
                  : FusedInstance<a, b, Mma16::kBf16, false>::call;  \
  }

cudaError_t fused_kernel_info(int dqk, int dv, Mma16 type, bool decode, FusedKernelInfo* info) {
#define LONGATTN_X(a, b) LONGATTN_PICK(a, b, info(info))
  LONGATTN_FUSED_HEAD_DIMS(LONGATTN_X)
#undef LONGATTN_X
  return cudaErrorInvalidValue;
}

cudaError_t fused_launch(int dqk, int dv, Mma16 type, bool decode, const FusedParams& p,
                         cudaStream_t stream, bool programmatic) {
#define LONGATTN_X(a, b) LONGATTN_PICK(a, b, launch(p, stream, programmatic))
  LONGATTN_FUSED_HEAD_DIMS(LONGATTN_X)
#undef LONGATTN_X
  return cudaErrorInvalidValue;
}

bool fused_sm90_has_kernel(int64_t dqk, int64_t dv) {
#define LONGATTN_X(a, b) \
  if (dqk == a && dv == b) return true;
  LONGATTN_FUSED_SM90_HEAD_DIMS(LONGATTN_X)
#undef LONGATTN_X
  return false;
}

#define LONGATTN_PICK90(a, b, call)                                    \
  if (dqk == a && dv == b)                                             \
    return type == Mma16::kF16 ? Sm90Instance<a, b, Mma16::kF16>::call \
                               : Sm90Instance<a, b, Mma16::kBf16>::call;

cudaError_t fused_sm90_kernel_info(int dqk, int dv, Mma16 type, FusedKernelInfo* info) {
#define LONGATTN_X(a, b) LONGATTN_PICK90(a, b, info(info))
  LONGATTN_FUSED_SM90_HEAD_DIMS(LONGATTN_X)
#undef LONGATTN_X
  return cudaErrorInvalidValue;
}

cudaError_t fused_sm90_launch(int dqk, int dv, Mma16 type, const FusedParams& p,
                              const CUtensorMap& k_map, const CUtensorMap& v_map,
                              cudaStream_t stream) {
#define LONGATTN_X(a, b) LONGATTN_PICK90(a, b, launch(p, k_map, v_map, stream))
  LONGATTN_FUSED_SM90_HEAD_DIMS(LONGATTN_X)
#undef LONGATTN_X
  return cudaErrorInvalidValue;
}

}  // namespace longattn::cuda
