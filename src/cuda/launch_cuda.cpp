#include "cuda/launch_cuda.hpp"

#include <cudaTypedefs.h>  // PFN_cuTensorMapEncodeTiled

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <numeric>
#include <utility>

#include "cuda/fused_traits_sm90.hpp"
#include "cuda/merge_cuda.hpp"

namespace longattn::cuda {
namespace {

// LONGATTN_CUDA_KERNEL=sm80 keeps Hopper on the portable kernel (tests and benchmarks of it).
bool sm90_allowed() {
  static const bool allowed = [] {
    const char* v = std::getenv("LONGATTN_CUDA_KERNEL");
    return !(v && std::strcmp(v, "sm80") == 0);
  }();
  return allowed;
}

// Whether the sm_90a kernel can run these args: 16-bit inputs on compute capability 9.0, every
// head dim up to 512 (others padded to its compiled ones: TMA zero-fills K and V past the real
// columns), every row of Q, K, V and O on 16 bytes (TMA's stride rule; Q is copied in 16-byte
// pieces), any page size. kernel_for decides whether it should.
bool sm90_applies(const longattn_args& a) {
  int pad_qk = 0, pad_v = 0;
  if (!sm90_allowed() || a.dtype == LONGATTN_FLOAT32 ||
      !fused_sm90_padded_head_dims(a.head_dim_qk, a.head_dim_v, &pad_qk, &pad_v))
    return false;
  for (int which = 0; which < 4; ++which)
    if (!tensor_rows_aligned(a, which, 16)) return false;
  int device = 0, major = 0, minor = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  if (major != 9 || minor != 0) return false;
  return true;
}

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

// Whether TMA can describe K and V (16-byte aligned bases and strides, sizes in range).
bool kv_maps_encode(const longattn_args& a, int block_k) {
  CUtensorMap k_map, v_map;
  const int rows = kv_box_rows(a, block_k);
  return make_kv_map(a, a.k, a.k_strides, a.head_dim_qk, rows, &k_map) == cudaSuccess &&
         make_kv_map(a, a.v, a.v_strides, a.head_dim_v, rows, &v_map) == cudaSuccess;
}

}  // namespace

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

// Whether the library launches the merge as a programmatic dependent (sm_90+): its launch then
// overlaps the fused kernel's last blocks, which takes up to a couple of microseconds off a
// decode call (bench/NOTES.md).
constexpr bool kDefaultProgrammaticMerge = true;

// The sm_90a kernel runs prefill wherever it can; decode shapes stay on the portable kernel's
// decode tiles (sized for a few query rows), unless their pages split its key tile.
cudaError_t kernel_for(const longattn_args& a, FusedKernelInfo* info) {
  const int dqk = int(a.head_dim_qk), dv = int(a.head_dim_v);
  const bool decode = fused_use_decode(a);
  cudaError_t e = fused_kernel_info(dqk, dv, mma_type_for(a.dtype), decode, info);
  const bool portable_tiles_pages =
      e == cudaSuccess && (!a.block_table || a.page_size % info->traits.block_k == 0);
  int pad_qk = 0, pad_v = 0;
  if ((!decode || !portable_tiles_pages) && sm90_applies(a) &&
      fused_sm90_padded_head_dims(dqk, dv, &pad_qk, &pad_v) &&
      kv_maps_encode(a, fused_sm90_traits(pad_qk, pad_v).block_k)) {
    FusedKernelInfo sm90;
    if (fused_sm90_kernel_info(dqk, dv, mma_type_for(a.dtype), &sm90) == cudaSuccess &&
        sm90.blocks_per_sm > 0) {
      *info = sm90;
      return cudaSuccess;
    }
    cudaGetLastError();  // no sm_90a code in this build: the portable kernel runs
  }
  info->family = 80;
  info->decode = decode;
  info->head_dim_qk = info->traits.head_dim_qk, info->head_dim_v = info->traits.head_dim_v;
  info->block_q = info->traits.block_q();
  info->block_k = info->traits.block_k;
  info->threads = info->traits.threads();
  return e;
}

int choose_splits(const longattn_args& a, const FusedKernelInfo& info, int sm_count) {
  const int64_t bq = info.block_q, bk = info.block_k;
  const int64_t items = a.batch * a.kv_heads * ((a.q_len * (a.q_heads / a.kv_heads) + bq - 1) / bq);
  const int64_t slots = int64_t(std::max(1, sm_count)) * std::max(1, info.blocks_per_sm);
  const int64_t key_tiles = (a.kv_len + bk - 1) / bk;
  const int64_t most = std::min<int64_t>(kMaxSplits, key_tiles / kMinTilesPerSplit);
  if (most < 2 || items >= slots) return 1;
  if (info.decode) {
    // The decode kernel streams K/V: one block per SM already keeps enough bytes in flight, a
    // second block on some SMs makes those SMs the tail, and every split adds merge work. So as
    // many splits as give each SM one block: more blocks were slower or no faster on every
    // decode shape measured (bench/NOTES.md).
    const int64_t s = std::min<int64_t>(most, std::max(1, sm_count) / items);
    return s >= 2 ? int(s) : 1;
  }
  // Prefill: fraction of the slots of the last wave that is busy, for each candidate count.
  auto efficiency = [&](int64_t s) {
    const int64_t blocks = items * s, waves = (blocks + slots - 1) / slots;
    return double(blocks) / double(waves * slots);
  };
  double best = 0;
  for (int64_t s = 1; s <= most; ++s) best = std::max(best, efficiency(s));
  for (int64_t s = 1; s <= most; ++s)
    if (efficiency(s) >= 0.85 * best) return int(s);
  return 1;
}

int64_t split_o_floats(const longattn_args& a, int splits) {
  return splits * a.batch * a.q_heads * a.q_len * a.head_dim_v;
}
int64_t split_lse_floats(const longattn_args& a, int splits) {
  return splits * a.batch * a.q_heads * a.q_len;
}

// Whether a decode kernel is launched as a programmatic dependent of the kernel before it (sm_90+):
// its blocks are placed while that kernel drains and wait on the device (griddepcontrol.wait)
// before reading anything, which hides the launch gap: it matters most at the smallest decode
// shapes (bench/NOTES.md).
constexpr bool kDefaultProgrammaticDecode = true;

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
    CUtensorMap k_map, v_map;
    p.kv_box_rows = kv_box_rows(a, ki.block_k);
    if ((e = make_kv_map(a, a.k, a.k_strides, a.head_dim_qk, p.kv_box_rows, &k_map)) !=
            cudaSuccess ||
        (e = make_kv_map(a, a.v, a.v_strides, a.head_dim_v, p.kv_box_rows, &v_map)) != cudaSuccess)
      return e;
    e = fused_sm90_launch(dqk, dv, type, p, k_map, v_map, stream);
  } else {
    bool programmatic = fused == MergeLaunch::kProgrammatic;
    if (fused == MergeLaunch::kDefault)
      programmatic = kDefaultProgrammaticDecode && ki.decode && ki.arch >= 90;
    e = fused_launch(dqk, dv, type, ki.decode, p, stream, programmatic && ki.arch >= 90);
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
  // Programmatic launch needs sm_90 (the fused kernel's code says which the device runs).
  bool programmatic = merge == MergeLaunch::kProgrammatic;
  if (merge == MergeLaunch::kDefault) programmatic = kDefaultProgrammaticMerge && ki.arch >= 90;
  return merge_launch(m, stream, programmatic);
}

}  // namespace longattn::cuda
