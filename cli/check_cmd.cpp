// `longattn check`: runs paths on one problem and compares them with the float64 reference path,
// plus the library's public promises: deterministic bits, inputs untouched, nothing written past
// O and LSE, every output finite.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "cli.hpp"
#include "problem.hpp"
#include "progress.hpp"

namespace longattn::cli {
namespace {

// Tolerances. O: max|o - ref| / max|ref|. float32 paths accumulate in float32 where the
// reference uses float64, so 1e-5 leaves room for ~100 ulps. float16/bfloat16 paths store O in the
// input type (bfloat16 alone costs up to 2^-9 relative, ~3e-3 measured) and may round P to it
// before P.V, as GPU kernels do (another 2^-9 per term): 2e-2 covers both with margin. The
// reference sees the very same rounded inputs, so input rounding is not part of the error.
constexpr double kTolF32 = 1e-5, kTolHalf = 2e-2;
// LSE: an absolute error e scales every probability by e^e, a relative error of about e, so the
// half types use the O tolerance. float32 allows 1e-4: LSE values near 10 have an ulp of 1e-6, and
// a long float32 sum loses a few ulps.
constexpr double kLseTolF32 = 1e-4, kLseTolHalf = 2e-2;

struct Comparison {
  double max_abs = 0, max_ref = 0, rel = 0, lse_err = 0;
  int64_t nonfinite = 0;     // O elements that are inf or NaN (the reference's never are)
  int64_t lse_mismatch = 0;  // rows where exactly one side sees no key (-inf), or a NaN
};

Comparison compare(const std::vector<float>& o, const std::vector<float>& ref,
                   const std::vector<float>& lse, const std::vector<float>& lse_ref) {
  Comparison c;
  for (size_t i = 0; i < o.size(); ++i) {
    if (!std::isfinite(o[i])) {
      ++c.nonfinite;
      continue;
    }
    c.max_abs = std::max(c.max_abs, std::fabs(double(o[i]) - ref[i]));
    c.max_ref = std::max(c.max_ref, std::fabs(double(ref[i])));
  }
  // A zero reference (every row sees no key) makes the absolute error the relative one.
  c.rel = c.max_ref > 0 ? c.max_abs / c.max_ref : c.max_abs;
  for (size_t i = 0; i < lse.size(); ++i) {
    bool empty = std::isinf(lse[i]) && lse[i] < 0,
         empty_ref = std::isinf(lse_ref[i]) && lse_ref[i] < 0;
    if (empty && empty_ref) continue;
    if (empty != empty_ref || std::isnan(lse[i]) || !std::isfinite(lse_ref[i])) {
      ++c.lse_mismatch;
      continue;
    }
    c.lse_err = std::max(c.lse_err, std::fabs(double(lse[i]) - lse_ref[i]));
  }
  return c;
}

struct PathResult {
  int32_t requested = LONGATTN_PATH_AUTO;
  longattn_plan plan{};
  std::string error;  // the library's message when planning or running failed
  Comparison cmp;
  bool deterministic = false, inputs_unchanged = false, guards_intact = false;
  bool pass = false;
};

const char* yes_no(bool b) { return b ? "yes" : "NO"; }

void print_text(const ProblemOptions& opt, const PathResult& r, double tol, double lse_tol) {
  std::string label = longattn_path_name(r.requested);
  if (r.requested == LONGATTN_PATH_AUTO && r.error.empty())
    label += std::string(" -> ") + longattn_path_name(r.plan.path);
  std::printf("check %s %s: %s\n", device_flag_name(opt.device), label.c_str(),
              shape_summary(opt).c_str());
  if (!r.error.empty()) {
    std::printf("  error       %s\n  FAIL\n", r.error.c_str());
    return;
  }
  std::printf("  plan        %s\n", r.plan.reason);
  std::printf("  transient   %s\n", format_bytes(r.plan.transient_bytes).c_str());
  std::printf("  O error     max abs %.3g, rel %.3g (tol %.3g)", r.cmp.max_abs, r.cmp.rel, tol);
  if (r.cmp.nonfinite) std::printf(", %lld NON-FINITE values", (long long)r.cmp.nonfinite);
  std::printf("\n  LSE error   max abs %.3g (tol %.3g)", r.cmp.lse_err, lse_tol);
  if (r.cmp.lse_mismatch)
    std::printf(", %lld rows disagree on -inf/NaN", (long long)r.cmp.lse_mismatch);
  std::printf(
      "\n  promises    deterministic %s, inputs unchanged %s, nothing written past O/LSE %s\n",
      yes_no(r.deterministic), yes_no(r.inputs_unchanged), yes_no(r.guards_intact));
  std::printf("  %s\n", r.pass ? "PASS" : "FAIL");
}

void print_json(const ProblemOptions& opt, const PathResult& r, double tol, double lse_tol) {
  std::string s =
      "{\"command\":\"check\",\"requested_path\":" + json_string(longattn_path_name(r.requested)) +
      "," + shape_json_fields(opt);
  if (!r.error.empty()) {
    s += ",\"ok\":false,\"error\":" + json_string(r.error) + ",\"pass\":false}";
    std::printf("%s\n", s.c_str());
    return;
  }
  auto b = [](bool x) { return x ? std::string("true") : std::string("false"); };
  s += ",\"ok\":true,\"path\":" + json_string(longattn_path_name(r.plan.path)) +
       ",\"threads\":" + std::to_string(r.plan.threads) +
       ",\"block_q\":" + std::to_string(r.plan.block_q) +
       ",\"block_k\":" + std::to_string(r.plan.block_k) +
       ",\"splits\":" + std::to_string(r.plan.splits) +
       ",\"transient_bytes\":" + std::to_string(r.plan.transient_bytes) +
       ",\"reason\":" + json_string(r.plan.reason) +
       ",\"max_abs_error\":" + json_number(r.cmp.max_abs) +
       ",\"rel_error\":" + json_number(r.cmp.rel) + ",\"tol\":" + json_number(tol) +
       ",\"lse_error\":" + json_number(r.cmp.lse_err) + ",\"lse_tol\":" + json_number(lse_tol) +
       ",\"nonfinite\":" + std::to_string(r.cmp.nonfinite) +
       ",\"lse_mismatch\":" + std::to_string(r.cmp.lse_mismatch) +
       ",\"deterministic\":" + b(r.deterministic) +
       ",\"inputs_unchanged\":" + b(r.inputs_unchanged) +
       ",\"guards_intact\":" + b(r.guards_intact) + ",\"pass\":" + b(r.pass) + "}";
  std::printf("%s\n", s.c_str());
}

}  // namespace

int run_check(int argc, char** argv) {
  ProblemOptions opt;
  std::vector<int32_t> paths = {LONGATTN_PATH_AUTO};
  double tol = -1, lse_tol = -1;
  FlagSet flags(
      "check",
      "Runs PATHS on random inputs and compares O and LSE with the float64 reference path (run in\n"
      "float32 on the very inputs the path saw, rounded to --dtype). Also checks that outputs are\n"
      "deterministic, inputs are unchanged and nothing is written past O and LSE.\n"
      "Exit status: 0 all paths pass, 1 a path fails or the library refuses, 2 bad flags.");
  add_problem_flags(flags, opt);
  flags.add("--path", "PATHS",
            "auto|reference|unfused|fused|split_kv, comma-separated, or all (default auto)",
            [&](const std::string& v) { paths = parse_paths("--path", v); });
  flags.add("--tol", "X", "max relative O error (default 1e-5 for f32, 2e-2 for f16/bf16)",
            [&](const std::string& v) { tol = parse_float("--tol", v, 0.0f); });
  flags.add("--lse-tol", "X", "max absolute LSE error (default 1e-4 for f32, 2e-2 for f16/bf16)",
            [&](const std::string& v) { lse_tol = parse_float("--lse-tol", v, 0.0f); });
  if (!flags.parse(argc, argv, 2)) return kExitOk;
  resolve_head_dims(opt);
  const bool half = opt.dtype != LONGATTN_FLOAT32;
  if (tol < 0) tol = half ? kTolHalf : kTolF32;
  if (lse_tol < 0) lse_tol = half ? kLseTolHalf : kLseTolF32;

  require_device(opt);
  Problem problem(opt, /*keep_reference_inputs=*/true);
  const longattn_args args = problem.args();

  // Arguments the library finds invalid are wrong for every path: say so once, as an error.
  longattn_plan plan;
  longattn_options auto_options = make_options(opt, LONGATTN_PATH_AUTO);
  if (longattn_plan_attention(&args, &auto_options, &plan) == LONGATTN_INVALID_ARGUMENT)
    throw RunError(std::string("invalid argument: ") + longattn_last_error());

  // Plan every path first: a refusal is reported at once instead of after the slow reference.
  std::vector<PathResult> results(paths.size());
  int runnable = 0;
  for (size_t i = 0; i < paths.size(); ++i) {
    results[i].requested = paths[i];
    longattn_options options = make_options(opt, paths[i]);
    longattn_status s = longattn_plan_attention(&args, &options, &results[i].plan);
    if (s != LONGATTN_OK)
      results[i].error = std::string(longattn_status_string(s)) + ": " + longattn_last_error();
    else
      ++runnable;
  }

  Progress progress(!opt.json);
  const int steps = 1 + 2 * runnable;  // the reference, then two runs per path
  int step = 0;
  std::vector<float> o_ref, lse_ref;
  if (runnable > 0) {
    progress.show(0, "reference (float64)");
    longattn_args ref_args = problem.reference_args(&o_ref, &lse_ref);
    longattn_options ref_options = make_options(opt, LONGATTN_PATH_REFERENCE);
    ref_options.memory_budget = -1;  // the budget is for the paths under test
    check_status(longattn_attention(&ref_args, &ref_options, nullptr), "reference path");
    ++step;
  }
  const uint64_t input_hash = runnable > 0 ? problem.input_hash() : 0;

  bool all_pass = true;
  for (PathResult& r : results) {
    if (r.error.empty()) {
      longattn_options options = make_options(opt, r.requested);
      const std::string name = longattn_path_name(r.plan.path);
      std::vector<uint8_t> first;
      for (int run = 0; run < 2 && r.error.empty(); ++run) {
        progress.show(double(step) / steps, name + " run " + std::to_string(run + 1) + "/2");
        problem.poison_outputs();
        longattn_status s = longattn_attention(&args, &options, &r.plan);
        device_synchronize(opt.device);
        ++step;
        if (s != LONGATTN_OK) {
          r.error = std::string(longattn_status_string(s)) + ": " + longattn_last_error();
          break;
        }
        if (run == 0) {
          r.guards_intact = problem.guards_intact();
          r.cmp = compare(problem.output(), o_ref, problem.lse(), lse_ref);
          first = problem.output_bytes();
        } else {
          r.deterministic = problem.output_bytes() == first;
          r.guards_intact = r.guards_intact && problem.guards_intact();
        }
      }
      if (r.error.empty()) {
        r.inputs_unchanged = problem.input_hash() == input_hash;
        r.pass = r.cmp.nonfinite == 0 && r.cmp.lse_mismatch == 0 && r.cmp.rel <= tol &&
                 r.cmp.lse_err <= lse_tol && r.deterministic && r.inputs_unchanged &&
                 r.guards_intact;
      }
    }
    progress.clear();
    if (opt.json)
      print_json(opt, r, tol, lse_tol);
    else
      print_text(opt, r, tol, lse_tol);
    std::fflush(stdout);
    all_pass = all_pass && r.pass;
  }
  return all_pass ? kExitOk : kExitFailure;
}

}  // namespace longattn::cli
