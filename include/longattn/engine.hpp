// longattn engine: what a runtime builds around the attention call to prefill a long prompt in
// chunks under a memory ceiling. Five parts, each usable alone:
//   1. layer stacks: the attention shapes of a model (built-in presets and a JSON format);
//   2. KV caches: contiguous (one buffer per layer) and paged (block pool + block tables);
//   3. a prefix cache: full blocks keyed by a chained hash of their token ids, LRU eviction;
//   4. a prefill planner: the largest chunk whose memory fits a budget, decided per chunk;
//   5. the prefill driver behind `longattn prefill`.
// Attention only: Q/K/V come from a seeded generator, there are no weights and no model output.
// Errors are thrown as longattn::Error with a message that names the argument or field.
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "longattn/attention.hpp"

namespace longattn::engine {

// ------------------------------------------------------------------------------------------------
// 1. Layer stacks
// ------------------------------------------------------------------------------------------------

// The attention shape of one layer. window_left follows longattn_args: -1 is global attention,
// W >= 0 lets a query see itself and the W keys before it (a model's "window 1024" is W = 1023).
struct LayerSpec {
  int64_t head_dim_qk = 0;
  int64_t head_dim_v = 0;
  int64_t q_heads = 0;
  int64_t kv_heads = 0;
  int64_t window_left = -1;
  bool k_eq_v = false;  // K and V are one tensor (Gemma 4 global layers); the cache stores it once
  bool sinks = false;   // one learned logit per query head joins the softmax (gpt-oss)
  bool operator==(const LayerSpec& o) const {
    return head_dim_qk == o.head_dim_qk && head_dim_v == o.head_dim_v && q_heads == o.q_heads &&
           kv_heads == o.kv_heads && window_left == o.window_left && k_eq_v == o.k_eq_v &&
           sinks == o.sinks;
  }
  bool operator!=(const LayerSpec& o) const { return !(*this == o); }
};

struct ModelPreset {
  std::string name;
  std::vector<LayerSpec> layers;
  std::string notes;  // where the numbers come from, and what could not be verified
};

LONGATTN_API std::vector<std::string> preset_names();
// A built-in preset; throws for an unknown name, listing the known ones.
LONGATTN_API ModelPreset find_preset(const std::string& name);
// A stack in the JSON format (see presets/README.md); `origin` prefixes error positions.
LONGATTN_API ModelPreset parse_stack_json(const std::string& text,
                                          const std::string& origin = "<stack>");
// A preset name, or the path of a .json stack file.
LONGATTN_API ModelPreset load_stack(const std::string& name_or_path);
// Throws naming the first bad field: layers[i].q_heads etc.
LONGATTN_API void validate_stack(const ModelPreset& stack);
// The JSON format, consecutive equal layers folded into "repeat".
LONGATTN_API std::string stack_to_json(const ModelPreset& stack);

// Bytes of one element of a longattn_dtype; throws for an unknown dtype.
LONGATTN_API int64_t dtype_size(int32_t dtype);
// Bytes one token occupies in a layer's KV cache (K and V, or K alone when k_eq_v).
LONGATTN_API int64_t kv_bytes_per_token(const LayerSpec& layer, int32_t dtype);
// "1.50 GiB", "12.0 MiB", "512 B": for messages and tables.
LONGATTN_API std::string format_bytes(int64_t bytes);

// ------------------------------------------------------------------------------------------------
// 2. KV caches
// ------------------------------------------------------------------------------------------------

// Where cache storage lives: host memory (cpu_allocator) or GPU memory (the CUDA allocator,
// built with the CUDA backend); the caches and the driver only go through this interface.
enum class CopyKind { kHostToDevice, kDeviceToDevice, kDeviceToHost };

class LONGATTN_API Allocator {
 public:
  virtual ~Allocator() = default;
  virtual longattn_device device() const = 0;
  // Throws Error(LONGATTN_OUT_OF_MEMORY) on failure; memory is aligned to 64 bytes.
  virtual void* allocate(int64_t bytes) = 0;
  virtual void deallocate(void* p, int64_t bytes) noexcept = 0;
  // Copies `rows` rows of `width` bytes; pitches are bytes between row starts. Regions never
  // overlap. "Device" is this allocator's memory (host memory for the CPU allocator).
  virtual void copy_2d(void* dst, int64_t dst_pitch, const void* src, int64_t src_pitch,
                       int64_t width, int64_t rows, CopyKind kind) = 0;
  // Waits for queued work (timing); the CPU has none.
  virtual void synchronize() {}
};

LONGATTN_API std::shared_ptr<Allocator> cpu_allocator();
// The allocator for a device; throws UNSUPPORTED where this build or machine has none.
LONGATTN_API std::shared_ptr<Allocator> make_allocator(longattn_device device);

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

