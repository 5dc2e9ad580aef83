// Determinism (DESIGN.md section 4): the same inputs give the same bits, run after run, and the
// fused path's bits do not depend on the number of threads (work is split by output tile, never
// by a reduction whose order would follow the thread count).
#include <gtest/gtest.h>

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

}  // namespace
}  // namespace longattn_test
