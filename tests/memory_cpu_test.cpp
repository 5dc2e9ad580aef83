// The memory model (issue #2 item 5): what a path predicts is exactly what it takes, a caller
// workspace is used up to the prediction and not one byte further, fused memory does not grow with
// kv_len, and the router honours the budget.
#include <gtest/gtest.h>

#include "reference_test_util.hpp"

namespace longattn_test {
namespace {

constexpr int32_t kPaths[] = {LONGATTN_PATH_REFERENCE, LONGATTN_PATH_UNFUSED, LONGATTN_PATH_FUSED,
                              LONGATTN_PATH_SPLIT_KV, LONGATTN_PATH_AUTO};
constexpr uint8_t kWorkspaceSentinel = 0x5a;
constexpr int64_t kSlack =
    4096;  // workspace bytes beyond the prediction, which must stay untouched

// Caller workspace: 64-byte aligned (the library requires it) with sentinel bytes on both sides.
class Workspace {
 public:
  explicit Workspace(int64_t bytes)
      : storage_(size_t(bytes + 2 * kGuardBytes + 64), kWorkspaceSentinel) {
    uintptr_t p = reinterpret_cast<uintptr_t>(storage_.data()) + kGuardBytes;
    base_ = storage_.data() + kGuardBytes + (64 - p % 64) % 64;
  }
  void* base() { return base_; }
  // Offset (relative to base) of the first changed byte outside [0, used), or -1 if none.
  int64_t first_change_outside(int64_t used) const {
    for (size_t i = 0; i < storage_.size(); ++i) {
      int64_t rel = int64_t(i) - (base_ - storage_.data());
      if (rel >= 0 && rel < used) continue;
      if (storage_[i] != kWorkspaceSentinel) return rel;
    }
    return -1;
  }

