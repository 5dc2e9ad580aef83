// Host dispatch from runtime head dims and dtype to the compiled fused kernels (the generated
// list in instantiations/fused_head_dims.inc).
#include <string>

#include "cuda/fused_cuda.hpp"
#include "cuda/fused_traits_sm90.hpp"

namespace longattn::cuda {

namespace {
struct HeadDims {
  int qk, v;
};
constexpr HeadDims kSm80Dims[] = {
#define LONGATTN_X(a, b) {a, b},
    LONGATTN_FUSED_HEAD_DIMS(LONGATTN_X)
#undef LONGATTN_X
};
constexpr HeadDims kFp8Dims[] = {
#define LONGATTN_X(a, b) {a, b},
    LONGATTN_FUSED_FP8_HEAD_DIMS(LONGATTN_X)
#undef LONGATTN_X
};
constexpr HeadDims kPagedRowsDims[] = {
#define LONGATTN_X(a, b) {a, b},
    LONGATTN_FUSED_PAGED_ROWS_HEAD_DIMS(LONGATTN_X)
#undef LONGATTN_X
};
constexpr HeadDims kSm90Dims[] = {
#define LONGATTN_X(a, b) {a, b},
    LONGATTN_FUSED_SM90_HEAD_DIMS(LONGATTN_X)
#undef LONGATTN_X
};

// A kernel's work grows with the columns it multiplies (Q K^T over pad_qk, P V over pad_v), so the
// cheapest pair has the smallest sum; a padded dim runs at the speed of its kernel's native one.
template <size_t N>
bool cheapest_cover(const HeadDims (&list)[N], int64_t dqk, int64_t dv, int* pad_qk, int* pad_v) {
  bool found = false;
  for (const HeadDims& d : list)
    if (dqk >= 1 && dv >= 1 && dqk <= d.qk && dv <= d.v &&
        (!found || d.qk + d.v < *pad_qk + *pad_v ||
         (d.qk + d.v == *pad_qk + *pad_v && d.qk < *pad_qk)))
      found = true, *pad_qk = d.qk, *pad_v = d.v;
  return found;
}
}  // namespace

bool fused_padded_head_dims(int64_t dqk, int64_t dv, int* pad_qk, int* pad_v, KvRead kv) {
  switch (kv) {
    case KvRead::kFp8:
      return cheapest_cover(kFp8Dims, dqk, dv, pad_qk, pad_v);
    case KvRead::kPagedRows:
      return cheapest_cover(kPagedRowsDims, dqk, dv, pad_qk, pad_v);
    default:
      return cheapest_cover(kSm80Dims, dqk, dv, pad_qk, pad_v);
  }
}

bool fused_sm90_padded_head_dims(int64_t dqk, int64_t dv, int* pad_qk, int* pad_v) {
  return cheapest_cover(kSm90Dims, dqk, dv, pad_qk, pad_v);
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

namespace {
// Calls fn(FusedInstance<...>{}) with the compiled kernel of the padded pair, type, tile shapes
// and K/V loader; an error when there is none.
template <class Fn>
cudaError_t with_kernel(int pad_qk, int pad_v, Mma16 type, bool decode, KvRead kv, Fn&& fn) {
#define LONGATTN_PICK(a, b, kKv)                                          \
  if (pad_qk == a && pad_v == b) {                                        \
    if (type == Mma16::kF16)                                              \
      return decode ? fn(FusedInstance<a, b, Mma16::kF16, true, kKv>{})   \
                    : fn(FusedInstance<a, b, Mma16::kF16, false, kKv>{}); \
    return decode ? fn(FusedInstance<a, b, Mma16::kBf16, true, kKv>{})    \
                  : fn(FusedInstance<a, b, Mma16::kBf16, false, kKv>{});  \
  }
  switch (kv) {
    case KvRead::kTiles: {
#define LONGATTN_X(a, b) LONGATTN_PICK(a, b, KvRead::kTiles)
      LONGATTN_FUSED_HEAD_DIMS(LONGATTN_X)
#undef LONGATTN_X
      break;
    }
    case KvRead::kPagedRows: {  // prefill tiles only
#define LONGATTN_X(a, b)                                                           \
  if (pad_qk == a && pad_v == b)                                                   \
    return type == Mma16::kF16                                                     \
               ? fn(FusedInstance<a, b, Mma16::kF16, false, KvRead::kPagedRows>{}) \
               : fn(FusedInstance<a, b, Mma16::kBf16, false, KvRead::kPagedRows>{});
      LONGATTN_FUSED_PAGED_ROWS_HEAD_DIMS(LONGATTN_X)
#undef LONGATTN_X
      break;
    }
    case KvRead::kFp8: {
#define LONGATTN_X(a, b) LONGATTN_PICK(a, b, KvRead::kFp8)
      LONGATTN_FUSED_FP8_HEAD_DIMS(LONGATTN_X)
#undef LONGATTN_X
      break;
    }
  }
#undef LONGATTN_PICK
  return cudaErrorInvalidValue;
}
}  // namespace

cudaError_t fused_kernel_info(int dqk, int dv, Mma16 type, bool decode, KvRead kv,
                              FusedKernelInfo* info) {
  int pad_qk = 0, pad_v = 0;
  if (!fused_padded_head_dims(dqk, dv, &pad_qk, &pad_v, kv)) return cudaErrorInvalidValue;
  return with_kernel(pad_qk, pad_v, type, decode, kv,
                     [&](auto kernel) { return decltype(kernel)::info(info); });
}

cudaError_t fused_launch(int dqk, int dv, Mma16 type, bool decode, KvRead kv, const FusedParams& p,
                         cudaStream_t stream, bool programmatic) {
  int pad_qk = 0, pad_v = 0;
  if (!fused_padded_head_dims(dqk, dv, &pad_qk, &pad_v, kv)) return cudaErrorInvalidValue;
  return with_kernel(pad_qk, pad_v, type, decode, kv, [&](auto kernel) {
    return decltype(kernel)::launch(p, stream, programmatic);
  });
}

#define LONGATTN_PICK90(a, b, call)                                    \
  if (pad_qk == a && pad_v == b)                                       \
    return type == Mma16::kF16 ? Sm90Instance<a, b, Mma16::kF16>::call \
                               : Sm90Instance<a, b, Mma16::kBf16>::call;

cudaError_t fused_sm90_kernel_info(int dqk, int dv, Mma16 type, FusedKernelInfo* info) {
  int pad_qk = 0, pad_v = 0;
  if (!fused_sm90_padded_head_dims(dqk, dv, &pad_qk, &pad_v)) return cudaErrorInvalidValue;
#define LONGATTN_X(a, b) LONGATTN_PICK90(a, b, info(info))
  LONGATTN_FUSED_SM90_HEAD_DIMS(LONGATTN_X)
#undef LONGATTN_X
  return cudaErrorInvalidValue;
}

cudaError_t fused_sm90_launch(int dqk, int dv, Mma16 type, const FusedParams& p,
                              const CUtensorMap& k_map, const CUtensorMap& v_map,
                              cudaStream_t stream) {
  int pad_qk = 0, pad_v = 0;
  if (!fused_sm90_padded_head_dims(dqk, dv, &pad_qk, &pad_v)) return cudaErrorInvalidValue;
#define LONGATTN_X(a, b) LONGATTN_PICK90(a, b, launch(p, k_map, v_map, stream))
  LONGATTN_FUSED_SM90_HEAD_DIMS(LONGATTN_X)
#undef LONGATTN_X
  return cudaErrorInvalidValue;
}

}  // namespace longattn::cuda
