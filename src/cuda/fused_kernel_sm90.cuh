// The Hopper (sm_90a) fused prefill kernel: TMA loads, wgmma tensor cores, warp specialization.
//
// A work item is block_q packed rows of one (batch, kv head), as in the portable kernel (GQA
// packing, causal/window tile skipping, longest items first, split_kv partials). A block runs
// items one after another when there are more than fit on the GPU at once (the persistent
// schedule, Sm90Schedule below), with 1 + consumers warpgroups:
// - the producer warpgroup (one thread of it) streams the block's K and V tiles with TMA into a
//   ring of shared-memory slots, each guarded by a "full" mbarrier (TMA bytes landed) and an
//   "empty" one (every consumer warp is done reading), and takes the block's next item while the
//   consumers finish the last one. It keeps registers to a minimum (setmaxnreg.dec) so the
//   consumers can hold O.
// - each consumer warpgroup owns 64 query rows: S = Q K^T by wgmma from shared memory into
//   registers, scale/softcap/mask, online softmax, then O += P V by wgmma with P in registers
//   (the S accumulator layout is the A-fragment layout) and V read N-major from shared memory.
//   The consumers (two; three at d = 64) run the same loop and take turns issuing their GEMMs
//   (pingpong, d <= 192): a consumer issues S_t and P V_{t-1} in its turn, then runs softmax_t
//   while the next consumer's GEMMs keep the tensor cores busy.
// head_dim_v 512 (split_keys): O of 64 x 512 floats does not fit a warpgroup. Both consumers take
// the same 64 rows; each computes S for half of a 64-key tile and O for half of the columns. They
// exchange row maxima and P (bf16/f16, swizzled like a K tile) through shared memory, and the P V
// wgmma reads P from there.
//
// Q is loaded by the consumers, each its own rows (cp.async into the swizzled layout; the GQA row
// packing is a gather TMA boxes cannot express), the next item's while the last P V product of
// this one runs (not with split_keys, whose consumers share rows). Tiles past kv_len are
// zero-filled by TMA and masked.
//
// Shared layout (Sm90SmemLayout, read through Sm90Smem; 1024-byte aligned, every operand in
// 64-column panels of 128-byte rows with the 128-byte swizzle that TMA writes and wgmma reads):
// Q [panels][block_q][64], ring slots of [panels][block_k][64] each holding a K or a V tile (one
// tile serves both when V is K), P, row max/sum exchange, then the ring's mbarriers and the item
// queue.
//
// The code by role: sm90_produce (the producer and the persistent schedule's taking of items),
// sm90_take / sm90_issue_q / sm90_finish_q (a consumer's items and Q), the consumers' main loop in
// the kernel (the order of GEMMs, waits and releases that makes the overlap, with the softmax), and
// sm90_store (the epilogue). All are inlined into the one kernel.
#pragma once

#include <cuda.h>
#include <cuda_runtime.h>
#include <math_constants.h>

#include <cstdint>
#include <type_traits>

#include "cuda/fused_common_cuda.cuh"
#include "cuda/fused_cuda.hpp"
#include "cuda/fused_traits_sm90.hpp"
#include "cuda/kernel_info_cache_cuda.hpp"
#include "cuda/ptx_sm90.cuh"

namespace longattn::cuda {

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ == 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define LONGATTN_SM90A_CODE 1
#else
#define LONGATTN_SM90A_CODE 0
#endif

// Registers per thread after the rebalance: the producer needs few; the consumers hold O, S and P
// and share the rest of the 65536 an SM has, in multiples of 8 (two consumers: 240 each, three:
// 160). setmaxnreg only moves registers within the block's launch allocation (65536 / threads,
// rounded down to 8, per thread): what the producer gives up must cover what the consumers add,
// or setmaxnreg.inc waits forever (with 32 producer registers the two-consumer kernel hangs).
constexpr int kProducerRegs = 24;
__host__ __device__ constexpr int consumer_regs(int consumers) {
  return (65536 - 128 * kProducerRegs) / (128 * consumers) / 8 * 8;
}
__host__ __device__ constexpr bool registers_balance(int consumers) {
  const int threads = 128 * (1 + consumers), launch = 65536 / threads / 8 * 8;
  return 128 * kProducerRegs + 128 * consumers * consumer_regs(consumers) <= threads * launch;
}
static_assert(registers_balance(2) && registers_balance(3), "setmaxnreg needs what it frees");

// Byte offset of element (row, col) in a swizzled [panels][rows][64] 16-bit tile: 16-byte chunk
// c of row r sits at chunk c ^ (r % 8) (what TMA's 128-byte swizzle writes).
__device__ __forceinline__ uint32_t swizzled_offset(int rows, int row, int col) {
  return uint32_t((col / 64) * rows * 128 + row * 128 + ((((col % 64) / 8) ^ (row % 8)) * 16) +
                  (col % 8) * 2);
}

// A value every lane of the warp holds, broadcast from lane 0 so the compiler can prove it is
// uniform and keep it (and what is computed from it, such as wgmma descriptors) in uniform
// registers; a value derived from threadIdx.x or a loop's modulo otherwise lands in vector
// registers and is moved over before each wgmma.
template <class T>
__device__ __forceinline__ T warp_uniform(T x) {
  return __shfl_sync(0xffffffffu, x, 0);
}

// The persistent schedule (Sm90Instance::launch). With a counter, the grid has one block per
// resident slot and each block takes work items (work_tile's numbering: head by head, heaviest
// first) from it until they run out, so blocks that finish early take more, in the order the
// hardware would start them, and one item's start overlaps the last one's end: the producer
// streams the next item's K and V while the consumers finish. Without one (items fit in one wave,
// or the launch has no counter of its own), every block takes item blockIdx.x.
struct Sm90Schedule {
  int32_t items;  // under 2^31 (Sm90Instance::launch)
  int* counter;   // [next item, blocks done]: zero at launch, zeroed again by the last block
};

// The counters, one pair per stream that launches this kernel (sched_counter_slot): launches on
// one stream never overlap, so a pair is never shared by two running grids.
static __device__ int g_sched_counters[kSchedCounterSlots][2];

// The block's shared memory at Sm90Traits::smem_layout's offsets: shared-window addresses (what
// TMA, wgmma descriptors and mbarriers take) and, where threads read or write it, pointers.
template <int kDqk, int kDv>
struct Sm90Smem {
  static constexpr Sm90Traits kT = fused_sm90_traits(kDqk, kDv);
  static constexpr Sm90SmemLayout kL = kT.smem_layout();
  static constexpr uint32_t kAtomBytes = Sm90Traits::kAtomBytes;
  static_assert(kL.q % kAtomBytes == 0 && kL.ring % kAtomBytes == 0 &&
                    kT.slot_bytes() % kAtomBytes == 0 && kL.p % kAtomBytes == 0 &&
                    kT.p_bytes() / 2 % kAtomBytes == 0,
                "swizzled operands (Q, ring slots, P) start on swizzle atoms");
  static_assert(kL.full_bars % 8 == 0, "mbarriers are 8-byte words");
  uint32_t base;          // kL's start: the dynamic shared memory rounded up to a swizzle atom
  unsigned char* bytes0;  // the same byte, as a pointer

