#include "cpu/policy_cpu.hpp"

#include <algorithm>

#include "core/detail.hpp"

namespace longattn::cpu {

using detail::ceil_div;

namespace {

// A tile holds about this many query rows: enough rows that converting a K/V tile once pays for
// itself across them (it costs ~1/rows of the tile's arithmetic), few enough that Q, K^T, S and O
// of a d=256 tile (~420 KiB) stay in one core's L2.
constexpr int64_t kRowsPerTile = 128;
// split_kv gives each split at least this many keys, so a split's work dwarfs its merge; AUTO
// splits only rows of at least kMinKeysForSplit keys, below which one pass is as fast.
constexpr int64_t kMinKeysPerSplit = 256;
constexpr int64_t kMinKeysForSplit = 1024;

int64_t tile_items(const longattn_args& a, const longattn_plan& p) {
  int64_t qt = ceil_div(a.q_len, p.block_q);
  return packs_gqa(p.path) ? a.batch * a.kv_heads * qt : a.batch * a.q_heads * qt;
}

}  // namespace

int64_t plan_items(const longattn_args& a, const longattn_plan& p) {
  if (p.path == LONGATTN_PATH_REFERENCE) return a.batch * a.q_heads * a.q_len;
  int64_t items = 0;  // saturates: only compared with thread and core counts
  if (__builtin_mul_overflow(tile_items(a, p), int64_t(p.splits), &items)) return INT64_MAX;
  return items;
}

void configure_plan(const longattn_args& a, const detail::DeviceContext& ctx, detail::Decision* d) {
  longattn_plan* p = &d->plan;
  const int64_t g = a.q_heads / a.kv_heads;
  const int64_t cores = std::max(1, ctx.info.cores);
  p->block_k = kKeysPerTile;
  p->block_q = static_cast<int32_t>(std::min(
      a.q_len, packs_gqa(p->path) ? std::max<int64_t>(1, kRowsPerTile / g) : kRowsPerTile));
  p->splits = 1;
  if (p->path == LONGATTN_PATH_SPLIT_KV) {
    // Enough (tile, split) items for two per core, so no core idles on the last one; the
    // caller's options.num_splits wins.
    int64_t want = ceil_div(2 * cores, tile_items(a, *p));
    p->splits = static_cast<int32_t>(
        std::clamp<int64_t>(want, 1, std::max<int64_t>(1, a.kv_len / kMinKeysPerSplit)));
    if (ctx.options && ctx.options->num_splits > 0) p->splits = ctx.options->num_splits;
  }
  int64_t threads = std::min<int64_t>(ctx.max_threads, plan_items(a, *p));
  if (p->threads > 0) threads = std::min<int64_t>(p->threads, threads);
  p->threads = static_cast<int32_t>(std::max<int64_t>(1, threads));
}

TileKernel tile_kernel(const longattn_args& a, const longattn_plan& p, const CpuIsa& isa,
                       int64_t rows_pad) {
  if (p.path == LONGATTN_PATH_UNFUSED) return TileKernel::kFp32;
  if (rows_pad == isa.width && p.block_k <= kKeysPerTile) return TileKernel::kVectorRows;
  const bool bf16 = a.dtype == LONGATTN_BFLOAT16 && detail::kv_dtype_of(a) == LONGATTN_BFLOAT16;
  if (isa.amx && bf16 && a.head_dim_qk % 32 == 0 && p.block_k % 32 == 0)
    return TileKernel::kAmxBf16;
  if (isa.bf16_dot && bf16 && a.head_dim_qk % 2 == 0) return TileKernel::kBf16Pairs;
  return TileKernel::kFp32;
}

// Splitting K/V pays when the fused path leaves cores idle: fewer tiles than cores.
bool split_pays(const longattn_args& a, const detail::DeviceContext& ctx,
                const detail::Decision& fused, std::string* why) {
  const int64_t items = plan_items(a, fused.plan), cores = std::max(1, ctx.info.cores);
  const bool idle = items < cores, long_rows = a.kv_len >= kMinKeysForSplit;
  if (why) {
    *why =
        detail::format("%lld (batch, kv head, query tile) item%s for %lld core%s", (long long)items,
                       items == 1 ? "" : "s", (long long)cores, cores == 1 ? "" : "s");
    if (idle)
      *why += long_rows ? ": splitting the keys keeps every core busy"
                        : detail::format(": rows under %lld keys are not split",
                                         (long long)kMinKeysForSplit);
  }
  return idle && long_rows;
}

}  // namespace longattn::cpu
