// longattn_merge_states: attention over disjoint key sets, merged through the LSEs, equals
// attention over all keys (the identity split-KV, chunked prefill and context parallelism rest on).
#include <gtest/gtest.h>

#include "reference_test_util.hpp"

namespace longattn_test {
namespace {

// Runs the fused path on `args` (float32) and returns O and LSE densely.
RunOutput run_part(const Fixture& fx, const longattn_args& args) {
  RunOutput out = fx.run_with(LONGATTN_PATH_FUSED, default_options(), args);
  EXPECT_EQ(out.status, LONGATTN_OK) << out.message;
  EXPECT_EQ(out.guard_problem, "");
  return out;
}

// Merges parts with the library and checks the result against `full` (and the float64 reference).
void expect_merge_equals_full(const Fixture& fx, const std::vector<RunOutput>& parts,
                              const RunOutput& full) {
  const Problem& p = fx.problem();
  const int64_t rows = p.B * p.Hq * p.Lq, n = int64_t(parts.size());
  std::vector<float> o_parts, lse_parts;
  for (const RunOutput& part : parts) {
    o_parts.insert(o_parts.end(), part.o_dense.begin(), part.o_dense.end());
    lse_parts.insert(lse_parts.end(), part.lse_dense.begin(), part.lse_dense.end());
  }
  std::vector<float> o(size_t(rows * p.Dv), std::nanf("")), lse(size_t(rows), std::nanf(""));
  ASSERT_EQ(
      longattn_merge_states(n, rows, p.Dv, o_parts.data(), lse_parts.data(), o.data(), lse.data()),
      LONGATTN_OK)
      << longattn_last_error();
  RefResult as_full;  // the full run seen as a "reference" for measure()
  as_full.o.assign(full.o_dense.begin(), full.o_dense.end());
  as_full.lse.assign(full.lse_dense.begin(), full.lse_dense.end());
  const Errors vs_full = measure(as_full, o, &lse);
  EXPECT_LE(vs_full.o_abs, 1e-5 * vs_full.ref_max) << describe(vs_full, p);
  EXPECT_LE(vs_full.lse_rel, 1e-5) << describe(vs_full, p);
  const RefResult ref = reference_attention<double>(p);
  const Errors vs_ref = measure(ref, o, &lse);
  EXPECT_LE(vs_ref.o_abs, 1e-5 * vs_ref.ref_max) << describe(vs_ref, p);
  EXPECT_LE(vs_ref.lse_rel, 1e-5) << describe(vs_ref, p);
  for (size_t r = 0; r < size_t(rows); ++r)
    if (ref.lse[r] == -kInf) {
      EXPECT_EQ(lse[r], -INFINITY) << "row " << r;
      for (int64_t x = 0; x < p.Dv; ++x) EXPECT_EQ(o[r * size_t(p.Dv) + size_t(x)], 0.0f);
    }
}

// Key slices [start, end) as separate K/V views (pointer offsets, same strides): exact for
// non-causal attention, in 2 and 3 parts of uneven sizes.
TEST(MergeCpu, KeySlicesMergeToFullAttention) {
  const Fixture fx(Case("merge_slices")
                       .shape(2, 4, 2, 113, 1023)
                       .dims(64)
                       .layout(Layout::kTokensMajorPadded, Layout::kContiguous));
  const RunOutput full = run_part(fx, fx.args());
  for (std::vector<int64_t> cuts :
       {std::vector<int64_t>{0, 400, 1023}, std::vector<int64_t>{0, 1, 700, 1023}}) {
    SCOPED_TRACE(std::to_string(cuts.size() - 1) + " parts");
    std::vector<RunOutput> parts;
    for (size_t i = 0; i + 1 < cuts.size(); ++i) {
      longattn_args a = fx.args();
      a.kv_len = cuts[i + 1] - cuts[i];
      a.k = static_cast<const float*>(a.k) + cuts[i] * a.k_strides.token;
      a.v = static_cast<const float*>(a.v) + cuts[i] * a.v_strides.token;
      parts.push_back(run_part(fx, a));
    }
    expect_merge_equals_full(fx, parts, full);
  }
  EXPECT_EQ(fx.inputs_changed(), "");
}

// Causal attention split by a keys-only boolean mask into 3 ranges: the early rows see nothing of
// the later ranges, so those parts have LSE = -inf rows that the merge must ignore.
TEST(MergeCpu, MaskedPartsWithEmptyRowsMergeToFullAttention) {
  const Fixture fx(Case("merge_masked").shape(1, 4, 1, 113, 113).dims(80).is_causal());
  const RunOutput full = run_part(fx, fx.args());
  const int64_t cuts[] = {0, 10, 60, 113};
  std::vector<RunOutput> parts;
  int64_t empty_rows = 0;
  for (int i = 0; i < 3; ++i) {
    std::vector<uint8_t> visible(113);
    for (int64_t j = 0; j < 113; ++j) visible[size_t(j)] = j >= cuts[i] && j < cuts[i + 1];
    longattn_args a = fx.args();
    a.mask.kind = LONGATTN_MASK_BOOLEAN;
    a.mask.data = visible.data();
    a.mask.dims[0] = a.mask.dims[1] = a.mask.dims[2] = 1;
    a.mask.dims[3] = 113;
    a.mask.strides[3] = 1;
    parts.push_back(run_part(fx, a));
    for (float l : parts.back().lse_dense) empty_rows += l == -INFINITY;
  }
  EXPECT_GT(empty_rows, 0) << "the split should leave some parts without keys";
  expect_merge_equals_full(fx, parts, full);
}

// The merge formula itself on hand-made states: large LSEs (a naive e^L overflows float), parts
// with -inf, an all -inf row, n = 1, rows = 0, and lse = NULL.
TEST(MergeCpu, MergeStatesFormula) {
  const int64_t n = 3, rows = 4, dv = 5;
  const float inf = INFINITY;
  const std::vector<float> lse_parts = {1000.0f, -inf, 0.5f,  -inf,   // part 0
                                        1000.5f, 2.0f, 0.5f,  -inf,   // part 1
                                        -inf,    1.0f, -3.0f, -inf};  // part 2
  std::vector<float> o_parts(size_t(n * rows * dv));
  for (size_t i = 0; i < o_parts.size(); ++i) o_parts[i] = float(std::sin(double(i) * 0.7));
  std::vector<float> o(size_t(rows * dv), std::nanf("")), lse(size_t(rows), std::nanf(""));
  ASSERT_EQ(
      longattn_merge_states(n, rows, dv, o_parts.data(), lse_parts.data(), o.data(), lse.data()),
      LONGATTN_OK)
      << longattn_last_error();
  for (int64_t r = 0; r < rows; ++r) {
    double m = -kInf;
    for (int64_t i = 0; i < n; ++i) m = std::max(m, double(lse_parts[size_t(i * rows + r)]));
    if (m == -kInf) {
      EXPECT_EQ(lse[size_t(r)], -inf);
      for (int64_t x = 0; x < dv; ++x) EXPECT_EQ(o[size_t(r * dv + x)], 0.0f);
      continue;
    }
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += std::exp(double(lse_parts[size_t(i * rows + r)]) - m);
    const double want_lse = m + std::log(sum);
    EXPECT_NEAR(lse[size_t(r)], want_lse, 1e-6 * (1 + std::abs(want_lse))) << "row " << r;
    for (int64_t x = 0; x < dv; ++x) {
      double want = 0;
      for (int64_t i = 0; i < n; ++i)
        want += std::exp(double(lse_parts[size_t(i * rows + r)]) - want_lse) *
                o_parts[size_t((i * rows + r) * dv + x)];
      EXPECT_NEAR(o[size_t(r * dv + x)], want, 1e-6) << "row " << r << " col " << x;
    }
  }
  // lse may be NULL; O is the same.
  std::vector<float> o2(size_t(rows * dv));
  ASSERT_EQ(
      longattn_merge_states(n, rows, dv, o_parts.data(), lse_parts.data(), o2.data(), nullptr),
      LONGATTN_OK);
  EXPECT_TRUE(o2 == o);
  // One part is the identity; zero rows is a no-op.
  ASSERT_EQ(
      longattn_merge_states(1, rows, dv, o_parts.data(), lse_parts.data(), o2.data(), lse.data()),
      LONGATTN_OK);
  for (int64_t r = 0; r < rows; ++r) {
    if (lse_parts[size_t(r)] == -inf) continue;
    EXPECT_EQ(lse[size_t(r)], lse_parts[size_t(r)]);
    for (int64_t x = 0; x < dv; ++x)
      EXPECT_FLOAT_EQ(o2[size_t(r * dv + x)], o_parts[size_t(r * dv + x)]);
  }
  EXPECT_EQ(longattn_merge_states(2, 0, dv, o_parts.data(), lse_parts.data(), o2.data(), nullptr),
            LONGATTN_OK);
}

}  // namespace
}  // namespace longattn_test