  __device__ __forceinline__ explicit Sm90Smem(unsigned char* raw) {
    const uint32_t r = ptx::smem_addr(raw);
    base = (r + kAtomBytes - 1) & ~(kAtomBytes - 1);
    bytes0 = raw + (base - r);
  }
  __device__ __forceinline__ uint32_t q() const { return base + uint32_t(kL.q); }
  __device__ __forceinline__ uint32_t slot(int s) const {
    return base + uint32_t(kL.ring) + uint32_t(s) * uint32_t(kT.slot_bytes());
  }
  // split_keys: P buffer i of two, swizzled like a K tile.
  __device__ __forceinline__ uint32_t p(int i) const {
    return base + uint32_t(kL.p) + uint32_t(i) * uint32_t(kT.p_bytes() / 2);
  }
  // split_keys: the consumers' row maxima and sums, [2][block_q][consumers] floats.
  __device__ __forceinline__ float* reduce() const {
    return reinterpret_cast<float*>(bytes0 + kL.reduce);
  }
  __device__ __forceinline__ uint32_t full_bar(int s) const {
    return base + uint32_t(kL.full_bars) + 8 * s;
  }
  __device__ __forceinline__ uint32_t empty_bar(int s) const {
    return base + uint32_t(kL.empty_bars) + 8 * s;
  }
  __device__ __forceinline__ uint32_t item_full(int i) const {
    return base + uint32_t(kL.item_full) + 8 * i;
  }
  __device__ __forceinline__ uint32_t item_empty(int i) const {
    return base + uint32_t(kL.item_empty) + 8 * i;
  }
  __device__ __forceinline__ volatile int* items() const {
    return reinterpret_cast<volatile int*>(bytes0 + kL.items);
  }
  __device__ __forceinline__ unsigned char* ptr(uint32_t addr) const {
    return bytes0 + (addr - base);
  }
};

// The producer, warpgroup 0. Thread 0 takes the work items and loads each K/V tile in one TMA box
// per panel. Paged K/V whose pages split a tile (kBoxes) comes in boxes of kv_box_rows keys (pieces
// inside one page), one lane of warp 0 per box; lane 0 takes the items. The two modes are compiled
// apart (sm90_produce): sharing one loop, they overflow the producer's 24 registers and the spills
// slow every paged shape (bench/NOTES.md).
// Ring entry e is K tile e (K and V shared) or K tile e/2 / V tile e/2 of the block's items.
template <int kDqk, int kDv, bool kBoxes>
__device__ __forceinline__ void sm90_produce_tiles(const FusedParams& p, const CUtensorMap& k_map,
                                                   const CUtensorMap& v_map,
                                                   const Sm90Schedule& sched,
                                                   const Sm90Smem<kDqk, kDv>& sm) {
  constexpr Sm90Traits kT = fused_sm90_traits(kDqk, kDv);
  constexpr int kBQ = kT.block_q(), kBK = kT.block_k, kSlots = kT.slots;
  constexpr int kPanel = Sm90Traits::kPanel;
  constexpr uint32_t kRowBytes = Sm90Traits::kRowBytes;
  const int lane = threadIdx.x % 32;
  const bool lead = lane == 0;
  const bool kv_shared = p.kv_shared != 0;
  int e = 0;  // ring entries so far, over all of the block's items
  for (int n = 0;; ++n) {
    int w = n == 0 ? int(blockIdx.x) : -1;
    if (sched.counter) {
      if (n >= 2) ptx::mbar_wait(sm.item_empty(n % 2), uint32_t(n / 2 - 1) & 1);
      if (lead) {
        w = atomicAdd(sched.counter, 1);
        if (w >= sched.items) w = -1;
        sm.items()[n % 2] = w;
        ptx::mbar_arrive(sm.item_full(n % 2));  // releases the write to the consumers
      }
      if constexpr (kBoxes) w = __shfl_sync(0xffffffffu, w, 0);
    }
    if (w < 0) break;
    const WorkTile wt = work_tile(p, w, kBQ, kBK);
    const int entries = kv_shared ? wt.n_tiles : 2 * wt.n_tiles;
    for (int x = 0; x < entries; ++x, ++e) {
      const int slot = e % kSlots, use = e / kSlots;
      const int64_t j0 = int64_t(wt.t_begin + (kv_shared ? x : x / 2)) * kBK;
      const bool is_v = !kv_shared && (x & 1);
      const int panels = (is_v ? kDv : kDqk) / kPanel;
      const void* map = is_v ? &v_map : &k_map;
      const uint32_t dst = sm.slot(slot);
      if constexpr (!kBoxes) {
        if (use > 0) ptx::mbar_wait(sm.empty_bar(slot), uint32_t(use - 1) & 1);
        int token = int(j0), outer = wt.b;
        if (p.block_table) {  // pages hold whole tiles; TMA zero-fills an id outside the pool
          outer = p.block_table[wt.b * p.block_table_stride + j0 / p.page_size];
          token = int(j0 % p.page_size);
        }
        ptx::mbar_arrive_expect_tx(sm.full_bar(slot), uint32_t(panels) * kBK * kRowBytes);
        for (int pn = 0; pn < panels; ++pn)
          ptx::tma_load_4d(dst + pn * kBK * kRowBytes, map, sm.full_bar(slot), pn * kPanel, token,
                           wt.kv_head, outer);
      } else {
        // Box bx holds keys j0 + bx * rows onwards, looked up in the block table. Boxes past the
        // last page (a tail tile) read the last page again: those keys are masked and their V
        // rows zeroed (prepare_v), and the block table ends there.
        const int rows = p.kv_box_rows, boxes = kBK / rows;
        auto locate = [&](int bx, int* token, int* outer) {
          const int64_t j = j0 + int64_t(bx) * rows;
          const int64_t page = min(j / p.page_size, (p.kv_len - 1) / p.page_size);
          *outer = p.block_table[wt.b * p.block_table_stride + page];
          *token = int(j % p.page_size);
        };
        // A lane's first box is located before the wait for the slot: the read overlaps it.
        int token = 0, outer = 0;
        if (lane < boxes) locate(lane, &token, &outer);
        if (use > 0) ptx::mbar_wait(sm.empty_bar(slot), uint32_t(use - 1) & 1);
        if (lead) ptx::mbar_arrive_expect_tx(sm.full_bar(slot), uint32_t(panels) * kBK * kRowBytes);
        __syncwarp();  // the expected bytes are set before any box lands
        for (int bx = lane; bx < boxes; bx += 32) {
          if (bx != lane) locate(bx, &token, &outer);
          for (int pn = 0; pn < panels; ++pn)
            ptx::tma_load_4d(dst + pn * kBK * kRowBytes + bx * rows * kRowBytes, map,
                             sm.full_bar(slot), pn * kPanel, token, wt.kv_head, outer);
        }
      }
    }
  }
  // The last block to finish zeroes the counter for the next launch that takes it. (The fence
  // orders this block's last take before its count; the last count sees every take.)
  if (lead && sched.counter) {
    __threadfence();
    if (atomicAdd(sched.counter + 1, 1) == int(gridDim.x) - 1) {
      sched.counter[0] = 0;
      sched.counter[1] = 0;
    }
  }
}

// Thread 0 produces, or all of warp 0 for pages that split a tile (only then: idle lanes spinning
// on the barriers would take issue slots from the consumers).
template <int kDqk, int kDv>
__device__ __forceinline__ void sm90_produce(const FusedParams& p, const CUtensorMap& k_map,
                                             const CUtensorMap& v_map, const Sm90Schedule& sched,
                                             const Sm90Smem<kDqk, kDv>& sm) {
  if (p.kv_box_rows != fused_sm90_traits(kDqk, kDv).block_k) {
    if (threadIdx.x < 32) sm90_produce_tiles<kDqk, kDv, true>(p, k_map, v_map, sched, sm);
  } else if (threadIdx.x == 0) {
    sm90_produce_tiles<kDqk, kDv, false>(p, k_map, v_map, sched, sm);
  }
}

// A consumer thread's place in a work item: its warpgroup's rows, keys of S and columns of O in
// the tile (split_keys: the consumers share rows and split keys and columns), its warp's 16 rows.
// Warp-uniform where the wgmma descriptors read it (see warp_uniform).
template <int kDqk, int kDv>
struct Sm90Consumer {
  static constexpr Sm90Traits kT = fused_sm90_traits(kDqk, kDv);
  static constexpr bool kSplitKeys = kT.split_keys;
  static constexpr int kNS = kSplitKeys ? kT.block_k / 2 : kT.block_k;  // keys of S
  static constexpr int kNO = kSplitKeys ? kDv / 2 : kDv;                // columns of O
  int consumer, ctid, lane, wq;  // wq: the warp in the warpgroup, rows 16 wq .. 16 wq + 15
  int q_row0, key0, col0;        // its first row, key and O column in the tile
  float scale_log2;              // the scale in log2 units

