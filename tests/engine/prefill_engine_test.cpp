// The prefill driver on small stacks: chunking as planned, measured memory equal to the
// prediction, fused and unfused side by side (unfused stopping cleanly at the budget), multi-turn
// reuse through the prefix cache, the paged cache read in place, the JSON report and config errors.
#include <gtest/gtest.h>

#include <cstring>

#include "engine/json.hpp"
#include "longattn/engine.hpp"

namespace longattn::engine {
namespace {

constexpr int64_t kGiB = int64_t(1) << 30;

LayerSpec layer(int64_t d, int64_t hq, int64_t hkv, int64_t window = -1, bool k_eq_v = false,
                bool sinks = false) {
  LayerSpec l;
  l.head_dim_qk = l.head_dim_v = d;
  l.q_heads = hq;
  l.kv_heads = hkv;
  l.window_left = window;
  l.k_eq_v = k_eq_v;
  l.sinks = sinks;
  return l;
}

// A miniature Gemma-like stack: a sliding layer, a K==V global layer, and one with sinks.
ModelPreset small_stack() {
  return {"small",
          {layer(64, 4, 2, 63), layer(128, 4, 1, -1, true), layer(64, 4, 4, -1, false, true)},
          "test"};
}

PrefillConfig small_config() {
  PrefillConfig c;
  c.stack = small_stack();
  c.tokens = 600;
  c.planner.max_chunk = 256;
  c.planner.budget_bytes = kGiB;
  c.planner.num_threads = 2;
  c.planner.block_size = 16;
  c.paths = {LONGATTN_PATH_FUSED, LONGATTN_PATH_UNFUSED};
  return c;
}

TEST(PrefillEngine, PrefillsInPlannedChunksAndMeasuresWhatWasPredicted) {
  PrefillConfig c = small_config();
  int events = 0;
  int64_t last_done = 0;
  PrefillReport r = run_prefill(c, [&](const ProgressEvent& e) {
    ++events;
    EXPECT_GT(e.done_tokens, last_done % 600);
    last_done = e.done_tokens;
    EXPECT_EQ(e.turn_tokens, 600);
    ASSERT_NE(e.chunk, nullptr);
  });
  EXPECT_EQ(events, 6);
  EXPECT_EQ(r.num_layers, 3);
  EXPECT_EQ(r.budget_bytes, kGiB);
  EXPECT_NE(r.disclaimer.find("seeded generator"), std::string::npos);
  ASSERT_EQ(r.paths.size(), 2u);
  for (const PathReport& p : r.paths) {
    SCOPED_TRACE(longattn_path_name(p.path));
    PlannerConfig pc = c.planner;
    pc.path = p.path;
    pc.total_tokens = c.tokens;
    PrefillPlanner planner(c.stack, pc);
    ASSERT_TRUE(p.ok) << p.error;
    EXPECT_EQ(p.prefilled_tokens, 600);
    ASSERT_EQ(p.chunks.size(), 3u);
    const int64_t sizes[] = {256, 256, 88};
    for (size_t i = 0; i < 3; ++i) {
      const ChunkRecord& k = p.chunks[i];
      EXPECT_EQ(k.chunk, sizes[i]);
      EXPECT_EQ(k.start, int64_t(i) * 256);
      EXPECT_EQ(k.kv_len, k.start + k.chunk);
      EXPECT_EQ(k.transient_bytes, k.predicted_transient_bytes) << "chunk " << i;
      ChunkDecision d = planner.cost(k.start, k.chunk);
      EXPECT_EQ(k.cache_bytes, d.cache_bytes);  // the planner's cache model is what was reserved
      EXPECT_EQ(k.io_bytes, d.io_bytes);
      EXPECT_EQ(k.total_bytes, k.cache_bytes + k.transient_bytes + k.io_bytes);
      EXPECT_LE(k.total_bytes, c.planner.budget_bytes);
      EXPECT_GT(k.seconds, 0);
    }
    EXPECT_GT(p.tokens_per_second, 0);
    EXPECT_GE(p.wall_seconds, p.attention_seconds);
    ASSERT_EQ(p.turns.size(), 1u);
    EXPECT_EQ(p.turns[0].prefilled_tokens, 600);
  }
  const PathReport &fused = r.paths[0], &unfused = r.paths[1];
  // Fused transient does not grow with kv_len; unfused scores do.
  EXPECT_EQ(fused.chunks[1].transient_bytes, fused.chunks[0].transient_bytes);
  EXPECT_GT(unfused.chunks[1].transient_bytes, unfused.chunks[0].transient_bytes);
}

TEST(PrefillEngine, UnfusedStopsAtTheBudgetWhileFusedFinishes) {
  // Many query heads over few dims: the unfused scores (Hq x chunk x kv_len x 4) dwarf the rest.
  PrefillConfig c;
  c.stack = {"wide", {layer(16, 64, 1)}, ""};
  c.tokens = 3000;
  c.planner.max_chunk = 16;
  c.planner.num_threads = 2;
  c.planner.dtype = LONGATTN_FLOAT32;
  // A budget between what fused needs at chunk 16 and what unfused needs for one token at
  // kv_len 2000: fused runs to the end at full chunks, unfused shrinks its chunks and then stops.
  PlannerConfig pc = c.planner;
  pc.total_tokens = c.tokens;
  pc.budget_bytes = kGiB;
  pc.path = LONGATTN_PATH_FUSED;
  int64_t fused_need = 0;
  for (const auto& d : PrefillPlanner(c.stack, pc).plan(0, c.tokens))
    fused_need = std::max(fused_need, d.total_bytes);
  pc.path = LONGATTN_PATH_UNFUSED;
  int64_t unfused_need = PrefillPlanner(c.stack, pc).cost(2000, 1).total_bytes;
  ASSERT_LT(fused_need, unfused_need);
  c.planner.budget_bytes = (fused_need + unfused_need) / 2;
  c.paths = {LONGATTN_PATH_FUSED, LONGATTN_PATH_UNFUSED};

  PrefillReport r = run_prefill(c);
  const PathReport &fused = r.paths[0], &unfused = r.paths[1];
  EXPECT_TRUE(fused.ok) << fused.error;
  EXPECT_EQ(fused.prefilled_tokens, 3000);
  for (const auto& k : fused.chunks) EXPECT_EQ(k.chunk, std::min<int64_t>(16, 3000 - k.start));
  EXPECT_FALSE(unfused.ok);
  EXPECT_NE(unfused.error.find("over budget"), std::string::npos) << unfused.error;
  EXPECT_LT(unfused.prefilled_tokens, 2001);
  ASSERT_GT(unfused.chunks.size(), 2u);
  EXPECT_EQ(unfused.chunks.front().chunk, 16);
  EXPECT_LT(unfused.chunks.back().chunk, 16);  // it shrank before it stopped
  for (const auto& k : unfused.chunks) EXPECT_LE(k.total_bytes, c.planner.budget_bytes);
}

TEST(PrefillEngine, LaterTurnsPrefillOnlyTheirNewTokens) {
  PrefillConfig c = small_config();
  c.paths = {LONGATTN_PATH_FUSED};
  c.tokens = 300;
  c.turns = 3;
  c.turn_tokens = 100;
  c.checksum_outputs = true;
  PrefillReport r = run_prefill(c);
  const PathReport& p = r.paths[0];
  ASSERT_TRUE(p.ok) << p.error;
  ASSERT_EQ(p.turns.size(), 3u);
  EXPECT_EQ(p.turns[0].prefilled_tokens, 300);
  // Turn 2 submits 400 tokens; the 18 full blocks (288 tokens) of turn 1 are reused and the
  // partial block is recomputed with the new tokens.
  EXPECT_EQ(p.turns[1].conversation_tokens, 400);
  EXPECT_EQ(p.turns[1].reused_tokens, 288);
  EXPECT_EQ(p.turns[1].prefilled_tokens, 112);
  EXPECT_EQ(p.turns[2].reused_tokens, 400);  // 400 is a whole number of blocks
  EXPECT_EQ(p.turns[2].prefilled_tokens, 100);
  EXPECT_EQ(p.prefilled_tokens, 300 + 112 + 100);
  EXPECT_EQ(p.prefix_hits, 18 + 25);
  EXPECT_EQ(p.prefix_misses, 18 + (25 - 18) + (31 - 25));
  ASSERT_EQ(p.chunks.size(), 4u);     // 256 + 44, then 112, then 100
  EXPECT_EQ(p.chunks[2].start, 288);  // turn 2's first chunk starts at the reuse point

  // Same inputs, same bits; a different seed, different outputs.
  EXPECT_EQ(run_prefill(c).paths[0].output_checksum, p.output_checksum);
  c.seed += 1;
  EXPECT_NE(run_prefill(c).paths[0].output_checksum, p.output_checksum);
}

TEST(PrefillEngine, PagedCacheGivesTheContiguousResultsBitForBit) {
  // Global layers only, so both caches hand the kernel the same keys (a window keeps a different
  // number of older keys in each); two turns, so the second adopts blocks from the prefix cache.
  PrefillConfig c = small_config();
  c.stack = {"global", {layer(64, 4, 2), layer(128, 4, 1, -1, true)}, ""};
  c.tokens = 300;
  c.turns = 2;
  c.turn_tokens = 100;
  c.checksum_outputs = true;
  c.planner.cache = CacheKind::kPaged;
  PrefillReport paged = run_prefill(c);
  c.planner.cache = CacheKind::kContiguous;
  PrefillReport flat = run_prefill(c);
  for (size_t i = 0; i < 2; ++i) {
    const PathReport &p = paged.paths[i], &f = flat.paths[i];
    SCOPED_TRACE(longattn_path_name(p.path));
    ASSERT_TRUE(p.ok) << p.error;
    ASSERT_TRUE(f.ok) << f.error;
    EXPECT_EQ(p.turns[1].reused_tokens, 288);
    EXPECT_EQ(p.prefilled_tokens, f.prefilled_tokens);
    EXPECT_EQ(p.output_checksum, f.output_checksum);
    for (const auto& k : p.chunks) EXPECT_EQ(k.transient_bytes, k.predicted_transient_bytes);
  }

  // With sliding layers (windows release blocks, prefix blocks are adopted around them).
  c = small_config();
  c.planner.cache = CacheKind::kPaged;
  c.tokens = 300;
  c.turns = 3;
  c.turn_tokens = 100;
  PrefillReport r = run_prefill(c);
  for (const PathReport& p : r.paths) {
    ASSERT_TRUE(p.ok) << p.error;
    EXPECT_EQ(p.turns[1].reused_tokens, 288);
    EXPECT_EQ(p.turns[2].reused_tokens, 400);
    EXPECT_EQ(p.prefilled_tokens, 300 + 112 + 100);
    for (const auto& k : p.chunks) EXPECT_EQ(k.transient_bytes, k.predicted_transient_bytes);
  }
}

// The paged cache in GPU memory: the engine keeps each layer's block table on the device for the
// kernels, and the results match the contiguous cache's (fused: bit for bit). Skips without a GPU.
TEST(PrefillEngine, PagedCacheOnTheGpu) {
  longattn_device_info info;
  if (longattn_device_query(LONGATTN_DEVICE_CUDA, &info) != LONGATTN_OK || !info.available)
    GTEST_SKIP() << "no CUDA device: " << info.name;
  PrefillConfig c = small_config();
  c.planner.device = LONGATTN_DEVICE_CUDA;
  c.stack = {"global", {layer(64, 4, 2), layer(128, 4, 1, -1, true)}, ""};
  c.tokens = 300;
  c.turns = 2;
  c.turn_tokens = 100;
  c.planner.block_size = 128;  // a multiple of every fused kernel's key tile
  c.checksum_outputs = true;
  c.planner.cache = CacheKind::kPaged;
  PrefillReport paged = run_prefill(c);
  c.planner.cache = CacheKind::kContiguous;
  PrefillReport flat = run_prefill(c);
  ASSERT_EQ(paged.paths.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    const PathReport &p = paged.paths[i], &f = flat.paths[i];
    SCOPED_TRACE(longattn_path_name(p.path));
    ASSERT_TRUE(p.ok) << p.error;
    ASSERT_TRUE(f.ok) << f.error;
    EXPECT_EQ(p.turns[1].reused_tokens, 256);
    EXPECT_EQ(p.prefilled_tokens, f.prefilled_tokens);
    if (p.path == LONGATTN_PATH_FUSED) {
      EXPECT_EQ(p.output_checksum, f.output_checksum);
    }
    for (const auto& k : p.chunks) EXPECT_EQ(k.transient_bytes, k.predicted_transient_bytes);
  }

  // Sliding layers release blocks (the device table changes in place) and 16-token blocks, which
  // the unfused path gathers.
  c = small_config();
  c.planner.device = LONGATTN_DEVICE_CUDA;
  c.paths = {LONGATTN_PATH_UNFUSED};
  c.planner.cache = CacheKind::kPaged;
  c.tokens = 300;
  c.turns = 3;
  c.turn_tokens = 100;
  PrefillReport r = run_prefill(c);
  for (const PathReport& p : r.paths) {
    ASSERT_TRUE(p.ok) << p.error;
    EXPECT_EQ(p.turns[2].reused_tokens, 400);
    for (const auto& k : p.chunks) EXPECT_EQ(k.transient_bytes, k.predicted_transient_bytes);
  }
}

TEST(PrefillEngine, ReportIsValidJson) {
  PrefillConfig c = small_config();
  c.tokens = 100;
  PrefillReport r = run_prefill(c);
  std::string text = report_to_json(r);
  json::Value v = json::parse(text, "report");
  ASSERT_EQ(v.kind, json::Value::Kind::kObject);
  EXPECT_NE(v.find("disclaimer")->text.find("no weights"), std::string::npos);
  EXPECT_EQ(v.find("stack")->find("name")->text, "small");
  EXPECT_EQ(v.find("config")->find("budget_bytes")->text, std::to_string(kGiB));
  const json::Value* paths = v.find("paths");
  ASSERT_EQ(paths->items.size(), 2u);
  EXPECT_EQ(paths->items[1].find("path")->text, "unfused");
  const json::Value* chunk = &paths->items[0].find("chunks")->items.at(0);
  for (const char* key : {"kv_len", "chunk", "seconds", "transient_bytes", "cache_bytes", "reason"})
    EXPECT_NE(chunk->find(key), nullptr) << key;
}

TEST(PrefillEngine, ACacheLargerThanTheBudgetIsRefusedBeforeAllocating) {
  PrefillConfig c = small_config();
  c.tokens = int64_t(1) << 40;  // terabytes of KV cache: must not even be attempted
  PrefillReport r = run_prefill(c);
  for (const PathReport& p : r.paths) {
    EXPECT_FALSE(p.ok);
    EXPECT_NE(p.error.find("KV cache for 1099511627776 tokens needs"), std::string::npos)
        << p.error;
    EXPECT_TRUE(p.chunks.empty());
  }
}

TEST(PrefillEngine, ConfigCountsTheConversation) {
  PrefillConfig c = small_config();
  EXPECT_EQ(c.later_turn_tokens(), 600);  // turn_tokens 0: each later turn adds `tokens`
  EXPECT_EQ(c.conversation_tokens(), 600);
  c.turns = 3;
  EXPECT_EQ(c.conversation_tokens(), 1800);
  c.turn_tokens = 50;
  EXPECT_EQ(c.later_turn_tokens(), 50);
  EXPECT_EQ(c.conversation_tokens(), 700);
}

TEST(PrefillEngine, BadConfigNamesTheSetting) {
  auto msg = [](PrefillConfig c) {
    try {
      run_prefill(c);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  PrefillConfig c = small_config();
  c.tokens = 0;
  EXPECT_NE(msg(c).find("tokens = 0"), std::string::npos);
  c = small_config();
  c.turns = 0;
  EXPECT_NE(msg(c).find("turns = 0"), std::string::npos);
  c = small_config();
  c.paths.clear();
  EXPECT_NE(msg(c).find("paths"), std::string::npos);
  c = small_config();
  c.planner.block_size = 300;
  EXPECT_NE(msg(c).find("block_size = 300"), std::string::npos);
  longattn_device_info gpu{};
  if (longattn_device_query(LONGATTN_DEVICE_CUDA, &gpu) != LONGATTN_OK || !gpu.available) {
    c = small_config();  // without a usable GPU, asking for one is a configuration error
    c.planner.device = LONGATTN_DEVICE_CUDA;
    EXPECT_NE(msg(c).find("cuda"), std::string::npos);
  }
  c = small_config();
  c.stack.layers[0].q_heads = 0;
  EXPECT_NE(msg(c).find("layers[0].q_heads = 0"), std::string::npos);
  c = small_config();
  c.planner.kv_dtype = LONGATTN_FLOAT16;  // neither dtype (bf16) nor FP8
  EXPECT_NE(msg(c).find("kv_dtype = 1"), std::string::npos) << msg(c);
  c = small_config();
  c.planner.dtype = LONGATTN_FLOAT8_E4M3;
  EXPECT_NE(msg(c).find("dtype = float8_e4m3"), std::string::npos) << msg(c);
  c = small_config();  // both paths: the GPU's unfused path reads K and V in dtype
  c.planner.kv_dtype = LONGATTN_FLOAT8_E4M3;
  c.planner.device = LONGATTN_DEVICE_CUDA;
  EXPECT_NE(msg(c).find("kv_dtype = float8_e4m3: the CUDA unfused path"), std::string::npos)
      << msg(c);
}

// An FP8 cache (issue 18): half the bytes of a bf16 one, memory as predicted, the paged cache gives
// the contiguous one's bits, and the outputs are those of FP8 keys (not the bf16 run's).
TEST(PrefillEngine, Fp8CacheHalvesTheBytesAndRunsBothCaches) {
  PrefillConfig c = small_config();
  c.stack = {"global", {layer(64, 4, 2), layer(128, 4, 1, -1, true)}, ""};
  c.tokens = 300;
  c.checksum_outputs = true;
  const PrefillReport bf16 = run_prefill(c);
  for (int32_t kv : {LONGATTN_FLOAT8_E4M3, LONGATTN_FLOAT8_E5M2}) {
    SCOPED_TRACE(longattn_dtype_name(kv));
    c.planner.kv_dtype = kv;
    c.planner.cache = CacheKind::kContiguous;
    const PrefillReport flat = run_prefill(c);
    c.planner.cache = CacheKind::kPaged;
    const PrefillReport paged = run_prefill(c);
    for (size_t i = 0; i < 2; ++i) {
      const PathReport &f = flat.paths[i], &p = paged.paths[i], &b = bf16.paths[i];
      SCOPED_TRACE(longattn_path_name(f.path));
      ASSERT_TRUE(f.ok) << f.error;
      ASSERT_TRUE(p.ok) << p.error;
      ASSERT_TRUE(b.ok) << b.error;
      EXPECT_EQ(2 * f.chunks[0].cache_bytes, b.chunks[0].cache_bytes);
      EXPECT_EQ(p.output_checksum, f.output_checksum);
      EXPECT_NE(f.output_checksum, b.output_checksum);
      for (const auto& k : f.chunks) EXPECT_EQ(k.transient_bytes, k.predicted_transient_bytes);
      for (const auto& k : p.chunks) EXPECT_EQ(k.transient_bytes, k.predicted_transient_bytes);
    }
  }
}

// An FP8 cache on the GPU: the fused path runs it (paged reads give the contiguous bits, memory as
// predicted, half the cache bytes); the unfused path, which reads K and V in dtype, is refused
// naming kv_dtype. Skips without a GPU.
TEST(PrefillEngine, Fp8CacheOnTheGpu) {
  longattn_device_info info;
  if (longattn_device_query(LONGATTN_DEVICE_CUDA, &info) != LONGATTN_OK || !info.available)
    GTEST_SKIP() << "no CUDA device: " << info.name;
  if (std::string(info.features).rfind("sm_90,", 0) != 0)
    GTEST_SKIP() << "the CUDA kernels read FP8 caches on Hopper only: " << info.features;
  PrefillConfig c = small_config();
  c.planner.device = LONGATTN_DEVICE_CUDA;
  c.stack = {"global", {layer(64, 4, 2), layer(128, 4, 1, -1, true)}, ""};
  c.tokens = 300;
  c.planner.block_size = 128;  // a multiple of the portable kernel's key tiles
  c.checksum_outputs = true;
  c.paths = {LONGATTN_PATH_FUSED};
  const PrefillReport bf16 = run_prefill(c);
  c.planner.kv_dtype = LONGATTN_FLOAT8_E4M3;
  c.planner.cache = CacheKind::kPaged;
  const PrefillReport paged = run_prefill(c);
  c.planner.cache = CacheKind::kContiguous;
  const PrefillReport flat = run_prefill(c);
  ASSERT_EQ(flat.paths.size(), 1u);
  const PathReport &f = flat.paths[0], &p = paged.paths[0], &b = bf16.paths[0];
  ASSERT_TRUE(f.ok) << f.error;
  ASSERT_TRUE(p.ok) << p.error;
  ASSERT_TRUE(b.ok) << b.error;
  EXPECT_EQ(2 * f.chunks[0].cache_bytes, b.chunks[0].cache_bytes);
  EXPECT_EQ(p.output_checksum, f.output_checksum);
  EXPECT_NE(f.output_checksum, b.output_checksum);
  for (const auto& k : f.chunks) EXPECT_EQ(k.transient_bytes, k.predicted_transient_bytes);
  for (const auto& k : p.chunks) EXPECT_EQ(k.transient_bytes, k.predicted_transient_bytes);
  c.paths = {LONGATTN_PATH_UNFUSED};
  try {
    run_prefill(c);
    ADD_FAILURE() << "the unfused path ran an FP8 cache on the GPU";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("kv_dtype = float8_e4m3"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace longattn::engine
