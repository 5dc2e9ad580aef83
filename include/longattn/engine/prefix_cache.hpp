// The prefix cache: full token blocks keyed by a chained hash of their token ids, reference
// counted, LRU eviction under a byte budget; and its adapter over the paged KV cache. Part of the
// engine (engine.hpp).
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <unordered_map>
#include <vector>

#include "longattn/engine/kv_cache.hpp"

namespace longattn::engine {

// An index of full token blocks. A block's key is a hash of its token ids chained with the
// previous block's key, so a key names the whole prefix up to that block; entries also keep
// their tokens and parent key and compare them, so a hash collision can never give a false hit.
// Each entry carries an owner-defined handle (the storage) and its size in bytes. Entries in use
// (refs > 0) are never evicted; unused ones are evicted least recently used first whenever the
// cache would exceed its byte budget, and the owner's on_evict frees the storage.
class LONGATTN_API PrefixCache {
 public:
  using EvictFn = std::function<void(int64_t handle)>;
  // byte_budget -1: unlimited.
  PrefixCache(int64_t block_size, int64_t byte_budget, EvictFn on_evict);

  static constexpr uint64_t kRootKey = 0x6c6f6e6761747472ull;  // the empty prefix
  static uint64_t chain_key(uint64_t parent, const int32_t* tokens, int64_t n);
  // Keys of the full blocks of tokens[0, n).
  std::vector<uint64_t> block_keys(const int32_t* tokens, int64_t n) const;

  struct Match {
    int64_t tokens = 0;          // leading tokens cached (a multiple of block_size)
    std::vector<uint64_t> keys;  // one per cached block, in order
    std::vector<int64_t> handles;
  };
  // Longest cached prefix; counts one hit per cached block and one miss per full block after it,
  // and marks the hits recently used. Does not take references.
  Match lookup(const std::vector<int32_t>& tokens);
  bool contains(uint64_t key) const { return entries_.count(key) != 0; }

  // Adds one full block whose parent is `parent` (kRootKey for the first block; otherwise it must
  // be cached) with one reference held by the caller. Evicts unused entries to make room;
  // returns false (nothing added, no reference) when the key is taken, the parent is missing or
  // the block cannot fit the budget.
  bool insert(uint64_t parent, const int32_t* block_tokens, int64_t handle, int64_t bytes);
  void retain(uint64_t key);
  // Drops a reference; an entry that falls to zero becomes evictable. Release a sequence's
  // blocks last to first so that its tail is evicted before its head.
  void release(uint64_t key);
  // Evicts the least recently used unused entry; false if there is none.
  bool evict_one();
  void clear();  // evicts everything; entries still referenced are dropped too

  int64_t block_size() const { return block_size_; }
  int64_t bytes() const { return bytes_; }
  int64_t byte_budget() const { return budget_; }
  int64_t entries() const { return static_cast<int64_t>(entries_.size()); }
  int64_t hits() const { return hits_; }      // blocks found by lookup
  int64_t misses() const { return misses_; }  // full blocks lookup did not find
  int64_t evictions() const { return evictions_; }
  int64_t refs(uint64_t key) const;

 private:
  struct Entry {
    uint64_t parent = 0;
    std::vector<int32_t> tokens;
    int64_t handle = 0, bytes = 0;
    int32_t refs = 0;
    std::list<uint64_t>::iterator lru;  // valid while refs == 0
  };
  void erase(std::unordered_map<uint64_t, Entry>::iterator it);
  int64_t block_size_, budget_;
  EvictFn on_evict_;
  std::unordered_map<uint64_t, Entry> entries_;
  std::list<uint64_t> lru_;  // unused entries, least recently used first
  int64_t bytes_ = 0, hits_ = 0, misses_ = 0, evictions_ = 0;
};

// A PrefixCache over a PagedKvCache: entries hold references to every layer's physical block of
// a logical block, so a new sequence with the same prefix adopts them instead of recomputing.
// The pools' reclaimer evicts from here when they run out of blocks.
class LONGATTN_API PagedPrefixCache {
 public:
  PagedPrefixCache(PagedKvCache& cache, int64_t byte_budget);
  ~PagedPrefixCache();
  // Starts an empty sequence with the longest cached prefix of tokens; returns its length.
  int64_t attach(PagedKvCache::SequenceId seq, const std::vector<int32_t>& tokens);
  // Registers the full blocks of seq (which holds tokens[0, length)) not cached yet.
  void publish(PagedKvCache::SequenceId seq, const std::vector<int32_t>& tokens);
  // The sequence no longer uses its entries (call before free_sequence).
  void detach(PagedKvCache::SequenceId seq);
  PrefixCache& index() { return index_; }

 private:
  PagedKvCache& cache_;
  PrefixCache index_;
  std::unordered_map<int64_t, std::vector<int32_t>> groups_;  // handle -> block ids per layer
  std::unordered_map<PagedKvCache::SequenceId, std::vector<uint64_t>> used_;
  int64_t next_handle_ = 1;
};

}  // namespace longattn::engine
