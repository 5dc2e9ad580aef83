// Paged K/V (a block table over a pool of fixed-size blocks) gives bit-for-bit the result of the
// same K/V stored contiguously, on every path and dtype, and bad tables are refused.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <random>

#include "reference_test_util.hpp"

namespace longattn_test {
namespace {

class PagedCpu : public ::testing::TestWithParam<Case> {};

TEST_P(PagedCpu, EveryPathMatchesContiguousBitForBit) {
  if (const std::string why = forced_cpu_isa_repeats_unforced(); !why.empty()) GTEST_SKIP() << why;
  const Fixture fx(GetParam());
  for (int64_t page : {16, 64, 100}) {
    const PagedCopy paged = make_paged(fx.args(), page, GetParam().k_eq_v, uint32_t(page));
    for (int32_t path : {LONGATTN_PATH_REFERENCE, LONGATTN_PATH_UNFUSED, LONGATTN_PATH_FUSED,
                         LONGATTN_PATH_SPLIT_KV}) {
      SCOPED_TRACE(std::string(longattn_path_name(path)) + " page " + std::to_string(page));
      const RunOutput contiguous = fx.run(path, default_options());
      const RunOutput from_pages = fx.run_with(path, default_options(), paged.args);
      ASSERT_EQ(from_pages.status, LONGATTN_OK) << from_pages.message;
      EXPECT_EQ(from_pages.guard_problem, "");
      EXPECT_EQ(from_pages.o.bytes(), contiguous.o.bytes());
      EXPECT_EQ(from_pages.lse.bytes(), contiguous.lse.bytes());
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, PagedCpu,
    ::testing::Values(
        Case("paged_f32").shape(2, 4, 2, 37, 517).dims(128).is_causal(),
        Case("paged_bf16")
            .shape(1, 8, 2, 64, 300)
            .dims(256)
            .type(LONGATTN_BFLOAT16)
            .is_causal()
            .win(100),
        Case("paged_f16_mask")
            .shape(1, 2, 1, 7, 129)
            .dims(80)
            .type(LONGATTN_FLOAT16)
            .mask(LONGATTN_MASK_ADDITIVE, false, false, true, true),
        Case("paged_decode_kv").shape(1, 8, 1, 1, 1023).dims(64).type(LONGATTN_BFLOAT16).same_kv(),
        Case("paged_fp8_e4m3")
            .shape(2, 4, 2, 37, 517)
            .dims(128)
            .type(LONGATTN_BFLOAT16)
            .is_causal()
            .fp8(LONGATTN_FLOAT8_E4M3, 2)),
    [](const auto& info) { return info.param.name; });

TEST(PagedCpu, BadTablesAreRefused) {
  const Fixture fx(Case("paged_errors").shape(1, 2, 1, 5, 40).dims(64));
  PagedCopy paged = make_paged(fx.args(), 16, false, 1);
  longattn_options opt = default_options();
  paged.table[1] = int32_t(paged.args.num_blocks);  // one past the pool
  RunOutput out = fx.run_with(LONGATTN_PATH_FUSED, opt, paged.args);
  EXPECT_EQ(out.status, LONGATTN_INVALID_ARGUMENT);
  EXPECT_THAT(out.message, ::testing::HasSubstr("block_table"));
  paged.table[1] = 0;
  longattn_args a = paged.args;
  a.page_size = 0;
  out = fx.run_with(LONGATTN_PATH_FUSED, opt, a);
  EXPECT_EQ(out.status, LONGATTN_INVALID_ARGUMENT);
  EXPECT_THAT(out.message, ::testing::HasSubstr("page_size"));
  a = paged.args;
  a.num_blocks = 0;
  out = fx.run_with(LONGATTN_PATH_FUSED, opt, a);
  EXPECT_EQ(out.status, LONGATTN_INVALID_ARGUMENT);
  EXPECT_THAT(out.message, ::testing::HasSubstr("num_blocks"));
}

}  // namespace
}  // namespace longattn_test
