#include "cuda/policy_cuda.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "core/detail.hpp"
#include "cuda/fused_traits_sm90.hpp"
#include "cuda/launch_cuda.hpp"

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

// Whether the sm_90a kernel can run these args: 16-bit inputs (K and V too) on compute capability
// 9.0, every head dim up to 512 (others padded to its compiled ones: TMA zero-fills K and V past
// the real columns), every row of Q, K, V and O on 16 bytes (TMA's stride rule; Q is copied in
// 16-byte pieces), an additive mask on 4 bytes, any page size; *pad_qk, *pad_v get the compiled
// head dims it runs. kernel_for decides whether it should.
bool sm90_applies(const longattn_args& a, int* pad_qk, int* pad_v) {
  if (!sm90_allowed() || a.dtype == LONGATTN_FLOAT32 || numeric::is_fp8(a.kv_dtype) ||
      !fused_sm90_padded_head_dims(a.head_dim_qk, a.head_dim_v, pad_qk, pad_v))
    return false;
  for (int which = 0; which < 4; ++which)
    if (!tensor_rows_aligned(a, which, 16)) return false;
  if (a.mask.kind == LONGATTN_MASK_ADDITIVE && reinterpret_cast<uintptr_t>(a.mask.data) % 4 != 0)
    return false;
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

// AUTO splits only rows of at least this many keys: below it one pass is as fast.
constexpr int64_t kMinKeysForSplit = 1024;

}  // namespace

// The sm_90a kernel runs prefill wherever it can; decode shapes stay on the portable kernel's
// decode tiles (sized for a few query rows), unless their pages split its key tile. Pages that
// split the portable kernel's key tile make it look each row up (KvRead::kPagedRows).
cudaError_t kernel_for(const longattn_args& a, FusedKernelInfo* info) {
  const int dqk = int(a.head_dim_qk), dv = int(a.head_dim_v);
  const bool decode = fused_use_decode(a);
  KvRead kv = numeric::is_fp8(a.kv_dtype) ? KvRead::kFp8 : KvRead::kTiles;
  cudaError_t e = fused_kernel_info(dqk, dv, mma_type_for(a.dtype), decode, kv, info);
  if (e == cudaSuccess && a.block_table && kv == KvRead::kTiles &&
      a.page_size % info->traits.block_k != 0)
    kv = KvRead::kPagedRows;
  int pad_qk = 0, pad_v = 0;
  if ((!decode || kv == KvRead::kPagedRows) && sm90_applies(a, &pad_qk, &pad_v) &&
      kv_maps_encode(a, fused_sm90_traits(pad_qk, pad_v).block_k)) {
    FusedKernelInfo sm90;
    if (fused_sm90_kernel_info(dqk, dv, mma_type_for(a.dtype), &sm90) == cudaSuccess &&
        sm90.blocks_per_sm > 0) {
      *info = sm90;
      return cudaSuccess;
    }
    cudaGetLastError();  // no sm_90a code in this build: the portable kernel runs
  }
  // The row-lookup kernels come in prefill tiles only (a fallback): decode shapes run them too.
  const bool decode_tiles = decode && kv != KvRead::kPagedRows;
  if (kv == KvRead::kPagedRows)
    e = fused_kernel_info(dqk, dv, mma_type_for(a.dtype), decode_tiles, kv, info);
  info->family = 80;
  info->decode = decode_tiles;
  info->kv_read = kv;
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
  if (fused_use_decode(a)) {
    // A decode shape streams K/V (on either kernel): one block per SM already keeps enough bytes in
    // flight, a second block on some SMs makes those SMs the tail, and every split adds merge work.
    // So as many splits as give each SM one block: more blocks were slower or no faster on every
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

bool split_pays(const longattn_args& a, const FusedKernelInfo& info, int sm_count, int64_t blocks,
                std::string* why) {
  const int64_t sms = std::max(1, sm_count);
  const bool idle = blocks < sms, long_rows = a.kv_len >= kMinKeysForSplit;
  const int splits = idle && long_rows ? choose_splits(a, info, sm_count) : 1;
  if (why) {
    *why = detail::format("%lld (batch, kv head, query tile) block%s for %lld SMs",
                          (long long)blocks, blocks == 1 ? "" : "s", (long long)sms);
    if (idle && !long_rows)
      *why += detail::format(": rows under %lld keys are not split", (long long)kMinKeysForSplit);
    else if (idle && splits == 1)
      *why +=
          detail::format(": no split count (at least %d key tiles a slice) fills the SMs better",
                         kMinTilesPerSplit);
    else if (idle)
      *why += ": splitting the keys keeps every SM busy";
  }
  return splits > 1;
}

// The decode kernel's blocks are placed while the kernel before it drains and wait on the device
// (griddepcontrol.wait) before reading anything: this hides the launch gap, which matters most at
// the smallest decode shapes (bench/NOTES.md).
bool programmatic_fused(const FusedKernelInfo& info) { return info.decode && info.arch >= 90; }
// The merge's launch overlaps the fused kernel's last blocks: up to a couple of microseconds off a
// decode call (bench/NOTES.md).
bool programmatic_merge(const FusedKernelInfo& info) { return info.arch >= 90; }

}  // namespace longattn::cuda
