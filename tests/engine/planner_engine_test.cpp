// The prefill planner's memory guard: fused chunks stay constant (transient independent of kv_len),
// unfused chunks shrink as kv_len grows (the score matrix is Hq x chunk x kv_len x 4 bytes), the
// numbers are the library's own, and a budget nothing fits is a clear OVER_BUDGET error.
#include <gtest/gtest.h>

#include "longattn/engine.hpp"

namespace longattn::engine {
namespace {

constexpr int64_t kMiB = int64_t(1) << 20;
constexpr int64_t kGiB = int64_t(1) << 30;
constexpr int64_t kPrompt = 131072;  // the scenario

PlannerConfig config(longattn_path path, int64_t budget) {
  PlannerConfig c;
  c.path = path;
  c.dtype = LONGATTN_BFLOAT16;
  c.budget_bytes = budget;
  c.max_chunk = 2048;
  c.num_threads = 2;  // CPU transient is per worker: fix it so the numbers are the same anywhere
  c.total_tokens = kPrompt;
  return c;
}

// What the gemma4-26b-a4b contiguous cache reserves for kPrompt tokens (constant over the run).
int64_t gemma4_cache_bytes() {
  PlannerConfig c = config(LONGATTN_PATH_FUSED, kGiB * 1024);
  PrefillPlanner p(find_preset("gemma4-26b-a4b"), c);
  return p.cost(0, 1).cache_bytes;
}

TEST(PlannerEngine, CacheBytesAreWhatTheDriverReserves) {
  ModelPreset g = find_preset("gemma4-26b-a4b");
  int64_t expect = 0;
  for (const auto& l : g.layers)
    expect += contiguous_capacity(l, kPrompt, 2048, 256) * kv_bytes_per_token(l, LONGATTN_BFLOAT16);
  EXPECT_EQ(gemma4_cache_bytes(), expect);
  // 5 global layers x 131072 tokens x 2 heads x 512 (K == V, one tensor) x 2 bytes.
  EXPECT_GT(expect, 5 * kPrompt * 2 * 512 * 2);
  // reserved_bytes is the same sum: the driver refuses a run with it before allocating.
  PrefillPlanner p(g, config(LONGATTN_PATH_FUSED, kGiB * 1024));
  EXPECT_EQ(p.reserved_bytes(kPrompt), expect);
}

TEST(PlannerEngine, StackBytesPerTokenSumTheLayers) {
  ModelPreset g = find_preset("gemma4-26b-a4b");
  int64_t expect = 0;
  for (const auto& l : g.layers) expect += kv_bytes_per_token(l, LONGATTN_BFLOAT16);
  EXPECT_EQ(kv_bytes_per_token(g, LONGATTN_BFLOAT16), expect);
  // 25 sliding layers with K and V (8 heads x 256 each) and 5 global with K == V (2 x 512).
  EXPECT_EQ(expect, 25 * 8 * (256 + 256) * 2 + 5 * 2 * 512 * 2);
}

TEST(PlannerEngine, FusedChunkStaysConstantAndSmall) {
  const int64_t budget = gemma4_cache_bytes() + 512 * kMiB;
  PrefillPlanner p(find_preset("gemma4-26b-a4b"), config(LONGATTN_PATH_FUSED, budget));
  std::vector<ChunkDecision> plan = p.plan(0, kPrompt);
  ASSERT_EQ(plan.size(), size_t(kPrompt / 2048));
  for (const auto& d : plan) {
    EXPECT_EQ(d.chunk, 2048) << d.reason;
    EXPECT_EQ(d.transient_bytes, plan[0].transient_bytes) << "at kv_len " << d.kv_len;
    EXPECT_LT(d.transient_bytes, 64 * kMiB);  // the target
    EXPECT_LE(d.total_bytes, budget);
  }
  EXPECT_EQ(plan.back().kv_len, kPrompt);
  EXPECT_NE(plan[0].reason.find("fused: chunk 2048 fits"), std::string::npos) << plan[0].reason;
}

TEST(PlannerEngine, UnfusedChunksShrinkAsKvLenGrows) {
  const int64_t budget = gemma4_cache_bytes() + 6 * kGiB;
  PrefillPlanner p(find_preset("gemma4-26b-a4b"), config(LONGATTN_PATH_UNFUSED, budget));
  std::vector<ChunkDecision> plan = p.plan(0, kPrompt);
  ASSERT_GT(plan.size(), size_t(kPrompt / 2048));
  EXPECT_EQ(plan.front().chunk, 2048);
  int64_t prev = plan.front().chunk;
  for (const auto& d : plan) {
    EXPECT_LE(d.chunk, prev) << "chunks never grow back as kv_len grows";
    prev = d.chunk;
    EXPECT_LE(d.total_bytes, budget);
    // The scores of the global layer alone: Hq x chunk x kv_len x 4 bytes.
    EXPECT_GE(d.transient_bytes, 16 * d.chunk * d.kv_len * 4) << d.kv_len;
    // The guard chose the largest candidate: twice the chunk would not have fit.
    if (d.chunk < 2048 && d.start + 2 * d.chunk <= kPrompt) {
      EXPECT_GT(p.cost(d.start, 2 * d.chunk).total_bytes, budget) << d.reason;
    }
  }
  EXPECT_LE(plan.back().chunk, 512) << plan.back().reason;
  for (const auto& d : plan)
    if (d.chunk < 2048 && d.start + 2048 <= kPrompt) {  // says what the larger chunk needed
      EXPECT_NE(d.reason.find("would need"), std::string::npos) << d.reason;
      break;
    }
}

TEST(PlannerEngine, TransientIsTheLibrarysOwnNumber) {
  ModelPreset g = find_preset("gemma4-26b-a4b");
  for (longattn_path path : {LONGATTN_PATH_FUSED, LONGATTN_PATH_UNFUSED}) {
    PrefillPlanner p(g, config(path, kGiB * 1024));
    ChunkDecision d = p.cost(40000, 1024);
    int64_t worst = 0;
    for (const LayerSpec& l : {g.layers[0], g.layers[5]}) {
      int64_t kv = p.layer_kv_len(l, 40000, 1024);
      EXPECT_EQ(kv, l.window_left < 0 ? 41024 : 1023 + 256 + 1024);
      AttentionArgs a = make_args(1, l.q_heads, l.kv_heads, 1024, kv, l.head_dim_qk, l.head_dim_v);
      a.dtype = LONGATTN_BFLOAT16;
      a.causal = 1;
      a.window_left = l.window_left;
      a.q = reinterpret_cast<void*>(uintptr_t(1) << 41);
      a.k = a.v = reinterpret_cast<void*>(uintptr_t(2) << 41);
      a.o = reinterpret_cast<void*>(uintptr_t(3) << 41);
      Options o = default_options();
      o.num_threads = 2;
      worst = std::max(worst, transient_bytes(a, path, o));
    }
    EXPECT_EQ(d.transient_bytes, worst) << longattn_path_name(path);
    // Q and O for the global layer (16 x 512), K for a sliding one (8 x 256), V likewise.
    ChunkBuffers b = chunk_buffers(g, LONGATTN_BFLOAT16, 1024);
    EXPECT_EQ(b.q, 2 * 1024 * 16 * 512);
    EXPECT_EQ(b.o, 2 * 1024 * 16 * 512);
    EXPECT_EQ(b.k, 2 * 1024 * 8 * 256);
    EXPECT_EQ(b.v, 2 * 1024 * 8 * 256);
    EXPECT_EQ(d.io_bytes, b.total());
    EXPECT_EQ(d.total_bytes, d.cache_bytes + d.transient_bytes + d.io_bytes);
  }
}

TEST(PlannerEngine, ExactSearchFindsTheLargestFittingChunk) {
  PlannerConfig c = config(LONGATTN_PATH_UNFUSED, gemma4_cache_bytes() + 3 * kGiB);
  c.exact_search = true;
  PrefillPlanner p(find_preset("gemma4-26b-a4b"), c);
  ChunkDecision d = p.next(60000, 10000);
  ASSERT_LT(d.chunk, 2048);
  EXPECT_LE(d.total_bytes, c.budget_bytes);
  EXPECT_GT(p.cost(60000, d.chunk + 1).total_bytes, c.budget_bytes);
  // Candidates only: a power of two, no larger than the exact answer.
  c.exact_search = false;
  ChunkDecision pow2 = PrefillPlanner(find_preset("gemma4-26b-a4b"), c).next(60000, 10000);
  EXPECT_LE(pow2.chunk, d.chunk);
  EXPECT_EQ(pow2.chunk & (pow2.chunk - 1), 0);
  // Explicit candidates are honoured, and the last chunk is cut to what remains.
  c.candidates = {1500, 700};
  PrefillPlanner custom(find_preset("gemma4-26b-a4b"), c);
  EXPECT_EQ(custom.next(0, 100000).chunk, 1500);
  EXPECT_EQ(custom.next(0, 999).chunk, 999);
}

TEST(PlannerEngine, NothingFitsIsAClearError) {
  const int64_t cache = gemma4_cache_bytes();
  for (longattn_path path : {LONGATTN_PATH_FUSED, LONGATTN_PATH_UNFUSED}) {
    PrefillPlanner p(find_preset("gemma4-26b-a4b"), config(path, cache));  // no room beyond it
    try {
      p.next(1000, 5000);
      FAIL() << "no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), LONGATTN_OVER_BUDGET);
      std::string m = e.what();
      EXPECT_NE(m.find("even the smallest allowed chunk (1 token)"), std::string::npos) << m;
      EXPECT_NE(m.find("budget"), std::string::npos) << m;
      if (path == LONGATTN_PATH_UNFUSED) {
        EXPECT_NE(m.find("--path fused"), std::string::npos);
      }
    }
  }
}

TEST(PlannerEngine, PagedCacheGrowsBlockByBlock) {
  PlannerConfig c = config(LONGATTN_PATH_FUSED, kGiB * 1024);
  c.cache = CacheKind::kPaged;
  c.block_size = 64;
  ModelPreset g = find_preset("gemma4-26b-a4b");
  // Pools reserved up front for total_tokens: the guard counts the reservation, every chunk.
  PrefillPlanner reserved(g, c);
  EXPECT_EQ(reserved.cost(5000, 100).cache_bytes, kPrompt * (5 * 2 * 512 * 2 + 25 * 8 * 512 * 2));
  // Pools that grow: the blocks the sequence holds once the chunk is in.
  c.total_tokens = 0;
  PrefillPlanner p(g, c);
  int64_t global = 2 * 512 * 2, sliding = 8 * 512 * 2;  // bytes per token
  ChunkDecision a = p.cost(0, 100), b = p.cost(10000, 100);
  EXPECT_EQ(a.cache_bytes, 128 * (5 * global + 25 * sliding));  // 2 blocks of 64
  // At 10000 + 100: global layers hold blocks 0..157; sliding ones from block (10000-1023)/64 =
  // 140.
  EXPECT_EQ(b.cache_bytes, 158 * 64 * 5 * global + (158 - 140) * 64 * 25 * sliding);
  EXPECT_EQ(p.layer_kv_len(g.layers[0], 10000, 100), 10100 - 140 * 64);
  EXPECT_EQ(p.first_stored_key(g.layers[0], 10000), 140 * 64);
  EXPECT_EQ(p.first_stored_key(g.layers[5], 10000), 0);          // global
  EXPECT_EQ(reserved.reserved_tokens(g.layers[0], 1000), 1024);  // whole blocks
}

TEST(PlannerEngine, AContiguousSlidingLayerKeepsOneBlockBeyondItsWindow) {
  PlannerConfig c = config(LONGATTN_PATH_FUSED, kGiB * 1024);
  ModelPreset g = find_preset("gemma4-26b-a4b");
  const LayerSpec &sliding = g.layers[0], &global = g.layers[5];
  ASSERT_EQ(sliding.window_left, 1023);
  ASSERT_EQ(global.window_left, -1);
  PrefillPlanner p(g, c);
  EXPECT_EQ(p.keep_tokens(), 256);
  EXPECT_EQ(p.first_stored_key(sliding, 10000), 10000 - 1023 - 256);
  EXPECT_EQ(p.first_stored_key(sliding, 1000), 0);
  EXPECT_EQ(p.first_stored_key(global, 10000), 0);
  EXPECT_EQ(p.layer_kv_len(sliding, 10000, 100), 1023 + 256 + 100);
  EXPECT_EQ(p.reserved_tokens(sliding, kPrompt), contiguous_capacity(sliding, kPrompt, 2048, 256));
  EXPECT_EQ(p.reserved_tokens(global, kPrompt), kPrompt);
}

TEST(PlannerEngine, RejectsBadSettings) {
  ModelPreset g = find_preset("gpt-oss-20b");
  auto msg = [&](PlannerConfig c) {
    try {
      PrefillPlanner p(g, c);
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), LONGATTN_INVALID_ARGUMENT);
      return std::string(e.what());
    }
    return std::string("no error");
  };
  PlannerConfig c = config(LONGATTN_PATH_AUTO, kGiB);
  EXPECT_NE(msg(c).find("path = auto"), std::string::npos);
  c = config(LONGATTN_PATH_FUSED, -5);
  EXPECT_NE(msg(c).find("budget = -5"), std::string::npos);
  c = config(LONGATTN_PATH_FUSED, kGiB);
  c.max_chunk = 0;
  EXPECT_NE(msg(c).find("max_chunk = 0"), std::string::npos);
  c = config(LONGATTN_PATH_FUSED, kGiB);
  c.candidates = {512, 0};
  EXPECT_NE(msg(c).find("chunk candidate 0"), std::string::npos);
  c = config(LONGATTN_PATH_FUSED, kGiB);
  c.block_size = 8;
  EXPECT_NE(msg(c).find("block_size = 8: must be between 16 and 256"), std::string::npos);
  PrefillPlanner p(g, config(LONGATTN_PATH_FUSED, kGiB));
  EXPECT_THROW(p.next(0, 0), Error);
  EXPECT_THROW(p.next(-1, 10), Error);
}

}  // namespace
}  // namespace longattn::engine
