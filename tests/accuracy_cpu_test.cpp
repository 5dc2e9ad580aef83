// The accuracy grid (accuracy_grid.hpp) on the CPU: every path (and AUTO) against the float64
// reference written in the test, plus the library's own reference path held to "correctly rounded
// from float64".
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "accuracy_grid.hpp"
#include "longattn/attention.hpp"

namespace longattn_test {
namespace {

constexpr int32_t F32 = LONGATTN_FLOAT32, F16 = LONGATTN_FLOAT16, BF16 = LONGATTN_BFLOAT16;

// Largest error of correctly rounding x to the dtype: half an ulp (subnormal floors included).
double half_ulp_bound(int32_t dtype, double x) {
  x = std::abs(x);
  if (dtype == F16) return std::max(x * 0x1p-11, 0x1p-25);
  if (dtype == BF16) return x * 0x1p-8 + 0x1p-134;
  return x * 0x1p-24 + 0x1p-150;
}

// The library's reference is float64 inside, so its output must be float64 truth rounded once to
// the dtype. Slack: (1 + 2^-15) admits a double rounding through float32 on the way to 16 bits, and
// 1e-12 * max|O| the float64 summation noise on outputs that cancel to nearly zero (each of up to
// 4096 terms carries ~1e-16 relative error). Anything larger is a real error.
std::string check_library_reference(const Problem& p, const RefResult& ref, const RunOutput& out,
                                    bool with_lse) {
  double ref_max = 0;
  for (double x : ref.o) ref_max = std::max(ref_max, std::abs(x));
  for (size_t i = 0; i < ref.o.size(); ++i) {
    double err = std::abs(double(out.o_dense[i]) - ref.o[i]);
    if (!(err <= half_ulp_bound(p.dtype, ref.o[i]) * (1 + 0x1p-15) + 1e-12 * ref_max)) {
      std::ostringstream s;
      s.precision(12);
      s << "O row " << i / size_t(p.Dv) << " col " << i % size_t(p.Dv) << ": got " << out.o_dense[i]
        << " want " << ref.o[i] << " (not the correctly rounded float64 value)";
      return s.str();
    }
  }
  if (with_lse)
    for (size_t r = 0; r < ref.lse.size(); ++r) {
      if (ref.lse[r] == -kInf) continue;
      double err = std::abs(double(out.lse_dense[r]) - ref.lse[r]);
      if (!(err <= half_ulp_bound(F32, ref.lse[r]) * (1 + 0x1p-15))) {
        std::ostringstream s;
        s.precision(12);
        s << "LSE row " << r << ": got " << out.lse_dense[r] << " want " << ref.lse[r];
        return s.str();
      }
    }
  return "";
}

class AccuracyCpu : public ::testing::TestWithParam<Case> {};

TEST_P(AccuracyCpu, EveryPathMatchesFloat64Reference) {
  if (const std::string why = forced_cpu_isa_repeats_unforced(); !why.empty()) GTEST_SKIP() << why;
  const Fixture fx(GetParam());
  const Case& c = fx.kase();
  const Problem& p = fx.problem();
  SCOPED_TRACE(c.describe());
  const RefResult ref = reference_attention<double>(p);
  // float32 runs in float32 throughout on the CPU: held to 1e-5, no yardstick needed.
  const Errors lowp = c.dtype == F32 ? Errors{} : low_precision_errors(p, ref, c.dtype);
  for (int32_t path : {LONGATTN_PATH_REFERENCE, LONGATTN_PATH_UNFUSED, LONGATTN_PATH_FUSED,
                       LONGATTN_PATH_SPLIT_KV, LONGATTN_PATH_AUTO}) {
    SCOPED_TRACE(std::string("path ") + path_label(path));
    const RunOutput out = fx.run(path, case_options(c, path));
    if (path == LONGATTN_PATH_REFERENCE) {
      ASSERT_EQ(out.status, LONGATTN_OK) << out.message;
      EXPECT_EQ(out.guard_problem, "");
      EXPECT_EQ(out.plan.path, path);
      EXPECT_EQ(out.plan.allocated_bytes, out.plan.transient_bytes);
      EXPECT_NE(std::string(out.plan.reason), "");
      EXPECT_EQ(check_empty_rows(p, ref, out, c.lse), "");
      EXPECT_EQ(check_library_reference(p, ref, out, c.lse), "");
      continue;
    }
    expect_accurate(c, p, ref, out, path, /*exact=*/c.dtype == F32, lowp);
  }
  EXPECT_EQ(fx.inputs_changed(), "");
}

INSTANTIATE_TEST_SUITE_P(Grid, AccuracyCpu, ::testing::ValuesIn(accuracy_grid()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return info.param.name;
                         });

// An FP8 code's value from the formats' definitions (OCP FP8: E4M3 without infinities, its only
// NaNs S.1111.111; E5M2 as IEEE), written apart from the library's decoders.
float fp8_by_definition(int32_t kv, int code) {
  const int mbits = kv == LONGATTN_FLOAT8_E4M3 ? 3 : 2, bias = kv == LONGATTN_FLOAT8_E4M3 ? 7 : 15;
  const int e = (code & 0x7f) >> mbits, m = code & ((1 << mbits) - 1);
  float mag = 0;
  if (kv == LONGATTN_FLOAT8_E4M3 && e == 15 && m == 7)
    mag = std::numeric_limits<float>::quiet_NaN();
  else if (kv == LONGATTN_FLOAT8_E5M2 && e == 31)
    mag = m ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
  else if (e == 0)
    mag = std::ldexp(float(m), 1 - bias - mbits);
  else
    mag = std::ldexp(float(m + (1 << mbits)), e - bias - mbits);
  return code & 0x80 ? -mag : mag;
}

// Every FP8 code decodes exactly, NaN and infinities included, on every path: one key (its
// probability is exactly 1), V's row holding all 256 codes, O in float32 = code's value * v_scale.
TEST(Fp8Cpu, EveryCodeDecodes) {
  for (int32_t kv : {LONGATTN_FLOAT8_E4M3, LONGATTN_FLOAT8_E5M2}) {
    std::vector<uint8_t> k(16, 0), v(256);
    for (int c = 0; c < 256; ++c) v[size_t(c)] = uint8_t(c);
    std::vector<float> q(16, 0.5f), o(256), lse(1);
    const float v_scale = 1.5f;
    longattn_args a;
    longattn_args_init(&a);
    a.head_dim_qk = 16, a.head_dim_v = 256;
    longattn_set_contiguous_strides(&a);
    a.q = q.data(), a.k = k.data(), a.v = v.data(), a.o = o.data(), a.lse = lse.data();
    a.kv_dtype = kv, a.v_scale = &v_scale;
    for (int32_t path : {LONGATTN_PATH_REFERENCE, LONGATTN_PATH_UNFUSED, LONGATTN_PATH_FUSED,
                         LONGATTN_PATH_SPLIT_KV}) {
      SCOPED_TRACE(std::string(dtype_label(kv)) + " " + path_label(path));
      longattn_options opt = default_options();
      opt.path = path;
      std::fill(o.begin(), o.end(), -7.f);
      ASSERT_EQ(longattn_attention(&a, &opt, nullptr), LONGATTN_OK) << longattn_last_error();
      for (int c = 0; c < 256; ++c) {
        const float want = fp8_by_definition(kv, c) * v_scale, got = o[size_t(c)];
        if (std::isnan(want))
          EXPECT_TRUE(std::isnan(got)) << "code 0x" << std::hex << c;
        else  // -0 reads as 0: O accumulates from +0
          EXPECT_EQ(got, want) << "code 0x" << std::hex << c;
      }
    }
  }
}

// kv_dtype equal to dtype is the default (0): same plan, same bits.
TEST(Fp8Cpu, KvDtypeSameAsDtype) {
  const Fixture fx(Case("kv_same").shape(1, 4, 2, 9, 70).dims(64).type(BF16));
  const RunOutput base = fx.run(LONGATTN_PATH_AUTO, default_options());
  ASSERT_EQ(base.status, LONGATTN_OK) << base.message;
  longattn_args a = fx.args();
  a.kv_dtype = LONGATTN_BFLOAT16;
  Tensor o = fx.new_output(), lse = fx.new_lse();
  a.o = o.data();
  a.lse = static_cast<float*>(lse.data());
  const longattn_options opt = default_options();
  longattn_plan plan;
  ASSERT_EQ(longattn_attention(&a, &opt, &plan), LONGATTN_OK) << longattn_last_error();
  EXPECT_EQ(plan.path, base.plan.path);
  EXPECT_TRUE(o.bytes() == base.o.bytes());
  EXPECT_TRUE(lse.bytes() == base.lse.bytes());
}

// The C++ layer is the C API: same plan, same bits, and make_args gives contiguous strides.
TEST(CppApi, RunMatchesCApi) {
  const Fixture fx(Case("cpp_api").shape(2, 4, 2, 113, 300).dims(128).type(BF16).is_causal());
  const longattn_args contiguous = longattn::make_args(2, 4, 2, 113, 300, 128);
  EXPECT_EQ(std::memcmp(&contiguous.q_strides, &fx.args().q_strides, sizeof(longattn_strides)), 0);
  EXPECT_EQ(std::memcmp(&contiguous.o_strides, &fx.args().o_strides, sizeof(longattn_strides)), 0);
  const RunOutput c_run = fx.run(LONGATTN_PATH_AUTO, default_options());
  ASSERT_EQ(c_run.status, LONGATTN_OK) << c_run.message;
  longattn_args args = fx.args();
  Tensor o = fx.new_output(), lse = fx.new_lse();
  args.o = o.data();
  args.lse = static_cast<float*>(lse.data());
  const longattn::Plan planned = longattn::plan(args);
  const longattn::Plan ran = longattn::run(args);
  EXPECT_TRUE(planned.ok());
  EXPECT_EQ(ran.path, c_run.plan.path);
  EXPECT_EQ(planned.path, ran.path);
  EXPECT_EQ(ran.transient_bytes, longattn::transient_bytes(args, LONGATTN_PATH_AUTO));
  EXPECT_EQ(ran.allocated_bytes, ran.transient_bytes);
  EXPECT_EQ(ran.reason, std::string(c_run.plan.reason));
  EXPECT_TRUE(o.bytes() == c_run.o.bytes());
  EXPECT_TRUE(lse.bytes() == c_run.lse.bytes());
}

}  // namespace
}  // namespace longattn_test
