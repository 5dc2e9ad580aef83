// The prefill report as JSON (what `longattn prefill --json` prints and plot_prefill.py reads).
#include "longattn/engine/report.hpp"

#include "engine/json.hpp"

namespace longattn::engine {

std::string report_to_json(const PrefillReport& r) {
  json::Writer w;
  const PrefillConfig& c = r.config;
  w.begin_object();
  w.key("disclaimer").value(r.disclaimer);
  w.key("stack").begin_object();
  w.key("name").value(r.stack_name);
  w.key("layers").value(r.num_layers);
  w.key("notes").value(r.stack_notes);
  w.end_object();
  w.key("device").value(r.device_name);
  w.key("config").begin_object();
  w.key("tokens").value(c.tokens);
  w.key("turns").value(c.turns);
  w.key("turn_tokens").value(c.later_turn_tokens());
  w.key("max_chunk").value(c.planner.max_chunk);
  w.key("exact_chunk_search").value(c.planner.exact_search);
  w.key("dtype").value(longattn_dtype_name(c.planner.dtype));
  w.key("kv_dtype").value(longattn_dtype_name(cache_dtype(c.planner)));
  w.key("device").value(c.planner.device == LONGATTN_DEVICE_CUDA ? "cuda" : "cpu");
  w.key("cache").value(cache_kind_name(c.planner.cache));
  w.key("block_size").value(c.planner.block_size);
  w.key("budget_bytes").value(r.budget_bytes);
  w.key("prefix_cache_bytes").value(c.prefix_cache_bytes);
  w.key("seed").value(static_cast<uint64_t>(c.seed));
  w.key("threads").value(c.planner.num_threads);
  w.end_object();

  w.key("paths").begin_array();
  for (const PathReport& p : r.paths) {
    w.begin_object();
    w.key("path").value(longattn_path_name(p.path));
    w.key("ok").value(p.ok);
    w.key("error").value(p.error);
    w.key("prefilled_tokens").value(p.prefilled_tokens);
    w.key("attention_seconds").value(p.attention_seconds);
    w.key("wall_seconds").value(p.wall_seconds);
    w.key("tokens_per_second").value(p.tokens_per_second);
    w.key("peak_bytes").value(p.peak_bytes);
    w.key("peak_transient_bytes").value(p.peak_transient_bytes);
    w.key("prefix_cache").begin_object();
    w.key("hit_blocks").value(p.prefix_hits);
    w.key("miss_blocks").value(p.prefix_misses);
    w.key("evictions").value(p.prefix_evictions);
    w.end_object();
    if (c.checksum_outputs) w.key("output_checksum").value(p.output_checksum);
    w.key("turns").begin_array();
    for (const TurnRecord& t : p.turns) {
      w.begin_object();
      w.key("turn").value(t.turn);
      w.key("conversation_tokens").value(t.conversation_tokens);
      w.key("new_tokens").value(t.new_tokens);
      w.key("reused_tokens").value(t.reused_tokens);
      w.key("prefilled_tokens").value(t.prefilled_tokens);
      w.key("seconds").value(t.seconds);
      w.end_object();
    }
    w.end_array();
    w.key("chunks").begin_array();
    for (const ChunkRecord& k : p.chunks) {
      w.begin_object();
      w.key("turn").value(k.turn);
      w.key("index").value(k.index);
      w.key("start").value(k.start);
      w.key("chunk").value(k.chunk);
      w.key("kv_len").value(k.kv_len);
      w.key("seconds").value(k.seconds);
      w.key("transient_bytes").value(k.transient_bytes);
      w.key("predicted_transient_bytes").value(k.predicted_transient_bytes);
      w.key("io_bytes").value(k.io_bytes);
      w.key("cache_bytes").value(k.cache_bytes);
      w.key("total_bytes").value(k.total_bytes);
      w.key("reason").value(k.reason);
      w.end_object();
    }
    w.end_array();
    w.end_object();
  }
  w.end_array();
  w.end_object();
  return w.str() + "\n";
}

}  // namespace longattn::engine