  // Points args at the stored keys: k, v, kv_heads, kv_len, head dims, dtype, device, k/v strides.
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

// Capacity (tokens) the prefill driver preallocates for a layer: every token for a global layer;
// for a window W, twice the keys it keeps (W + keep) plus one chunk, so that moving the kept keys
// to the front of the buffer never overlaps (Allocator::copy_2d needs disjoint regions).
LONGATTN_API int64_t contiguous_capacity(const LayerSpec& layer, int64_t total_tokens,
                                         int64_t max_chunk, int64_t keep);

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
  // page_size, num_blocks; k/v at the pools): k, v, strides, kv_heads, kv_len, head dims, dtype,
  // device. kv_len counts from the first block the layer still holds (see view()).
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

// ------------------------------------------------------------------------------------------------
// 3. Prefix cache
// ------------------------------------------------------------------------------------------------

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

// ------------------------------------------------------------------------------------------------
// 4. Prefill planner with a memory guard
// ------------------------------------------------------------------------------------------------

enum class CacheKind { kContiguous, kPaged };

LONGATTN_API const char* cache_kind_name(CacheKind kind);

struct PlannerConfig {
  longattn_path path = LONGATTN_PATH_FUSED;  // the path every chunk runs (FUSED or UNFUSED)
  int32_t dtype = LONGATTN_BFLOAT16;
  longattn_device device = LONGATTN_DEVICE_CPU;
  // Bytes for KV cache + attention transient + the chunk's Q/O/K/V buffers; -1: the device's
  // free memory (an error where the device does not report it).
  int64_t budget_bytes = -1;
  int64_t max_chunk = 2048;
  // Chunk sizes to try, any order; empty: max_chunk and the powers of two below it.
  std::vector<int64_t> candidates;
  bool exact_search = false;  // binary search over [1, max_chunk] instead of candidates
  int num_threads = 0;        // as in longattn_options (CPU transient depends on it)
  CacheKind cache = CacheKind::kContiguous;
  int64_t block_size = 256;  // paged block; also the prefix-cache block; 16..256
  // > 0: storage is reserved up front for this many tokens (contiguous: each global layer's
  // buffer, a window's buffer per contiguous_capacity; paged: every layer's pool), and the
  // guard counts that reservation. 0: storage grows exactly (contiguous: start + chunk tokens per
  // global layer; paged: the blocks the sequence still holds once the chunk is appended).
  int64_t total_tokens = 0;
};

// The buffers a chunk needs besides the cache, each sized for the largest layer and reused by
// every layer: Q and O (on the device), and the new tokens' K and V (staged in host memory before
// they are appended). The driver allocates exactly these; the planner counts exactly these.
struct ChunkBuffers {
  int64_t q = 0, o = 0, k = 0, v = 0;
  int64_t total() const { return q + o + k + v; }
};
LONGATTN_API ChunkBuffers chunk_buffers(const ModelPreset& stack, int32_t dtype, int64_t chunk);

struct ChunkDecision {
  int64_t index = 0;
  int64_t start = 0;            // tokens already cached
  int64_t chunk = 0;            // tokens prefilled now
  int64_t kv_len = 0;           // keys of a global layer: start + chunk
  int64_t transient_bytes = 0;  // library transient of the worst layer (layers run one by one)
  int64_t io_bytes = 0;         // chunk_buffers(...).total()
  int64_t cache_bytes = 0;      // KV cache with the chunk appended
  int64_t total_bytes = 0;      // cache + transient + io: what the guard compares
  int64_t budget_bytes = 0;
  std::string reason;
};

class LONGATTN_API PrefillPlanner {
 public:
  PrefillPlanner(ModelPreset stack, PlannerConfig config);
  // The largest chunk (<= remaining) that fits when `cached` tokens are in the cache; throws
  // OVER_BUDGET when not even one token fits.
  ChunkDecision next(int64_t cached, int64_t remaining, int64_t index = 0) const;
  // Decisions for prefilling `tokens` tokens after `cached` ones.
  std::vector<ChunkDecision> plan(int64_t cached, int64_t tokens) const;
  // The memory one chunk needs (fills every field but index and reason).
  ChunkDecision cost(int64_t cached, int64_t chunk) const;
  // Keys a layer attends to when a chunk starts at `start` (what the driver's cache stores).
  int64_t layer_kv_len(const LayerSpec& layer, int64_t start, int64_t chunk) const;
  // First key the driver's cache still holds for a layer when a chunk starts at `start`: paged,
  // the first of the block holding the first visible key; contiguous, keep_tokens() before it.
  int64_t first_stored_key(const LayerSpec& layer, int64_t start) const;
  // Tokens of a layer's storage reserved up front for `total` tokens (see total_tokens).
  int64_t reserved_tokens(const LayerSpec& layer, int64_t total) const;
  int64_t budget_bytes() const { return budget_; }
  // Keys a contiguous sliding layer keeps beyond its window: one prefix-cache block, so a turn
  // can roll back to the last full block and recompute from there.
  int64_t keep_tokens() const { return config_.block_size; }
  const PlannerConfig& config() const { return config_; }

