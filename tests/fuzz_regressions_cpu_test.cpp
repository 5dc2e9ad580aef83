// Regressions for the bugs the C API fuzzer (tests/fuzz) found: each case is the smallest input
// that showed one, checked through the public API.
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>

#include "reference_test_util.hpp"

namespace longattn_test {
namespace {

constexpr int64_t kI64Max = std::numeric_limits<int64_t>::max();

bool mentions(const std::string& message, const char* what) {
  return message.find(what) != std::string::npos;
}

// LSE is written too: it may not alias Q, K, V or the sinks (only its overlap with O was checked,
// so LSE written over Q was accepted and modified the input). Nor may O alias the mask.
TEST(FuzzRegressionsCpu, OutputsAliasingAnInputAreRejected) {
  const Fixture fx(Case("aliases")
                       .shape(1, 2, 1, 8, 8)
                       .dims(16)
                       .sinks(1.0f)
                       .mask(LONGATTN_MASK_ADDITIVE, true, true, true, true));
  struct Alias {
    const char* input;
    void (*apply)(longattn_args&);
  };
  const Alias aliases[] = {
      {"q", [](longattn_args& a) { a.lse = static_cast<float*>(const_cast<void*>(a.q)); }},
      {"k", [](longattn_args& a) { a.lse = static_cast<float*>(const_cast<void*>(a.k)); }},
      {"sinks", [](longattn_args& a) { a.lse = const_cast<float*>(a.sinks); }},
      {"mask.data", [](longattn_args& a) { a.o = const_cast<void*>(a.mask.data); }},
  };
  for (const Alias& alias : aliases) {
    SCOPED_TRACE(alias.input);
    longattn_args a = fx.args();
    alias.apply(a);
    longattn_options options = default_options();
    EXPECT_EQ(longattn_attention(&a, &options, nullptr), LONGATTN_INVALID_ARGUMENT);
    const std::string message = longattn_last_error();
    EXPECT_TRUE(mentions(message, "overlaps") && mentions(message, alias.input)) << message;
    EXPECT_EQ(fx.inputs_changed(), "");
  }
}

// window_left near INT64_MAX with Lq > Lk: `diag - window_left` overflowed for the rows before
// the diagonal, and those rows came out as seeing no key (O = 0, LSE = -inf) instead of all keys.
TEST(FuzzRegressionsCpu, HugeWindowSeesEveryKey) {
  const Fixture windowed(Case("huge_window").shape(1, 2, 1, 8, 3).dims(16).win(kI64Max));
  const Fixture plain(Case("huge_window").shape(1, 2, 1, 8, 3).dims(16));
  for (int32_t path : {LONGATTN_PATH_REFERENCE, LONGATTN_PATH_UNFUSED, LONGATTN_PATH_FUSED,
                       LONGATTN_PATH_SPLIT_KV}) {
    SCOPED_TRACE(path_label(path));
    const RunOutput w = windowed.run(path, default_options());
    const RunOutput p = plain.run(path, default_options());
    ASSERT_EQ(w.status, LONGATTN_OK) << w.message;
    ASSERT_EQ(p.status, LONGATTN_OK) << p.message;
    EXPECT_TRUE(w.o.bytes() == p.o.bytes()) << "a window wider than the cache changed O";
    EXPECT_TRUE(w.lse.bytes() == p.lse.bytes()) << "a window wider than the cache changed LSE";
  }
}

// page_size near INT64_MAX: ceil(kv_len / page_size) overflowed to a negative page count, so no
// block id was checked and an out-of-range one was read. (Token stride 0 keeps the pool small.)
TEST(FuzzRegressionsCpu, HugePageSizeStillChecksBlockIds) {
  const Fixture fx(Case("huge_page").shape(1, 1, 1, 1, 5).dims(8));
  longattn_args a = fx.args();
  const int32_t table[1] = {5};  // num_blocks = 1: out of range
  a.block_table = table;
  a.block_table_stride = 1;
  a.page_size = kI64Max;
  a.num_blocks = 1;
  a.k_strides = a.v_strides = {0, 0, 0};
  longattn_options options = default_options();
  EXPECT_EQ(longattn_attention(&a, &options, nullptr), LONGATTN_INVALID_ARGUMENT);
  EXPECT_TRUE(mentions(longattn_last_error(), "block_table")) << longattn_last_error();
}

// longattn_set_contiguous_strides multiplied garbage sizes in int64 (undefined on overflow, which
// the sanitizer build reports); the strides it gives now wrap and validation rejects them.
TEST(FuzzRegressionsCpu, ContiguousStridesOfHugeSizes) {
  const Fixture fx(Case("huge_sizes").shape(1, 1, 1, 1, 1).dims(8));
  longattn_args a = fx.args();
  a.q_heads = a.kv_heads = kI64Max / 2;
  a.q_len = a.kv_len = 3;
  longattn_set_contiguous_strides(&a);
  longattn_options options = default_options();
  EXPECT_EQ(longattn_attention(&a, &options, nullptr), LONGATTN_INVALID_ARGUMENT);
  EXPECT_NE(std::string(longattn_last_error()), "");
}

// A mask whose strides overflow the byte count: the message names mask.strides (it said "mask").
TEST(FuzzRegressionsCpu, MaskExtentOverflowNamesTheField) {
  const Fixture fx(Case("mask_overflow")
                       .shape(1, 1, 1, 4, 4)
                       .dims(8)
                       .mask(LONGATTN_MASK_BOOLEAN, false, false, true, true));
  longattn_args a = fx.args();
  a.mask.strides[2] = kI64Max - 1;
  longattn_options options = default_options();
  EXPECT_EQ(longattn_attention(&a, &options, nullptr), LONGATTN_INVALID_ARGUMENT);
  EXPECT_TRUE(mentions(longattn_last_error(), "mask.strides")) << longattn_last_error();
}

}  // namespace
}  // namespace longattn_test
