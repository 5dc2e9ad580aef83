// Invalid arguments: each one returns the right status, names the argument in
// longattn_last_error(), leaves O and LSE untouched, and throws longattn::Error with the same
// status through the C++ API. Messages are the library's; the tests only require the argument's
// field name to appear as a whole word (e.g. "kv_heads", "window_left", "memory_budget").
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>

#include "longattn/attention.hpp"
#include "reference_test_util.hpp"

namespace longattn_test {
namespace {

using ::testing::HasSubstr;

// True if `name` occurs in `message` not as part of a longer identifier.
bool names(const std::string& message, const std::string& name) {
  auto word = [](char ch) { return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_'; };
  for (size_t at = message.find(name); at != std::string::npos; at = message.find(name, at + 1)) {
    bool left = at == 0 || !word(message[at - 1]);
    bool right = at + name.size() == message.size() || !word(message[at + name.size()]);
    if (left && right) return true;
  }
  return false;
}

// "" if every entry of `required` is named; an entry "a|b" is satisfied by either.
std::string missing_names(const std::string& message, const std::vector<std::string>& required) {
  for (const std::string& alternatives : required) {
    bool found = false;
    std::stringstream ss(alternatives);
    for (std::string name; std::getline(ss, name, '|');) found = found || names(message, name);
    if (!found) return "message does not name " + alternatives + ": \"" + message + "\"";
  }
  return "";
}

bool all_bytes_are(const std::vector<uint8_t>& bytes, uint8_t value) {
  return std::all_of(bytes.begin(), bytes.end(), [&](uint8_t b) { return b == value; });
}

// Valid FP8 scales for the cases that set them (two KV heads).
alignas(16) const float kScale[4] = {0.5f, 2.0f, 1.0f, 1.0f};

// A small valid problem (GQA, causal off, f32); each error case breaks one thing of it.
Case base_case() { return Case("errors_base").shape(2, 4, 2, 7, 9).dims(64); }

struct ErrorCase {
  std::string name;
  std::function<void(longattn_args&, longattn_options&)> mutate;
  longattn_status status;
  std::vector<std::string> names;
};

void PrintTo(const ErrorCase& e, std::ostream* os) { *os << e.name; }

bool cuda_available() {
  longattn_device_info info{};
  return longattn_device_query(LONGATTN_DEVICE_CUDA, &info) == LONGATTN_OK && info.available;
}

std::vector<ErrorCase> error_cases() {
  using A = longattn_args&;
  using O = longattn_options&;
  const longattn_status kInvalid = LONGATTN_INVALID_ARGUMENT;
  static const uint8_t kMaskByte = 1;
  std::vector<ErrorCase> cases = {
      {"null_q", [](A a, O) { a.q = nullptr; }, kInvalid, {"q"}},
      {"null_k", [](A a, O) { a.k = nullptr; }, kInvalid, {"k"}},
      {"null_v", [](A a, O) { a.v = nullptr; }, kInvalid, {"v"}},
      {"null_o", [](A a, O) { a.o = nullptr; }, kInvalid, {"o"}},
      {"batch_zero", [](A a, O) { a.batch = 0; }, kInvalid, {"batch"}},
      {"batch_negative", [](A a, O) { a.batch = -3; }, kInvalid, {"batch"}},
      {"q_heads_zero", [](A a, O) { a.q_heads = 0; }, kInvalid, {"q_heads"}},
      {"kv_heads_zero", [](A a, O) { a.kv_heads = 0; }, kInvalid, {"kv_heads"}},
      {"kv_heads_negative", [](A a, O) { a.kv_heads = -2; }, kInvalid, {"kv_heads"}},
      {"q_len_zero", [](A a, O) { a.q_len = 0; }, kInvalid, {"q_len"}},
      {"kv_len_zero", [](A a, O) { a.kv_len = 0; }, kInvalid, {"kv_len"}},
      {"kv_len_negative", [](A a, O) { a.kv_len = -1; }, kInvalid, {"kv_len"}},
      {"head_dim_qk_zero", [](A a, O) { a.head_dim_qk = 0; }, kInvalid, {"head_dim_qk"}},
      {"head_dim_v_zero", [](A a, O) { a.head_dim_v = 0; }, kInvalid, {"head_dim_v"}},
      {"head_dim_qk_577", [](A a, O) { a.head_dim_qk = 577; }, kInvalid, {"head_dim_qk", "576"}},
      {"head_dim_v_513", [](A a, O) { a.head_dim_v = 513; }, kInvalid, {"head_dim_v", "512"}},
      {"head_dim_v_1024", [](A a, O) { a.head_dim_v = 1024; }, kInvalid, {"head_dim_v"}},
      {"gqa_not_divisible", [](A a, O) { a.kv_heads = 3; }, kInvalid, {"q_heads", "kv_heads"}},
      {"kv_heads_above_q_heads", [](A a, O) { a.kv_heads = 8; }, kInvalid, {"kv_heads"}},
      {"dtype_code", [](A a, O) { a.dtype = 99; }, kInvalid, {"dtype"}},
      {"dtype_negative", [](A a, O) { a.dtype = -1; }, kInvalid, {"dtype"}},
      {"dtype_fp8",
       [](A a, O) { a.dtype = LONGATTN_FLOAT8_E4M3; },
       kInvalid,
       {"dtype", "kv_dtype"}},
      {"kv_dtype_code", [](A a, O) { a.kv_dtype = 2; }, kInvalid, {"kv_dtype", "dtype"}},
      {"kv_dtype_same_with_scale",
       [](A a, O) {
         a.dtype = a.kv_dtype = LONGATTN_FLOAT16;  // f32 buffers hold the f16 elements
         a.k_scale = kScale;
       },
       kInvalid,
       {"k_scale", "kv_dtype"}},
      {"kv_dtype_negative", [](A a, O) { a.kv_dtype = -1; }, kInvalid, {"kv_dtype"}},
      {"k_scale_without_fp8",
       [](A a, O) { a.k_scale = &kScale[0]; },
       kInvalid,
       {"k_scale", "kv_dtype"}},
      {"v_scale_without_fp8",
       [](A a, O) { a.v_scale = &kScale[0]; },
       kInvalid,
       {"v_scale", "kv_dtype"}},
      {"scale_per_head_without_fp8",
       [](A a, O) { a.kv_scale_per_head = 1; },
       kInvalid,
       {"kv_scale_per_head"}},
      {"kv_scale_per_head_2",
       [](A a, O) { a.kv_dtype = LONGATTN_FLOAT8_E4M3, a.kv_scale_per_head = 2; },
       kInvalid,
       {"kv_scale_per_head"}},
      {"k_scale_misaligned",
       [](A a, O) {
         a.kv_dtype = LONGATTN_FLOAT8_E5M2;
         a.k_scale = reinterpret_cast<const float*>(reinterpret_cast<const char*>(kScale) + 2);
       },
       kInvalid,
       {"k_scale"}},
      {"device_code", [](A a, O) { a.device = 7; }, kInvalid, {"device"}},
      {"path_code", [](A, O o) { o.path = 5; }, kInvalid, {"path"}},
      {"path_negative", [](A, O o) { o.path = -1; }, kInvalid, {"path"}},
      {"mask_kind_code", [](A a, O) { a.mask.kind = 3; }, kInvalid, {"mask|mask.kind"}},
      {"mask_null_data",
       [](A a, O) {
         a.mask.kind = LONGATTN_MASK_BOOLEAN;
         a.mask.data = nullptr;
       },
       kInvalid,
       {"mask|mask.data"}},
      {"mask_dims_kv_len",
       [](A a, O) {
         a.mask.kind = LONGATTN_MASK_ADDITIVE;
         a.mask.data = &kMaskByte;  // never read: validation fails first
         a.mask.dims[3] = a.kv_len + 1;
       },
       kInvalid,
       {"mask|mask.dims"}},
      {"mask_dims_q_len",
       [](A a, O) {
         a.mask.kind = LONGATTN_MASK_BOOLEAN;
         a.mask.data = &kMaskByte;
         a.mask.dims[2] = 3;
       },
       kInvalid,
       {"mask|mask.dims"}},
      {"mask_dims_zero",
       [](A a, O) {
         a.mask.kind = LONGATTN_MASK_BOOLEAN;
         a.mask.data = &kMaskByte;
         a.mask.dims[0] = 0;
       },
       kInvalid,
       {"mask|mask.dims"}},
      {"mask_stride_negative",
       [](A a, O) {
         a.mask.kind = LONGATTN_MASK_BOOLEAN;
         a.mask.data = &kMaskByte;
         a.mask.dims[3] = a.kv_len;
         a.mask.strides[3] = -1;
       },
       kInvalid,
       {"mask|mask.strides"}},
      {"window_left_minus_2", [](A a, O) { a.window_left = -2; }, kInvalid, {"window_left"}},
      {"softcap_negative", [](A a, O) { a.softcap = -1.0f; }, kInvalid, {"softcap"}},
      {"softcap_nan", [](A a, O) { a.softcap = std::nanf(""); }, kInvalid, {"softcap"}},
      {"softcap_inf", [](A a, O) { a.softcap = INFINITY; }, kInvalid, {"softcap"}},
      {"scale_nan", [](A a, O) { a.scale = std::nanf(""); }, kInvalid, {"scale"}},
      {"scale_inf", [](A a, O) { a.scale = -INFINITY; }, kInvalid, {"scale"}},
      {"causal_code", [](A a, O) { a.causal = 2; }, kInvalid, {"causal"}},
      {"q_strides_negative", [](A a, O) { a.q_strides.token = -64; }, kInvalid, {"q_strides"}},
      // (batch - 1) * stride * 4 bytes does not fit int64.
      {"q_strides_overflow",
       [](A a, O) { a.q_strides.batch = INT64_MAX / 2; },
       kInvalid,
       {"q_strides|q"}},
      {"batch_overflow",
       [](A a, O) { a.batch = int64_t(1) << 60; },
       kInvalid,
       {"q_strides|k_strides|v_strides|o_strides|q|k|v|o|batch"}},
      {"o_rows_overlap", [](A a, O) { a.o_strides.token = 32; }, kInvalid, {"o_strides"}},
      {"o_aliases_q", [](A a, O) { a.o = const_cast<void*>(a.q); }, kInvalid, {"o", "q"}},
      {"memory_budget_below_minus_1",
       [](A, O o) { o.memory_budget = -2; },
       kInvalid,
       {"memory_budget|options.memory_budget"}},
      {"num_threads_negative",
       [](A, O o) { o.num_threads = -1; },
       kInvalid,
       {"num_threads|options.num_threads"}},
      {"num_splits_negative",
       [](A, O o) { o.num_splits = -1; },
       kInvalid,
       {"options.num_splits = -1", "1 to 1024"}},
      {"num_splits_too_many",
       [](A, O o) {
         o.path = LONGATTN_PATH_SPLIT_KV;
         o.num_splits = 1025;
       },
       kInvalid,
       {"options.num_splits = 1025", "1 to 1024"}},
      {"num_splits_on_fused",
       [](A, O o) {
         o.path = LONGATTN_PATH_FUSED;
         o.num_splits = 4;
       },
       kInvalid,
       {"options.num_splits = 4", "fused"}},
      {"workspace_bytes_negative",
       [](A, O o) { o.workspace_bytes = -64; },
       kInvalid,
       {"workspace_bytes|options.workspace_bytes"}},
      {"workspace_null_with_bytes",
       [](A, O o) { o.workspace_bytes = 1 << 20; },
       kInvalid,
       {"workspace|options.workspace"}},
      // A 1-byte budget is below every path's need here (checked by the test below).
      {"budget_too_small_unfused",
       [](A, O o) {
         o.path = LONGATTN_PATH_UNFUSED;
         o.memory_budget = 1;
       },
       LONGATTN_OVER_BUDGET,
       {"memory_budget"}},
  };
  if (!cuda_available())
    cases.push_back({"cuda_on_cpu_only_build",
                     [](A a, O o) {
                       a.device = LONGATTN_DEVICE_CUDA;
                       o.path = LONGATTN_PATH_FUSED;
                     },
                     LONGATTN_UNSUPPORTED,
                     {"device|CUDA|cuda"}});
  return cases;
}

class ErrorsCpu : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(ErrorsCpu, RejectedWithStatusAndNamedArgument) {
  const ErrorCase& ec = GetParam();
  const Fixture fx(base_case());
  Tensor o = fx.new_output(), lse = fx.new_lse();
  longattn_args args = fx.args();
  args.o = o.data();
  args.lse = static_cast<float*>(lse.data());
  longattn_options options = default_options();
  ec.mutate(args, options);

  longattn_plan plan;
  std::memset(&plan, 0xab, sizeof plan);
  const longattn_status status = longattn_attention(&args, &options, &plan);
  const std::string message = longattn_last_error();
  EXPECT_EQ(status, ec.status) << message;
  EXPECT_EQ(missing_names(message, ec.names), "");
  EXPECT_EQ(plan.ok, 0);
  EXPECT_TRUE(all_bytes_are(o.bytes(), kOutputSentinel)) << "O was written on error";
  EXPECT_TRUE(all_bytes_are(lse.bytes(), kOutputSentinel)) << "LSE was written on error";
  EXPECT_EQ(fx.inputs_changed(), "");

  // Planning alone gives the same answer, and the plan says why.
  std::memset(&plan, 0xab, sizeof plan);
  EXPECT_EQ(longattn_plan_attention(&args, &options, &plan), ec.status);
  EXPECT_EQ(missing_names(longattn_last_error(), ec.names), "");
  EXPECT_EQ(plan.ok, 0);
  if (ec.status != LONGATTN_INVALID_ARGUMENT) {
    EXPECT_EQ(plan.status, ec.status);
    EXPECT_EQ(missing_names(plan.reason, ec.names), "");
  }

  // C++: run() throws longattn::Error with the same status and message.
  try {
    longattn::run(args, options);
    ADD_FAILURE() << "longattn::run did not throw";
  } catch (const longattn::Error& e) {
    EXPECT_EQ(e.status(), ec.status);
    EXPECT_EQ(std::string(e.what()), message);
  }
  // plan() throws only for invalid arguments; otherwise plan.ok() says no.
  if (ec.status == LONGATTN_INVALID_ARGUMENT) {
    EXPECT_THROW(longattn::plan(args, options), longattn::Error);
  } else {
    longattn::Plan p = longattn::plan(args, options);
    EXPECT_FALSE(p.ok());
    EXPECT_EQ(p.status, ec.status);
  }
  EXPECT_TRUE(all_bytes_are(o.bytes(), kOutputSentinel)) << "O was written on error";
}

INSTANTIATE_TEST_SUITE_P(Args, ErrorsCpu, ::testing::ValuesIn(error_cases()),
                         [](const ::testing::TestParamInfo<ErrorCase>& i) { return i.param.name; });

TEST(ErrorsCpu, NullArgsOptionsPlanAndBytes) {
  const Fixture fx(base_case());
  Tensor o = fx.new_output();
  longattn_args args = fx.args();
  args.o = o.data();
  longattn_options options = default_options();
  longattn_plan plan;
  int64_t bytes = 0;

  EXPECT_EQ(longattn_attention(nullptr, &options, &plan), LONGATTN_INVALID_ARGUMENT);
  EXPECT_EQ(missing_names(longattn_last_error(), {"args"}), "");
  EXPECT_EQ(longattn_attention(&args, nullptr, &plan), LONGATTN_INVALID_ARGUMENT);
  EXPECT_EQ(missing_names(longattn_last_error(), {"options"}), "");
  EXPECT_EQ(longattn_plan_attention(nullptr, &options, &plan), LONGATTN_INVALID_ARGUMENT);
  EXPECT_EQ(missing_names(longattn_last_error(), {"args"}), "");
  EXPECT_EQ(longattn_plan_attention(&args, nullptr, &plan), LONGATTN_INVALID_ARGUMENT);
  EXPECT_EQ(missing_names(longattn_last_error(), {"options"}), "");
  EXPECT_EQ(longattn_plan_attention(&args, &options, nullptr), LONGATTN_INVALID_ARGUMENT);
  EXPECT_EQ(missing_names(longattn_last_error(), {"plan"}), "");
  EXPECT_EQ(longattn_transient_bytes(nullptr, LONGATTN_PATH_FUSED, &options, &bytes),
            LONGATTN_INVALID_ARGUMENT);
  EXPECT_EQ(missing_names(longattn_last_error(), {"args"}), "");
  EXPECT_EQ(longattn_transient_bytes(&args, LONGATTN_PATH_FUSED, nullptr, &bytes),
            LONGATTN_INVALID_ARGUMENT);
  EXPECT_EQ(missing_names(longattn_last_error(), {"options"}), "");
  EXPECT_EQ(longattn_transient_bytes(&args, LONGATTN_PATH_FUSED, &options, nullptr),
            LONGATTN_INVALID_ARGUMENT);
  EXPECT_EQ(missing_names(longattn_last_error(), {"bytes"}), "");
  EXPECT_EQ(longattn_transient_bytes(&args, 9, &options, &bytes), LONGATTN_INVALID_ARGUMENT);
  EXPECT_EQ(missing_names(longattn_last_error(), {"path"}), "");
  EXPECT_TRUE(all_bytes_are(o.bytes(), kOutputSentinel));

  // A NULL plan is allowed for longattn_attention, and a success clears the last error.
  EXPECT_EQ(longattn_attention(&args, &options, nullptr), LONGATTN_OK) << longattn_last_error();
  EXPECT_STREQ(longattn_last_error(), "");
}

// The 1-byte budget case above is only meaningful if every path needs more than one byte.
TEST(ErrorsCpu, EveryPathNeedsMoreThanOneByteForTheBaseCase) {
  const Fixture fx(base_case());
  longattn_options options = default_options();
  for (int32_t path : {LONGATTN_PATH_UNFUSED, LONGATTN_PATH_FUSED, LONGATTN_PATH_SPLIT_KV}) {
    int64_t bytes = 0;
    ASSERT_EQ(longattn_transient_bytes(&fx.args(), path, &options, &bytes), LONGATTN_OK)
        << path_label(path) << ": " << longattn_last_error();
    EXPECT_GT(bytes, 1) << path_label(path);
  }
  // With no path fitting, AUTO reports OVER_BUDGET too, naming the budget.
  Tensor o = fx.new_output();
  longattn_args args = fx.args();
  args.o = o.data();
  options.memory_budget = 1;
  EXPECT_EQ(longattn_attention(&args, &options, nullptr), LONGATTN_OVER_BUDGET);
  EXPECT_EQ(missing_names(longattn_last_error(), {"memory_budget"}), "");
  EXPECT_TRUE(all_bytes_are(o.bytes(), kOutputSentinel));
}

TEST(ErrorsCpu, WorkspaceSmallerThanNeeded) {
  const Fixture fx(base_case());
  Tensor o = fx.new_output();
  longattn_args args = fx.args();
  args.o = o.data();
  for (int32_t path : {LONGATTN_PATH_UNFUSED, LONGATTN_PATH_FUSED, LONGATTN_PATH_SPLIT_KV}) {
    SCOPED_TRACE(path_label(path));
    longattn_options options = default_options();
    options.path = path;
    int64_t need = 0;
    ASSERT_EQ(longattn_transient_bytes(&args, path, &options, &need), LONGATTN_OK);
    ASSERT_GT(need, 0);
    std::vector<uint8_t> storage(size_t(need) + 64);
    void* aligned = storage.data() + (64 - reinterpret_cast<uintptr_t>(storage.data()) % 64) % 64;
    options.workspace = aligned;
    options.workspace_bytes = need - 1;
    EXPECT_EQ(longattn_attention(&args, &options, nullptr), LONGATTN_INVALID_ARGUMENT);
    EXPECT_EQ(missing_names(longattn_last_error(), {"workspace|workspace_bytes"}), "");
    EXPECT_TRUE(all_bytes_are(o.bytes(), kOutputSentinel));
    try {
      longattn::run(args, options);
      ADD_FAILURE() << "no throw";
    } catch (const longattn::Error& e) {
      EXPECT_EQ(e.status(), LONGATTN_INVALID_ARGUMENT);
      EXPECT_THAT(e.what(), HasSubstr("workspace"));
    }
  }
}

TEST(ErrorsCpu, MergeStatesArguments) {
  std::vector<float> parts(2 * 3 * 4, 0.5f), lses(2 * 3, 0.0f), o(3 * 4), lse(3);
  const struct {
    int64_t n, rows, dv;
    const float *o_parts, *lse_parts;
    float* o;
    const char* name;
  } bad[] = {
      {0, 3, 4, parts.data(), lses.data(), o.data(), "n"},
      {-1, 3, 4, parts.data(), lses.data(), o.data(), "n"},
      {2, -1, 4, parts.data(), lses.data(), o.data(), "rows"},
      {2, 3, 0, parts.data(), lses.data(), o.data(), "dv"},
      {2, 3, 4, nullptr, lses.data(), o.data(), "o_parts"},
      {2, 3, 4, parts.data(), nullptr, o.data(), "lse_parts"},
      {2, 3, 4, parts.data(), lses.data(), nullptr, "o"},
  };
  for (const auto& b : bad) {
    SCOPED_TRACE(b.name);
    EXPECT_EQ(longattn_merge_states(b.n, b.rows, b.dv, b.o_parts, b.lse_parts, b.o, lse.data()),
              LONGATTN_INVALID_ARGUMENT);
    EXPECT_EQ(missing_names(longattn_last_error(), {b.name}), "");
    EXPECT_THROW(longattn::merge_states(b.n, b.rows, b.dv, b.o_parts, b.lse_parts, b.o, lse.data()),
                 longattn::Error);
  }
}

// Sizes whose byte counts overflow int64 are rejected before anything is read (a separate test, so
// that a crash here cannot hide the other checks).
TEST(ErrorsCpu, MergeStatesOverflowingSizes) {
  std::vector<float> parts(2 * 3 * 4, 0.5f), lses(2 * 3, 0.0f), o(3 * 4);
  EXPECT_EQ(
      longattn_merge_states(INT64_MAX / 2, 3, 4, parts.data(), lses.data(), o.data(), nullptr),
      LONGATTN_INVALID_ARGUMENT);
  EXPECT_EQ(
      longattn_merge_states(2, INT64_MAX / 2, 4, parts.data(), lses.data(), o.data(), nullptr),
      LONGATTN_INVALID_ARGUMENT);
}

}  // namespace
}  // namespace longattn_test