 private:
  int64_t cache_bytes(int64_t start, int64_t chunk) const;
  int64_t total_tokens(int64_t start, int64_t chunk) const;
  ModelPreset stack_;
  PlannerConfig config_;
  std::vector<LayerSpec> shapes_;  // distinct layers
  int64_t budget_ = 0;
};

// ------------------------------------------------------------------------------------------------
// 5. The prefill driver
// ------------------------------------------------------------------------------------------------

struct PrefillConfig {
  ModelPreset stack;
  int64_t tokens = 4096;    // prompt tokens of the first turn
  int turns = 1;            // turns > 1: each re-submits the whole conversation
  int64_t turn_tokens = 0;  // new tokens each later turn adds (0: same as `tokens`)
  // Every path's planner; the driver sets its path (from `paths`) and total_tokens (the whole
  // conversation), so the values given for those two are not used.
  PlannerConfig planner;
  // Run one after another on the same inputs.
  std::vector<longattn_path> paths{LONGATTN_PATH_FUSED};
  int64_t prefix_cache_bytes = -1;  // prefix index budget; -1 unlimited
  uint64_t seed = 0x10a77e;
  bool checksum_outputs = false;  // hash every O into PathReport::output_checksum
};

struct ChunkRecord {
  int turn = 0;
  int64_t index = 0, start = 0, chunk = 0, kv_len = 0;
  int64_t transient_bytes = 0;            // measured: what the runs took (worst layer)
  int64_t predicted_transient_bytes = 0;  // the planner's number
  int64_t io_bytes = 0, cache_bytes = 0, total_bytes = 0;
  double seconds = 0;  // attention time of the chunk, all layers
  std::string reason;
};

struct TurnRecord {
  int turn = 0;
  int64_t conversation_tokens = 0;  // what the turn submits
  int64_t new_tokens = 0;           // added by this turn
  int64_t reused_tokens = 0;        // served by the prefix cache
  int64_t prefilled_tokens = 0;     // computed now (new tokens + the partial block rolled back)
  double seconds = 0;
};

struct PathReport {
  longattn_path path = LONGATTN_PATH_FUSED;
  bool ok = true;
  std::string error;  // why it stopped (e.g. over budget at kv_len X)
  std::vector<ChunkRecord> chunks;
  std::vector<TurnRecord> turns;
  int64_t prefilled_tokens = 0;
  double attention_seconds = 0;
  double wall_seconds = 0;  // including Q/K/V generation and cache appends
  double tokens_per_second = 0;
  int64_t peak_bytes = 0;  // max over chunks of cache + transient + io
  int64_t peak_transient_bytes = 0;
  int64_t prefix_hits = 0, prefix_misses = 0, prefix_evictions = 0;
  uint64_t output_checksum = 0;  // with PrefillConfig::checksum_outputs
};

struct PrefillReport {
  std::string stack_name, stack_notes;
  int num_layers = 0;
  std::string device_name;
  PrefillConfig config;
  int64_t budget_bytes = 0;
  std::string disclaimer;
  std::vector<PathReport> paths;
};

struct ProgressEvent {
  longattn_path path = LONGATTN_PATH_FUSED;
  int turn = 0, turns = 0;
  int64_t done_tokens = 0, turn_tokens = 0;  // of this turn's prefill
  const ChunkRecord* chunk = nullptr;        // the chunk just finished
};
using ProgressCallback = std::function<void(const ProgressEvent&)>;

// The line every output of the driver carries.
LONGATTN_API const char* prefill_disclaimer();

// Runs the prefill for every requested path. A path that cannot go on (over budget, unsupported)
// is reported with ok = false and its error; other failures (bad config) throw.
LONGATTN_API PrefillReport run_prefill(const PrefillConfig& config,
                                       const ProgressCallback& progress = {});
LONGATTN_API std::string report_to_json(const PrefillReport& report);

}  // namespace longattn::engine
