// The prefill planner: per chunk, the largest chunk size whose KV cache + attention transient +
// chunk buffers fit the memory budget. The transient bytes come from the library itself
// (longattn_transient_bytes), so the guard uses the same numbers the router and kernels use.
#include "longattn/engine/planner.hpp"

#include <algorithm>

#include "core/numeric.hpp"
#include "engine/common.hpp"

namespace longattn::engine {
namespace {

// longattn_transient_bytes only plans, it never dereferences: any distinct, aligned, non-null
// addresses far apart (so no overlap check can trip) describe the shape.
void* fake_pointer(int i) { return reinterpret_cast<void*>(static_cast<uintptr_t>(i + 1) << 40); }

}  // namespace

void check_block_size(int64_t block_size) {
  check_between("block_size", block_size, kMinBlockSize, kMaxBlockSize);
}

int64_t blocks_for(int64_t tokens, int64_t block_size) {
  return (tokens + block_size - 1) / block_size;
}

int64_t first_visible_key(const LayerSpec& layer, int64_t start) {
  return layer.window_left < 0 ? 0 : std::max<int64_t>(0, start - layer.window_left);
}

int64_t first_live_block(const LayerSpec& layer, int64_t start, int64_t block_size) {
  return first_visible_key(layer, start) / block_size;
}

int64_t contiguous_capacity(const LayerSpec& layer, int64_t total_tokens, int64_t max_chunk,
                            int64_t keep) {
  if (layer.window_left < 0) return total_tokens;
  int64_t kept = layer.window_left + keep;
  return std::min(total_tokens, 2 * kept + max_chunk);
}

ChunkBuffers chunk_buffers(const ModelPreset& stack, int32_t dtype, int64_t chunk,
                           int32_t kv_dtype) {
  const int64_t elem = dtype_size(dtype), kv_elem = dtype_size(kv_dtype ? kv_dtype : dtype);
  ChunkBuffers b;
  for (const auto& l : stack.layers) {
    b.q = std::max(b.q, elem * chunk * l.q_heads * l.head_dim_qk);
    b.o = std::max(b.o, elem * chunk * l.q_heads * l.head_dim_v);
    b.k = std::max(b.k, kv_elem * chunk * l.kv_heads * l.head_dim_qk);
    b.v = std::max(b.v, l.k_eq_v ? 0 : kv_elem * chunk * l.kv_heads * l.head_dim_v);
  }
  return b;
}

int32_t cache_dtype(const PlannerConfig& config) {
  return config.kv_dtype ? config.kv_dtype : config.dtype;
}

void validate_dtypes(const PlannerConfig& config) {
  dtype_size(config.dtype);
  if (numeric::is_fp8(config.dtype))
    invalid(std::string("dtype = ") + longattn_dtype_name(config.dtype) +
            ": Q and O are float32, float16 or bfloat16 (an FP8 cache is kv_dtype)");
  if (config.kv_dtype != 0 && config.kv_dtype != config.dtype && !numeric::is_fp8(config.kv_dtype))
    invalid("kv_dtype = " + std::to_string(config.kv_dtype) +
            ": allowed values are 0 or dtype (the cache in dtype), float8_e4m3, float8_e5m2");
  if (numeric::is_fp8(config.kv_dtype) && config.device != LONGATTN_DEVICE_CPU &&
      config.path == LONGATTN_PATH_UNFUSED)
    invalid(std::string("kv_dtype = ") + longattn_dtype_name(config.kv_dtype) +
            ": the CUDA unfused path reads K and V in dtype; an FP8 cache on the GPU runs on the "
            "fused path (path = fused)");
}

const char* cache_kind_name(CacheKind kind) {
  return kind == CacheKind::kPaged ? "paged" : "contiguous";
}

PrefillPlanner::PrefillPlanner(ModelPreset stack, PlannerConfig config)
    : stack_(std::move(stack)), config_(std::move(config)) {
  validate_stack(stack_);
  validate_dtypes(config_);
  if (config_.path != LONGATTN_PATH_FUSED && config_.path != LONGATTN_PATH_UNFUSED &&
      config_.path != LONGATTN_PATH_SPLIT_KV)
    invalid(std::string("path = ") + longattn_path_name(config_.path) +
            ": the planner needs a fixed path (fused, unfused or split_kv) so that its memory "
            "is known before it runs");
  check_at_least("max_chunk", config_.max_chunk, 1);
  for (int64_t c : config_.candidates)
    if (c < 1) invalid("chunk candidate " + std::to_string(c) + ": must be >= 1");
  check_block_size(config_.block_size);
  check_at_least("total_tokens", config_.total_tokens, 0);
  if (config_.candidates.empty()) {
    config_.candidates.push_back(config_.max_chunk);
    for (int64_t c = int64_t(1) << 62; c >= 1; c /= 2)
      if (c < config_.max_chunk) config_.candidates.push_back(c);
  }
  std::sort(config_.candidates.rbegin(), config_.candidates.rend());
  config_.candidates.erase(std::unique(config_.candidates.begin(), config_.candidates.end()),
                           config_.candidates.end());

  budget_ = config_.budget_bytes;
  if (budget_ == -1) {
    DeviceInfo info = device_info(config_.device);
    budget_ = info.memory_free;
    if (budget_ <= 0)
      invalid(std::string("budget = -1 asks for the free memory of the ") +
              (config_.device == LONGATTN_DEVICE_CUDA ? "GPU" : "CPU") +
              ", which it does not report; give a budget in bytes");
  } else {
    check_limit("budget", budget_, "free memory", "bytes");
  }
  for (const auto& l : stack_.layers)
    if (std::find(shapes_.begin(), shapes_.end(), l) == shapes_.end()) shapes_.push_back(l);
}

int64_t PrefillPlanner::first_stored_key(const LayerSpec& l, int64_t start) const {
  if (config_.cache == CacheKind::kPaged)
    return first_live_block(l, start, config_.block_size) * config_.block_size;
  return std::max<int64_t>(0, first_visible_key(l, start) - keep_tokens());
}

int64_t PrefillPlanner::layer_kv_len(const LayerSpec& l, int64_t start, int64_t chunk) const {
  return start + chunk - first_stored_key(l, start);
}

int64_t PrefillPlanner::reserved_tokens(const LayerSpec& l, int64_t total) const {
  const int64_t bs = config_.block_size;
  if (config_.cache == CacheKind::kPaged) return blocks_for(total, bs) * bs;
  return contiguous_capacity(l, total, config_.max_chunk, keep_tokens());
}

int64_t PrefillPlanner::reserved_bytes(int64_t total) const {
  int64_t bytes = 0;
  for (const auto& l : stack_.layers)
    bytes += reserved_tokens(l, total) * kv_bytes_per_token(l, cache_dtype(config_));
  return bytes;
}

int64_t PrefillPlanner::total_tokens(int64_t start, int64_t chunk) const {
  return config_.total_tokens > 0 ? std::max(config_.total_tokens, start + chunk) : start + chunk;
}

int64_t PrefillPlanner::cache_bytes(int64_t start, int64_t chunk) const {
  if (config_.cache != CacheKind::kPaged || config_.total_tokens > 0)
    return reserved_bytes(total_tokens(start, chunk));
  // A paged cache that grows holds the live blocks once the chunk is appended.
  int64_t bytes = 0;
  const int64_t bs = config_.block_size;
  for (const auto& l : stack_.layers)
    bytes += (blocks_for(start + chunk, bs) * bs - first_stored_key(l, start)) *
             kv_bytes_per_token(l, cache_dtype(config_));
  return bytes;
}

ChunkDecision PrefillPlanner::cost(int64_t start, int64_t chunk) const {
  ChunkDecision d;
  d.start = start;
  d.chunk = chunk;
  d.kv_len = start + chunk;
  d.cache_bytes = cache_bytes(start, chunk);
  d.budget_bytes = budget_;
  Options options = default_options();
  options.num_threads = config_.num_threads;
  for (const auto& l : shapes_) {
    AttentionArgs a = make_args(1, l.q_heads, l.kv_heads, chunk, layer_kv_len(l, start, chunk),
                                l.head_dim_qk, l.head_dim_v);
    a.q = fake_pointer(0);
    a.k = fake_pointer(1);
    a.v = l.k_eq_v ? a.k : fake_pointer(2);
    a.o = fake_pointer(3);
    a.sinks = l.sinks ? static_cast<const float*>(fake_pointer(4)) : nullptr;
    a.dtype = config_.dtype;
    a.kv_dtype = numeric::is_fp8(config_.kv_dtype) ? config_.kv_dtype : 0;
    a.device = config_.device;
    a.causal = 1;
    a.window_left = l.window_left;
    // A paged K/V is planned as one: its table is real (validation reads it on the CPU), every
    // entry block 0 of a one-block pool.
    std::vector<int32_t> table;
    if (config_.cache == CacheKind::kPaged) {
      const int64_t bs = config_.block_size;
      table.assign(static_cast<size_t>(blocks_for(a.kv_len, bs)), 0);
      a.block_table = table.data();
      a.block_table_stride = static_cast<int64_t>(table.size());
      a.page_size = bs;
      a.num_blocks = 1;
      a.k_strides = {bs * l.kv_heads * l.head_dim_qk, l.head_dim_qk, l.kv_heads * l.head_dim_qk};
      a.v_strides = {bs * l.kv_heads * l.head_dim_v, l.head_dim_v, l.kv_heads * l.head_dim_v};
    }
    int64_t transient = 0;
    longattn_status s = longattn_transient_bytes(&a, config_.path, &options, &transient);
    if (s != LONGATTN_OK)
      throw Error(s, std::string("planner: ") + longattn_path_name(config_.path) +
                         " path for a layer of " + std::to_string(l.q_heads) + "q/" +
                         std::to_string(l.kv_heads) + "kv d=" + std::to_string(l.head_dim_qk) +
                         ": " + longattn_last_error());
    d.transient_bytes = std::max(d.transient_bytes, transient);
  }
  d.io_bytes = chunk_buffers(stack_, config_.dtype, chunk, config_.kv_dtype).total();
  d.total_bytes = d.cache_bytes + d.transient_bytes + d.io_bytes;
  return d;
}

ChunkDecision PrefillPlanner::next(int64_t cached, int64_t remaining, int64_t index) const {
  check_at_least("cached", cached, 0);
  check_at_least("remaining", remaining, 1);
  const int64_t limit = std::min(config_.max_chunk, remaining);
  auto fits = [&](const ChunkDecision& d) { return d.total_bytes <= budget_; };

  ChunkDecision best, rejected;
  bool found = false, have_rejected = false;
  if (config_.exact_search) {  // memory grows with the chunk, so the fitting sizes are a prefix
    int64_t lo = 1, hi = limit;
    ChunkDecision d = cost(cached, hi);
    if (fits(d)) {
      best = d;
      found = true;
    } else {
      rejected = d;
      have_rejected = true;
      while (lo <= hi) {
        int64_t mid = lo + (hi - lo) / 2;
        ChunkDecision m = cost(cached, mid);
        if (fits(m)) {
          best = m;
          found = true;
          lo = mid + 1;
        } else {
          rejected = m;
          hi = mid - 1;
        }
      }
    }
  } else {
    std::vector<int64_t> sizes;
    if (limit < config_.max_chunk) sizes.push_back(limit);  // the last, shorter chunk
    for (int64_t c : config_.candidates)
      if (c <= limit) sizes.push_back(c);
    std::sort(sizes.rbegin(), sizes.rend());
    sizes.erase(std::unique(sizes.begin(), sizes.end()), sizes.end());
    for (int64_t c : sizes) {
      ChunkDecision d = cost(cached, c);
      if (fits(d)) {
        best = d;
        found = true;
        break;
      }
      rejected = d;
      have_rejected = true;
    }
  }

  const char* path = longattn_path_name(config_.path);
  auto breakdown = [](const ChunkDecision& d) {
    return "cache " + format_bytes(d.cache_bytes) + " + transient " +
           format_bytes(d.transient_bytes) + " + chunk buffers " + format_bytes(d.io_bytes) +
           " = " + format_bytes(d.total_bytes);
  };
  if (!found) {
    // The smallest size tried (the last rejected): 1 token, unless the allowed sizes stop above.
    const ChunkDecision smallest = have_rejected ? rejected : cost(cached, 1);
    throw Error(LONGATTN_OVER_BUDGET,
                std::string("prefill over budget: with ") + std::to_string(cached) +
                    " tokens cached, even the smallest allowed chunk (" +
                    std::to_string(smallest.chunk) + (smallest.chunk == 1 ? " token" : " tokens") +
                    ") on the " + path + " path needs " + breakdown(smallest) + " > budget " +
                    format_bytes(budget_) +
                    (config_.path == LONGATTN_PATH_UNFUSED
                         ? "; the fused path needs no scores buffer (--path fused)"
                         : "; raise the budget or shorten the prompt"));
  }
  best.index = index;
  best.reason = std::string(path) + ": chunk " + std::to_string(best.chunk) + " fits (" +
                breakdown(best) + " <= budget " + format_bytes(budget_) + ")";
  if (have_rejected && rejected.chunk > best.chunk)
    best.reason += "; chunk " + std::to_string(rejected.chunk) + " would need " +
                   format_bytes(rejected.total_bytes) + " (transient " +
                   format_bytes(rejected.transient_bytes) + ")";
  return best;
}

std::vector<ChunkDecision> PrefillPlanner::plan(int64_t cached, int64_t tokens) const {
  std::vector<ChunkDecision> out;
  for (int64_t done = 0; done < tokens;) {
    out.push_back(next(cached + done, tokens - done, static_cast<int64_t>(out.size())));
    done += out.back().chunk;
  }
  return out;
}

}  // namespace longattn::engine