 private:
  std::vector<uint8_t> storage_;
  uint8_t* base_;
};

class MemoryCpu : public ::testing::TestWithParam<Case> {};

TEST_P(MemoryCpu, PredictionEqualsAllocationAndWorkspaceUse) {
  const Fixture fx(GetParam());
  SCOPED_TRACE(fx.kase().describe());
  for (int32_t path : kPaths) {
    SCOPED_TRACE(std::string("path ") + path_label(path));
    longattn_options options = default_options();
    options.path = path;
    int64_t predicted = -1;
    ASSERT_EQ(longattn_transient_bytes(&fx.args(), path, &options, &predicted), LONGATTN_OK)
        << longattn_last_error();
    ASSERT_GE(predicted, 0);
    longattn_plan plan;
    ASSERT_EQ(longattn_plan_attention(&fx.args(), &options, &plan), LONGATTN_OK)
        << longattn_last_error();
    EXPECT_EQ(plan.transient_bytes, predicted);

    // Library-allocated run.
    const RunOutput plain = fx.run(path, options);
    ASSERT_EQ(plain.status, LONGATTN_OK) << plain.message;
    EXPECT_EQ(plain.plan.transient_bytes, predicted);
    EXPECT_EQ(plain.plan.allocated_bytes, predicted);
    EXPECT_EQ(plain.guard_problem, "");

    // A larger caller workspace: nothing at or beyond the prediction may change, and the result is
    // bit-identical to the library-allocated run.
    Workspace big(predicted + kSlack);
    options.workspace = big.base();
    options.workspace_bytes = predicted + kSlack;
    const RunOutput in_big = fx.run(path, options);
    ASSERT_EQ(in_big.status, LONGATTN_OK) << in_big.message;
    EXPECT_EQ(in_big.plan.allocated_bytes, predicted);
    EXPECT_EQ(big.first_change_outside(predicted), -1)
        << "workspace written outside the predicted " << predicted << " bytes";
    EXPECT_EQ(in_big.guard_problem, "");
    EXPECT_TRUE(in_big.o.bytes() == plain.o.bytes()) << "O differs with a caller workspace";
    EXPECT_TRUE(in_big.lse.bytes() == plain.lse.bytes()) << "LSE differs with a caller workspace";

    // Exactly the prediction is enough; one byte less is refused.
    Workspace exact(predicted);
    options.workspace = exact.base();
    options.workspace_bytes = predicted;
    const RunOutput in_exact = fx.run(path, options);
    EXPECT_EQ(in_exact.status, LONGATTN_OK) << in_exact.message;
    EXPECT_EQ(exact.first_change_outside(predicted), -1);
    EXPECT_TRUE(in_exact.o.bytes() == plain.o.bytes());
    if (predicted > 0) {
      options.workspace_bytes = predicted - 1;
      const RunOutput in_short = fx.run(path, options);
      EXPECT_EQ(in_short.status, LONGATTN_INVALID_ARGUMENT);
      EXPECT_NE(in_short.message.find("workspace"), std::string::npos) << in_short.message;
      EXPECT_TRUE(std::all_of(in_short.o.bytes().begin(), in_short.o.bytes().end(), [](uint8_t b) {
        return b == kOutputSentinel;
      })) << "O written although the workspace was refused";
    }
  }
  EXPECT_EQ(fx.inputs_changed(), "");
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, MemoryCpu,
    ::testing::Values(Case("prefill_f32").shape(1, 4, 2, 113, 1023).dims(64).is_causal(),
                      Case("decode_bf16").shape(1, 8, 2, 1, 2048).dims(128).type(LONGATTN_BFLOAT16),
                      Case("d512_f16_mask")
                          .shape(2, 2, 1, 7, 113)
                          .dims(512)
                          .type(LONGATTN_FLOAT16)
                          .mask(LONGATTN_MASK_ADDITIVE, 1, 1, 1, 1)
                          .sinks(1.0f),
                      Case("d192x128_strided_f32")
                          .shape(2, 4, 4, 113, 300)
                          .dims(192, 128)
                          .layout(Layout::kTokensMajorPadded, Layout::kPadded)),
    [](const ::testing::TestParamInfo<Case>& i) { return i.param.name; });

// Args for a shape that is only planned, never run: the pointers are distinct addresses far apart
// (the library checks that O does not overlap the inputs) and are never dereferenced.
longattn_args planning_args(int64_t hq, int64_t hkv, int64_t lq, int64_t lk, int64_t d,
                            int32_t dtype) {
  longattn_args a;
  longattn_args_init(&a);
  a.batch = 1, a.q_heads = hq, a.kv_heads = hkv, a.q_len = lq, a.kv_len = lk;
  a.head_dim_qk = a.head_dim_v = d;
  a.dtype = dtype;
  longattn_set_contiguous_strides(&a);
  a.q = reinterpret_cast<const void*>(uintptr_t(1) << 40);
  a.k = reinterpret_cast<const void*>(uintptr_t(2) << 40);
  a.v = reinterpret_cast<const void*>(uintptr_t(3) << 40);
  a.o = reinterpret_cast<void*>(uintptr_t(4) << 40);
  return a;
}

int64_t bytes_of(const longattn_args& a, int32_t path, const longattn_options& o) {
  int64_t bytes = -1;
  EXPECT_EQ(longattn_transient_bytes(&a, path, &o, &bytes), LONGATTN_OK) << longattn_last_error();
  return bytes;
}

// The point of the library: at Lq = 2048, Lk = 131072, 16/8 heads, d = 256, bf16 the fused path
// needs a few MiB whatever kv_len is, while materializing scores needs ~17 GB.
TEST(MemoryCpu, FusedIndependentOfKvLenUnfusedQuadratic) {
  const longattn_options options = default_options();
  const longattn_args long_kv = planning_args(16, 8, 2048, 131072, 256, LONGATTN_BFLOAT16);
  const longattn_args short_kv = planning_args(16, 8, 2048, 4096, 256, LONGATTN_BFLOAT16);
  const int64_t fused_long = bytes_of(long_kv, LONGATTN_PATH_FUSED, options);
  const int64_t fused_short = bytes_of(short_kv, LONGATTN_PATH_FUSED, options);
  EXPECT_LT(fused_long, int64_t(16) << 20);
  EXPECT_EQ(fused_long, fused_short);
  EXPECT_GE(bytes_of(long_kv, LONGATTN_PATH_UNFUSED, options), int64_t(16) * 2048 * 131072 * 4);
  // Also when causal, and whatever the number of threads.
  longattn_args causal = long_kv;
  causal.causal = 1;
  EXPECT_EQ(bytes_of(causal, LONGATTN_PATH_FUSED, options), fused_long);
  longattn_options one_thread = options;
  one_thread.num_threads = 1;
  EXPECT_LT(bytes_of(long_kv, LONGATTN_PATH_FUSED, one_thread), int64_t(16) << 20);
  EXPECT_EQ(bytes_of(long_kv, LONGATTN_PATH_FUSED, one_thread),
            bytes_of(short_kv, LONGATTN_PATH_FUSED, one_thread));
}

// The plan names the kernel that runs it, chosen once from the process's kernels (the ISA in the
// device's features, "kernels=<isa>") and the plan's shape.
std::string kernel_of(const longattn_args& a, int32_t path) {
  longattn_options o = default_options();
  o.path = path;
  longattn_plan plan;
  EXPECT_EQ(longattn_plan_attention(&a, &o, &plan), LONGATTN_OK) << longattn_last_error();
  return plan.kernel;
}

TEST(PlanCpu, NamesTheKernel) {
  longattn_device_info info;
  ASSERT_EQ(longattn_device_query(LONGATTN_DEVICE_CPU, &info), LONGATTN_OK);
  const std::string features = info.features, key = "kernels=";
  ASSERT_NE(features.find(key), std::string::npos) << features;
  const size_t at = features.find(key) + key.size();
  const std::string isa = features.substr(at, features.find(' ', at) - at);
  const std::string cpu = "cpu " + isa;
  const longattn_args bf16 = planning_args(16, 8, 512, 4096, 256, LONGATTN_BFLOAT16);
  const std::string bf16_tiles = isa == "amx"          ? "cpu amx-bf16 tiles"
                                 : isa == "avx512bf16" ? cpu + " bf16-pair tiles"
                                                       : cpu + " fp32 tiles";
  EXPECT_EQ(kernel_of(bf16, LONGATTN_PATH_FUSED), bf16_tiles);
  EXPECT_EQ(kernel_of(bf16, LONGATTN_PATH_SPLIT_KV), bf16_tiles);
  EXPECT_EQ(kernel_of(bf16, LONGATTN_PATH_UNFUSED), cpu + " fp32 GEMMs, scores materialized");
  EXPECT_EQ(kernel_of(bf16, LONGATTN_PATH_REFERENCE), "cpu float64 reference");
  // AMX tiles take head dims in whole 32-column steps; others fall to the bf16 pairs.
  const longattn_args d_80 = planning_args(16, 8, 512, 4096, 80, LONGATTN_BFLOAT16);
  EXPECT_EQ(kernel_of(d_80, LONGATTN_PATH_FUSED),
            isa == "amx" || isa == "avx512bf16" ? cpu + " bf16-pair tiles" : cpu + " fp32 tiles");
  EXPECT_EQ(kernel_of(planning_args(16, 8, 512, 4096, 256, LONGATTN_FLOAT16), LONGATTN_PATH_FUSED),
            cpu + " fp32 tiles");
  // A decode step's rows (the two heads of a KV head) fit one vector: rows read key by key.
  EXPECT_EQ(kernel_of(planning_args(16, 8, 1, 4096, 256, LONGATTN_BFLOAT16), LONGATTN_PATH_AUTO),
            cpu + " decode rows");
}

TEST(MemoryCpu, BudgetIsHonoured) {
  const Fixture fx(Case("budget_f32").shape(1, 4, 2, 113, 1023).dims(64).is_causal());
  longattn_options one = default_options();
  one.num_threads = 1;  // the least a path can need (the router trades threads for memory)
  const int64_t unfused_min = bytes_of(fx.args(), LONGATTN_PATH_UNFUSED, one);
  const int64_t fused_min = bytes_of(fx.args(), LONGATTN_PATH_FUSED, one);
  ASSERT_GT(unfused_min, fused_min) << "unfused should need more than fused";

  // Forced unfused below its minimum: OVER_BUDGET, naming the budget, nothing written.
  longattn_options options = default_options();
  options.path = LONGATTN_PATH_UNFUSED;
  options.memory_budget = unfused_min - 1;
  RunOutput out = fx.run(LONGATTN_PATH_UNFUSED, options);
  EXPECT_EQ(out.status, LONGATTN_OVER_BUDGET);
  EXPECT_NE(out.message.find("memory_budget"), std::string::npos) << out.message;
  EXPECT_TRUE(std::all_of(out.o.bytes().begin(), out.o.bytes().end(),
                          [](uint8_t b) { return b == kOutputSentinel; }));
  // At its minimum it runs, within the budget.
  options.memory_budget = unfused_min;
  out = fx.run(LONGATTN_PATH_UNFUSED, options);
  EXPECT_EQ(out.status, LONGATTN_OK) << out.message;
  EXPECT_LE(out.plan.transient_bytes, unfused_min);
  EXPECT_LE(out.plan.allocated_bytes, unfused_min);

  // AUTO over a sweep of budgets: whenever it plans, the plan fits; whenever some forced path
  // fits, AUTO finds a plan too.
  for (int64_t budget : {int64_t(0), int64_t(1), fused_min - 1, fused_min, fused_min + 1,
                         unfused_min - 1, unfused_min, 4 * unfused_min, int64_t(-1)}) {
    SCOPED_TRACE("memory_budget " + std::to_string(budget));
    options = default_options();
    options.memory_budget = budget;
    bool some_path_fits = false;
    for (int32_t path : {LONGATTN_PATH_UNFUSED, LONGATTN_PATH_FUSED, LONGATTN_PATH_SPLIT_KV}) {
      longattn_options forced = options;
      forced.path = path;
      longattn_plan p;
      longattn_status s = longattn_plan_attention(&fx.args(), &forced, &p);
      EXPECT_TRUE(s == LONGATTN_OK || s == LONGATTN_OVER_BUDGET) << longattn_last_error();
      if (s == LONGATTN_OK && budget >= 0) {
        EXPECT_LE(p.transient_bytes, budget);
      }
      some_path_fits = some_path_fits || s == LONGATTN_OK;
    }
    longattn_plan plan;
    longattn_status s = longattn_plan_attention(&fx.args(), &options, &plan);
    EXPECT_EQ(s == LONGATTN_OK, some_path_fits) << longattn_last_error();
    if (s != LONGATTN_OK) {
      EXPECT_EQ(s, LONGATTN_OVER_BUDGET);
      continue;
    }
    if (budget >= 0) {
      EXPECT_LE(plan.transient_bytes, budget);
    }
    out = fx.run(LONGATTN_PATH_AUTO, options);
    ASSERT_EQ(out.status, LONGATTN_OK) << out.message;
    if (budget >= 0) {
      EXPECT_LE(out.plan.allocated_bytes, budget);
    }
    EXPECT_EQ(out.plan.allocated_bytes, out.plan.transient_bytes);
  }
}

}  // namespace
}  // namespace longattn_test
