#include "cuda/launch_cuda.hpp"

#include <algorithm>

#include "cuda/merge_cuda.hpp"

namespace longattn::cuda {

// Whether the library launches the merge as a programmatic dependent (sm_90+): its launch then
// overlaps the fused kernel's last blocks. 0-0.8 us less per decode call on the H100 sweep, 2.2 us
// at the smallest shape once (bench/NOTES.md v0.2), where a call takes 19 us and more.
constexpr bool kDefaultProgrammaticMerge = true;

cudaError_t kernel_for(const longattn_args& a, FusedKernelInfo* info) {
  return fused_kernel_info(int(a.head_dim_qk), int(a.head_dim_v), mma_type_for(a.dtype),
                           fused_use_decode(a), info);
}

int choose_splits(const longattn_args& a, const FusedKernelInfo& info, int sm_count) {
  const int64_t bq = info.traits.block_q(), bk = info.traits.block_k;
  const int64_t items = a.batch * a.kv_heads * ((a.q_len * (a.q_heads / a.kv_heads) + bq - 1) / bq);
  const int64_t slots = int64_t(std::max(1, sm_count)) * std::max(1, info.blocks_per_sm);
  const int64_t key_tiles = (a.kv_len + bk - 1) / bk;
  const int64_t most = std::min<int64_t>(kMaxSplits, key_tiles / kMinTilesPerSplit);
  if (most < 2 || items >= slots) return 1;
  if (fused_use_decode(a)) {
    // The decode kernel streams K/V: one block per SM already keeps enough bytes in flight, a
    // second block on some SMs makes those SMs the tail, and every split adds merge work. So as
    // many splits as give each SM one block (H100 sweep, bench/NOTES.md v0.2: 128-132 blocks
    // were as fast as or faster than 192 and 264 on all 12 decode shapes, up to 18%).
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

cudaError_t run_fused(const longattn_args& a, int splits, float* o_part, float* lse_part,
                      cudaStream_t stream, MergeLaunch merge) {
  FusedParams p = make_fused_params(a);
  const int dqk = int(a.head_dim_qk), dv = int(a.head_dim_v);
  const Mma16 type = mma_type_for(a.dtype);
  const bool decode = fused_use_decode(a);
  if (splits <= 1) return fused_launch(dqk, dv, type, decode, p, stream);
  p.splits = splits, p.o_part = o_part, p.lse_part = lse_part;
  cudaError_t e = fused_launch(dqk, dv, type, decode, p, stream);
  if (e != cudaSuccess) return e;
  MergeParams m{};
  m.o_part = o_part, m.lse_part = lse_part, m.splits = splits;
  m.o = a.o, m.lse = a.lse, m.dtype = a.dtype, m.sinks = a.sinks;
  m.o_stride[0] = a.o_strides.batch, m.o_stride[1] = a.o_strides.head;
  m.o_stride[2] = a.o_strides.token;
  m.batch = int32_t(a.batch), m.q_heads = int32_t(a.q_heads), m.q_len = int32_t(a.q_len);
  m.head_dim_v = int32_t(a.head_dim_v);
  // Programmatic launch needs sm_90 (the fused kernel's code says which the device runs).
  bool programmatic = merge == MergeLaunch::kProgrammatic;
  if (merge == MergeLaunch::kDefault) {
    FusedKernelInfo info;
    programmatic =
        kDefaultProgrammaticMerge && kernel_for(a, &info) == cudaSuccess && info.arch >= 90;
  }
  return merge_launch(m, stream, programmatic);
}

}  // namespace longattn::cuda
