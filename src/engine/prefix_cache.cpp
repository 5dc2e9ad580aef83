// Prefix cache: an index of full token blocks with chained keys, reference counts and LRU
// eviction under a byte budget; and its adapter over the paged KV cache.
#include "longattn/engine/prefix_cache.hpp"

#include <algorithm>

#include "core/numeric.hpp"
#include "engine/common.hpp"

namespace longattn::engine {

PrefixCache::PrefixCache(int64_t block_size, int64_t byte_budget, EvictFn on_evict)
    : block_size_(block_size), budget_(byte_budget), on_evict_(std::move(on_evict)) {
  check_at_least("prefix cache: block_size", block_size, 1);
  check_limit("prefix cache: byte budget", byte_budget, "unlimited");
}

// splitmix64: every input bit affects every output bit, so chained keys of different prefixes
// collide only by chance (and entries are verified anyway).
uint64_t PrefixCache::chain_key(uint64_t parent, const int32_t* tokens, int64_t n) {
  using numeric::splitmix64;
  uint64_t h = splitmix64(parent);
  for (int64_t i = 0; i < n; ++i) h = splitmix64(h ^ static_cast<uint32_t>(tokens[i]));
  return splitmix64(h ^ static_cast<uint64_t>(n));
}

std::vector<uint64_t> PrefixCache::block_keys(const int32_t* tokens, int64_t n) const {
  std::vector<uint64_t> keys;
  uint64_t parent = kRootKey;
  for (int64_t b = 0; (b + 1) * block_size_ <= n; ++b) {
    parent = chain_key(parent, tokens + b * block_size_, block_size_);
    keys.push_back(parent);
  }
  return keys;
}

PrefixCache::Match PrefixCache::lookup(const std::vector<int32_t>& tokens) {
  Match m;
  const int64_t full = static_cast<int64_t>(tokens.size()) / block_size_;
  uint64_t parent = kRootKey;
  std::vector<Entry*> found;
  for (int64_t b = 0; b < full; ++b) {
    const int32_t* t = tokens.data() + b * block_size_;
    uint64_t key = chain_key(parent, t, block_size_);
    auto it = entries_.find(key);
    if (it == entries_.end() || it->second.parent != parent ||
        !std::equal(t, t + block_size_, it->second.tokens.begin())) {
      misses_ += full - b;
      break;
    }
    ++hits_;
    m.keys.push_back(key);
    m.handles.push_back(it->second.handle);
    found.push_back(&it->second);
    parent = key;
  }
  // Mark used tail first, so the head ends most recent and a prefix is evicted from its end.
  for (auto e = found.rbegin(); e != found.rend(); ++e) {
    Entry& entry = **e;
    if (entry.refs == 0) lru_.splice(lru_.end(), lru_, entry.lru);
  }
  m.tokens = static_cast<int64_t>(m.keys.size()) * block_size_;
  return m;
}

bool PrefixCache::insert(uint64_t parent, const int32_t* block_tokens, int64_t handle,
                         int64_t bytes) {
  if (parent != kRootKey && !entries_.count(parent)) return false;
  uint64_t key = chain_key(parent, block_tokens, block_size_);
  if (entries_.count(key)) return false;
  if (budget_ >= 0) {
    if (bytes > budget_) return false;
    while (bytes_ + bytes > budget_ && evict_one()) {
    }
    if (bytes_ + bytes > budget_) return false;
    if (parent != kRootKey && !entries_.count(parent)) return false;  // evicted just now
  }
  Entry& e = entries_[key];
  e.parent = parent;
  e.tokens.assign(block_tokens, block_tokens + block_size_);
  e.handle = handle;
  e.bytes = bytes;
  e.refs = 1;
  bytes_ += bytes;
  return true;
}

void PrefixCache::retain(uint64_t key) {
  auto it = entries_.find(key);
  if (it == entries_.end()) invalid("prefix cache: retain of a key that is not cached");
  if (it->second.refs++ == 0) lru_.erase(it->second.lru);
}

void PrefixCache::release(uint64_t key) {
  auto it = entries_.find(key);
  if (it == entries_.end() || it->second.refs == 0)
    invalid("prefix cache: release of a key that is not cached or not referenced");
  if (--it->second.refs == 0) it->second.lru = lru_.insert(lru_.end(), key);
}

void PrefixCache::erase(std::unordered_map<uint64_t, Entry>::iterator it) {
  if (it->second.refs == 0) lru_.erase(it->second.lru);
  bytes_ -= it->second.bytes;
  int64_t handle = it->second.handle;
  entries_.erase(it);
  if (on_evict_) on_evict_(handle);
}

bool PrefixCache::evict_one() {
  if (lru_.empty()) return false;
  erase(entries_.find(lru_.front()));
  ++evictions_;
  return true;
}

void PrefixCache::clear() {
  while (!entries_.empty()) erase(entries_.begin());
}

int64_t PrefixCache::refs(uint64_t key) const {
  auto it = entries_.find(key);
  return it == entries_.end() ? 0 : it->second.refs;
}

// ---------------------------------------------------------------------------------------------
// PagedPrefixCache
// ---------------------------------------------------------------------------------------------

PagedPrefixCache::PagedPrefixCache(PagedKvCache& cache, int64_t byte_budget)
    : cache_(cache), index_(cache.block_size(), byte_budget, [this](int64_t handle) {
        auto it = groups_.find(handle);
        cache_.unshare(it->second);
        groups_.erase(it);
      }) {
  cache_.set_reclaimer([this] { return index_.evict_one(); });
}

PagedPrefixCache::~PagedPrefixCache() {
  cache_.set_reclaimer(nullptr);
  index_.clear();
}

int64_t PagedPrefixCache::attach(PagedKvCache::SequenceId seq, const std::vector<int32_t>& tokens) {
  if (used_.count(seq))
    invalid("prefix cache: sequence " + std::to_string(seq) + " is already attached");
  PrefixCache::Match m = index_.lookup(tokens);
  std::vector<std::vector<int32_t>> blocks;
  for (int64_t h : m.handles) blocks.push_back(groups_.at(h));
  cache_.adopt(seq, blocks);
  for (uint64_t key : m.keys) index_.retain(key);
  used_[seq] = m.keys;
  return m.tokens;
}

void PagedPrefixCache::publish(PagedKvCache::SequenceId seq, const std::vector<int32_t>& tokens) {
  int64_t len = static_cast<int64_t>(tokens.size());
  for (int l = 0; l < cache_.num_layers(); ++l) len = std::min(len, cache_.length(seq, l));
  const int64_t bs = cache_.block_size();
  std::vector<uint64_t> keys = index_.block_keys(tokens.data(), len);
  std::vector<uint64_t>& used = used_[seq];
  for (size_t b = used.size(); b < keys.size(); ++b) {
    if (index_.contains(keys[b])) {  // cached meanwhile by another sequence: just use it
      index_.retain(keys[b]);
      used.push_back(keys[b]);
      continue;
    }
    std::vector<int32_t> ids = cache_.share(seq, static_cast<int64_t>(b));
    bool complete = std::all_of(ids.begin(), ids.end(), [](int32_t id) { return id >= 0; });
    int64_t handle = next_handle_++;
    groups_[handle] = ids;
    uint64_t parent = b == 0 ? PrefixCache::kRootKey : keys[b - 1];
    if (!complete ||
        !index_.insert(parent, tokens.data() + b * bs, handle, cache_.group_bytes(ids))) {
      // A sliding layer already released this block, or the budget is full: the chain stops.
      cache_.unshare(ids);
      groups_.erase(handle);
      return;
    }
    used.push_back(keys[b]);
  }
}

void PagedPrefixCache::detach(PagedKvCache::SequenceId seq) {
  auto it = used_.find(seq);
  if (it == used_.end()) return;
  for (auto k = it->second.rbegin(); k != it->second.rend(); ++k) index_.release(*k);
  used_.erase(it);
}

}  // namespace longattn::engine
