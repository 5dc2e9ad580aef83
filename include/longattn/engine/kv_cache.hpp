// KV caches: contiguous (one buffer per layer of one sequence) and paged (per-layer block pools and
// per-sequence block tables); both hand their keys to longattn_attention in place. Part of the
// engine (engine.hpp).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <unordered_map>
#include <vector>

#include "longattn/engine/allocator.hpp"
#include "longattn/engine/stack.hpp"

namespace longattn::engine {

// K/V of one layer of one sequence in one buffer per tensor, laid out [kv_heads, capacity, dim]:
// the cached keys are a strided [1, kv_heads, stored, dim] tensor that longattn_attention reads
// directly. Positions are absolute token indices; a sliding-window layer may drop keys before a
// position (release_before) so only [start, length) is stored.
class LONGATTN_API ContiguousKvCache {
 public:
  // capacity 0: start small and double as needed; otherwise preallocate `capacity` tokens, and
  // with fixed_capacity exceeding it is an OVER_BUDGET error instead of a reallocation.
  ContiguousKvCache(const LayerSpec& layer, int32_t dtype, std::shared_ptr<Allocator> allocator,
                    int64_t capacity = 0, bool fixed_capacity = false);
  ~ContiguousKvCache();
  ContiguousKvCache(const ContiguousKvCache&) = delete;
  ContiguousKvCache& operator=(const ContiguousKvCache&) = delete;
  ContiguousKvCache(ContiguousKvCache&&) noexcept;
  ContiguousKvCache& operator=(ContiguousKvCache&&) noexcept;

  // Appends n tokens from host memory: k [kv_heads, n, head_dim_qk], v [kv_heads, n, head_dim_v]
  // (v is ignored for k_eq_v layers and may be null).
  void append(const void* k, const void* v, int64_t n);
  // Drops stored keys before `position` (no later query can see them); never moves data.
  void release_before(int64_t position);
  // Forgets tokens from `length` on (a prefix-cache rollback); length must be >= start().
  void truncate(int64_t length);
  void clear();

  int64_t length() const { return length_; }  // tokens appended so far (absolute)
  int64_t start() const { return start_; }    // first position still stored
  int64_t stored() const { return length_ - start_; }
  int64_t capacity() const { return capacity_; }
  int64_t bytes_in_use() const { return stored() * token_bytes_; }
  int64_t bytes_reserved() const { return capacity_ * token_bytes_; }
  const LayerSpec& layer() const { return layer_; }

  // Points args at the stored keys: k, v, kv_heads, kv_len, head dims, dtype (an FP8 cache sets
  // kv_dtype and leaves dtype, Q's and O's, to the caller), device, k/v strides.
  void fill_args(longattn_args* args) const;
  // Host-readable pointer to one stored key/value row (CPU allocator only; tests).
  const void* key_row(int64_t position, int64_t head) const;
  const void* value_row(int64_t position, int64_t head) const;

 private:
  void reserve(int64_t tokens);  // makes room for `tokens` stored tokens after offset 0
  LayerSpec layer_;
  int32_t dtype_;
  int64_t elem_ = 0, token_bytes_ = 0;
  std::shared_ptr<Allocator> alloc_;
  char* k_ = nullptr;
  char* v_ = nullptr;  // == k_ for k_eq_v
  int64_t capacity_ = 0;
  bool fixed_ = false;
  int64_t offset_ = 0;  // buffer slot of position start_
  int64_t start_ = 0, length_ = 0;
};

// Fixed-size blocks carved from one allocation, reference counted. One pool per layer (a block
// holds block_size tokens of that layer: K [block_size, kv_heads, dqk] then V [.., dv]).
class LONGATTN_API BlockPool {
 public:
  BlockPool(std::shared_ptr<Allocator> allocator, int64_t block_bytes, int64_t capacity_blocks);
  ~BlockPool();
  BlockPool(const BlockPool&) = delete;
  BlockPool& operator=(const BlockPool&) = delete;

  // A free block with one reference. When none is free, asks the reclaimer (a prefix cache
  // evicting) until one is; throws OVER_BUDGET when nothing can be reclaimed.
  int32_t allocate();
  void retain(int32_t id);
  void release(int32_t id);  // back to the free list at zero references
  int32_t refs(int32_t id) const;
  char* block(int32_t id) const;
  char* base() const { return base_; }

  int64_t block_bytes() const { return block_bytes_; }
  int64_t capacity() const { return capacity_; }
  int64_t used() const { return capacity_ - static_cast<int64_t>(free_.size()); }
  int64_t free() const { return static_cast<int64_t>(free_.size()); }
  int64_t bytes_in_use() const { return used() * block_bytes_; }
  int64_t bytes_reserved() const { return capacity_ * block_bytes_; }
  void set_reclaimer(std::function<bool()> reclaim) { reclaim_ = std::move(reclaim); }

