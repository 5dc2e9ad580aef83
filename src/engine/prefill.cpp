// The prefill driver: prefills a prompt (and, with turns, a growing conversation) through a layer
// stack in planned chunks, attention only, and records what every chunk cost.
#include "longattn/engine/prefill.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "core/numeric.hpp"
#include "engine/common.hpp"
#include "longattn/engine/kv_cache.hpp"
#include "longattn/engine/prefix_cache.hpp"

namespace longattn::engine {
namespace {

constexpr int64_t kVocab = 262144;  // token ids are drawn from a Gemma-sized vocabulary
// Rows of Q/K/V are windows into one table of random values, picked by a hash of (layer, tensor,
// head, position, token): as varied as a full generator for attention's purposes, and a memcpy
// per row, so generating inputs never dominates the attention being measured.
constexpr int64_t kTableRows = int64_t(1) << 16;
constexpr int64_t kMaxDim = 512;

enum Tensor { kQ = 1, kK = 2, kV = 3, kSink = 4, kToken = 5 };

uint64_t hash(uint64_t seed, uint64_t a, uint64_t b = 0, uint64_t c = 0, uint64_t d = 0,
              uint64_t e = 0) {
  using numeric::splitmix64;
  return splitmix64(splitmix64(splitmix64(splitmix64(splitmix64(seed ^ a) ^ b) ^ c) ^ d) ^ e);
}

float uniform(uint64_t bits) {  // [-1, 1)
  return static_cast<float>(static_cast<double>(bits >> 11) * 0x1.0p-52 - 1.0);
}

// Q rows come in dtype, K and V rows in the cache's dtype (an FP8 cache's rows are the same values
// rounded to FP8, as a runtime writes them).
class Generator {
 public:
  Generator(uint64_t seed, int32_t dtype, int32_t kv_dtype) : seed_(seed) {
    make_table(dtype, &q_);
    if (kv_dtype == dtype)
      kv_ = q_;
    else
      make_table(kv_dtype, &kv_);
  }

  int32_t token(int64_t position) const {
    return static_cast<int32_t>(hash(seed_, kToken, static_cast<uint64_t>(position)) % kVocab);
  }

  // [heads, n, dim] rows for the tokens at positions [p0, p0 + n).
  void fill(char* dst, int layer, Tensor t, int64_t heads, int64_t dim, int64_t p0, int64_t n,
            const int32_t* tokens) const {
    const Table& table = t == kQ ? q_ : kv_;
    const int64_t row = dim * table.elem;
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < n; ++i) {
        uint64_t pick = hash(seed_, static_cast<uint64_t>(layer), t, static_cast<uint64_t>(h),
                             static_cast<uint64_t>(p0 + i), static_cast<uint32_t>(tokens[i]));
        std::memcpy(dst + (h * n + i) * row, table.values.data() + (pick % kTableRows) * table.elem,
                    static_cast<size_t>(row));
      }
  }

  float sink(int layer, int64_t head) const {
    return uniform(hash(seed_, static_cast<uint64_t>(layer), kSink, static_cast<uint64_t>(head)));
  }