  __device__ __forceinline__ Sm90Consumer(int warpgroup, float scale)
      : consumer(warpgroup - 1),
        ctid(int(threadIdx.x) - 128),
        lane(int(threadIdx.x % 32)),  // unsigned arithmetic: the compiler knows it is >= 0
        wq(int(threadIdx.x / 32 % 4)),
        q_row0(kSplitKeys ? 0 : 64 * consumer),
        key0(kSplitKeys ? consumer * kNS : 0),
        col0(kSplitKeys ? consumer * kNO : 0),
        scale_log2(scale * kLog2e) {}

  // split_keys: combines this thread's two row values with the other consumer's (max or sum)
  // through `buf` [64 rows][2 consumers].
  __device__ __forceinline__ void exchange(float (&v)[2], float* buf, bool take_max) const {
    if (lane % 4 == 0)
#pragma unroll
      for (int h = 0; h < 2; ++h) buf[(16 * wq + 8 * h + lane / 4) * 2 + consumer] = v[h];
    ptx::named_barrier(2, 256);
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const float* r = buf + (16 * wq + 8 * h + lane / 4) * 2;
      v[h] = take_max ? fmaxf(r[0], r[1]) : r[0] + r[1];
    }
  }
};

// The two query rows a consumer thread holds in an item (wgmma accumulator layout: rows lane / 4
// and lane / 4 + 8 of its warp's 16): positions (q_len marks a padding row) and heads.
struct Sm90Rows {
  int b;
  int i[2], head[2];
};

// Item n of the persistent schedule's queue, for a consumer warp: lane 0 reads it and frees its
// entry.
template <int kDqk, int kDv>
__device__ __forceinline__ int sm90_take(const Sm90Smem<kDqk, kDv>& sm, int n, int lane) {
  int w = 0;
  ptx::mbar_wait(sm.item_full(n % 2), uint32_t(n / 2) & 1);
  if (lane == 0) {
    w = sm.items()[n % 2];
    ptx::mbar_arrive(sm.item_empty(n % 2));
  }
  return __shfl_sync(0xffffffffu, w, 0);
}

// Q: the consumer's 64 rows of [block_q][Dqk] into the swizzled panels, 16 bytes per thread and
// step (cp.async: the GQA row packing is a gather TMA boxes cannot express), synchronized within
// the warpgroup only, so a consumer starts its next item while the others finish theirs.
// (split_keys: the consumers share their rows and load them together.)
template <int kDqk, int kDv, bool kPadded>
__device__ __forceinline__ void sm90_issue_q(const FusedParams& p, const Sm90Consumer<kDqk, kDv>& c,
                                             uint32_t s_q, const WorkTile& qt) {
  constexpr Sm90Traits kT = fused_sm90_traits(kDqk, kDv);
  constexpr bool kSplitKeys = kT.split_keys;
  const char* q_bytes = static_cast<const char*>(p.q);
  const int g = p.group, rows = p.q_len * g;
  constexpr int kChunks = kDqk / 8, kLoaders = kSplitKeys ? 128 * kT.consumers : 128;
  const int tid = kSplitKeys ? c.ctid : c.ctid % 128;
  for (int idx = tid; idx < 64 * kChunks; idx += kLoaders) {
    const int r = c.q_row0 + idx / kChunks, ch = idx % kChunks;
    const int R = int(qt.row0) + r;
    const char* src = q_bytes;
    if (R < rows) {
      const int64_t head = int64_t(qt.kv_head) * g + R % g;
      src += (qt.b * p.q_stride[0] + head * p.q_stride[1] + (R / g) * p.q_stride[2] + ch * 8) *
             Sm90Traits::kElemBytes;
    }
    if constexpr (kPadded) {
      // Columns past head_dim_qk are zeros (with zero K columns, S is exact).
      const int bytes =
          R < rows ? Sm90Traits::kElemBytes * min(8, max(0, p.head_dim_qk - ch * 8)) : 0;
      ptx::cp_async(s_q + swizzled_offset(kT.block_q(), r, ch * 8), bytes > 0 ? src : q_bytes,
                    bytes);
    } else {
      ptx::cp_async_16(s_q + swizzled_offset(kT.block_q(), r, ch * 8), src, R < rows);
    }
  }
  ptx::cp_async_commit();
}
template <int kDqk, int kDv>
__device__ __forceinline__ void sm90_finish_q(const Sm90Consumer<kDqk, kDv>& c) {
  constexpr Sm90Traits kT = fused_sm90_traits(kDqk, kDv);
  ptx::cp_async_wait<0>();
  ptx::fence_proxy_async();  // wgmma reads Q through the async proxy
  if constexpr (kT.split_keys)
    ptx::named_barrier(1, 128 * kT.consumers);
  else
    ptx::named_barrier(7 + c.consumer, 128);
}

