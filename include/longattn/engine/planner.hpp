// The prefill planner with its memory guard: per chunk, the largest chunk whose KV cache +
// attention transient + chunk buffers fit a budget. It owns the block-size, window and kept-key
// rules that the caches and the driver apply through it. Part of the engine (engine.hpp).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "longattn/engine/stack.hpp"

namespace longattn::engine {

// The block of the paged cache and of the prefix cache, in tokens: smaller blocks make the block
// table dominate, larger ones waste memory at a sequence's tail.
constexpr int64_t kMinBlockSize = 16;
constexpr int64_t kMaxBlockSize = 256;

enum class CacheKind { kContiguous, kPaged };

LONGATTN_API const char* cache_kind_name(CacheKind kind);

struct PlannerConfig {
  longattn_path path = LONGATTN_PATH_FUSED;  // the path every chunk runs (FUSED or UNFUSED)
  int32_t dtype = LONGATTN_BFLOAT16;  // of Q and O, and of K and V unless kv_dtype says otherwise
  // The KV cache's elements: 0 (dtype), or LONGATTN_FLOAT8_E4M3 / _E5M2 (written in FP8 with scale
  // 1, read by the library as an FP8 cache: longattn_args.kv_dtype). The CPU backend reads FP8.
  int32_t kv_dtype = 0;
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
  // The paged block, also the prefix-cache block: kMinBlockSize..kMaxBlockSize.
  int64_t block_size = 256;
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
// K and V are staged in the cache's dtype (kv_dtype 0: dtype).
LONGATTN_API ChunkBuffers chunk_buffers(const ModelPreset& stack, int32_t dtype, int64_t chunk,
                                        int32_t kv_dtype = 0);
// The dtype the cache stores: config.kv_dtype, or config.dtype where it is 0.
LONGATTN_API int32_t cache_dtype(const PlannerConfig& config);
// Throws Error(INVALID_ARGUMENT) naming dtype or kv_dtype unless they are a valid pair on
// config.device.
LONGATTN_API void validate_dtypes(const PlannerConfig& config);

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
  // Bytes of the whole stack's storage reserved up front for `total` tokens.
  int64_t reserved_bytes(int64_t total) const;
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

// Capacity (tokens) the prefill driver preallocates for a layer: every token for a global layer;
// for a window W, twice the keys it keeps (W + keep) plus one chunk, so that moving the kept keys
// to the front of the buffer never overlaps (Allocator::copy_2d needs disjoint regions).
LONGATTN_API int64_t contiguous_capacity(const LayerSpec& layer, int64_t total_tokens,
                                         int64_t max_chunk, int64_t keep);

}  // namespace longattn::engine
