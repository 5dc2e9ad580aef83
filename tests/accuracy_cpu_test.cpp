// Accuracy grid: every CPU path (and AUTO) against a float64 reference written in the test, plus
// the library's own reference path held to "correctly rounded from float64". A list of cases covers
// every value of every axis at least once instead of the (far too slow) cartesian product.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "longattn/attention.hpp"
#include "reference_test_util.hpp"

namespace longattn_test {
namespace {

constexpr int32_t F32 = LONGATTN_FLOAT32, F16 = LONGATTN_FLOAT16, BF16 = LONGATTN_BFLOAT16;
constexpr int32_t kBool = LONGATTN_MASK_BOOLEAN, kAdd = LONGATTN_MASK_ADDITIVE;
using L = Layout;

std::vector<Case> grid() {
  std::vector<Case> cases = {
      // Every head dim (and 192/128); each dtype appears across them.
      Case("d64_f32").shape(2, 4, 4, 113, 113).dims(64),
      Case("d72_bf16_causal").shape(1, 4, 2, 113, 1023).dims(72).type(BF16).is_causal(),
      Case("d80_f16_mqa").shape(2, 2, 1, 7, 113).dims(80).type(F16),
      Case("d96_f32_gqa8_causal").shape(1, 8, 1, 113, 113).dims(96).is_causal(),
      Case("d128_bf16_gqa4_causal").shape(1, 8, 2, 1023, 1023).dims(128).type(BF16).is_causal(),
      Case("d192_f16").shape(1, 2, 2, 113, 1023).dims(192).type(F16),
      Case("d256_f32_causal_window_large")
          .shape(1, 2, 1, 1023, 1023)
          .dims(256)
          .is_causal()
          .win(500),
      Case("d256_bf16").shape(1, 2, 2, 113, 113).dims(256).type(BF16),
      Case("d512_bf16").shape(1, 2, 1, 113, 1023).dims(512).type(BF16),
      Case("d512_f32_causal").shape(1, 1, 1, 300, 300).dims(512).is_causal(),
      Case("d512_f16_add_mask").shape(1, 2, 2, 7, 113).dims(512).type(F16).mask(kAdd, 1, 1, 1, 1),
      Case("d192x128_f32").shape(1, 4, 2, 113, 1023).dims(192, 128),
      Case("d192x128_bf16_causal").shape(2, 4, 1, 1023, 1023).dims(192, 128).type(BF16).is_causal(),
      Case("d192x128_f16_sinks").shape(1, 2, 1, 7, 113).dims(192, 128).type(F16).sinks(1.0f),
      // Lengths 1, 7, 113, 1023, 4096, with Lq > Lk (causal: the first Lq - Lk rows see no key).
      Case("len_1x1").shape(1, 2, 2, 1, 1).dims(64),
      Case("len_1x7_f16").shape(3, 2, 1, 1, 7).dims(128).type(F16),
      Case("len_7x1_causal").shape(1, 2, 2, 7, 1).dims(64).is_causal(),
      Case("len_7x7_window0").shape(1, 2, 2, 7, 7).dims(64).is_causal().win(0),
      Case("len_1023x113_causal_bf16").shape(1, 2, 1, 1023, 113).dims(128).type(BF16).is_causal(),
      Case("long_decode_gqa8_f32").shape(1, 8, 1, 1, 4096).dims(128),
      Case("long_decode_bf16").shape(2, 4, 2, 1, 4096).dims(64).type(BF16),
      // Decode tiles stream K and V in place: head dims off whole vectors, every dtype, GQA
      // groups from 1 to 8 rows, softcap, sinks and a window.
      Case("decode_d100x37_f16_gqa4").shape(2, 8, 2, 1, 777).dims(100, 37).type(F16),
      Case("decode_d33_bf16_softcap_sinks")
          .shape(1, 4, 1, 2, 300)
          .dims(33)
          .type(BF16)
          .cap(20.0f, 6.0f)
          .sinks(1.0f),
      Case("decode_d200_f32_window").shape(1, 3, 3, 1, 1023).dims(200).is_causal().win(100),
      Case("long_causal_f16").shape(1, 1, 1, 4096, 4096).dims(64).type(F16).is_causal(),
      Case("long_kv_bf16").shape(1, 2, 1, 113, 4096).dims(128).type(BF16),
      Case("long_q_causal_f32").shape(1, 1, 1, 4096, 1023).dims(64).is_causal(),
      Case("long_chunk_causal_f32").shape(1, 2, 1, 1023, 4096).dims(128).is_causal(),
      Case("long_chunk_window_f16")
          .shape(1, 1, 1, 1023, 4096)
          .dims(128)
          .type(F16)
          .is_causal()
          .win(1023),
      // Sliding windows: 0 (above), small, large (above), without causal, with Lq > Lk.
      Case("window_small_f32").shape(1, 2, 1, 1023, 1023).dims(64).is_causal().win(16),
      Case("window_no_causal_bf16").shape(1, 2, 2, 113, 113).dims(64).type(BF16).win(8),
      Case("window_lq_gt_lk").shape(1, 2, 1, 113, 7).dims(64).is_causal().win(3),
      // Softcap (q_amp makes scores large enough for tanh to bend) and an explicit scale.
      Case("softcap_f32").shape(1, 4, 2, 113, 1023).dims(128).cap(1.0f, 3.0f),
      Case("softcap_bf16_causal")
          .shape(1, 2, 1, 1023, 1023)
          .dims(256)
          .type(BF16)
          .is_causal()
          .cap(30.0f, 8.0f),
      // Scores spanning tens of units: the online softmax must rescale without overflow.
      Case("large_scores_f32").shape(1, 2, 1, 113, 1023).dims(128).amp(8.0f),
      Case("large_scores_f16_causal")
          .shape(1, 2, 2, 1023, 1023)
          .dims(64)
          .type(F16)
          .is_causal()
          .amp(12.0f),
      Case("scale_custom_f32").shape(1, 2, 2, 113, 113).dims(96).with_scale(0.3f),
      // Sinks: ordinary, dominant, and on rows that see no key.
      Case("sinks_f32").shape(1, 4, 2, 113, 113).dims(64).sinks(1.0f),
      Case("sinks_large_bf16").shape(1, 4, 1, 7, 1023).dims(128).type(BF16).sinks(6.0f),
      Case("sinks_causal_lq_gt_lk_f16")
          .shape(1, 2, 2, 113, 7)
          .dims(64)
          .type(F16)
          .is_causal()
          .sinks(2.0f),
      // Masks: broadcast dims of 1 and full dims, -inf entries, fully masked rows, padded strides.
      Case("bool_mask_bcast_bh").shape(2, 4, 2, 113, 113).dims(64).mask(kBool, 0, 0, 1, 1),
      Case("bool_mask_full_f16")
          .shape(2, 2, 1, 113, 1023)
          .dims(128)
          .type(F16)
          .mask(kBool, 1, 1, 1, 1),
      Case("bool_mask_rows_only").shape(2, 2, 2, 113, 113).dims(64).mask(kBool, 1, 0, 1, 0),
      Case("bool_mask_causal_bf16")
          .shape(1, 2, 1, 1023, 1023)
          .dims(64)
          .type(BF16)
          .is_causal()
          .mask(kBool, 0, 0, 1, 1, true),
      Case("add_mask_batch_causal_f32")
          .shape(2, 2, 2, 113, 1023)
          .dims(64)
          .is_causal()
          .mask(kAdd, 1, 0, 1, 1),
      Case("add_mask_keys_only_bf16")
          .shape(1, 4, 2, 113, 1023)
          .dims(128)
          .type(BF16)
          .mask(kAdd, 0, 1, 0, 1),
      Case("add_mask_padded_f32").shape(2, 2, 1, 113, 113).dims(80).mask(kAdd, 1, 1, 1, 1, true),
      Case("add_mask_scalar").shape(1, 2, 2, 7, 113).dims(64).mask(kAdd, 0, 0, 0, 0),
      Case("everything_f32")
          .shape(2, 4, 2, 113, 1023)
          .dims(128)
          .is_causal()
          .win(200)
          .cap(5.0f, 3.0f)
          .sinks(1.0f)
          .mask(kAdd, 1, 0, 1, 1, true)
          .layout(L::kTokensMajorPadded, L::kPadded),
      Case("everything_bf16")
          .shape(1, 8, 1, 1023, 1023)
          .dims(96)
          .type(BF16)
          .is_causal()
          .win(300)
          .cap(20.0f, 6.0f)
          .sinks(2.0f)
          .mask(kBool, 1, 1, 1, 1)
          .layout(L::kPadded, L::kTokensMajor),
      // Layouts: padding everywhere, [B, L, H, D] via strides, mixed, and k == v (one buffer).
      Case("padded_f32").shape(2, 4, 2, 113, 113).dims(72).layout(L::kPadded, L::kPadded),
      Case("tokens_major_f16")
          .shape(2, 4, 2, 113, 1023)
          .dims(128)
          .type(F16)
          .layout(L::kTokensMajor, L::kTokensMajor),
      Case("tokens_major_padded_bf16")
          .shape(2, 4, 1, 113, 113)
          .dims(96)
          .type(BF16)
          .layout(L::kTokensMajorPadded, L::kContiguous),
      Case("out_tokens_major_padded")
          .shape(1, 4, 4, 113, 113)
          .dims(64)
          .layout(L::kContiguous, L::kTokensMajorPadded),
      Case("k_eq_v_bf16")
          .shape(1, 8, 2, 113, 1023)
          .dims(256)
          .type(BF16)
          .same_kv()
          .layout(L::kTokensMajor, L::kContiguous),
      Case("k_eq_v_f32_causal").shape(1, 2, 1, 113, 113).dims(512).same_kv().is_causal(),
      // FP8 KV caches (kv_dtype): every scale kind, both formats, every Q dtype, outlier channels.
      Case("fp8_e4m3_decode_gqa4_head_scales")
          .shape(2, 8, 2, 1, 1023)
          .dims(128)
          .fp8(LONGATTN_FLOAT8_E4M3, 2),
      Case("fp8_e5m2_bf16_causal_tensor_scale")
          .shape(1, 4, 2, 113, 1023)
          .dims(256)
          .type(BF16)
          .is_causal()
          .fp8(LONGATTN_FLOAT8_E5M2, 1),
      Case("fp8_e4m3_f16_d512_window_sinks")
          .shape(1, 4, 1, 113, 1023)
          .dims(512)
          .type(F16)
          .is_causal()
          .win(200)
          .sinks(1.0f)
          .fp8(LONGATTN_FLOAT8_E4M3, 2),
      Case("fp8_e4m3_bf16_mla_decode_k_eq_v")
          .shape(1, 8, 1, 1, 777)
          .dims(576, 512)
          .type(BF16)
          .same_kv()
          .fp8(LONGATTN_FLOAT8_E4M3, 1),
      Case("fp8_e5m2_f32_mask_padded_layouts")
          .shape(2, 4, 2, 113, 113)
          .dims(72)
          .mask(kAdd, 1, 0, 1, 1, true)
          .layout(L::kTokensMajorPadded, L::kPadded)
          .fp8(LONGATTN_FLOAT8_E5M2, 2),
      Case("fp8_e5m2_f16_decode_tensor_scale")
          .shape(3, 4, 1, 1, 517)
          .dims(80)
          .type(F16)
          .fp8(LONGATTN_FLOAT8_E5M2, 1),
      Case("fp8_e4m3_decode_d33_softcap_no_scales")
          .shape(2, 4, 4, 1, 300)
          .dims(33)
          .cap(5.0f, 3.0f)
          .fp8(LONGATTN_FLOAT8_E4M3, 0),
      // Without LSE output.
      Case("no_lse_f16").shape(1, 2, 1, 113, 113).dims(64).type(F16).no_lse(),
      Case("no_lse_decode_f32").shape(2, 8, 2, 1, 1023).dims(128).no_lse(),
  };
  for (const Case& c : mla_cases(LONGATTN_FLOAT32)) cases.push_back(c);
  return cases;
}

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
  const Fixture fx(GetParam());
  const Case& c = fx.kase();
  const Problem& p = fx.problem();
  SCOPED_TRACE(c.describe());
  const RefResult ref = reference_attention<double>(p);
  // The yardstick for fp16/bf16: the same math in float32 with P and O rounded to the dtype.
  Errors lowp;
  if (c.dtype != F32) {
    const RefResult lp = reference_attention<float>(p, /*low_precision=*/true);
    lowp = measure(ref, lp.o, &lp.lse);
  }
  for (int32_t path : {LONGATTN_PATH_REFERENCE, LONGATTN_PATH_UNFUSED, LONGATTN_PATH_FUSED,
                       LONGATTN_PATH_SPLIT_KV, LONGATTN_PATH_AUTO}) {
    SCOPED_TRACE(std::string("path ") + path_label(path));
    const RunOutput out = fx.run(path, default_options());
    EXPECT_EQ(out.status, LONGATTN_OK) << out.message;
    if (out.status != LONGATTN_OK) continue;
    EXPECT_EQ(out.guard_problem, "");
    if (path == LONGATTN_PATH_AUTO) {
      EXPECT_NE(out.plan.path, LONGATTN_PATH_REFERENCE) << "AUTO chose the test-only path";
    } else {
      EXPECT_EQ(out.plan.path, path);
    }
    EXPECT_EQ(out.plan.allocated_bytes, out.plan.transient_bytes);
    EXPECT_NE(std::string(out.plan.reason), "") << "the plan should say why";
    EXPECT_EQ(check_empty_rows(p, ref, out, c.lse), "");
    if (path == LONGATTN_PATH_REFERENCE) {
      EXPECT_EQ(check_library_reference(p, ref, out, c.lse), "");
      continue;
    }
    const Errors e = measure(ref, out.o_dense, c.lse ? &out.lse_dense : nullptr);
    if (c.dtype == F32) {
      EXPECT_LE(e.o_abs, 1e-5 * e.ref_max) << describe(e, p);
      EXPECT_LE(e.lse_rel, 1e-5) << describe(e, p);
    } else {
      // FlashAttention's criterion: at most twice the error of the low precision computation.
      // The floor (1e-6 of the output's scale, far below one fp16/bf16 ulp) only matters where the
      // yardstick happens to be exact, e.g. a row with one visible key gives O = V exactly.
      EXPECT_LE(e.o_abs, 2 * lowp.o_abs + 1e-6 * e.ref_max)
          << describe(e, p) << "\nlow precision reference: " << describe(lowp, p);
      // LSE comes from float32 scores of exactly representable inputs: float32 accuracy.
      EXPECT_LE(e.lse_rel, 2 * lowp.lse_rel + 1e-5)
          << describe(e, p) << "\nlow precision reference: " << describe(lowp, p);
    }
  }
  EXPECT_EQ(fx.inputs_changed(), "");
}

INSTANTIATE_TEST_SUITE_P(Grid, AccuracyCpu, ::testing::ValuesIn(grid()),
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