// The epilogue: full row sums (over both consumers with split_keys), sinks, 1/l, LSE; each thread
// stores its fragment columns of O (split_kv: float32 partials and their LSE).
template <int kDqk, int kDv, Mma16 kType, bool kPadded>
__device__ __forceinline__ void sm90_store(const FusedParams& p, const Sm90Consumer<kDqk, kDv>& c,
                                           const Sm90Rows& rows, int split, float* s_red,
                                           const float (&o)[Sm90Consumer<kDqk, kDv>::kNO / 2],
                                           const float (&m)[2], float (&l)[2]) {
  constexpr Sm90Traits kT = fused_sm90_traits(kDqk, kDv);
  constexpr bool kSplitKeys = kT.split_keys;
  constexpr int kNO = Sm90Consumer<kDqk, kDv>::kNO;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    l[h] += __shfl_xor_sync(0xffffffffu, l[h], 1);
    l[h] += __shfl_xor_sync(0xffffffffu, l[h], 2);
  }
  if constexpr (kSplitKeys) c.exchange(l, s_red + 2 * kT.block_q(), false);
  const bool writes_lse = c.lane % 4 == 0 && (!kSplitKeys || c.consumer == 0);
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int i = rows.i[h], head = rows.head[h];
    if (i >= p.q_len) continue;
    float inv, lse;
    finish_row(p, head, m[h], l[h], &inv, &lse);
    const int64_t row = (int64_t(rows.b) * p.q_heads + head) * p.q_len + i;  // [B, Hq, Lq]
    if (p.splits > 1) {
      // A partial result over this block's keys, float32; merge_kernel adds sinks and combines.
      // Rows of the real head_dim_v (the memory model's size): a padded kernel stores only those
      // columns, an odd one singly.
      const int64_t part_row = int64_t(split) * p.batch * p.q_heads * p.q_len + row;
      float* o_row = p.o_part + part_row * p.head_dim_v;
#pragma unroll
      for (int j = 0; j < kNO / 8; ++j) {
        const int col = c.col0 + 8 * j + 2 * (c.lane % 4);
        const float x = o[4 * j + 2 * h] * inv, y = o[4 * j + 2 * h + 1] * inv;
        if constexpr (kPadded)
          store_o_pair<kType>(reinterpret_cast<char*>(o_row), col, p.head_dim_v, x, y, true,
                              p.head_dim_v % 2 == 0);
        else
          *reinterpret_cast<float2*>(o_row + col) = make_float2(x, y);
      }
      if (writes_lse) p.lse_part[part_row] = lse;
      continue;
    }
    // O's rows start on 16 bytes (sm90_applies); columns past a padded kernel's real head_dim_v
    // are not stored, the last one singly where head_dim_v is odd.
    char* o_row = static_cast<char*>(p.o) +
                  (rows.b * p.o_stride[0] + head * p.o_stride[1] + int64_t(i) * p.o_stride[2]) *
                      Sm90Traits::kElemBytes;
#pragma unroll
    for (int j = 0; j < kNO / 8; ++j) {
      const int col = c.col0 + 8 * j + 2 * (c.lane % 4);
      const float x = o[4 * j + 2 * h] * inv, y = o[4 * j + 2 * h + 1] * inv;
      if constexpr (kPadded)
        store_o_pair<kType>(o_row, col, p.head_dim_v, x, y, false, true);
      else
        *reinterpret_cast<uint32_t*>(o_row + 2 * col) = ptx::pack2<kType>(x, y);
    }
    if (p.lse && writes_lse) p.lse[row] = lse;
  }
}

