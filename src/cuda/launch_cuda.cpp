#include "cuda/launch_cuda.hpp"

#include <cudaTypedefs.h>  // PFN_cuTensorMapEncodeTiled

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <numeric>
#include <utility>

#include "core/detail.hpp"
#include "cuda/fused_traits_sm90.hpp"
#include "cuda/merge_cuda.hpp"

namespace longattn::cuda {
namespace {

// Rows per K/V TMA box: a paged tile is loaded page piece by page piece (gcd(page_size, block_k)
// rows stay inside one page wherever the tile starts), a contiguous one in one box per panel.
int kv_box_rows(const longattn_args& a, int block_k) {
  return a.block_table ? int(std::gcd(a.page_size, int64_t(block_k))) : block_k;
}

PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult found{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault,
                                         &found) != cudaSuccess ||
        found != cudaDriverEntryPointSuccess) {
      cudaGetLastError();
      f = nullptr;
    }
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(f);
  }();
  return fn;
}

// K or V as the 4-D tensor TMA reads: (head_dim, token, head, batch), or with paged K/V
// (head_dim, slot in page, head, block). Boxes are 64 elements (128 bytes, the swizzle width) by
// block_k tokens; a padded kernel's boxes past the real head dim read as zeros. A dimension of
// size 1 is never stepped; it gets a stride TMA accepts.
cudaError_t make_kv_map(const longattn_args& a, const void* base, const longattn_strides& s,
                        int64_t dim, int box_rows, CUtensorMap* map) {
  const auto encode = tensor_map_encoder();
  if (!encode) return cudaErrorNotSupported;
  const int64_t es = 2;  // the sm90 kernel runs 16-bit inputs only
  const cuuint64_t sizes[4] = {cuuint64_t(dim), cuuint64_t(a.block_table ? a.page_size : a.kv_len),
                               cuuint64_t(a.kv_heads),
                               cuuint64_t(a.block_table ? a.num_blocks : a.batch)};
  const int64_t given[3] = {s.token, s.head, s.batch};
  cuuint64_t strides[3];
  int64_t packed = dim * es;
  for (int d = 0; d < 3; ++d) {
    strides[d] = cuuint64_t(sizes[d + 1] > 1 ? given[d] * es : packed);
    packed = int64_t(strides[d]) * int64_t(sizes[d + 1]);
  }
  const cuuint32_t box[4] = {64, cuuint32_t(box_rows), 1, 1};
  const cuuint32_t unit[4] = {1, 1, 1, 1};
  const CUresult r = encode(map,
                            a.dtype == LONGATTN_FLOAT16 ? CU_TENSOR_MAP_DATA_TYPE_FLOAT16
                                                        : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16,
                            4, const_cast<void*>(base), sizes, strides, box, unit,
                            CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                            CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return r == CUDA_SUCCESS ? cudaSuccess : cudaErrorInvalidValue;
}

}  // namespace

// Whether TMA can describe K and V (16-byte aligned bases and strides, sizes in range).
bool kv_maps_encode(const longattn_args& a, int block_k) {
  CUtensorMap k_map, v_map;
  const int rows = kv_box_rows(a, block_k);
  return make_kv_map(a, a.k, a.k_strides, a.head_dim_qk, rows, &k_map) == cudaSuccess &&
         make_kv_map(a, a.v, a.v_strides, a.head_dim_v, rows, &v_map) == cudaSuccess;
}

int sched_counter_slot(cudaStream_t stream) {
  // cudaStreamPerThread is one handle for many streams (one per host thread): no slot.
  if (stream == cudaStreamPerThread) return -1;
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  int device = 0;
  if (cudaStreamIsCapturing(stream, &capture) != cudaSuccess ||
      cudaGetDevice(&device) != cudaSuccess) {
    cudaGetLastError();
    return -1;
  }
  if (capture != cudaStreamCaptureStatusNone) return -1;
  static std::mutex mu;
  static std::map<std::pair<int, cudaStream_t>, int> slots;
  static std::map<int, int> taken;  // per device
  std::lock_guard<std::mutex> lock(mu);
  const auto found = slots.find({device, stream});
  if (found != slots.end()) return found->second;
  int& n = taken[device];
  if (n >= kSchedCounterSlots) return -1;
  slots[{device, stream}] = n;
  return n++;
}