 private:
  struct Table {
    int64_t elem = 0;
    std::vector<char> values;
  };
  void make_table(int32_t dtype, Table* t) const {
    t->elem = dtype_size(dtype);
    t->values.resize(static_cast<size_t>((kTableRows + kMaxDim) * t->elem));
    for (int64_t i = 0; i < kTableRows + kMaxDim; ++i) {
      float v = uniform(hash(seed_, 0x7ab1e, static_cast<uint64_t>(i)));
      numeric::store_element(dtype, t->values.data(), i, v);
    }
  }
  uint64_t seed_;
  Table q_, kv_;
};

// Device memory for one buffer, freed on scope exit.
struct DeviceBuffer {
  std::shared_ptr<Allocator> alloc;
  int64_t bytes;
  char* p;
  DeviceBuffer(std::shared_ptr<Allocator> a, int64_t n)
      : alloc(std::move(a)), bytes(n), p(static_cast<char*>(alloc->allocate(n))) {}
  ~DeviceBuffer() { alloc->deallocate(p, bytes); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

void validate_config(const PrefillConfig& c) {
  validate_stack(c.stack);
  validate_dtypes(c.planner);
  for (longattn_path path : c.paths) {  // the dtype rules of each path asked for
    PlannerConfig each = c.planner;
    each.path = path;
    validate_dtypes(each);
  }
  check_at_least("tokens", c.tokens, 1);
  check_at_least("turns", c.turns, 1);
  check_at_least("turn_tokens", c.turn_tokens, 0);
  if (c.paths.empty()) invalid("paths: give at least one of fused, unfused");
  check_block_size(c.planner.block_size);
  check_limit("prefix_cache_bytes", c.prefix_cache_bytes, "unlimited");
}

// One path's run. Storage is either one contiguous cache per layer (its prefix index's handles
// are block numbers of the conversation) or a paged cache with a PagedPrefixCache.
class PathRun {
 public:
  PathRun(const PrefillConfig& cfg, longattn_path path, const Generator& gen,
          std::shared_ptr<Allocator> alloc, const ProgressCallback& progress)
      : cfg_(cfg),
        gen_(gen),
        alloc_(std::move(alloc)),
        progress_(progress),
        total_(cfg.conversation_tokens()),
        planner_(cfg.stack, planner_config(cfg.planner, path, total_)),
        index_(cfg.planner.block_size, cfg.prefix_cache_bytes, nullptr) {
    report_.path = path;
  }

  PathReport run() {
    auto wall0 = std::chrono::steady_clock::now();
    try {
      setup();
      for (int t = 1; t <= cfg_.turns; ++t) run_turn(t);
    } catch (const Error& e) {
      report_.ok = false;
      report_.error = e.what();
    } catch (const std::bad_alloc&) {
      report_.ok = false;
      report_.error = "out of host memory";
    }
    report_.wall_seconds = seconds_since(wall0);
    report_.tokens_per_second =
        report_.attention_seconds > 0 ? report_.prefilled_tokens / report_.attention_seconds : 0;
    const PrefixCache& index = paged_prefix_ ? paged_prefix_->index() : index_;
    report_.prefix_hits = index.hits();
    report_.prefix_misses = index.misses();
    report_.prefix_evictions = index.evictions();
    if (paged_prefix_) paged_prefix_.reset();  // before the cache it refers to
    return report_;
  }

  int64_t budget() const { return planner_.budget_bytes(); }

 private:
  static PlannerConfig planner_config(PlannerConfig p, longattn_path path, int64_t total) {
    p.path = path;
    p.total_tokens = total;
    return p;
  }

  static double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }

  void setup() {
    const auto& layers = cfg_.stack.layers;
    // The storage is reserved up front: refuse before allocating, not after running out.
    const int64_t reserve = planner_.reserved_bytes(total_);
    if (reserve > budget())
      throw Error(LONGATTN_OVER_BUDGET,
                  std::string("prefill over budget: the ") + cache_kind_name(cfg_.planner.cache) +
                      " KV cache for " + std::to_string(total_) + " tokens needs " +
                      format_bytes(reserve) + " > budget " + format_bytes(budget()));
    if (cfg_.planner.cache == CacheKind::kContiguous) {
      for (const auto& l : layers)
        caches_.emplace_back(l, cache_dtype(cfg_.planner), alloc_,
                             planner_.reserved_tokens(l, total_), true);
    } else {
      paged_ = std::make_unique<PagedKvCache>(cfg_.stack, cache_dtype(cfg_.planner),
                                              cfg_.planner.block_size, total_, alloc_);
      paged_prefix_ = std::make_unique<PagedPrefixCache>(*paged_, cfg_.prefix_cache_bytes);
    }
    for (size_t l = 0; l < layers.size(); ++l) {
      sinks_.emplace_back();
      if (!layers[l].sinks) continue;
      std::vector<float> host(static_cast<size_t>(layers[l].q_heads));
      for (int64_t h = 0; h < layers[l].q_heads; ++h) host[h] = gen_.sink(static_cast<int>(l), h);
      int64_t bytes = layers[l].q_heads * 4;
      sinks_.back() = std::make_unique<DeviceBuffer>(alloc_, bytes);
      alloc_->copy_2d(sinks_.back()->p, bytes, host.data(), bytes, bytes, 1,
                      CopyKind::kHostToDevice);
    }
  }

  // What the storage reserved (both kinds are sized for the whole run up front).
  int64_t cache_bytes() const {
    if (paged_) return paged_->bytes_reserved();
    int64_t b = 0;
    for (const auto& c : caches_) b += c.bytes_reserved();
    return b;
  }

  // Tokens the storage still holds that the prefix cache vouches for; rolls the rest back.
  int64_t reuse_contiguous() {
    PrefixCache::Match m = index_.lookup(conversation_);
    int64_t reuse = std::min(m.tokens, caches_.empty() ? 0 : caches_[0].length());
    bool ok = true;
    for (const auto& c : caches_) ok = ok && reuse >= c.start();
    if (!ok) reuse = 0;  // a sliding layer no longer holds the keys the rollback point needs
    for (auto& c : caches_) {
      if (reuse == 0)
        c.clear();
      else
        c.truncate(reuse);
    }
    // Blocks past the reuse point will be recomputed and registered again.
    while (static_cast<int64_t>(held_.size()) * cfg_.planner.block_size > reuse) {
      index_.release(held_.back());
      held_.pop_back();
    }
    return reuse;
  }

  void publish_contiguous(int64_t length) {
    const int64_t bs = cfg_.planner.block_size;
    for (int64_t b = static_cast<int64_t>(held_.size()); (b + 1) * bs <= length; ++b) {
      uint64_t parent = b == 0 ? PrefixCache::kRootKey : held_.back();
      const int64_t bytes = kv_bytes_per_token(cfg_.stack, cache_dtype(cfg_.planner)) * bs;
      uint64_t key = PrefixCache::chain_key(parent, conversation_.data() + b * bs, bs);
      if (index_.contains(key))  // registered before a rollback: the same tokens, so reuse it
        index_.retain(key);
      else if (!index_.insert(parent, conversation_.data() + b * bs, b, bytes))
        return;  // over the prefix budget: later blocks cannot chain from here
      held_.push_back(key);
    }
  }

  void run_turn(int turn) {
    const int64_t new_tokens = turn == 1 ? cfg_.tokens : cfg_.later_turn_tokens();
    for (int64_t i = 0; i < new_tokens; ++i)
      conversation_.push_back(gen_.token(static_cast<int64_t>(conversation_.size())));
    const int64_t length = static_cast<int64_t>(conversation_.size());

    int64_t reuse;
    if (paged_) {
      if (seq_) {  // the previous turn's request is over; its blocks live on in the prefix cache
        paged_prefix_->detach(seq_);
        paged_->free_sequence(seq_);
      }
      seq_ = paged_->create_sequence();
      reuse = paged_prefix_->attach(seq_, conversation_);
    } else {
      reuse = reuse_contiguous();
    }

    TurnRecord tr;
    tr.turn = turn;
    tr.conversation_tokens = length;
    tr.new_tokens = new_tokens;
    tr.reused_tokens = reuse;
    tr.prefilled_tokens = length - reuse;
    report_.turns.push_back(tr);
    for (int64_t done = reuse; done < length;) {
      ChunkDecision d = planner_.next(done, length - done, chunk_index_++);
      ChunkRecord rec = run_chunk(turn, d);
      done += d.chunk;
      if (paged_)
        paged_prefix_->publish(
            seq_, std::vector<int32_t>(conversation_.begin(), conversation_.begin() + done));
      else
        publish_contiguous(done);
      report_.turns.back().seconds += rec.seconds;
      report_.chunks.push_back(rec);
      if (progress_) {
        ProgressEvent ev;
        ev.path = report_.path;
        ev.turn = turn;
        ev.turns = cfg_.turns;
        ev.done_tokens = done - reuse;
        ev.turn_tokens = length - reuse;
        ev.chunk = &report_.chunks.back();
        progress_(ev);
      }
    }
  }

  // Q/O on the device and K/V staging on the host, sized for the largest layer at this chunk
  // size; reallocated only when the chunk size changes (allocating per layer would cost a device
  // synchronization and fresh page faults each time).
  ChunkBuffers ensure_buffers(int64_t chunk) {
    ChunkBuffers b = chunk_buffers(cfg_.stack, cfg_.planner.dtype, chunk, cfg_.planner.kv_dtype);
    if (chunk != buffer_chunk_) {
      q_.reset();
      o_.reset();
      q_ = std::make_unique<DeviceBuffer>(alloc_, b.q);
      o_ = std::make_unique<DeviceBuffer>(alloc_, b.o);
      k_host_.assign(static_cast<size_t>(b.k), 0);
      v_host_.assign(static_cast<size_t>(std::max<int64_t>(b.v, 1)), 0);
      if (alloc_->device() != LONGATTN_DEVICE_CPU) q_host_.assign(static_cast<size_t>(b.q), 0);
      buffer_chunk_ = chunk;
    }
    return b;
  }

  ChunkRecord run_chunk(int turn, const ChunkDecision& d) {
    ChunkRecord rec;
    rec.turn = turn;
    rec.index = d.index;
    rec.start = d.start;
    rec.chunk = d.chunk;
    rec.kv_len = d.kv_len;
    rec.predicted_transient_bytes = d.transient_bytes;
    rec.reason = d.reason;
    const int64_t elem = dtype_size(cfg_.planner.dtype);
    const int32_t* tokens = conversation_.data() + d.start;
    const int64_t n = d.chunk;
    Options options = default_options();
    options.path = report_.path;
    options.num_threads = cfg_.planner.num_threads;

    const ChunkBuffers bytes = ensure_buffers(n);
    for (size_t li = 0; li < cfg_.stack.layers.size(); ++li) {
      const LayerSpec& l = cfg_.stack.layers[li];
      const int layer = static_cast<int>(li);
      const int64_t q_bytes = l.q_heads * n * l.head_dim_qk * elem;
      char* k = k_host_.data();
      char* v = v_host_.data();
      if (alloc_->device() == LONGATTN_DEVICE_CPU) {
        gen_.fill(q_->p, layer, kQ, l.q_heads, l.head_dim_qk, d.start, n, tokens);
      } else {
        gen_.fill(q_host_.data(), layer, kQ, l.q_heads, l.head_dim_qk, d.start, n, tokens);
        alloc_->copy_2d(q_->p, q_bytes, q_host_.data(), q_bytes, q_bytes, 1,
                        CopyKind::kHostToDevice);
      }
      gen_.fill(k, layer, kK, l.kv_heads, l.head_dim_qk, d.start, n, tokens);
      if (!l.k_eq_v) gen_.fill(v, layer, kV, l.kv_heads, l.head_dim_v, d.start, n, tokens);

      AttentionArgs a = make_args(1, l.q_heads, l.kv_heads, n, 1, l.head_dim_qk, l.head_dim_v);
      a.q = q_->p;
      a.o = o_->p;
      a.dtype = cfg_.planner.dtype;
      a.device = alloc_->device();
      a.causal = 1;
      a.window_left = l.window_left;
      a.sinks = l.sinks ? reinterpret_cast<const float*>(sinks_[li]->p) : nullptr;

      if (paged_) {
        paged_->append(seq_, layer, k, v, n);
        paged_->fill_args(seq_, layer, &a);  // the kernel reads the blocks in place
      } else {
        ContiguousKvCache& c = caches_[li];
        // Keys before the planner's first stored key are no longer counted: drop them.
        c.release_before(planner_.first_stored_key(l, d.start));
        c.append(k, v, n);
        c.fill_args(&a);
      }
      // The library guards the transient too: what is left of the budget after everything else.
      options.memory_budget = std::max<int64_t>(0, budget() - cache_bytes() - bytes.total());
      longattn_plan plan{};
      auto t0 = std::chrono::steady_clock::now();
      longattn_status s = longattn_attention(&a, &options, &plan);
      if (s != LONGATTN_OK)
        throw Error(s, "layer " + std::to_string(layer) + ", chunk at " + std::to_string(d.start) +
                           ": " + longattn_last_error());
      alloc_->synchronize();
      rec.seconds += seconds_since(t0);
      rec.transient_bytes = std::max(rec.transient_bytes, plan.allocated_bytes);
      if (cfg_.checksum_outputs) {
        const int64_t o_bytes = l.q_heads * n * l.head_dim_v * elem;
        std::vector<char> host;
        const char* out = o_->p;
        if (alloc_->device() != LONGATTN_DEVICE_CPU) {
          host.resize(static_cast<size_t>(o_bytes));
          alloc_->copy_2d(host.data(), o_bytes, o_->p, o_bytes, o_bytes, 1,
                          CopyKind::kDeviceToHost);
          out = host.data();
        }
        uint64_t h = report_.output_checksum;
        for (int64_t i = 0; i + 8 <= o_bytes; i += 8) {
          uint64_t w;
          std::memcpy(&w, out + i, 8);
          h = numeric::splitmix64(h ^ w);
        }
        report_.output_checksum = h;
      }
    }
    rec.io_bytes = bytes.total();
    rec.cache_bytes = cache_bytes();
    rec.total_bytes = rec.cache_bytes + rec.transient_bytes + rec.io_bytes;
    report_.prefilled_tokens += n;
    report_.attention_seconds += rec.seconds;
    report_.peak_bytes = std::max(report_.peak_bytes, rec.total_bytes);
    report_.peak_transient_bytes = std::max(report_.peak_transient_bytes, rec.transient_bytes);
    return rec;
  }

  const PrefillConfig& cfg_;
  const Generator& gen_;
  std::shared_ptr<Allocator> alloc_;
  const ProgressCallback& progress_;
  int64_t total_;
  PrefillPlanner planner_;
  PathReport report_;
  std::vector<int32_t> conversation_;
  int64_t chunk_index_ = 0;
  // Contiguous storage: one cache per layer, the index, and the keys the conversation holds.
  std::vector<ContiguousKvCache> caches_;
  PrefixCache index_;
  std::vector<uint64_t> held_;
  // Paged storage.
  std::unique_ptr<PagedKvCache> paged_;
  std::unique_ptr<PagedPrefixCache> paged_prefix_;
  PagedKvCache::SequenceId seq_ = 0;
  std::vector<std::unique_ptr<DeviceBuffer>> sinks_;
  std::unique_ptr<DeviceBuffer> q_, o_;
  std::vector<char> k_host_, v_host_, q_host_;
  int64_t buffer_chunk_ = 0;
};

}  // namespace

const char* prefill_disclaimer() {
  return "attention only: Q/K/V come from a seeded generator (no weights, no model output); "
         "times cover the attention calls of every layer";
}

PrefillReport run_prefill(const PrefillConfig& config, const ProgressCallback& progress) {
  validate_config(config);
  auto alloc = make_allocator(config.planner.device);
  PrefillReport report;
  report.stack_name = config.stack.name;
  report.stack_notes = config.stack.notes;
  report.num_layers = static_cast<int>(config.stack.layers.size());
  report.device_name = device_info(config.planner.device).name;
  report.config = config;
  report.disclaimer = prefill_disclaimer();
  Generator gen(config.seed, config.planner.dtype, cache_dtype(config.planner));
  for (longattn_path path : config.paths) {
    PathRun run(config, path, gen, alloc, progress);  // invalid settings throw from here
    report.budget_bytes = run.budget();
    report.paths.push_back(run.run());
  }
  return report;
}

}  // namespace longattn::engine