 private:
  void check(int32_t id, const char* what) const;
  std::shared_ptr<Allocator> alloc_;
  int64_t block_bytes_, capacity_;
  char* base_ = nullptr;
  std::vector<int32_t> refs_;
  std::vector<int32_t> free_;  // LIFO: the most recently freed block is reused first
  std::function<bool()> reclaim_;
};

// One layer of one sequence as stored in a paged cache. Element strides; block_table[i] is the
// physical block of logical block first_block + i. PagedKvCache::fill_args turns it into the
// paged K/V of longattn_args, which every path reads in place (no gather copy).
struct PagedLayerView {
  const void* k_blocks = nullptr;  // K of physical block 0
  const void* v_blocks = nullptr;  // V of physical block 0 (== k_blocks for k_eq_v)
  int64_t block_size = 0;
  int64_t block_stride = 0;    // elements from one physical block to the next
  int64_t token_stride = 0;    // K: elements between tokens inside a block (kv_heads * dqk)
  int64_t head_stride = 0;     // K: elements between kv heads inside a block (dqk)
  int64_t v_token_stride = 0;  // V: kv_heads * dv
  int64_t v_head_stride = 0;   // V: dv
  const int32_t* block_table = nullptr;  // host memory (fill_args gives the kernels their copy)
  int64_t num_blocks = 0;
  int64_t first_block = 0;  // logical blocks before it were released (sliding window)
  int64_t kv_len = 0;       // keys from position first_block * block_size to the end
};

// Paged KV cache for a layer stack: one BlockPool per layer and, per sequence, one block table per
// layer. Sliding-window layers release the blocks their window can no longer see. Only full
// blocks are ever shared (prefix cache), so appends never write into a shared block.
class LONGATTN_API PagedKvCache {
 public:
  using SequenceId = int64_t;
  // block_size 16..256; each layer's pool holds capacity_tokens (rounded up to blocks).
  PagedKvCache(const ModelPreset& stack, int32_t dtype, int64_t block_size, int64_t capacity_tokens,
               std::shared_ptr<Allocator> allocator);
  // The per-layer token capacity whose pools together take at most `bytes`.
  static int64_t capacity_for_bytes(const ModelPreset& stack, int32_t dtype, int64_t block_size,
                                    int64_t bytes);

  SequenceId create_sequence();
  void free_sequence(SequenceId seq);  // releases every block it holds
  // Appends n tokens of one layer from host memory (k [kv_heads, n, dqk], v [kv_heads, n, dv]).
  // A sliding layer first releases the blocks that queries from length() on cannot see.
  void append(SequenceId seq, int layer, const void* k, const void* v, int64_t n);
  int64_t length(SequenceId seq, int layer) const;
  PagedLayerView view(SequenceId seq, int layer) const;
  // Points args at one layer of a sequence in place (longattn_args' paged K/V: block_table,
  // page_size, num_blocks; k/v at the pools): k, v, strides, kv_heads, kv_len, head dims, dtype
  // (kv_dtype for an FP8 cache, as ContiguousKvCache::fill_args), device. kv_len counts from the
  // first block the layer still holds (see view()).
  void fill_args(SequenceId seq, int layer, longattn_args* args) const;
  // Physical block of a logical block, or -1 when released.
  int32_t block_id(SequenceId seq, int layer, int64_t logical_block) const;
  // Host pointer to a stored key/value row (CPU allocator; tests).
  const void* key_row(SequenceId seq, int layer, int64_t position, int64_t head) const;
  const void* value_row(SequenceId seq, int layer, int64_t position, int64_t head) const;

  // Prefix sharing. share() retains the blocks of one full logical block in every layer and
  // returns their ids (-1 where released); unshare() drops those references. adopt() starts an
  // empty sequence with shared blocks (one id list per logical block), retaining them.
  std::vector<int32_t> share(SequenceId seq, int64_t logical_block);
  void unshare(const std::vector<int32_t>& ids);
  void adopt(SequenceId seq, const std::vector<std::vector<int32_t>>& blocks);
  int64_t group_bytes(const std::vector<int32_t>& ids) const;

  int num_layers() const { return static_cast<int>(layers_.size()); }
  int64_t block_size() const { return block_size_; }
  const BlockPool& pool(int layer) const { return *pools_[layer]; }
  int64_t bytes_in_use() const;
  int64_t bytes_reserved() const;
  int64_t blocks_used() const;
  int64_t blocks_free() const;
  // Called when a pool runs out of blocks; returns true if it freed something (prefix cache).
  void set_reclaimer(std::function<bool()> reclaim);

 private:
  // A layer's block table in the allocator's memory, which is where the kernels read it when that
  // is not host memory; fill_args uploads it when the host table changed since.
  struct DeviceTable {
    std::shared_ptr<int32_t> data;  // freed through the allocator
    int64_t capacity = 0;           // entries
    bool stale = true;
  };
  struct Sequence {
    std::vector<std::vector<int32_t>> tables;        // per layer
    std::vector<int64_t> lengths;                    // per layer
    mutable std::vector<DeviceTable> device_tables;  // per layer; empty for host memory
  };
  Sequence& sequence(SequenceId seq);
  const Sequence& sequence(SequenceId seq) const;
  const int32_t* device_table(const Sequence& s, int layer) const;
  const char* row(SequenceId seq, int layer, int64_t position, int64_t head, bool value) const;
  std::vector<LayerSpec> layers_;
  int32_t dtype_;
  int64_t elem_, block_size_;
  std::shared_ptr<Allocator> alloc_;
  std::vector<std::unique_ptr<BlockPool>> pools_;
  std::unordered_map<SequenceId, Sequence> sequences_;
  SequenceId next_id_ = 1;
};

}  // namespace longattn::engine
