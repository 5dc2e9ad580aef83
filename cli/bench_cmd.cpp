// `longattn bench`: times each path on one problem; reports median time, GFLOPS and the share of
// the CPU's fp32 FMA peak, the rate K and V were read at and its share of the CPU's streaming read
// bandwidth; both ceilings measured by this binary in this run with the same thread count.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "cli.hpp"
#include "fma_peak.hpp"
#include "problem.hpp"
#include "progress.hpp"

namespace longattn::cli {
namespace {

using Clock = std::chrono::steady_clock;
// A median needs three runs; that minimum overrides --seconds for runs of up to a second.
constexpr double kMinRepsMaxMs = 1000;

struct BenchSettings {
  int repeat = 0;  // 0: chosen from the warm-up time to fill `seconds`
  int warmup = 1;
  double seconds = 3.0;  // target for all timed runs together
};

struct PathResult {
  int32_t path = LONGATTN_PATH_AUTO;
  longattn_plan plan{};
  std::string error;   // why it was skipped, in the library's words
  int64_t needs = -1;  // over budget: what the path would need without a budget
  std::vector<double> ms;
  FmaPeak peak;
  ReadBandwidth bw;
};

// What the rows' rates are computed from, the same for every path.
struct Work {
  double flops = 0;
  int64_t kv_bytes = 0;     // K and V of the keys any query sees, each read once
  std::string kernels_isa;  // the library's CPU kernels; "" on CUDA
};

// Keys that at least one query row sees (each row's visible_key_range). The rows' intervals move
// by at most one key per row, so their union is one interval.
int64_t visible_keys(const ProblemOptions& o) {
  int64_t lo_min = o.kv_len, hi_max = -1;
  for (int64_t i = 0; i < o.q_len; ++i) {
    const KeyRange r = visible_key_range(i, o.q_len, o.kv_len, o.causal, o.window_left);
    if (r.hi < r.lo) continue;
    lo_min = std::min(lo_min, r.lo);
    hi_max = std::max(hi_max, r.hi);
  }
  return hi_max >= lo_min ? hi_max - lo_min + 1 : 0;
}

// The read-bandwidth buffer: as large as the K and V a run reads, but at least 4x the last-level
// cache (so it measures memory, not cache) and at most 1 GiB (or 4x the cache, if larger) and a
// quarter of the memory available.
int64_t bandwidth_buffer_bytes(int64_t kv_bytes) {
  const int64_t floor = 4 * last_level_cache_bytes();
  int64_t bytes = std::min(std::max(kv_bytes, floor), std::max(int64_t(1) << 30, floor));
  longattn_device_info info;
  if (longattn_device_query(LONGATTN_DEVICE_CPU, &info) == LONGATTN_OK && info.memory_free > 0)
    bytes = std::min(bytes, info.memory_free / 4);
  return bytes;
}

// "-1.2%": how far the median trial is from the best one.
std::string spread(double best, double median) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%+.1f%%", best > 0 ? 100 * (median / best - 1) : 0.0);
  return buf;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Runs the path `reps` more times (or, with reps == 0, until the time budget is used), appending
// milliseconds. The workspace is the caller's, as a runtime's caching allocator would give it, so
// the timing is the kernel's, not malloc's and the page faults'.
void time_path(const longattn_args& args, const ProblemOptions& opt, const BenchSettings& set,
               double seconds_for_path, PathResult* r, Progress& progress, double progress_lo,
               double progress_hi) {
  DeviceBuffer workspace(opt.device, r->plan.transient_bytes);
  longattn_options options = make_options(opt, r->path);
  options.workspace = r->plan.transient_bytes > 0 ? workspace.data() : nullptr;
  options.workspace_bytes = r->plan.transient_bytes > 0 ? r->plan.transient_bytes : 0;
  const std::string name = longattn_path_name(r->path);
  auto run_once = [&]() {
    auto start = Clock::now();
    check_status(longattn_attention(&args, &options, nullptr), name + " path");
    device_synchronize(opt.device);
    return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  };
  double estimate_ms = 0;
  for (int w = 0; w < set.warmup; ++w) {
    progress.show(progress_lo,
                  name + " warm-up " + std::to_string(w + 1) + "/" + std::to_string(set.warmup));
    estimate_ms = run_once();
  }
  int reps = set.repeat;
  for (;;) {
    if (reps == 0 && (estimate_ms > 0 || !r->ms.empty())) {
      double t = estimate_ms > 0 ? estimate_ms : r->ms.front();
      const double min_reps = t <= kMinRepsMaxMs ? 3.0 : 1.0;
      reps = int(std::clamp(seconds_for_path * 1e3 / std::max(t, 1e-3), min_reps, 1000.0));
    }
    if (reps > 0 && int(r->ms.size()) >= reps) break;
    double done = reps > 0 ? double(r->ms.size()) / reps : 0.0;
    progress.show(progress_lo + (progress_hi - progress_lo) * done,
                  name + " rep " + std::to_string(r->ms.size() + 1) + "/" +
                      (reps > 0 ? std::to_string(reps) : std::string("?")));
    r->ms.push_back(run_once());
  }
}

void print_header(const ProblemOptions& opt, const Work& work, const std::string& auto_line) {
  std::printf("bench %s: %s\n", device_flag_name(opt.device), shape_summary(opt).c_str());
  if (!work.kernels_isa.empty()) {
    const char* forced = std::getenv("LONGATTN_CPU_ISA");
    std::printf("  CPU kernels: %s%s%s%s\n", work.kernels_isa.c_str(),
                forced ? " (LONGATTN_CPU_ISA=" : "", forced ? forced : "", forced ? ")" : "");
  }
  std::printf("  %.4g GFLOP per run (2 * B * Hq * visible pairs * (Dqk + Dv))\n",
              work.flops * 1e-9);
  std::printf("  %s of K+V per run (keys any query sees, read once; KV GB/s = this / median)\n",
              format_bytes(work.kv_bytes).c_str());
  std::printf("  %s\n", auto_line.c_str());
  std::printf("  %-9s %10s %10s %9s %8s %8s %6s %8s %12s %5s\n", "path", "median ms", "min ms",
              "GFLOPS", "% peak", "KV GB/s", "% BW", "threads", "transient", "reps");
}

void print_row(const ProblemOptions& opt, const PathResult& r, const Work& work) {
  const char* name = longattn_path_name(r.path);
  if (r.needs >= 0) {  // the library's message is in the JSON; here the numbers say it all
    // Without --budget the library's budget is the memory the device has available.
    std::string budget = format_bytes(opt.budget);
    longattn_device_info info;
    if (opt.budget < 0 && longattn_device_query(opt.device, &info) == LONGATTN_OK)
      budget = format_bytes(info.memory_free) + " (the memory available)";
    std::printf("  %-9s skipped: over budget: %s would need %s, the budget is %s\n", name, name,
                format_bytes(r.needs).c_str(), budget.c_str());
    return;
  }
  if (!r.error.empty()) {
    std::printf("  %-9s skipped: %s\n", name, r.error.c_str());
    return;
  }
  double med = median(r.ms), gflops = work.flops / (med * 1e-3) * 1e-9;
  double kv_gbps = double(work.kv_bytes) / (med * 1e-3) * 1e-9;
  char peak[16] = "n/a", bw[16] = "n/a";
  if (r.peak.gflops > 0) std::snprintf(peak, sizeof peak, "%.1f%%", 100 * gflops / r.peak.gflops);
  if (r.bw.gbps > 0) std::snprintf(bw, sizeof bw, "%.1f%%", 100 * kv_gbps / r.bw.gbps);
  std::printf("  %-9s %10.3f %10.3f %9.2f %8s %8.2f %6s %8d %12s %5zu\n", name, med,
              *std::min_element(r.ms.begin(), r.ms.end()), gflops, peak, kv_gbps, bw,
              r.plan.threads, format_bytes(r.plan.transient_bytes).c_str(), r.ms.size());
}

void print_json(const ProblemOptions& opt, const PathResult& r, const Work& work,
                const longattn_plan& auto_plan, bool auto_ok) {
  std::string s =
      "{\"command\":\"bench\",\"path\":" + json_string(longattn_path_name(r.path)) + "," +
      shape_json_fields(opt) + ",\"flops\":" + json_number(work.flops) +
      ",\"kv_bytes\":" + std::to_string(work.kv_bytes) +
      ",\"kernels_isa\":" + (work.kernels_isa.empty() ? "null" : json_string(work.kernels_isa)) +
      ",\"auto_path\":" + (auto_ok ? json_string(longattn_path_name(auto_plan.path)) : "null");
  if (!r.error.empty()) {
    s += ",\"ok\":false,\"error\":" + json_string(r.error);
    if (r.needs >= 0) s += ",\"needs_bytes\":" + std::to_string(r.needs);
    std::printf("%s}\n", s.c_str());
    return;
  }
  double med = median(r.ms), gflops = work.flops / (med * 1e-3) * 1e-9;
  double kv_gbps = double(work.kv_bytes) / (med * 1e-3) * 1e-9;
  s += ",\"ok\":true,\"threads\":" + std::to_string(r.plan.threads) +
       ",\"block_q\":" + std::to_string(r.plan.block_q) +
       ",\"block_k\":" + std::to_string(r.plan.block_k) +
       ",\"splits\":" + std::to_string(r.plan.splits) +
       ",\"transient_bytes\":" + std::to_string(r.plan.transient_bytes) +
       ",\"reps\":" + std::to_string(r.ms.size()) + ",\"median_ms\":" + json_number(med) +
       ",\"min_ms\":" + json_number(*std::min_element(r.ms.begin(), r.ms.end())) +
       ",\"gflops\":" + json_number(gflops) + ",\"kv_gbps\":" + json_number(kv_gbps);
  if (r.peak.gflops > 0)
    s += ",\"peak_gflops\":" + json_number(r.peak.gflops) +
         ",\"peak_gflops_median\":" + json_number(r.peak.median_gflops) +
         ",\"peak_trials\":" + std::to_string(r.peak.trials) +
         ",\"peak_isa\":" + json_string(r.peak.isa) +
         ",\"peak_fraction\":" + json_number(gflops / r.peak.gflops);
  if (r.bw.gbps > 0)
    s += ",\"read_gbps\":" + json_number(r.bw.gbps) +
         ",\"read_gbps_median\":" + json_number(r.bw.median_gbps) +
         ",\"read_trials\":" + std::to_string(r.bw.trials) +
         ",\"read_buffer_bytes\":" + std::to_string(r.bw.bytes) +
         ",\"bw_fraction\":" + json_number(kv_gbps / r.bw.gbps);
  s += ",\"reason\":" + json_string(r.plan.reason) + "}";
  std::printf("%s\n", s.c_str());
}

}  // namespace

int run_bench(int argc, char** argv) {
  ProblemOptions opt;
  BenchSettings set;
  std::vector<int32_t> paths = {LONGATTN_PATH_FUSED, LONGATTN_PATH_UNFUSED, LONGATTN_PATH_SPLIT_KV};
  FlagSet flags(
      "bench",
      "Times PATHS on random inputs: warm-up, then repeated runs; prints the median, GFLOPS over\n"
      "the exactly counted visible (query, key) pairs and their share of the CPU's fp32 FMA peak,\n"
      "the rate K and V were read at and its share of the CPU's streaming read bandwidth (both\n"
      "ceilings measured now, same threads), and the transient memory each path takes. Paths the\n"
      "router refuses (unsupported, over --budget) are listed with the reason.");
  add_problem_flags(flags, opt);
  flags.add("--path", "PATHS",
            "paths to time, comma-separated (default all = fused,unfused,split_kv)",
            [&](const std::string& v) { paths = parse_paths("--path", v); });
  flags.add("--repeat", "N", "timed runs per path (default: enough to fill --seconds)",
            [&](const std::string& v) { set.repeat = int(parse_int("--repeat", v, 1, 1000000)); });
  flags.add("--warmup", "N", "untimed runs per path first (default 1)",
            [&](const std::string& v) { set.warmup = int(parse_int("--warmup", v, 0, 1000)); });
  flags.add("--seconds", "S", "time budget of the timed runs, all paths together (default 3)",
            [&](const std::string& v) { set.seconds = parse_float("--seconds", v, 0.0f); });
  if (!flags.parse(argc, argv, 2)) return kExitOk;
  resolve_head_dims(opt);

  require_device(opt);
  Problem problem(opt, /*keep_reference_inputs=*/false);
  const longattn_args args = problem.args();
  Work work;
  work.flops = attention_flops(opt);
  work.kv_bytes = opt.batch * opt.kv_heads * visible_keys(opt) *
                  (opt.head_dim_qk + opt.head_dim_v) *
                  dtype_size(longattn::numeric::kv_dtype_or_same(opt.dtype, opt.kv_dtype));
  if (opt.device == LONGATTN_DEVICE_CPU) work.kernels_isa = cpu_kernels_isa();

  longattn_plan auto_plan;
  longattn_options auto_options = make_options(opt, LONGATTN_PATH_AUTO);
  const longattn_status auto_status = longattn_plan_attention(&args, &auto_options, &auto_plan);
  // Arguments the library finds invalid are wrong for every path: say so once, as an error.
  if (auto_status == LONGATTN_INVALID_ARGUMENT)
    throw RunError(std::string("invalid argument: ") + longattn_last_error());
  const bool auto_ok = auto_status == LONGATTN_OK;
  const std::string auto_line = auto_ok ? std::string("router (auto) picks ") +
                                              longattn_path_name(auto_plan.path) + ": " +
                                              auto_plan.reason
                                        : std::string("router (auto): ") + longattn_last_error();

  std::vector<PathResult> results(paths.size());
  int runnable = 0;
  for (size_t i = 0; i < paths.size(); ++i) {
    PathResult& r = results[i];
    r.path = paths[i];
    longattn_options options = make_options(opt, r.path);
    longattn_status s = longattn_plan_attention(&args, &options, &r.plan);
    if (s == LONGATTN_OK) {
      ++runnable;
      continue;
    }
    r.error = std::string(longattn_status_string(s)) + ": " + longattn_last_error();
    int64_t needs = 0;
    if (s == LONGATTN_OVER_BUDGET &&
        longattn_transient_bytes(&args, r.path, &options, &needs) == LONGATTN_OK)
      r.needs = needs;
  }

  Progress progress(!opt.json);
  // The ceilings are measured once per distinct thread count, before the paths, with as many
  // threads.
  std::map<std::pair<int, bool>, FmaPeak> peaks;  // by (threads, AMX tiles)
  std::map<int, ReadBandwidth> bandwidths;
  // A path that runs AMX tiles is measured against an AMX tile loop, the others against FMAs.
  auto on_amx_tiles = [](const PathResult& r) {
    return std::strcmp(r.plan.kernel, "cpu amx-bf16 tiles") == 0;
  };
  if (opt.device == LONGATTN_DEVICE_CPU)
    for (const PathResult& r : results) {
      if (!r.error.empty()) continue;
      const bool amx = on_amx_tiles(r);
      const std::string on = " on " + std::to_string(r.plan.threads) + " threads";
      if (!peaks.count({r.plan.threads, amx})) {
        progress.show(0, (amx ? "measuring AMX peak" : "measuring FMA peak") + on);
        peaks[{r.plan.threads, amx}] =
            measure_fma_peak(r.plan.threads, amx ? "amx-tiles" : work.kernels_isa);
      }
      if (!bandwidths.count(r.plan.threads)) {
        progress.show(0, "measuring read bandwidth" + on);
        bandwidths[r.plan.threads] =
            measure_read_bandwidth(r.plan.threads, bandwidth_buffer_bytes(work.kv_bytes));
      }
    }

  int done = 0;
  for (PathResult& r : results) {
    if (!r.error.empty()) continue;
    if (peaks.count({r.plan.threads, on_amx_tiles(r)}))
      r.peak = peaks[{r.plan.threads, on_amx_tiles(r)}];
    if (bandwidths.count(r.plan.threads)) r.bw = bandwidths[r.plan.threads];
    time_path(args, opt, set, set.seconds / runnable, &r, progress, double(done) / runnable,
              double(done + 1) / runnable);
    ++done;
  }
  progress.clear();

  if (opt.json) {
    for (const PathResult& r : results) print_json(opt, r, work, auto_plan, auto_ok);
  } else {
    print_header(opt, work, auto_line);
    for (const PathResult& r : results) print_row(opt, r, work);
    // Measured now, best of the trials; the median's distance from it is the machine's noise.
    for (const auto& [key, peak] : peaks)
      std::printf(
          "  %% peak of %.1f GFLOPS: %s (%s), %d threads, best of %d (median %s); "
          "clock not measured\n",
          peak.gflops, peak.what, peak.isa, key.first, peak.trials,
          spread(peak.gflops, peak.median_gflops).c_str());
    for (const auto& [threads, bw] : bandwidths)
      std::printf(
          "  %% BW of %.1f GB/s: streaming read of %s, %d threads, best of %d (median %s)\n",
          bw.gbps, format_bytes(bw.bytes).c_str(), threads, bw.trials,
          spread(bw.gbps, bw.median_gbps).c_str());
  }
  // Every requested path refused is a failure (the reasons are printed above); some ran is not.
  return runnable > 0 ? kExitOk : kExitFailure;
}

}  // namespace longattn::cli