// kElementwise: the kernel applies softcap and array masks. The plain one (neither, the common
// case) leaves that code out: at d = 256 its registers alone make the compiler spill in the main
// loop, which is slower (bench/NOTES.md).
// kPadded: the real head dims are narrower than kDqk / kDv (Q zero-filled, O stored column by
// column up to head_dim_v). A kernel of its own: the guarded stores make d = 512 spill.
template <int kDqk, int kDv, Mma16 kType, bool kElementwise, bool kPadded>
__global__ void __launch_bounds__(fused_sm90_traits(kDqk, kDv).threads(), 1)
    fused_sm90_kernel(const __grid_constant__ FusedParams p,
                      const __grid_constant__ CUtensorMap k_map,
                      const __grid_constant__ CUtensorMap v_map, const Sm90Schedule sched) {
#if LONGATTN_SM90A_CODE
  constexpr Sm90Traits kT = fused_sm90_traits(kDqk, kDv);
  constexpr int kBQ = kT.block_q(), kBK = kT.block_k, kSlots = kT.slots;
  constexpr int kConsumers = kT.consumers;
  constexpr bool kSplitKeys = kT.split_keys;
  constexpr bool kPingpong = kT.pingpong;
  constexpr bool kOverlap = kT.overlap;
  static_assert(!(kPingpong && kSplitKeys), "split_keys consumers share rows: no pingpong");

  constexpr int kNS = Sm90Consumer<kDqk, kDv>::kNS;  // keys of S per consumer
  constexpr int kNO = Sm90Consumer<kDqk, kDv>::kNO;  // columns of O per consumer
  constexpr int kPanel = Sm90Traits::kPanel;
  constexpr uint32_t kRowBytes = Sm90Traits::kRowBytes, kAtomBytes = Sm90Traits::kAtomBytes;
  static_assert(kDqk % kPanel == 0 && kDv % kPanel == 0, "head dims come in 64-column panels");
  static_assert(kNS % 16 == 0 && kNO <= 256 && kBK % 8 == 0, "wgmma shapes");
  static_assert(!kSplitKeys || (kBK == kPanel && kNO == 4 * kPanel), "split_keys: P is one panel");

  extern __shared__ unsigned char smem_raw[];
  const Sm90Smem<kDqk, kDv> sm(smem_raw);
  const uint32_t s_q = sm.q();

  // Warp-uniform (see warp_uniform): the consumer's row and key offsets, and with them the wgmma
  // descriptors, live in uniform registers. Computed per thread, they cost a descriptor rebuild
  // and register moves before every wgmma, which slows d = 256 down (bench/NOTES.md).
  const int warpgroup = warp_uniform(int(threadIdx.x) / 128);
  const int g = p.group;
  const int packed_rows = p.q_len * g;  // under 2^30 (backend_cuda.cpp)
  const int64_t off = int64_t(p.kv_len) - p.q_len;
  const bool kv_shared = p.kv_shared != 0;
  // split_kv: the merge kernel, launched as a programmatic dependent (launch_cuda.cpp), may be
  // scheduled now; it waits (griddepcontrol.wait) until this grid has finished and flushed.
  if (p.splits > 1) asm volatile("griddepcontrol.launch_dependents;" ::: "memory");

  if (threadIdx.x == 0) {
    for (int s = 0; s < kSlots; ++s) {
      ptx::mbar_init(sm.full_bar(s), 1);                // the producer's expect_tx arrival
      ptx::mbar_init(sm.empty_bar(s), 4 * kConsumers);  // one arrival per consumer warp
    }
    for (int i = 0; i < 2; ++i) {
      ptx::mbar_init(sm.item_full(i), 1);
      ptx::mbar_init(sm.item_empty(i), 4 * kConsumers);
    }
    ptx::mbar_fence_init();
  }
  __syncthreads();  // the last block-wide barrier: the producer leaves early

  if (warpgroup == 0) {
    ptx::setmaxnreg_dec<kProducerRegs>();
    sm90_produce(p, k_map, v_map, sched, sm);
    return;
  }

  // ---- consumers
  ptx::setmaxnreg_inc<consumer_regs(kConsumers)>();
  const Sm90Consumer<kDqk, kDv> c(warpgroup, p.scale);
  const int consumer = c.consumer, lane = c.lane, wq = c.wq;
  const int q_row0 = c.q_row0, key0 = c.key0, col0 = c.col0;
  const bool last_consumer = consumer == kConsumers - 1;
  float* s_red = sm.reduce();

  int e_base = 0;  // ring entries of the block's earlier items
  int ahead = -2;  // the next item when already taken (with its Q in flight), else -2
  for (int item = 0;; ++item) {
    int w = item == 0 ? int(blockIdx.x) : -1;
    if (sched.counter) w = ahead != -2 ? ahead : sm90_take(sm, item, lane);
    const bool q_in_flight = ahead >= 0;
    ahead = -2;
    if (w < 0) break;
    const WorkTile wt = work_tile(p, w, kBQ, kBK);
    const int b = wt.b, kv_head = wt.kv_head, split = wt.split, t_begin = wt.t_begin;
    const int n_tiles = wt.n_tiles;
    const int64_t row0 = wt.row0, i_first = wt.i_first, i_last = wt.i_last;

    // split_keys: the row exchange buffers are reused item after item; an item without tiles
    // would otherwise reach its exchange before the other consumer has read the last one.
    if constexpr (kSplitKeys) ptx::named_barrier(2, 256);
    if (q_in_flight) {
      sm90_finish_q(c);
    } else if (n_tiles > 0) {
      sm90_issue_q<kDqk, kDv, kPadded>(p, c, s_q, wt);
      sm90_finish_q(c);
    }

    Sm90Rows rows;
    rows.b = b;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int R = int(row0) + q_row0 + 16 * wq + 8 * h + lane / 4;
      rows.i[h] = R < packed_rows ? R / g : p.q_len;
      rows.head[h] = kv_head * g + R % g;
    }
    // Tiles [plain_first, plain_last] lie inside every row's band: with no softcap or mask they
    // need only the scale (the others get per-element bounds). (A negative scale reverses the order
    // of scores: then every tile takes the general path.)
    int plain_first = 1, plain_last = 0;
    if (!kElementwise && p.scale > 0.f) {
      int64_t lim = p.kv_len;  // plain tiles end at or before this key
      if (p.causal) lim = min(lim, i_first + off + 1);
      plain_last = int(max(lim, int64_t(-1)) / kBK) - 1 - t_begin;
      if (lim < 0) plain_last = -1;
      plain_first = 0;
      if (p.window_left >= 0) {
        // Plain tiles start at or after this key.
        const int64_t start = i_last + off - p.window_left;
        if (start > 0) plain_first = int((start + kBK - 1) / kBK) - t_begin;
      }
    }

    float o[kNO / 2];
#pragma unroll
    for (int n = 0; n < kNO / 2; ++n) o[n] = 0.f;
    float m[2] = {-CUDART_INF_F, -CUDART_INF_F}, l[2] = {0.f, 0.f};

    // With kOverlap the loop overlaps the softmax of tile t with the P V product of tile t - 1:
    // S_t = Q K_t and O += P_{t-1} V_{t-1} are issued together, the softmax waits for S_t only, and
    // O is rescaled once the P V product has landed. P_t is kept in registers (fragments `pa`) or,
    // with split_keys, in one of two shared buffers (the other consumer may still read the last).
    float s[kNS / 2];
    uint32_t pa[kNS / 16][4];
    auto tile_j0 = [&](int t) { return int64_t(t_begin + t) * kBK; };
    auto k_entry = [&](int t) { return e_base + (kv_shared ? t : 2 * t); };
    auto v_entry = [&](int t) { return e_base + (kv_shared ? t : 2 * t + 1); };
    auto slot_addr = [&](int entry) { return sm.slot(entry % kSlots); };

    // S = Q K^T: kDqk / 16 wgmma steps of K = 16, 32 bytes apart in a swizzled row.
    auto issue_s = [&](int t) {
      const int e = k_entry(t);
      ptx::mbar_wait(sm.full_bar(e % kSlots), uint32_t(e / kSlots) & 1);
      const uint32_t k_tile = warp_uniform(slot_addr(e));
      ptx::wgmma_fence();
      // A descriptor's low bits are the address / 16: an operand's steps add constants to a base.
      const uint64_t a0 = ptx::sw128_desc(s_q + q_row0 * kRowBytes, 16, kAtomBytes);
      const uint64_t b0 = ptx::sw128_desc(k_tile + key0 * kRowBytes, 16, kAtomBytes);
#pragma unroll
      for (int ks = 0; ks < kDqk / 16; ++ks) {
        const uint32_t in_row = (ks % 4) * 32;
        const uint64_t a = a0 + (((ks / 4) * kBQ * kRowBytes + in_row) >> 4);
        const uint64_t bk = b0 + (((ks / 4) * kBK * kRowBytes + in_row) >> 4);
        ptx::Wgmma<kType, kNS>::template ss<0>(s, a, bk, ks > 0);
      }
      ptx::wgmma_commit();
    };
    auto release = [&](int entry) {
      __syncwarp();
      if (lane == 0) ptx::mbar_arrive(sm.empty_bar(entry % kSlots));
    };
    // K_t's slot, unless V shares it (then V's release frees it). The arrival is predicated, not
    // branched around: with a branch here ptxas keeps the softmax after the wait for P V.
    auto release_k = [&](int t) {
      __syncwarp();
      if (lane == 0 && !kv_shared) ptx::mbar_arrive(sm.empty_bar(k_entry(t) % kSlots));
    };

    // O += P V, V read N-major: 16 keys per step are two 8-row groups (1024 bytes apart) of every
    // 64-column panel (kBK rows apart).
    // Waits for V_t; on a paged tail tile, zeroes its rows past kv_len.
    auto prepare_v = [&](int t) {
      const int e = v_entry(t);
      ptx::mbar_wait(sm.full_bar(e % kSlots), uint32_t(e / kSlots) & 1);
      const int64_t j0 = tile_j0(t);
      if (p.block_table && j0 + kBK > p.kv_len) {
        // The last page's slots past kv_len hold stale data (NaN, say) that P = 0 would not cancel:
        // zero those V rows (TMA zero-fills them for contiguous K/V). The first barrier waits for
        // the other consumer's reads of this slot as K.
        ptx::named_barrier(3, 128 * kConsumers);
        const int valid = int(p.kv_len - j0), chunks = (kDv / kPanel) * 8;
        unsigned char* v_bytes = sm.ptr(slot_addr(e));
        for (int idx = c.ctid; idx < (kBK - valid) * chunks; idx += 128 * kConsumers) {
          const int row = valid + idx / chunks, pn = (idx % chunks) / 8, ch = idx % 8;
          *reinterpret_cast<uint4*>(v_bytes + pn * kBK * kRowBytes + row * kRowBytes + ch * 16) =
              make_uint4(0, 0, 0, 0);
        }
        ptx::fence_proxy_async();
        ptx::named_barrier(3, 128 * kConsumers);
      }
    };
    auto issue_pv = [&](int t) {
      const int e = v_entry(t);
      const uint32_t v_tile = warp_uniform(slot_addr(e)) + (col0 / kPanel) * kBK * kRowBytes;
      const uint64_t v0 = ptx::sw128_desc(v_tile, kBK * kRowBytes, kAtomBytes);
      ptx::wgmma_fence();
      if constexpr (!kSplitKeys) {
#pragma unroll
        for (int kk = 0; kk < kNS / 16; ++kk)
          ptx::Wgmma<kType, kNO>::template rs<1>(o, pa[kk], v0 + ((kk * 2 * kAtomBytes) >> 4), 1);
      } else {
        const uint64_t p0 = ptx::sw128_desc(sm.p(t % 2), 16, kAtomBytes);
#pragma unroll
        for (int kk = 0; kk < kBK / 16; ++kk)
          ptx::Wgmma<kType, kNO>::template ss<1>(o, p0 + ((kk * 32) >> 4),
                                                 v0 + ((kk * 2 * kAtomBytes) >> 4), 1);
      }
      ptx::wgmma_commit();
    };

    // Runs f(t, std::true_type) for a plain tile t (inside every row's band, no softcap or mask:
    // the scale is all it needs), else f(t, std::false_type).
    auto with_plain = [&](int t, auto f) {
      if (t >= plain_first && t <= plain_last)
        f(t, std::true_type{});
      else
        f(t, std::false_type{});
    };

    // Scores -> probabilities in place: scale/softcap/mask in log2 units, the new row max (over
    // both consumers with split_keys), exp2, row sums, and in corr the factor O must be rescaled
    // by. Plain tiles keep the raw scores: their max is the raw max times the (positive) scale, and
    // the scale rides in exp2's argument, one FFMA, which saves a multiply per score.
    // A lambda of the main loop: as a function, ptxas schedules the loop differently and slower
    // (bench/NOTES.md).
    auto softmax = [&](int t, float(&corr)[2], auto plain_tag) {
      constexpr bool kPlain = decltype(plain_tag)::value;
      const int j0 = int(tile_j0(t));
      const float mul = kPlain ? c.scale_log2 : 1.f;  // what turns s into log2 units
      if constexpr (!kPlain) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          // The row's visible keys as tile columns [c_lo, c_hi): bounds, causal, window. (Computed
          // here, not kept per row: registers are the limit at d = 256.)
          const int64_t i = rows.i[h];
          int64_t lo_j = 0, hi_j = i < p.q_len ? p.kv_len : 0;
          if (p.causal) hi_j = min(hi_j, i + off + 1);
          if (p.window_left >= 0) lo_j = max(lo_j, i + off - p.window_left);
          const int c_lo = int(min(max(lo_j - j0, int64_t(0)), int64_t(kBK)));
          const int c_hi = int(min(max(hi_j - j0, int64_t(0)), int64_t(kBK)));
#pragma unroll
          for (int j = 0; j < kNS / 8; ++j)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              const int col = key0 + 8 * j + 2 * (lane % 4) + e;
              float& x = s[4 * j + 2 * h + e];
              x = col < c_lo || col >= c_hi ? -CUDART_INF_F : x * c.scale_log2;
            }
        }
        // Softcap and the array mask work in natural-log units, per visible element. A pass of its
        // own: fused with the bounds above, its addresses and loads spill registers at d = 256.
        if constexpr (kElementwise) {
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int64_t mask_row = rows.b * p.mask_stride[0] + rows.head[h] * p.mask_stride[1] +
                                     int64_t(rows.i[h]) * p.mask_stride[2];
#pragma unroll
            for (int j = 0; j < kNS / 8; ++j)
#pragma unroll
              for (int e = 0; e < 2; ++e) {
                const int col = key0 + 8 * j + 2 * (lane % 4) + e;
                float& x = s[4 * j + 2 * h + e];
                if (x != -CUDART_INF_F)
                  x = capped_masked(p, x * kLn2, mask_row + int64_t(j0 + col) * p.mask_stride[3]) *
                      kLog2e;
              }
          }
        }
      }
      // Row maxima and sums run as kChains independent chains (the 8-key blocks alternate), which
      // halves their dependent latency; that pays at d = 64, and four chains are no better than
      // two (bench/NOTES.md).
      constexpr int kChains = 2;
      float mx[2];
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float va[kChains];
#pragma unroll
        for (int k = 0; k < kChains; ++k) va[k] = -CUDART_INF_F;
