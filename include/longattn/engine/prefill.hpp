// The prefill driver behind `longattn prefill`: prefills a prompt (or a conversation, turn by turn)
// through a layer stack in planned chunks and records what every chunk cost. Part of the engine.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "longattn/engine/planner.hpp"
#include "longattn/engine/stack.hpp"

namespace longattn::engine {

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

  // New tokens each turn after the first adds (turn_tokens, or `tokens` when it is 0).
  int64_t later_turn_tokens() const { return turn_tokens > 0 ? turn_tokens : tokens; }
  // Tokens the last turn submits: the whole conversation, what the caches are sized for.
  int64_t conversation_tokens() const { return tokens + int64_t(turns - 1) * later_turn_tokens(); }
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

}  // namespace longattn::engine
