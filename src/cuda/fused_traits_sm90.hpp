// Tile shapes of the sm_90a kernel (fused_kernel_sm90.cuh), one entry per head dim, read by the
// kernel and the host (launch, shared-memory sizing, router) alike. Plain C++.
#pragma once

#include <cstdint>

#include "cuda/fused_traits_cuda.hpp"  // LONGATTN_HOST_DEVICE

namespace longattn::cuda {

// Byte offsets in the sm_90a kernel's shared memory (from its 1024-byte aligned start): Q, the ring
// of K/V slots, P and the row exchange (split_keys), one full and one empty mbarrier per slot, and
// the persistent schedule's item queue (two items, their full and empty mbarriers).
struct Sm90SmemLayout {
  int64_t q = 0, ring = 0, p = 0, reduce = 0;
  int64_t full_bars = 0, empty_bars = 0, item_full = 0, item_empty = 0, items = 0, end = 0;
};

// ---- The sm_90a kernel (fused_kernel_sm90.cuh): one producer warpgroup streams K and V tiles by
// TMA into a ring of shared-memory slots; `consumers` warpgroups of 64 query rows each run wgmma.
struct Sm90Traits {
  int head_dim_qk = 0, head_dim_v = 0;
  int consumers = 2;        // consumer warpgroups (each 64 rows unless split_keys)
  bool split_keys = false;  // the consumers share 64 rows: each computes S for half the keys and
                            // O for half of head_dim_v (O of 64 x 512 floats fits no warpgroup)
  int block_k = 0;          // keys per tile
  int slots = 0;            // ring slots; each holds one K tile or one V tile (K and V: one tile)
  bool overlap = false;     // softmax of tile t overlaps the P V product of tile t - 1
  bool pingpong = false;    // the consumers take turns issuing their GEMMs

  static constexpr int kElemBytes = 2;  // 16-bit inputs only
  static constexpr int kPanel = 64;     // elements per 128-byte swizzled row: one TMA box's width
  static constexpr uint32_t kRowBytes = kElemBytes * kPanel;  // 128: one swizzled row
  static constexpr uint32_t kAtomBytes = 8 * kRowBytes;       // 1024: 8 rows, one swizzle atom
  LONGATTN_HOST_DEVICE constexpr int threads() const { return 128 * (1 + consumers); }
  LONGATTN_HOST_DEVICE constexpr int block_q() const { return split_keys ? 64 : 64 * consumers; }
  LONGATTN_HOST_DEVICE constexpr int64_t q_bytes() const {
    return int64_t(block_q()) * head_dim_qk * 2;
  }
  LONGATTN_HOST_DEVICE constexpr int64_t slot_bytes() const {
    return int64_t(block_k) * (head_dim_qk > head_dim_v ? head_dim_qk : head_dim_v) * 2;
  }
  // split_keys: P goes through shared memory, two buffers (one may still be read by the P V
  // product of the previous tile), and the consumers exchange row maxima and sums.
  LONGATTN_HOST_DEVICE constexpr int64_t p_bytes() const {
    return split_keys ? 2 * int64_t(block_q()) * block_k * 2 : 0;
  }
  LONGATTN_HOST_DEVICE constexpr int64_t reduce_bytes() const {
    return split_keys ? int64_t(2) * block_q() * consumers * 4 : 0;
  }
  LONGATTN_HOST_DEVICE constexpr Sm90SmemLayout smem_layout() const {
    Sm90SmemLayout l;
    l.q = 0;  // swizzled operands start on 1024 bytes: Q, slots and P are multiples of it
    l.ring = l.q + q_bytes();
    l.p = l.ring + slots * slot_bytes();
    l.reduce = l.p + p_bytes();
    l.full_bars = l.reduce + reduce_bytes();
    l.empty_bars = l.full_bars + 8 * slots;
    l.item_full = l.empty_bars + 8 * slots;
    l.item_empty = l.item_full + 16;
    l.items = l.item_empty + 16;
    l.end = l.items + 16;
    return l;
  }
  // The layout plus a swizzle atom of slack to align its start to one.
  LONGATTN_HOST_DEVICE constexpr int64_t smem_bytes() const {
    return kAtomBytes + smem_layout().end;
  }
};

// Why these shapes. O lives in registers: 64 rows x head_dim_v floats per warpgroup is
// head_dim_v / 2 registers per thread, 128 at d = 256 of the 240 a consumer gets; S takes
// block_k / 2 more and P block_k / 4. So the key tile narrows as the head widens (FlashAttention-3
// uses 128 x 80 at d = 256 for the same reason). d = 512 cannot hold O at all and splits it.
// The ring then takes all remaining shared memory (at most 8 slots: more buys nothing).
// Consumers: three at d = 64 (192-row tiles, 160 registers each), two elsewhere. Under pingpong
// three are faster at d = 64 although they spill a little there; at d = 128 they do not fit
// (O + S + P of the overlap need more than 160 registers and spill heavily).
// How much of the softmax of tile t runs during the P V product of t - 1 is ptxas's choice: the
// row maxima and about a sixth of the exponentials (scripts/sm90_sass.py). Forcing all of it
// before the wait is slower at every head dim, and so is every shape that trades the 128-key tile
// for more overlap at d = 128: 64-key tiles, P through shared memory, three consumers with 64-key
// tiles (bench/NOTES.md).
LONGATTN_HOST_DEVICE constexpr Sm90Traits fused_sm90_traits(int dqk, int dv) {
  Sm90Traits t;
  t.head_dim_qk = dqk;
  t.head_dim_v = dv;
  t.split_keys = dv > 256;
  t.consumers = dqk <= 64 && dv <= 64 ? 3 : 2;
  t.block_k = dqk <= 128 ? 128 : dqk <= 192 ? 96 : dqk <= 256 ? 80 : 64;
  // Overlap and pingpong work together (FlashAttention-3's schedule): a consumer issues S_t and
  // P V_{t-1} in its turn, then runs softmax_t while the other consumer's GEMMs run. At d <= 192
  // the pair is the fastest schedule measured on the H100 (bench/NOTES.md); at d = 256 pingpong
  // gains nothing, so overlap runs alone. d = 512 has neither: its consumers share rows and meet
  // on barriers each tile, and overlap is slower there.
  t.overlap = !t.split_keys;
  t.pingpong = dqk <= 192;
  t.slots = 0;
  const int64_t fixed = t.smem_bytes();  // with no slots
  const int64_t fit = (kSm90SmemBytes - fixed) / (t.slot_bytes() + 16);
  t.slots = int(fit > 8 ? 8 : fit);
  return t;
}

}  // namespace longattn::cuda

// LONGATTN_FUSED_SM90_HEAD_DIMS(X): the (head_dim_qk, head_dim_v) pairs with an sm_90a kernel,
// written by scripts/gen_cuda_instances.py with the instantiation files.
#include "cuda/instantiations/fused_sm90_head_dims.inc"