#pragma unroll
        for (int j = 0; j < kNS / 8; ++j)
          va[j % kChains] = fmaxf(va[j % kChains], fmaxf(s[4 * j + 2 * h], s[4 * j + 2 * h + 1]));
        float v = va[0];
#pragma unroll
        for (int k = 1; k < kChains; ++k) v = fmaxf(v, va[k]);
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
        mx[h] = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2)) * mul;
      }
      if constexpr (kSplitKeys) c.exchange(mx, s_red, true);
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const float m_new = fmaxf(m[h], mx[h]);
        // A row with nothing visible yet keeps m = -inf; subtracting 0 keeps exp2 at 0, not NaN.
        const float base = m_new == -CUDART_INF_F ? 0.f : m_new;
        corr[h] = ptx::exp2_approx(m[h] - base);
        m[h] = m_new;
        float sa[kChains];
#pragma unroll
        for (int k = 0; k < kChains; ++k) sa[k] = 0.f;
#pragma unroll
        for (int j = 0; j < kNS / 8; ++j) {
          s[4 * j + 2 * h] = ptx::exp2_approx(fmaf(s[4 * j + 2 * h], mul, -base));
          s[4 * j + 2 * h + 1] = ptx::exp2_approx(fmaf(s[4 * j + 2 * h + 1], mul, -base));
          sa[j % kChains] += s[4 * j + 2 * h] + s[4 * j + 2 * h + 1];
        }
        float sum = sa[0];
