// KV caches: the contiguous per-layer cache and the paged cache (block pools and per-sequence block
// tables).
#include "longattn/engine/kv_cache.hpp"

#include <algorithm>

#include "core/numeric.hpp"
#include "engine/common.hpp"

namespace longattn::engine {
namespace {

constexpr int64_t kMinGrowCapacity = 256;  // first buffer of a growing contiguous cache

// The cache's element dtype into args: an FP8 cache is kv_dtype (Q and O keep the caller's
// dtype); otherwise dtype, as K and V share Q's.
void set_cache_dtype(int32_t cache_dtype, longattn_args* a) {
  if (numeric::is_fp8(cache_dtype)) {
    a->kv_dtype = cache_dtype;
  } else {
    a->dtype = cache_dtype;
    a->kv_dtype = 0;
  }
}

int64_t next_pow2(int64_t x) {
  int64_t p = 1;
  while (p < x) p *= 2;
  return p;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// ContiguousKvCache
// ---------------------------------------------------------------------------------------------

ContiguousKvCache::ContiguousKvCache(const LayerSpec& layer, int32_t dtype,
                                     std::shared_ptr<Allocator> allocator, int64_t capacity,
                                     bool fixed_capacity)
    : layer_(layer), dtype_(dtype), alloc_(std::move(allocator)), fixed_(fixed_capacity) {
  validate_stack({"contiguous cache", {layer}, ""});
  elem_ = dtype_size(dtype);
  token_bytes_ = kv_bytes_per_token(layer, dtype);
  check_at_least("capacity", capacity, 0);
  if (fixed_ && capacity == 0) invalid("capacity = 0: a fixed-capacity cache needs capacity >= 1");
  if (capacity > 0) reserve(capacity);
}

ContiguousKvCache::~ContiguousKvCache() {
  if (k_) alloc_->deallocate(k_, capacity_ * token_bytes_);
}

ContiguousKvCache::ContiguousKvCache(ContiguousKvCache&& o) noexcept { *this = std::move(o); }

ContiguousKvCache& ContiguousKvCache::operator=(ContiguousKvCache&& o) noexcept {
  if (this == &o) return *this;
  if (k_) alloc_->deallocate(k_, capacity_ * token_bytes_);
  layer_ = o.layer_;
  dtype_ = o.dtype_;
  elem_ = o.elem_;
  token_bytes_ = o.token_bytes_;
  alloc_ = std::move(o.alloc_);
  k_ = o.k_;
  v_ = o.v_;
  capacity_ = o.capacity_;
  fixed_ = o.fixed_;
  offset_ = o.offset_;
  start_ = o.start_;
  length_ = o.length_;
  o.k_ = o.v_ = nullptr;
  o.capacity_ = o.offset_ = o.start_ = o.length_ = 0;
  return *this;
}

// K and V live in one allocation: K [kv_heads, capacity, dqk] then V [kv_heads, capacity, dv].
void ContiguousKvCache::reserve(int64_t tokens) {
  int64_t k_bytes = layer_.kv_heads * tokens * layer_.head_dim_qk * elem_;
  char* k = static_cast<char*>(alloc_->allocate(tokens * token_bytes_));
  char* v = layer_.k_eq_v ? k : k + k_bytes;
  int64_t n = stored();
  if (n > 0) {  // each head's stored rows move to the front of the new buffer
    int64_t rk = layer_.head_dim_qk * elem_, rv = layer_.head_dim_v * elem_;
    for (int64_t h = 0; h < layer_.kv_heads; ++h) {
      alloc_->copy_2d(k + h * tokens * rk, rk, k_ + (h * capacity_ + offset_) * rk, rk, rk, n,
                      CopyKind::kDeviceToDevice);
      if (!layer_.k_eq_v)
        alloc_->copy_2d(v + h * tokens * rv, rv, v_ + (h * capacity_ + offset_) * rv, rv, rv, n,
                        CopyKind::kDeviceToDevice);
    }
  }
  if (k_) alloc_->deallocate(k_, capacity_ * token_bytes_);
  k_ = k;
  v_ = v;
  capacity_ = tokens;
  offset_ = 0;
}

void ContiguousKvCache::append(const void* k, const void* v, int64_t n) {
  check_at_least("append: n", n, 0);
  if (n == 0) return;
  if (!k || (!layer_.k_eq_v && !v)) invalid("append: k and v must not be null");
  int64_t need = stored() + n;
  if (offset_ + need > capacity_) {
    // Move the stored keys to the front when that is enough room and the regions are disjoint
    // (a sliding window's buffer is sized for that); otherwise grow.
    if (need <= capacity_ && offset_ >= stored()) {
      int64_t rk = layer_.head_dim_qk * elem_, rv = layer_.head_dim_v * elem_;
      for (int64_t h = 0; h < layer_.kv_heads; ++h) {
        alloc_->copy_2d(k_ + h * capacity_ * rk, rk, k_ + (h * capacity_ + offset_) * rk, rk, rk,
                        stored(), CopyKind::kDeviceToDevice);
        if (!layer_.k_eq_v)
          alloc_->copy_2d(v_ + h * capacity_ * rv, rv, v_ + (h * capacity_ + offset_) * rv, rv, rv,
                          stored(), CopyKind::kDeviceToDevice);
      }
      offset_ = 0;
    } else if (fixed_) {
      throw Error(LONGATTN_OVER_BUDGET, "KV cache: " + std::to_string(need) +
                                            " tokens exceed the fixed capacity of " +
                                            std::to_string(capacity_) + " tokens");
    } else {
      reserve(std::max(kMinGrowCapacity, next_pow2(need)));
    }
  }
  int64_t rk = layer_.head_dim_qk * elem_, rv = layer_.head_dim_v * elem_;
  int64_t slot = offset_ + stored();
  for (int64_t h = 0; h < layer_.kv_heads; ++h) {
    alloc_->copy_2d(k_ + (h * capacity_ + slot) * rk, rk, static_cast<const char*>(k) + h * n * rk,
                    rk, rk, n, CopyKind::kHostToDevice);
    if (!layer_.k_eq_v)
      alloc_->copy_2d(v_ + (h * capacity_ + slot) * rv, rv,
                      static_cast<const char*>(v) + h * n * rv, rv, rv, n, CopyKind::kHostToDevice);
  }
  length_ += n;
}

void ContiguousKvCache::release_before(int64_t position) {
  int64_t p = std::min(std::max(position, start_), length_);
  offset_ += p - start_;
  start_ = p;
}

void ContiguousKvCache::truncate(int64_t length) {
  if (length > length_ || length < start_)
    invalid("truncate: length = " + std::to_string(length) + ": must be between start (" +
            std::to_string(start_) + ") and length (" + std::to_string(length_) + ")");
  length_ = length;
}

void ContiguousKvCache::clear() { start_ = length_ = offset_ = 0; }

void ContiguousKvCache::fill_args(longattn_args* a) const {
  a->k = k_ + offset_ * layer_.head_dim_qk * elem_;
  a->v = layer_.k_eq_v ? a->k : v_ + offset_ * layer_.head_dim_v * elem_;
  set_cache_dtype(dtype_, a);
  a->device = alloc_->device();
  a->kv_heads = layer_.kv_heads;
  a->kv_len = stored();
  a->head_dim_qk = layer_.head_dim_qk;
  a->head_dim_v = layer_.head_dim_v;
  a->k_strides = {layer_.kv_heads * capacity_ * layer_.head_dim_qk, capacity_ * layer_.head_dim_qk,
                  layer_.head_dim_qk};
  a->v_strides = {layer_.kv_heads * capacity_ * layer_.head_dim_v, capacity_ * layer_.head_dim_v,
                  layer_.head_dim_v};
}

const void* ContiguousKvCache::key_row(int64_t position, int64_t head) const {
  if (position < start_ || position >= length_ || head < 0 || head >= layer_.kv_heads)
    invalid("key_row: position or head out of range");
  return k_ + (head * capacity_ + offset_ + position - start_) * layer_.head_dim_qk * elem_;
}

const void* ContiguousKvCache::value_row(int64_t position, int64_t head) const {
  if (layer_.k_eq_v) return key_row(position, head);
  if (position < start_ || position >= length_ || head < 0 || head >= layer_.kv_heads)
    invalid("value_row: position or head out of range");
  return v_ + (head * capacity_ + offset_ + position - start_) * layer_.head_dim_v * elem_;
}

// ---------------------------------------------------------------------------------------------
// BlockPool
// ---------------------------------------------------------------------------------------------

BlockPool::BlockPool(std::shared_ptr<Allocator> allocator, int64_t block_bytes,
                     int64_t capacity_blocks)
    : alloc_(std::move(allocator)), block_bytes_(block_bytes), capacity_(capacity_blocks) {
  if (block_bytes_ < 1) invalid("block pool: block_bytes must be >= 1");
  if (capacity_ < 1 || capacity_ > INT32_MAX)
    invalid("block pool: capacity = " + std::to_string(capacity_) +
            " blocks: must be between 1 and 2^31-1");
  base_ = static_cast<char*>(alloc_->allocate(block_bytes_ * capacity_));
  refs_.assign(static_cast<size_t>(capacity_), 0);
  free_.reserve(static_cast<size_t>(capacity_));
  for (int64_t i = capacity_ - 1; i >= 0; --i) free_.push_back(static_cast<int32_t>(i));
}

BlockPool::~BlockPool() { alloc_->deallocate(base_, block_bytes_ * capacity_); }

void BlockPool::check(int32_t id, const char* what) const {
  if (id < 0 || id >= capacity_)
    invalid(std::string(what) + ": block " + std::to_string(id) + " is not in the pool");
  if (refs_[id] == 0)
    throw Error(LONGATTN_INTERNAL_ERROR, std::string(what) + ": block " + std::to_string(id) +
                                             " is free (use after release)");
}

int32_t BlockPool::allocate() {
  while (free_.empty()) {
    if (!reclaim_ || !reclaim_())
      throw Error(LONGATTN_OVER_BUDGET, "KV cache: all " + std::to_string(capacity_) + " blocks (" +
                                            std::to_string(bytes_reserved()) +
                                            " bytes) are in use and none can be evicted");
  }
  int32_t id = free_.back();
  free_.pop_back();
  refs_[id] = 1;
  return id;
}

void BlockPool::retain(int32_t id) {
  check(id, "retain");
  ++refs_[id];
}

void BlockPool::release(int32_t id) {
  check(id, "release");
  if (--refs_[id] == 0) free_.push_back(id);
}

int32_t BlockPool::refs(int32_t id) const {
  if (id < 0 || id >= capacity_) return 0;
  return refs_[id];
}

char* BlockPool::block(int32_t id) const {
  check(id, "block");
  return base_ + static_cast<int64_t>(id) * block_bytes_;
}

// ---------------------------------------------------------------------------------------------
// PagedKvCache
// ---------------------------------------------------------------------------------------------

PagedKvCache::PagedKvCache(const ModelPreset& stack, int32_t dtype, int64_t block_size,
                           int64_t capacity_tokens, std::shared_ptr<Allocator> allocator)
    : layers_(stack.layers), dtype_(dtype), block_size_(block_size), alloc_(std::move(allocator)) {
  validate_stack(stack);
  elem_ = dtype_size(dtype);
  check_block_size(block_size);
  check_at_least("capacity_tokens", capacity_tokens, 1);
  const int64_t blocks = blocks_for(capacity_tokens, block_size);
  for (const auto& l : layers_)
    pools_.push_back(
        std::make_unique<BlockPool>(alloc_, kv_bytes_per_token(l, dtype) * block_size, blocks));
}

int64_t PagedKvCache::capacity_for_bytes(const ModelPreset& stack, int32_t dtype,
                                         int64_t block_size, int64_t bytes) {
  const int64_t per_block = kv_bytes_per_token(stack, dtype) * block_size;
  return per_block > 0 ? bytes / per_block * block_size : 0;
}

PagedKvCache::Sequence& PagedKvCache::sequence(SequenceId seq) {
  auto it = sequences_.find(seq);
  if (it == sequences_.end()) invalid("sequence " + std::to_string(seq) + " does not exist");
  return it->second;
}

const PagedKvCache::Sequence& PagedKvCache::sequence(SequenceId seq) const {
  return const_cast<PagedKvCache*>(this)->sequence(seq);
}

PagedKvCache::SequenceId PagedKvCache::create_sequence() {
  SequenceId id = next_id_++;
  Sequence& s = sequences_[id];
  s.tables.resize(layers_.size());
  s.lengths.assign(layers_.size(), 0);
  if (alloc_->device() != LONGATTN_DEVICE_CPU) s.device_tables.resize(layers_.size());
  return id;
}

void PagedKvCache::free_sequence(SequenceId seq) {
  Sequence& s = sequence(seq);
  for (size_t l = 0; l < s.tables.size(); ++l)
    for (int32_t id : s.tables[l])
      if (id >= 0) pools_[l]->release(id);
  sequences_.erase(seq);
}

void PagedKvCache::append(SequenceId seq, int layer, const void* k, const void* v, int64_t n) {
  if (layer < 0 || layer >= num_layers())
    invalid("layer = " + std::to_string(layer) + ": must be in [0, " +
            std::to_string(num_layers()) + ")");
  check_at_least("append: n", n, 0);
  const LayerSpec& l = layers_[layer];
  if (n > 0 && (!k || (!l.k_eq_v && !v))) invalid("append: k and v must not be null");
  Sequence& s = sequence(seq);
  std::vector<int32_t>& table = s.tables[layer];
  int64_t& len = s.lengths[layer];
  BlockPool& pool = *pools_[layer];

  // Whole blocks before the first key that queries from position len on can see are done with.
  const int64_t dead = first_live_block(l, len, block_size_);
  for (int64_t b = 0; b < dead && b < static_cast<int64_t>(table.size()); ++b) {
    if (table[b] >= 0) {
      pool.release(table[b]);
      table[b] = -1;
      if (!s.device_tables.empty()) s.device_tables[layer].stale = true;
    }
  }

  const int64_t rk = l.head_dim_qk * elem_, rv = l.head_dim_v * elem_;
  const int64_t token_k = l.kv_heads * rk, token_v = l.kv_heads * rv;
  const int64_t v_offset = block_size_ * token_k;  // V follows K inside a block
  for (int64_t done = 0; done < n;) {
    int64_t pos = len + done;
    int64_t b = pos / block_size_, slot = pos % block_size_;
    if (b == static_cast<int64_t>(table.size())) {
      table.push_back(pool.allocate());
      if (!s.device_tables.empty()) s.device_tables[layer].stale = true;
    }
    int32_t id = table[b];
    if (pool.refs(id) != 1)
      throw Error(LONGATTN_INTERNAL_ERROR, "append: block " + std::to_string(id) +
                                               " is shared; only full blocks may be shared");
    int64_t rows = std::min(n - done, block_size_ - slot);
    char* blk = pool.block(id);
    for (int64_t h = 0; h < l.kv_heads; ++h) {
      alloc_->copy_2d(blk + slot * token_k + h * rk, token_k,
                      static_cast<const char*>(k) + (h * n + done) * rk, rk, rk, rows,
                      CopyKind::kHostToDevice);
      if (!l.k_eq_v)
        alloc_->copy_2d(blk + v_offset + slot * token_v + h * rv, token_v,
                        static_cast<const char*>(v) + (h * n + done) * rv, rv, rv, rows,
                        CopyKind::kHostToDevice);
    }
    done += rows;
  }
  len += n;
}

int64_t PagedKvCache::length(SequenceId seq, int layer) const {
  return sequence(seq).lengths.at(layer);
}

PagedLayerView PagedKvCache::view(SequenceId seq, int layer) const {
  const Sequence& s = sequence(seq);
  const LayerSpec& l = layers_.at(layer);
  const std::vector<int32_t>& table = s.tables[layer];
  int64_t first = 0;
  while (first < static_cast<int64_t>(table.size()) && table[first] < 0) ++first;
  PagedLayerView v;
  v.k_blocks = pools_[layer]->base();
  v.v_blocks = l.k_eq_v ? v.k_blocks
                        : pools_[layer]->base() + block_size_ * l.kv_heads * l.head_dim_qk * elem_;
  v.block_size = block_size_;
  v.block_stride = pools_[layer]->block_bytes() / elem_;
  v.token_stride = l.kv_heads * l.head_dim_qk;
  v.head_stride = l.head_dim_qk;
  v.v_token_stride = l.k_eq_v ? v.token_stride : l.kv_heads * l.head_dim_v;
  v.v_head_stride = l.k_eq_v ? v.head_stride : l.head_dim_v;
  v.block_table = table.data() + first;
  v.num_blocks = static_cast<int64_t>(table.size()) - first;
  v.first_block = first;
  v.kv_len = s.lengths[layer] - first * block_size_;
  return v;
}

void PagedKvCache::fill_args(SequenceId seq, int layer, longattn_args* a) const {
  const LayerSpec& l = layers_.at(layer);
  PagedLayerView v = view(seq, layer);
  a->k = v.k_blocks;
  a->v = v.v_blocks;
  set_cache_dtype(dtype_, a);
  a->device = alloc_->device();
  a->kv_heads = l.kv_heads;
  a->kv_len = v.kv_len;
  a->head_dim_qk = l.head_dim_qk;
  a->head_dim_v = l.head_dim_v;
  a->k_strides = {v.block_stride, v.head_stride, v.token_stride};
  a->v_strides = {v.block_stride, v.v_head_stride, v.v_token_stride};
  a->block_table = v.block_table;
  if (!sequence(seq).device_tables.empty())
    a->block_table = device_table(sequence(seq), layer) + v.first_block;
  a->block_table_stride = v.num_blocks;
  a->page_size = block_size_;
  a->num_blocks = pools_[layer]->capacity();
}

const int32_t* PagedKvCache::device_table(const Sequence& s, int layer) const {
  DeviceTable& d = s.device_tables.at(static_cast<size_t>(layer));
  const std::vector<int32_t>& table = s.tables[layer];
  const int64_t n = static_cast<int64_t>(table.size());
  if (!d.stale) return d.data.get();
  if (n > d.capacity) {  // doubling: a growing sequence reallocates O(log n) times
    const int64_t capacity = next_pow2(n), bytes = capacity * int64_t(sizeof(int32_t));
    std::shared_ptr<Allocator> alloc = alloc_;
    d.data = std::shared_ptr<int32_t>(static_cast<int32_t*>(alloc->allocate(bytes)),
                                      [alloc, bytes](int32_t* p) { alloc->deallocate(p, bytes); });
    d.capacity = capacity;
  }
  const int64_t bytes = n * int64_t(sizeof(int32_t));
  alloc_->copy_2d(d.data.get(), bytes, table.data(), bytes, bytes, 1, CopyKind::kHostToDevice);
  d.stale = false;
  return d.data.get();
}

int32_t PagedKvCache::block_id(SequenceId seq, int layer, int64_t logical_block) const {
  const auto& table = sequence(seq).tables.at(layer);
  if (logical_block < 0 || logical_block >= static_cast<int64_t>(table.size())) return -1;
  return table[logical_block];
}

const char* PagedKvCache::row(SequenceId seq, int layer, int64_t position, int64_t head,
                              bool value) const {
  const LayerSpec& l = layers_.at(layer);
  int32_t id = block_id(seq, layer, position / block_size_);
  if (position < 0 || position >= length(seq, layer) || id < 0 || head < 0 || head >= l.kv_heads)
    invalid("row: position or head not stored");
  int64_t slot = position % block_size_;
  const char* blk = pools_[layer]->block(id);
  if (!value || l.k_eq_v) return blk + (slot * l.kv_heads + head) * l.head_dim_qk * elem_;
  return blk + block_size_ * l.kv_heads * l.head_dim_qk * elem_ +
         (slot * l.kv_heads + head) * l.head_dim_v * elem_;
}

const void* PagedKvCache::key_row(SequenceId seq, int layer, int64_t position, int64_t head) const {
  return row(seq, layer, position, head, false);
}

const void* PagedKvCache::value_row(SequenceId seq, int layer, int64_t position,
                                    int64_t head) const {
  return row(seq, layer, position, head, true);
}

std::vector<int32_t> PagedKvCache::share(SequenceId seq, int64_t logical_block) {
  Sequence& s = sequence(seq);
  std::vector<int32_t> ids(layers_.size(), -1);
  for (size_t l = 0; l < layers_.size(); ++l) {
    if (s.lengths[l] < (logical_block + 1) * block_size_)
      invalid("share: logical block " + std::to_string(logical_block) + " of layer " +
              std::to_string(l) + " is not full");
    int32_t id = s.tables[l][logical_block];
    if (id >= 0) pools_[l]->retain(id);
    ids[l] = id;
  }
  return ids;
}

void PagedKvCache::unshare(const std::vector<int32_t>& ids) {
  for (size_t l = 0; l < ids.size() && l < pools_.size(); ++l)
    if (ids[l] >= 0) pools_[l]->release(ids[l]);
}

void PagedKvCache::adopt(SequenceId seq, const std::vector<std::vector<int32_t>>& blocks) {
  Sequence& s = sequence(seq);
  for (size_t l = 0; l < layers_.size(); ++l)
    if (s.lengths[l] != 0) invalid("adopt: sequence " + std::to_string(seq) + " is not empty");
  int64_t n = static_cast<int64_t>(blocks.size());
  for (size_t l = 0; l < layers_.size(); ++l) {
    const LayerSpec& spec = layers_[l];
    // A sliding layer needs only the blocks that queries after the prefix can still see.
    const int64_t dead = first_live_block(spec, n * block_size_, block_size_);
    for (int64_t b = 0; b < n; ++b) {
      int32_t id = blocks[b].at(l);
      if (b < dead) {
        s.tables[l].push_back(-1);
        continue;
      }
      if (id < 0)
        invalid("adopt: layer " + std::to_string(l) + " block " + std::to_string(b) +
                " was released but is needed");
      pools_[l]->retain(id);
      s.tables[l].push_back(id);
    }
    s.lengths[l] = n * block_size_;
    if (!s.device_tables.empty()) s.device_tables[l].stale = true;
  }
}

int64_t PagedKvCache::group_bytes(const std::vector<int32_t>& ids) const {
  int64_t bytes = 0;
  for (size_t l = 0; l < ids.size() && l < pools_.size(); ++l)
    if (ids[l] >= 0) bytes += pools_[l]->block_bytes();
  return bytes;
}

int64_t PagedKvCache::bytes_in_use() const {
  int64_t b = 0;
  for (const auto& p : pools_) b += p->bytes_in_use();
  return b;
}

int64_t PagedKvCache::bytes_reserved() const {
  int64_t b = 0;
  for (const auto& p : pools_) b += p->bytes_reserved();
  return b;
}

int64_t PagedKvCache::blocks_used() const {
  int64_t b = 0;
  for (const auto& p : pools_) b += p->used();
  return b;
}

int64_t PagedKvCache::blocks_free() const {
  int64_t b = 0;
  for (const auto& p : pools_) b += p->free();
  return b;
}

void PagedKvCache::set_reclaimer(std::function<bool()> reclaim) {
  for (auto& p : pools_) p->set_reclaimer(reclaim);
}

}  // namespace longattn::engine
