// Prepared plans (longattn_prepare / longattn_run_prepared): a run gives the same bits as
// longattn_attention on the same args, whether it reuses the kept decision (other pointers) or
// plans again (another kv_len, other strides), from one thread or several; nothing outside O and
// LSE is written; bad handles and args are refused with a message naming them.
#include <gtest/gtest.h>

#include <cstring>
#include <thread>

#include "longattn/attention.hpp"
#include "reference_test_util.hpp"

namespace longattn_test {
namespace {

// Same shape except kv_len: a decode step of a GQA layer, and the same layer later.
Case decode_case(const char* name, int64_t kv_len, int32_t dtype = LONGATTN_BFLOAT16) {
  return Case(name).shape(2, 8, 2, 1, kv_len).dims(128).type(dtype).is_causal();
}

// A run of the prepared plan on fresh sentinel-filled outputs (options: the run's own, or none).
RunOutput run_prepared(const Fixture& fx, longattn_prepared* prepared,
                       const longattn_options* options = nullptr) {
  return fx.run_with(LONGATTN_PATH_AUTO, options ? *options : default_options(), fx.args(),
                     prepared);
}

// The first 64-byte boundary at or after the start of buf (the caller gives it 64 bytes of slack).
void* aligned_64(std::vector<uint8_t>& buf) {
  const uintptr_t at = reinterpret_cast<uintptr_t>(buf.data());
  return buf.data() + (64 - at % 64) % 64;
}

bool same_bits(const RunOutput& got, const RunOutput& want) {
  return got.status == LONGATTN_OK && got.guard_problem.empty() &&
         got.o.bytes() == want.o.bytes() && got.lse.bytes() == want.lse.bytes();
}

// Two threads at once, each making `runs` calls of run(thread, i), which says whether that
// call's result had the bits it wanted; expects all did.
template <class Run>
void expect_same_bits_from_two_threads(int runs, Run run) {
  int mismatches[2] = {0, 0};
  auto worker = [&](int t) {
    for (int i = 0; i < runs; ++i) mismatches[t] += run(t, i) ? 0 : 1;
  };
  std::thread t0(worker, 0), t1(worker, 1);
  t0.join();
  t1.join();
  EXPECT_EQ(mismatches[0], 0);
  EXPECT_EQ(mismatches[1], 0);
}

void expect_same_bits(const RunOutput& got, const RunOutput& want) {
  ASSERT_EQ(got.status, LONGATTN_OK) << got.message;
  ASSERT_EQ(want.status, LONGATTN_OK) << want.message;
  EXPECT_EQ(got.guard_problem, "");
  EXPECT_EQ(got.plan.path, want.plan.path);
  EXPECT_EQ(got.o.bytes(), want.o.bytes());
  EXPECT_EQ(got.lse.bytes(), want.lse.bytes());
}

TEST(PreparedCpu, SameBitsAsAttentionWhenReusedOrPlannedAgain) {
  for (int32_t path : {LONGATTN_PATH_AUTO, LONGATTN_PATH_FUSED, LONGATTN_PATH_SPLIT_KV}) {
    SCOPED_TRACE(path_label(path));
    const Fixture a(decode_case("prepared_a", 300)), a2(decode_case("prepared_a2", 300));
    const Fixture b(decode_case("prepared_b", 2100));
    longattn_options options = default_options();
    options.path = path;
    longattn_prepared* prepared = nullptr;
    longattn_plan plan;
    ASSERT_EQ(longattn_prepare(&a.args(), &options, &prepared, &plan), LONGATTN_OK)
        << longattn_last_error();
    ASSERT_NE(prepared, nullptr);
    EXPECT_EQ(plan.ok, 1);
    EXPECT_NE(std::strlen(plan.reason), size_t(0));
    // a, a2 (other buffers), b (another kv_len: planned again), then back to a.
    for (const Fixture* fx : {&a, &a, &a2, &b, &b, &a}) {
      SCOPED_TRACE(fx->kase().describe());
      expect_same_bits(run_prepared(*fx, prepared), fx->run(path, options));
    }
    longattn_prepared_free(prepared);
  }
}

// A prepared num_splits holds for every run, also one planned again for another kv_len; a run's
// own num_splits is not read (like its path).
TEST(PreparedCpu, KeepsNumSplits) {
  const Fixture a(decode_case("prepared_splits_a", 300)), b(decode_case("prepared_splits_b", 2100));
  longattn_options options = default_options();
  options.num_splits = 6;
  longattn_prepared* prepared = nullptr;
  longattn_plan plan;
  ASSERT_EQ(longattn_prepare(&a.args(), &options, &prepared, &plan), LONGATTN_OK)
      << longattn_last_error();
  EXPECT_EQ(plan.path, LONGATTN_PATH_SPLIT_KV);
  EXPECT_EQ(plan.splits, 6);
  longattn_options run = default_options();
  run.num_splits = 3;  // ignored: the prepared count runs
  for (const Fixture* fx : {&a, &b, &a}) {
    SCOPED_TRACE(fx->kase().describe());
    const RunOutput got = run_prepared(*fx, prepared, &run);
    expect_same_bits(got, fx->run(LONGATTN_PATH_AUTO, options));
    EXPECT_EQ(got.plan.splits, 6);
  }
  longattn_prepared_free(prepared);
}

TEST(PreparedCpu, RunOptionsGiveStreamWorkspaceAndLog) {
  const Fixture fx(decode_case("prepared_ws", 4096, LONGATTN_FLOAT16));
  longattn_options options = default_options();
  options.path = LONGATTN_PATH_SPLIT_KV;
  longattn_prepared* prepared = nullptr;
  longattn_plan plan;
  ASSERT_EQ(longattn_prepare(&fx.args(), &options, &prepared, &plan), LONGATTN_OK)
      << longattn_last_error();
  ASSERT_GT(plan.transient_bytes, 0);
  // The run's workspace is used (and a too small one refused); its log hears the decision.
  std::vector<uint8_t> workspace(size_t(plan.transient_bytes) + 128);
  longattn_options run = default_options();
  run.path = LONGATTN_PATH_UNFUSED;  // ignored: the prepared path runs
  run.workspace = aligned_64(workspace);
  run.workspace_bytes = plan.transient_bytes;
  int logged = 0;
  run.log = [](void* user, const char*) { ++*static_cast<int*>(user); };
  run.log_user = &logged;
  const RunOutput got = run_prepared(fx, prepared, &run);
  expect_same_bits(got, fx.run(LONGATTN_PATH_SPLIT_KV, options));
  EXPECT_EQ(got.plan.allocated_bytes, plan.transient_bytes);
  EXPECT_EQ(logged, 1);
  run.workspace_bytes = plan.transient_bytes - 1;
  const RunOutput small = run_prepared(fx, prepared, &run);
  EXPECT_EQ(small.status, LONGATTN_INVALID_ARGUMENT);
  EXPECT_NE(small.message.find("options.workspace_bytes"), std::string::npos) << small.message;
  longattn_prepared_free(prepared);
}

TEST(PreparedCpu, SharedBetweenThreads) {
  const Fixture a(decode_case("prepared_t1", 500)), b(decode_case("prepared_t2", 1300));
  const longattn_options options = default_options();
  const RunOutput want_a = a.run(LONGATTN_PATH_AUTO, options);
  const RunOutput want_b = b.run(LONGATTN_PATH_AUTO, options);
  longattn_prepared* prepared = nullptr;
  ASSERT_EQ(longattn_prepare(&a.args(), &options, &prepared, nullptr), LONGATTN_OK);
  // Each thread alternates kv_len, so the two keep replacing the kept decision under each other.
  expect_same_bits_from_two_threads(40, [&](int t, int i) {
    const bool use_a = (i + t) % 2 == 0;
    return same_bits(run_prepared(use_a ? a : b, prepared), use_a ? want_a : want_b);
  });
  longattn_prepared_free(prepared);
}

TEST(PreparedCpu, RunsSharingPreparesWorkspaceTakeTurns) {
  const Fixture a(decode_case("prepared_s1", 3000)), a2(decode_case("prepared_s2", 3000));
  longattn_options options = default_options();
  options.path = LONGATTN_PATH_SPLIT_KV;
  const RunOutput want_a = a.run(LONGATTN_PATH_SPLIT_KV, options);
  const RunOutput want_a2 = a2.run(LONGATTN_PATH_SPLIT_KV, options);
  int64_t bytes = 0;
  ASSERT_EQ(longattn_transient_bytes(&a.args(), LONGATTN_PATH_SPLIT_KV, &options, &bytes),
            LONGATTN_OK);
  ASSERT_GT(bytes, 0);
  std::vector<uint8_t> workspace(size_t(bytes) + 64);
  options.workspace = aligned_64(workspace);
  options.workspace_bytes = bytes;
  longattn_prepared* prepared = nullptr;
  ASSERT_EQ(longattn_prepare(&a.args(), &options, &prepared, nullptr), LONGATTN_OK)
      << longattn_last_error();
  // Both threads run on prepare's workspace (run options NULL): interleaved, they would mix
  // each other's partial results.
  expect_same_bits_from_two_threads(30, [&](int t, int) {
    const Fixture& fx = t ? a2 : a;
    return same_bits(fx.run_with(LONGATTN_PATH_AUTO, options, fx.args(), prepared, true),
                     t ? want_a2 : want_a);
  });
  longattn_prepared_free(prepared);
}

TEST(PreparedCpu, ErrorsNameTheArgument) {
  const Fixture fx(decode_case("prepared_err", 64));
  const longattn_options options = default_options();
  longattn_prepared* prepared = nullptr;
  EXPECT_EQ(longattn_prepare(&fx.args(), &options, nullptr, nullptr), LONGATTN_INVALID_ARGUMENT);
  EXPECT_NE(std::string(longattn_last_error()).find("prepared"), std::string::npos);
  EXPECT_EQ(longattn_run_prepared(nullptr, &fx.args(), nullptr, nullptr),
            LONGATTN_INVALID_ARGUMENT);
  EXPECT_NE(std::string(longattn_last_error()).find("prepared"), std::string::npos);

  // A refused plan leaves *prepared NULL and says why.
  longattn_args bad = fx.args();
  bad.head_dim_qk = 0;
  prepared = reinterpret_cast<longattn_prepared*>(&bad);
  EXPECT_EQ(longattn_prepare(&bad, &options, &prepared, nullptr), LONGATTN_INVALID_ARGUMENT);
  EXPECT_EQ(prepared, nullptr);
  EXPECT_NE(std::string(longattn_last_error()).find("head_dim_qk"), std::string::npos);
  longattn_options over = options;
  over.path = LONGATTN_PATH_UNFUSED;
  over.memory_budget = 1;
  longattn_plan plan;
  EXPECT_EQ(longattn_prepare(&fx.args(), &over, &prepared, &plan), LONGATTN_OVER_BUDGET);
  EXPECT_EQ(prepared, nullptr);
  EXPECT_EQ(plan.ok, 0);

  // A run's args are validated like any call's; a run it cannot plan again is refused.
  ASSERT_EQ(longattn_prepare(&fx.args(), &options, &prepared, nullptr), LONGATTN_OK);
  longattn_args args = fx.args();
  args.q = nullptr;
  EXPECT_EQ(longattn_run_prepared(prepared, &args, nullptr, nullptr), LONGATTN_INVALID_ARGUMENT);
  EXPECT_NE(std::string(longattn_last_error()).find("q is NULL"), std::string::npos)
      << longattn_last_error();
  longattn_options bad_options = options;
  bad_options.memory_budget = -7;
  EXPECT_EQ(longattn_run_prepared(prepared, &fx.args(), &bad_options, nullptr),
            LONGATTN_INVALID_ARGUMENT);
  EXPECT_NE(std::string(longattn_last_error()).find("memory_budget"), std::string::npos)
      << longattn_last_error();
  longattn_prepared_free(prepared);
  longattn_prepared_free(nullptr);
}

TEST(PreparedCpu, CppClassRunsAndThrows) {
  const Fixture fx(decode_case("prepared_cpp", 900));
  const longattn_options options = default_options();
  longattn::Prepared prepared(fx.args(), options);
  EXPECT_TRUE(prepared.plan().ok());
  const RunOutput want = fx.run(LONGATTN_PATH_AUTO, options);
  Tensor o = fx.new_output(), lse = fx.new_lse();
  longattn_args args = fx.args();
  args.o = o.data();
  args.lse = static_cast<float*>(lse.data());
  prepared.run(args);
  EXPECT_EQ(o.bytes(), want.o.bytes());
  EXPECT_EQ(lse.bytes(), want.lse.bytes());
  args.k = nullptr;
  EXPECT_THROW(prepared.run(args), longattn::Error);
  longattn_args bad = fx.args();
  bad.kv_heads = 3;
  EXPECT_THROW(longattn::Prepared(bad, options), longattn::Error);
}

}  // namespace
}  // namespace longattn_test