#pragma unroll
        for (int k = 1; k < kChains; ++k) sum += sa[k];
        l[h] = l[h] * corr[h] + sum;
      }
    };

    // P_t: A fragments in registers (the S accumulator layout is the A-fragment layout), or with
    // split_keys this consumer's keys into shared buffer t % 2, swizzled like a K tile.
    auto make_p = [&](int t) {
      if constexpr (!kSplitKeys) {
#pragma unroll
        for (int kk = 0; kk < kNS / 16; ++kk) {
          pa[kk][0] = ptx::pack2<kType>(s[8 * kk + 0], s[8 * kk + 1]);
          pa[kk][1] = ptx::pack2<kType>(s[8 * kk + 2], s[8 * kk + 3]);
          pa[kk][2] = ptx::pack2<kType>(s[8 * kk + 4], s[8 * kk + 5]);
          pa[kk][3] = ptx::pack2<kType>(s[8 * kk + 6], s[8 * kk + 7]);
        }
      } else {
        unsigned char* p_tile = sm.ptr(sm.p(t % 2));
#pragma unroll
        for (int j = 0; j < kNS / 8; ++j)
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int row = 16 * wq + 8 * h + lane / 4, col = key0 + 8 * j + 2 * (lane % 4);
            *reinterpret_cast<uint32_t*>(p_tile + swizzled_offset(kBQ, row, col)) =
                ptx::pack2<kType>(s[4 * j + 2 * h], s[4 * j + 2 * h + 1]);
          }
        ptx::fence_proxy_async();    // the P V wgmma reads P through the async proxy
        ptx::named_barrier(2, 256);  // both halves written
      }
    };
    auto rescale_o = [&](const float(&corr)[2]) {
      // Once the row maxima settle, most tiles leave them unchanged (corr = 1): when that holds for
      // the whole warp, skip the kNO / 2 multiplies (an exact shortcut: x * 1 = x), which pays at
      // d = 128 to 512 (bench/NOTES.md).
      if (__all_sync(0xffffffffu, corr[0] == 1.f && corr[1] == 1.f)) return;
#pragma unroll
      for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int j = 0; j < kNO / 8; ++j)
          o[4 * j + 2 * h] *= corr[h], o[4 * j + 2 * h + 1] *= corr[h];
    };
    auto pin_p = [&] {
      if constexpr (!kSplitKeys) {
#pragma unroll
        for (int kk = 0; kk < kNS / 16; ++kk)
#pragma unroll
          for (int r = 0; r < 4; ++r) asm volatile("" : "+r"(pa[kk][r])::"memory");
      }
    };

    // Pingpong: the consumers take turns issuing their GEMMs (named barriers 4 + consumer), so
    // one's softmax runs while another's GEMMs have the tensor cores; the tensor pipe runs the
    // GEMMs in issue order, which keeps the consumers out of phase. (prepare_v stays outside a
    // turn: its barrier needs every consumer.)
    // Turns go round: consumer c waits on barrier 4 + c for its predecessor's arrival and then
    // arrives on its successor's. The last consumer opens the first turn and skips its last
    // arrival, so every barrier ends complete.
    if (kPingpong && last_consumer && n_tiles > 0) ptx::named_barrier_arrive(4, 256);
    auto turn_begin = [&] {
      if constexpr (kPingpong) ptx::named_barrier(4 + consumer, 256);
    };
    auto turn_end = [&](bool last) {
      if constexpr (kPingpong)
        if (!(last && last_consumer))
          ptx::named_barrier_arrive(4 + (consumer + 1) % kConsumers, 256);
    };

    if constexpr (kOverlap) {
      if (n_tiles > 0) {
        float corr[2];
        turn_begin();
        issue_s(0);
        turn_end(false);
        ptx::wgmma_wait<0>();
        ptx::pin(s);
        release_k(0);
        with_plain(0, [&](int t, auto plain) { softmax(t, corr, plain); });  // O = 0: no rescale
        make_p(0);
      }
      // The loop body is compiled twice, for plain and general tiles, so that neither has a
      // branch between the waits for S_t and for P V_{t-1}: with one, ptxas puts the whole softmax
      // after the second wait (scripts/sm90_sass.py shows where it goes).
      auto step = [&](int t, auto plain) {
        float corr[2];
        if constexpr (kPingpong) {
          prepare_v(t - 1);
          turn_begin();
          issue_s(t);
          issue_pv(t - 1);
          turn_end(false);
        } else {
          issue_s(t);  // first: V_{t-1} may still be landing
          prepare_v(t - 1);
          issue_pv(t - 1);
        }
        ptx::wgmma_wait<1>();  // S_t has landed (groups complete in order); P V may still run
        ptx::pin(s);
        release_k(t);
        softmax(t, corr, plain);
        ptx::wgmma_wait<0>();
        ptx::pin(o);
        pin_p();  // P_{t-1}'s registers stay untouched until its wgmma is done
        release(v_entry(t - 1));
        rescale_o(corr);
        make_p(t);
      };
      for (int t = 1; t < n_tiles; ++t) with_plain(t, step);
      if (n_tiles > 0) {
        prepare_v(n_tiles - 1);
        turn_begin();
        issue_pv(n_tiles - 1);
        turn_end(true);
        // This consumer is done with its Q rows (S of the last tile has landed): load the next
        // item's while the P V product and the epilogue run. Short items gain most (the 1K grid
        // waits on Q once per 8-16 key tiles).
        if (sched.counter) {
          ahead = sm90_take(sm, item + 1, lane);
          if (ahead >= 0)
            sm90_issue_q<kDqk, kDv, kPadded>(p, c, s_q, work_tile(p, ahead, kBQ, kBK));
        }
        ptx::wgmma_wait<0>();
        ptx::pin(o);
        pin_p();
        release(v_entry(n_tiles - 1));
      }
    } else {
      // One tile at a time: fewer live registers (no P of the previous tile while S is computed).
      auto step = [&](int t, auto plain) {
        float corr[2];
        turn_begin();
        issue_s(t);
        turn_end(false);
        ptx::wgmma_wait<0>();
        ptx::pin(s);
        release_k(t);
        softmax(t, corr, plain);
        rescale_o(corr);
        make_p(t);
        prepare_v(t);
        turn_begin();
        issue_pv(t);
        turn_end(t == n_tiles - 1);
        ptx::wgmma_wait<0>();
        ptx::pin(o);
        pin_p();
        release(v_entry(t));
      };
      for (int t = 0; t < n_tiles; ++t) with_plain(t, step);
    }

    sm90_store<kDqk, kDv, kType, kPadded>(p, c, rows, split, s_red, o, m, l);
    e_base += kv_shared ? n_tiles : 2 * n_tiles;
  }     // the block's work items
