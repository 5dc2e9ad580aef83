// Determinism (DESIGN.md section 4): the same inputs give the same bits, run after run, and the
// bits do not depend on the number of threads: work is split by output tile, never by a reduction
// whose order would follow the thread count, and AUTO's choice of path and splits depends on the
// shape and the machine's cores only.
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "reference_test_util.hpp"

namespace longattn_test {
namespace {

std::vector<Case> determinism_cases() {
  return {Case("prefill_bf16")
              .shape(1, 4, 2, 1023, 1023)
              .dims(128)
              .type(LONGATTN_BFLOAT16)
              .is_causal()
              .sinks(1.0f),
          Case("decode_f32").shape(2, 8, 1, 1, 4096).dims(64),
          Case("masked_f16")
              .shape(2, 2, 2, 113, 1023)
              .dims(96)
              .type(LONGATTN_FLOAT16)
              .mask(LONGATTN_MASK_ADDITIVE, 1, 0, 1, 1)};
}

class DeterminismCpu : public ::testing::TestWithParam<Case> {};

TEST_P(DeterminismCpu, SameInputsSameBits) {
  const Fixture fx(GetParam());
  for (int32_t path : {LONGATTN_PATH_REFERENCE, LONGATTN_PATH_UNFUSED, LONGATTN_PATH_FUSED,
                       LONGATTN_PATH_SPLIT_KV, LONGATTN_PATH_AUTO}) {
    SCOPED_TRACE(path_label(path));
    const RunOutput a = fx.run(path, default_options());
    const RunOutput b = fx.run(path, default_options());
    ASSERT_EQ(a.status, LONGATTN_OK) << a.message;
    ASSERT_EQ(b.status, LONGATTN_OK) << b.message;
    EXPECT_EQ(a.plan.path, b.plan.path);
    EXPECT_TRUE(a.o.bytes() == b.o.bytes()) << "O differs between two identical runs";
    EXPECT_TRUE(a.lse.bytes() == b.lse.bytes()) << "LSE differs between two identical runs";
  }
}

TEST_P(DeterminismCpu, FusedBitsIndependentOfThreadCount) {
  const Fixture fx(GetParam());
  longattn_options options = default_options();  // num_threads = 0: all cores
  const RunOutput all = fx.run(LONGATTN_PATH_FUSED, options);
  ASSERT_EQ(all.status, LONGATTN_OK) << all.message;
  for (int threads : {1, 2, 3}) {
    SCOPED_TRACE("num_threads " + std::to_string(threads));
    options.num_threads = threads;
    const RunOutput some = fx.run(LONGATTN_PATH_FUSED, options);
    ASSERT_EQ(some.status, LONGATTN_OK) << some.message;
    EXPECT_LE(some.plan.threads, threads);
    EXPECT_TRUE(some.o.bytes() == all.o.bytes()) << "O depends on the thread count";
    EXPECT_TRUE(some.lse.bytes() == all.lse.bytes()) << "LSE depends on the thread count";
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, DeterminismCpu, ::testing::ValuesIn(determinism_cases()),
                         [](const ::testing::TestParamInfo<Case>& i) { return i.param.name; });

// AUTO over a random grid: the router's choice (path, tiles, splits) and the bits must not follow
// options.num_threads. Decode-like shapes (one work item, a long cache) are where split_kv is
// chosen, so they are a large share of the grid.
Case random_case(std::mt19937& rng, int n) {
  auto pick = [&](std::initializer_list<int64_t> v) {
    return *(v.begin() + std::uniform_int_distribution<size_t>(0, v.size() - 1)(rng));
  };
  auto coin = [&](double p) { return std::bernoulli_distribution(p)(rng); };
  const bool decode = coin(0.5);
  const int64_t hkv = pick({1, 1, 2}), g = pick({1, 2, 4, 8});
  const int64_t lk = decode ? pick({1024, 1500, 2100, 3000}) : pick({1, 5, 64, 100, 700, 1100});
  const int64_t lq = decode ? pick({1, 1, 2, 3}) : pick({1, 7, 33, 70, 200});  // Lq > Lk too
  const int64_t dqk = pick({16, 64, 80, 128, 192}), dv = dqk == 192 ? 128 : dqk;
  Case c("random_" + std::to_string(n));
  c.shape(decode ? 1 : pick({1, 2}), hkv * g, hkv, lq, lk)
      .dims(dqk, dv)
      .type(int32_t(pick({LONGATTN_FLOAT32, LONGATTN_FLOAT16, LONGATTN_BFLOAT16})));
  if (coin(0.5)) c.is_causal();
  if (coin(0.3)) c.win(pick({0, 3, 100, 1000}));
  if (coin(0.2)) c.cap(30.f, 4.f);
  if (coin(0.2)) c.sinks(1.0f);
  if (coin(0.15)) c.mask(LONGATTN_MASK_ADDITIVE, false, coin(0.5), true, true);
  if (coin(0.2)) c.no_lse();
  return c;
}

TEST(DeterminismCpuAuto, BitsAndPlanIndependentOfThreadCount) {
  std::mt19937 rng(20);
  int split_cases = 0;
  for (int n = 0; n < 60; ++n) {
    const Case c = random_case(rng, n);
    SCOPED_TRACE(c.describe());
    const Fixture fx(c);
    longattn_options options = default_options();
    options.num_threads = 1;
    const RunOutput one = fx.run(LONGATTN_PATH_AUTO, options);
    ASSERT_EQ(one.status, LONGATTN_OK) << one.message;
    split_cases += one.plan.path == LONGATTN_PATH_SPLIT_KV;
    for (int threads : {2, 3, 8}) {
      SCOPED_TRACE("num_threads " + std::to_string(threads) + " vs 1");
      options.num_threads = threads;
      const RunOutput some = fx.run(LONGATTN_PATH_AUTO, options);
      ASSERT_EQ(some.status, LONGATTN_OK) << some.message;
      EXPECT_EQ(some.plan.path, one.plan.path) << some.plan.reason << " vs " << one.plan.reason;
      EXPECT_EQ(some.plan.splits, one.plan.splits);
      EXPECT_EQ(some.plan.block_q, one.plan.block_q);
      EXPECT_EQ(some.plan.block_k, one.plan.block_k);
      EXPECT_TRUE(some.o.bytes() == one.o.bytes()) << "O depends on the thread count";
      EXPECT_TRUE(some.lse.bytes() == one.lse.bytes()) << "LSE depends on the thread count";
    }
  }
  // On a machine of two or more cores AUTO splits the one-item decode shapes; the grid must
  // cover that choice, or it tests nothing about split_kv.
  longattn_device_info info;
  ASSERT_EQ(longattn_device_query(LONGATTN_DEVICE_CPU, &info), LONGATTN_OK);
  if (info.cores >= 2) {
    EXPECT_GT(split_cases, 0);
  }
}

// options.num_splits fixes the split count: AUTO takes split_kv with exactly that many slices (or
// never splits, at 1), forced split_kv uses it, and the bits then follow neither the thread count
// nor the policy.
TEST(DeterminismCpuAuto, NumSplitsFixesThePlan) {
  const Fixture fx(Case("num_splits").shape(1, 8, 1, 1, 4096).dims(64).type(LONGATTN_BFLOAT16));
  longattn_options o = default_options();
  o.num_splits = 1;
  const RunOutput unsplit = fx.run(LONGATTN_PATH_AUTO, o);
  ASSERT_EQ(unsplit.status, LONGATTN_OK) << unsplit.message;
  EXPECT_EQ(unsplit.plan.path, LONGATTN_PATH_FUSED) << unsplit.plan.reason;
  EXPECT_NE(std::string(unsplit.plan.reason).find("options.num_splits = 1"), std::string::npos)
      << unsplit.plan.reason;
  o.num_splits = 5;
  const RunOutput five = fx.run(LONGATTN_PATH_AUTO, o);
  ASSERT_EQ(five.status, LONGATTN_OK) << five.message;
  EXPECT_EQ(five.plan.path, LONGATTN_PATH_SPLIT_KV);
  EXPECT_EQ(five.plan.splits, 5);
  EXPECT_NE(std::string(five.plan.reason).find("options.num_splits = 5"), std::string::npos)
      << five.plan.reason;
  for (int threads : {1, 2, 3}) {
    SCOPED_TRACE("num_threads " + std::to_string(threads));
    o.num_threads = threads;
    const RunOutput forced = fx.run(LONGATTN_PATH_SPLIT_KV, o);
    ASSERT_EQ(forced.status, LONGATTN_OK) << forced.message;
    EXPECT_EQ(forced.plan.splits, 5);
    EXPECT_TRUE(forced.o.bytes() == five.o.bytes()) << "O depends on the thread count";
    EXPECT_TRUE(forced.lse.bytes() == five.lse.bytes()) << "LSE depends on the thread count";
  }
  o.num_threads = 0;
  o.num_splits = 1024;  // far more slices than key tiles: most are empty
  const RunOutput many = fx.run(LONGATTN_PATH_SPLIT_KV, o);
  ASSERT_EQ(many.status, LONGATTN_OK) << many.message;
  EXPECT_EQ(many.plan.splits, 1024);
  EXPECT_EQ(many.plan.allocated_bytes, many.plan.transient_bytes);
}

}  // namespace
}  // namespace longattn_test
