// The CPU backend's policy: every choice a CPU plan carries (tiles, splits, threads, the tile
// kernel, and AUTO's split_kv) is made here, from the shape and the machine's core count, never
// from options.num_threads: the result bits must not depend on the thread count.
#pragma once

#include <cstdint>
#include <string>

#include "core/backend.hpp"
#include "cpu/paths_cpu.hpp"

namespace longattn::cpu {

// The tiled paths pack a KV head's g query heads into one tile's rows; the unfused one does not.
inline bool packs_gqa(int32_t path) { return path != LONGATTN_PATH_UNFUSED; }

// Fills plan.block_q, block_k, splits and threads for d->plan.path (honouring a plan.threads the
// router lowered to fit a budget).
void configure_plan(const longattn_args& a, const detail::DeviceContext& ctx, detail::Decision* d);

// Independent work items of a configured plan: (batch, head, query tile, split) tiles, or rows
// for the reference.
int64_t plan_items(const longattn_args& a, const longattn_plan& p);

// The first kernel that runs the plan's tiles on this ISA (rows_pad: a tile's rows in vectors).
TileKernel tile_kernel(const longattn_args& a, const longattn_plan& p, const CpuIsa& isa,
                       int64_t rows_pad);

// PathList::split_pays for the CPU.
bool split_pays(const longattn_args& a, const detail::DeviceContext& ctx,
                const detail::Decision& fused, std::string* why);

}  // namespace longattn::cpu