#endif  // LONGATTN_SM90A_CODE
}

// What the driver says about one sm90 kernel on `device`, and the shared-memory opt-in it needs.
template <int kDqk, int kDv, Mma16 kType>
struct Sm90Query {
  static cudaError_t query(int device, FusedKernelInfo* info) {
    constexpr Sm90Traits kT = fused_sm90_traits(kDqk, kDv);
    auto kernel = fused_sm90_kernel<kDqk, kDv, kType, false, false>;
    cudaFuncAttributes attr;
    cudaError_t e = cudaFuncGetAttributes(&attr, kernel);
    if (e != cudaSuccess) return e;
    info->family = 90;
    info->head_dim_qk = kDqk, info->head_dim_v = kDv;
    info->arch = attr.binaryVersion;
    info->block_q = kT.block_q(), info->block_k = kT.block_k, info->threads = kT.threads();
    info->smem_bytes = kT.smem_bytes();
    info->regs = attr.numRegs;
    info->local_bytes = int(attr.localSizeBytes);
    info->blocks_per_sm = 0;
    if ((e = cudaDeviceGetAttribute(&info->sm_count, cudaDevAttrMultiProcessorCount, device)) !=
        cudaSuccess)
      return e;
    void* counters = nullptr;
    if ((e = cudaGetSymbolAddress(&counters, g_sched_counters)) != cudaSuccess) return e;
    info->sched_counters = static_cast<int*>(counters);
    // Only sm_90a machine code has the kernel's body (an sm_80 build of it is empty).
    if (attr.binaryVersion != 90) return cudaSuccess;
    int optin = 0;
    if ((e = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device)) !=
        cudaSuccess)
      return e;
    if (info->smem_bytes > optin) return cudaSuccess;
    for (auto k : {kernel, fused_sm90_kernel<kDqk, kDv, kType, true, false>,
                   fused_sm90_kernel<kDqk, kDv, kType, false, true>,
                   fused_sm90_kernel<kDqk, kDv, kType, true, true>})
      if ((e = cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    int(info->smem_bytes))) != cudaSuccess)
        return e;
    return cudaOccupancyMaxActiveBlocksPerMultiprocessor(&info->blocks_per_sm, kernel, kT.threads(),
                                                         size_t(info->smem_bytes));
  }
};

template <int kDqk, int kDv, Mma16 kType>
cudaError_t Sm90Instance<kDqk, kDv, kType>::info(FusedKernelInfo* info) {
  return KernelInfoCache<Sm90Query<kDqk, kDv, kType>>::get().lookup(info);
}

template <int kDqk, int kDv, Mma16 kType>
cudaError_t Sm90Instance<kDqk, kDv, kType>::launch(const FusedParams& p, const CUtensorMap& k_map,
                                                   const CUtensorMap& v_map, cudaStream_t stream) {
  auto& cache = KernelInfoCache<Sm90Query<kDqk, kDv, kType>>::get();
  cudaError_t e = cudaSuccess;
  for (int attempt = 0; attempt < 2; ++attempt) {
    FusedKernelInfo ki;
    if ((e = cache.lookup(&ki)) != cudaSuccess) return e;
    if (ki.blocks_per_sm == 0) return cudaErrorInvalidConfiguration;
    const int64_t tiles = (int64_t(p.q_len) * p.group + ki.block_q - 1) / ki.block_q;
    const int64_t items = tiles * p.splits * p.kv_heads * p.batch;
    if (p.splits < 1 || items > 0x7fffffff || items <= 0) return cudaErrorInvalidValue;
    Sm90Schedule sched{int32_t(items), nullptr};
    int64_t blocks = items;
    // Persistent where items outnumber the resident blocks (see Sm90Schedule): faster than one
    // item per block on short sequences, about even on long ones (bench/NOTES.md).
    const int64_t resident = int64_t(ki.sm_count) * ki.blocks_per_sm;
    const int slot = items > resident ? sched_counter_slot(stream) : -1;
    if (slot >= 0) {
      sched.counter = ki.sched_counters + 2 * slot;
      blocks = resident;
    }
    const dim3 grid(static_cast<unsigned>(blocks));
    const bool elementwise = p.mask_kind != 0 || p.softcap > 0.f;
    const bool padded = p.head_dim_qk != kDqk || p.head_dim_v != kDv;
    auto kernel = elementwise ? (padded ? fused_sm90_kernel<kDqk, kDv, kType, true, true>
                                        : fused_sm90_kernel<kDqk, kDv, kType, true, false>)
                              : (padded ? fused_sm90_kernel<kDqk, kDv, kType, false, true>
                                        : fused_sm90_kernel<kDqk, kDv, kType, false, false>);
    kernel<<<grid, ki.threads, size_t(ki.smem_bytes), stream>>>(p, k_map, v_map, sched);
    if ((e = cudaGetLastError()) == cudaSuccess) return e;
    cache.forget();  // query again (and set the opt-in again) before the one retry
  }
  return e;
}

}  // namespace longattn::cuda