int64_t split_o_floats(const longattn_args& a, int splits) {
  return detail::checked_mul(split_lse_floats(a, splits), a.head_dim_v, "split_kv partials");
}
int64_t split_lse_floats(const longattn_args& a, int splits) {
  // a.batch * a.q_heads * a.q_len counts Q's rows, which validation keeps within int64.
  return detail::checked_mul(splits, a.batch * a.q_heads * a.q_len, "split_kv partials");
}

cudaError_t run_fused(const longattn_args& a, int splits, float* o_part, float* lse_part,
                      cudaStream_t stream, MergeLaunch merge, MergeLaunch fused) {
  FusedKernelInfo ki;
  cudaError_t e = kernel_for(a, &ki);
  if (e != cudaSuccess) return e;
  return launch_fused(a, ki, splits, o_part, lse_part, stream, merge, fused);
}

cudaError_t launch_fused(const longattn_args& a, const FusedKernelInfo& ki, int splits,
                         float* o_part, float* lse_part, cudaStream_t stream, MergeLaunch merge,
                         MergeLaunch fused) {
  FusedParams p = make_fused_params(a);
  const int dqk = int(a.head_dim_qk), dv = int(a.head_dim_v);
  const Mma16 type = mma_type_for(a.dtype);
  cudaError_t e = cudaSuccess;
  if (splits > 1) p.splits = splits, p.o_part = o_part, p.lse_part = lse_part;
  if (ki.family == 90) {
    if (p.kv_fp8) return cudaErrorInvalidValue;  // policy_cuda.cpp keeps FP8 caches off it
    CUtensorMap k_map, v_map;
    p.kv_box_rows = kv_box_rows(a, ki.block_k);
    if ((e = make_kv_map(a, a.k, a.k_strides, a.head_dim_qk, p.kv_box_rows, &k_map)) !=
            cudaSuccess ||
        (e = make_kv_map(a, a.v, a.v_strides, a.head_dim_v, p.kv_box_rows, &v_map)) != cudaSuccess)
      return e;
    e = fused_sm90_launch(dqk, dv, type, p, k_map, v_map, stream);
  } else {
    const bool programmatic = fused == MergeLaunch::kDefault ? programmatic_fused(ki)
                                                             : fused == MergeLaunch::kProgrammatic;
    e = fused_launch(dqk, dv, type, ki.decode, ki.kv_read, p, stream,
                     programmatic && ki.arch >= 90);
  }
  if (e != cudaSuccess || splits <= 1) return e;
  MergeParams m{};
  m.o_part = o_part, m.lse_part = lse_part, m.splits = splits;
  m.o = a.o, m.lse = a.lse, m.dtype = a.dtype, m.sinks = a.sinks;
  m.o_stride[0] = a.o_strides.batch, m.o_stride[1] = a.o_strides.head;
  m.o_stride[2] = a.o_strides.token;
  m.o_vec = tensor_rows_aligned(a, 3, 4 * (a.dtype == LONGATTN_FLOAT32 ? 4 : 2));
  m.batch = int32_t(a.batch), m.q_heads = int32_t(a.q_heads), m.q_len = int32_t(a.q_len);
  m.head_dim_v = int32_t(a.head_dim_v);
  const bool programmatic =
      merge == MergeLaunch::kDefault ? programmatic_merge(ki) : merge == MergeLaunch::kProgrammatic;
  return merge_launch(m, stream, programmatic && ki.arch >= 90);
}

}  // namespace longattn::cuda
