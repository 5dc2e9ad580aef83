// `longattn prefill`: prefills a prompt (or a conversation, turn by turn) through a model's layer
// stack in planned chunks, with the engine's prefill driver (longattn/engine/), and reports what
// every chunk cost: time, kv_len, chunk size, transient memory. Fused and unfused side by side show
// why the fused path matters: its transient memory stays flat as kv_len grows, unfused's does not.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "cli.hpp"
#include "core/numeric.hpp"
#include "longattn/engine/planner.hpp"
#include "longattn/engine/prefill.hpp"
#include "longattn/engine/report.hpp"
#include "longattn/engine/stack.hpp"
#include "progress.hpp"

extern char** environ;

namespace longattn::cli {
namespace {

// Defaults per device. The GPU default is issue #5's scenario (a 131072-token gemma4-26b-a4b
// prompt in 2048-token chunks, fused and unfused). The CPU default is sized so that the whole
// default run, both paths, takes well under a minute on a 2-core machine.
constexpr int64_t kGpuTokens = 131072, kGpuChunk = 2048;
constexpr int64_t kCpuTokens = 2048, kCpuChunk = 512;
constexpr const char* kDefaultModel = "gemma4-26b-a4b";
// Debian's matplotlib (python3-matplotlib) belongs to the system interpreter; a python3 found
// first on PATH (pyenv, a venv) may not have it.
constexpr const char* kPython = "/usr/bin/python3";
constexpr const char* kPlotScript = "plot_prefill.py";

enum PathChoice : int32_t { kFusedOnly, kUnfusedOnly, kBoth };
enum DeviceChoice : int32_t { kAuto = -1 };

struct PrefillOptions {
  std::string model = kDefaultModel;
  bool list_models = false, show_model = false;
  int64_t tokens = 0, max_chunk = 0;  // 0: the device's default
  std::vector<int64_t> chunks;
  bool exact_chunk = false;
  int32_t paths = -1;  // PathChoice; -1: the device's default
  int32_t dtype = LONGATTN_BFLOAT16;
  int32_t kv_dtype = 0;  // the cache in dtype
  int32_t device = kAuto;
  int64_t budget = -1;  // -1: the device's free memory
  engine::CacheKind cache = engine::CacheKind::kContiguous;
  int64_t block_size = engine::PlannerConfig().block_size;
  int turns = 1;
  int64_t turn_tokens = 0;
  int64_t prefix_budget = -1;
  uint64_t seed = engine::PrefillConfig().seed;
  int threads = 0;
  bool checksum = false, json = false;
  std::string plot;
};

std::vector<int64_t> parse_int_list(const std::string& flag, const std::string& text) {
  std::vector<int64_t> values;
  size_t start = 0;
  for (;;) {
    size_t comma = text.find(',', start);
    std::string item = text.substr(start, comma == std::string::npos ? comma : comma - start);
    values.push_back(parse_int(flag, item, 1, std::numeric_limits<int32_t>::max()));
    if (comma == std::string::npos) return values;
    start = comma + 1;
  }
}

void add_prefill_flags(FlagSet& f, PrefillOptions& o) {
  constexpr int64_t kMaxSize = std::numeric_limits<int32_t>::max();
  f.add("--model", "NAME|FILE.json",
        std::string("layer stack: a preset (--list-models) or a stack file (default ") +
            kDefaultModel + ")",
        [&o](const std::string& v) { o.model = v; });
  f.add("--list-models", "", "list the preset layer stacks and exit",
        [&o](const std::string&) { o.list_models = true; });
  f.add("--show-model", "", "print the --model stack as JSON (the stack file format) and exit",
        [&o](const std::string&) { o.show_model = true; });
  f.add("--tokens", "N",
        "prompt tokens of the first turn (default " + std::to_string(kGpuTokens) + " on cuda, " +
            std::to_string(kCpuTokens) + " on cpu)",
        [&o](const std::string& v) { o.tokens = parse_int("--tokens", v, 1, kMaxSize); });
  f.add("--chunk", "C",
        "largest chunk in tokens (default " + std::to_string(kGpuChunk) + " on cuda, " +
            std::to_string(kCpuChunk) +
            " on cpu); the planner takes C or a power of two below "
            "it, whichever is largest and fits --budget",
        [&o](const std::string& v) { o.max_chunk = parse_int("--chunk", v, 1, kMaxSize); });
  f.add("--chunks", "A,B,..", "chunk sizes the planner may choose from instead of powers of two",
        [&o](const std::string& v) { o.chunks = parse_int_list("--chunks", v); });
  f.add("--exact-chunk", "", "search every chunk size from 1 to --chunk (binary search)",
        [&o](const std::string&) { o.exact_chunk = true; });
  f.add("--path", "fused|unfused|both",
        "attention path of every chunk; both runs fused, then unfused on the same inputs "
        "(default both)",
        [&o](const std::string& v) {
          o.paths = parse_choice(
              "--path", v, {{"fused", kFusedOnly}, {"unfused", kUnfusedOnly}, {"both", kBoth}});
        });
  f.add("--dtype", "f32|f16|bf16", "element type of Q, K, V, O and the cache (default bf16)",
        [&o](const std::string& v) {
          o.dtype = parse_choice(
              "--dtype", v,
              {{"f32", LONGATTN_FLOAT32}, {"f16", LONGATTN_FLOAT16}, {"bf16", LONGATTN_BFLOAT16}});
        });
  f.add("--kv-dtype", "fp8|e4m3|e5m2",
        "store the KV cache in FP8 (fp8 = e4m3; scale 1; the CPU reads it; default: --dtype)",
        [&o](const std::string& v) {
          o.kv_dtype = parse_choice("--kv-dtype", v,
                                    {{"fp8", LONGATTN_FLOAT8_E4M3},
                                     {"e4m3", LONGATTN_FLOAT8_E4M3},
                                     {"e5m2", LONGATTN_FLOAT8_E5M2}});
        });
  f.add("--device", "auto|cpu|cuda", "where it runs (default auto: cuda when a GPU is available)",
        [&o](const std::string& v) {
          o.device = parse_choice(
              "--device", v,
              {{"auto", kAuto}, {"cpu", LONGATTN_DEVICE_CPU}, {"cuda", LONGATTN_DEVICE_CUDA}});
        });
  f.add("--budget", "BYTES|free",
        "memory ceiling for KV cache + attention transient + chunk buffers, e.g. 600M, 20GiB "
        "(default free: the device's free memory)",
        [&o](const std::string& v) {
          o.budget = parse_bytes("--budget", v, "free", "the device's free memory");
        });
  f.add("--cache", "contiguous|paged",
        "KV cache layout: one buffer per layer, or fixed-size blocks (default contiguous)",
        [&o](const std::string& v) {
          o.cache = static_cast<engine::CacheKind>(
              parse_choice("--cache", v,
                           {{"contiguous", int32_t(engine::CacheKind::kContiguous)},
                            {"paged", int32_t(engine::CacheKind::kPaged)}}));
        });
  f.add("--block-size", "N",
        "paged-cache and prefix-cache block in tokens, " + std::to_string(engine::kMinBlockSize) +
            ".." + std::to_string(engine::kMaxBlockSize) + " (default " +
            std::to_string(o.block_size) + ")",
        [&o](const std::string& v) {
          o.block_size = parse_int("--block-size", v, engine::kMinBlockSize, engine::kMaxBlockSize);
        });
  f.add("--turns", "T",
        "conversation turns; each re-submits the whole conversation and the prefix cache serves "
        "what earlier turns computed (default 1)",
        [&o](const std::string& v) { o.turns = int(parse_int("--turns", v, 1, 100000)); });
  f.add("--turn-tokens", "N", "new tokens each turn after the first adds (default: --tokens)",
        [&o](const std::string& v) { o.turn_tokens = parse_int("--turn-tokens", v, 1, kMaxSize); });
  f.add("--prefix-budget", "BYTES",
        "byte budget of the prefix cache's index, LRU eviction beyond it (default unlimited)",
        [&o](const std::string& v) {
          o.prefix_budget = parse_bytes("--prefix-budget", v, "unlimited", "no limit");
        });
  f.add("--seed", "N", "seed of the token ids and Q/K/V (default " + std::to_string(o.seed) + ")",
        [&o](const std::string& v) { o.seed = parse_uint64("--seed", v); });
  f.add("--threads", "N", "CPU worker threads (0: all cores, the default)",
        [&o](const std::string& v) { o.threads = int(parse_int("--threads", v, 0, 4096)); });
  f.add("--checksum", "",
        "hash every output, to compare runs (fused and unfused differ in rounding)",
        [&o](const std::string&) { o.checksum = true; });
  f.add("--json", "", "print the report as one JSON object (what scripts/plot_prefill.py reads)",
        [&o](const std::string&) { o.json = true; });
  f.add("--plot", "FILE.png",
        std::string("also draw latency, transient memory and chunk size against kv_len with ") +
            kPython + " and matplotlib (Debian: python3-matplotlib)",
        [&o](const std::string& v) {
          if (v.empty()) throw UsageError("--plot needs a file name, e.g. --plot prefill.png");
          o.plot = v;
        });
}

bool cuda_available() {
  longattn_device_info info;
  return longattn_device_query(LONGATTN_DEVICE_CUDA, &info) == LONGATTN_OK && info.available;
}

// The CUDA kernels read FP8 caches on compute capability 9.0 only (features "sm_90, ...").
bool cuda_reads_fp8() {
  longattn_device_info info;
  return longattn_device_query(LONGATTN_DEVICE_CUDA, &info) == LONGATTN_OK && info.available &&
         std::strncmp(info.features, "sm_90,", 6) == 0;
}

// Flags whose defaults depend on the device are filled in once the device is known.
engine::PrefillConfig make_config(const PrefillOptions& o, engine::ModelPreset stack) {
  engine::PrefillConfig c;
  c.stack = std::move(stack);
  c.planner.device = static_cast<longattn_device>(o.device);
  const bool gpu = c.planner.device == LONGATTN_DEVICE_CUDA;
  c.tokens = o.tokens > 0 ? o.tokens : gpu ? kGpuTokens : kCpuTokens;
  c.turns = o.turns;
  c.turn_tokens = o.turn_tokens;
  c.planner.candidates = o.chunks;
  if (o.max_chunk > 0) {
    c.planner.max_chunk = o.max_chunk;
    for (int64_t size : o.chunks)
      if (size > o.max_chunk)
        throw UsageError("--chunks " + std::to_string(size) + " is larger than --chunk " +
                         std::to_string(o.max_chunk) + "; the planner never goes above --chunk");
  } else {
    c.planner.max_chunk = !o.chunks.empty() ? *std::max_element(o.chunks.begin(), o.chunks.end())
                          : gpu             ? kGpuChunk
                                            : kCpuChunk;
  }
  c.planner.exact_search = o.exact_chunk;
  const int32_t paths = o.paths >= 0 ? o.paths : kBoth;
  c.paths.clear();
  if (paths != kUnfusedOnly) c.paths.push_back(LONGATTN_PATH_FUSED);
  if (paths != kFusedOnly) c.paths.push_back(LONGATTN_PATH_UNFUSED);
  c.planner.dtype = o.dtype;
  c.planner.kv_dtype = o.kv_dtype;
  c.planner.budget_bytes = o.budget;
  c.planner.cache = o.cache;
  c.planner.block_size = o.block_size;
  c.prefix_cache_bytes = o.prefix_budget;
  c.seed = o.seed;
  c.planner.num_threads = o.threads;
  c.checksum_outputs = o.checksum;
  return c;
}

// "25 x d=256 16q/8kv window 1023, 5 x d=512 16q/2kv k=v": the distinct layer shapes, counted.
std::string stack_summary(const engine::ModelPreset& stack) {
  std::vector<std::pair<engine::LayerSpec, int>> shapes;
  for (const auto& l : stack.layers) {
    auto it =
        std::find_if(shapes.begin(), shapes.end(), [&](const auto& s) { return s.first == l; });
    if (it == shapes.end())
      shapes.push_back({l, 1});
    else
      ++it->second;
  }
  std::string s;
  for (const auto& [l, count] : shapes) {
    if (!s.empty()) s += ", ";
    s += std::to_string(count) + " x d=" + std::to_string(l.head_dim_qk);
    if (l.head_dim_v != l.head_dim_qk) s += "/" + std::to_string(l.head_dim_v);
    s += " " + std::to_string(l.q_heads) + "q/" + std::to_string(l.kv_heads) + "kv";
    s += l.window_left >= 0 ? " window " + std::to_string(l.window_left) : " global";
    if (l.k_eq_v) s += " k=v";
    if (l.sinks) s += " sinks";
  }
  return s;
}

const char* path_name(longattn_path p) { return longattn_path_name(p); }

void print_header(const engine::PrefillConfig& c) {
  std::printf("longattn prefill: %s\n", engine::prefill_disclaimer());
  std::printf("  model   %s: %zu layers (%s)\n", c.stack.name.c_str(), c.stack.layers.size(),
              stack_summary(c.stack).c_str());
  const longattn_device_info info = device_info(c.planner.device);
  std::string budget = engine::format_bytes(c.planner.budget_bytes);
  if (c.planner.budget_bytes < 0)  // read again when each path starts; free memory moves
    budget = "the device's free memory (" + engine::format_bytes(info.memory_free) + " now)";
  std::printf("  device  %s (%s), %s%s%s, threads %s\n", device_flag_name(c.planner.device),
              info.name, dtype_flag_name(c.planner.dtype), c.planner.kv_dtype ? ", cache " : "",
              c.planner.kv_dtype ? dtype_flag_name(c.planner.kv_dtype) : "",
              c.planner.num_threads > 0 ? std::to_string(c.planner.num_threads).c_str() : "all");
  std::string turns;
  if (c.turns > 1)
    turns = ", then " + std::to_string(c.turns - 1) + " more turn(s) of " +
            std::to_string(c.later_turn_tokens()) + " tokens";
  std::printf("  prompt  %" PRId64 " tokens%s, chunks of up to %" PRId64 "%s\n", c.tokens,
              turns.c_str(), c.planner.max_chunk, c.planner.exact_search ? " (any size)" : "");
  std::printf("  memory  %s KV cache (block %" PRId64 "), budget %s\n",
              engine::cache_kind_name(c.planner.cache), c.planner.block_size, budget.c_str());
  std::string paths;
  for (longattn_path p : c.paths) paths += (paths.empty() ? "" : ", ") + std::string(path_name(p));
  std::printf("  paths   %s\n", paths.c_str());
  std::printf(
      "  per chunk: transient = the worst layer's attention workspace, measured and as planned;\n"
      "  memory = KV cache + transient + chunk buffers, what the budget bounds; ms = all layers\n");
  std::fflush(stdout);
}

void print_chunk_columns(longattn_path path) {
  std::printf("\n%s path\n", path_name(path));
  std::printf("  %4s %6s %8s %6s %11s %11s %11s %10s\n", "turn", "chunk", "kv_len", "size",
              "transient", "predicted", "memory", "ms");
}

// `resized`: the chunk size differs from the one before (or it is the first chunk); when the
// planner turned a larger size down, its reason says why, once per change rather than per chunk.
void print_chunk(const engine::ChunkRecord& r, bool resized) {
  std::printf("  %4d %6" PRId64 " %8" PRId64 " %6" PRId64 " %11s %11s %11s %10.1f\n", r.turn,
              r.index, r.kv_len, r.chunk, engine::format_bytes(r.transient_bytes).c_str(),
              engine::format_bytes(r.predicted_transient_bytes).c_str(),
              engine::format_bytes(r.total_bytes).c_str(), r.seconds * 1e3);
  const size_t rejected = r.reason.find("; chunk ");
  if (resized && rejected != std::string::npos)
    std::printf("  %20s^ %s, over the budget\n", "", r.reason.substr(rejected + 2).c_str());
  std::fflush(stdout);
}

// The tokens in the cache when a path stopped: the end of its last chunk, or, when it stopped at
// the first chunk of a later turn, what that turn took from the prefix cache.
int64_t stopped_at(const engine::PathReport& p) {
  if (!p.turns.empty() && (p.chunks.empty() || p.chunks.back().turn != p.turns.back().turn))
    return p.turns.back().reused_tokens;
  return p.chunks.empty() ? 0 : p.chunks.back().kv_len;
}

std::string ratio_text(double a, double b) {
  if (!(b > 0)) return "n/a";
  char buf[32];
  std::snprintf(buf, sizeof buf, a / b >= 100 ? "%.0fx" : "%.2fx", a / b);
  return buf;
}

void print_summary(const engine::PrefillReport& r) {
  std::printf("\nsummary (budget %s; seconds are the attention calls of all %d layers)\n",
              engine::format_bytes(r.budget_bytes).c_str(), r.num_layers);
  std::printf("  %-8s %9s %12s %9s %10s %12s %15s\n", "path", "tokens", "attention s", "wall s",
              "tokens/s", "peak memory", "peak transient");
  for (const auto& p : r.paths)
    std::printf("  %-8s %9" PRId64 " %12.3f %9.3f %10.1f %12s %15s%s\n", path_name(p.path),
                p.prefilled_tokens, p.attention_seconds, p.wall_seconds, p.tokens_per_second,
                engine::format_bytes(p.peak_bytes).c_str(),
                engine::format_bytes(p.peak_transient_bytes).c_str(), p.ok ? "" : "  (stopped)");
  for (const auto& p : r.paths) {
    if (!p.ok && p.chunks.empty())
      std::printf("  %s stopped before its first chunk: %s\n", path_name(p.path), p.error.c_str());
    else if (!p.ok)
      std::printf("  %s stopped at kv_len %" PRId64 ": %s\n", path_name(p.path), stopped_at(p),
                  p.error.c_str());
    if (r.config.checksum_outputs)
      std::printf("  %s output checksum %016" PRIx64 "\n", path_name(p.path), p.output_checksum);
  }
  if (r.config.turns > 1) {
    for (const auto& p : r.paths) {
      std::printf("  %s turns: prefix cache %" PRId64 " hit blocks, %" PRId64
                  " miss blocks, %" PRId64 " evictions\n",
                  path_name(p.path), p.prefix_hits, p.prefix_misses, p.prefix_evictions);
      std::printf("    %4s %13s %6s %8s %10s %10s %16s\n", "turn", "conversation", "new", "reused",
                  "prefilled", "seconds", "ms per prefilled");
      for (const auto& t : p.turns)
        std::printf("    %4d %13" PRId64 " %6" PRId64 " %8" PRId64 " %10" PRId64 " %10.3f %16.3f\n",
                    t.turn, t.conversation_tokens, t.new_tokens, t.reused_tokens,
                    t.prefilled_tokens, t.seconds,
                    t.prefilled_tokens > 0 ? 1e3 * t.seconds / double(t.prefilled_tokens) : 0.0);
    }
  }
  const engine::PathReport* fused = nullptr;
  const engine::PathReport* unfused = nullptr;
  for (const auto& p : r.paths) (p.path == LONGATTN_PATH_FUSED ? fused : unfused) = &p;
  if (!fused || !unfused || fused->prefilled_tokens == 0 || unfused->prefilled_tokens == 0) return;
  const std::string transient =
      fused->peak_transient_bytes > 0
          ? ratio_text(double(unfused->peak_transient_bytes), double(fused->peak_transient_bytes))
          : std::string("n/a (fused needs none)");
  std::printf("  unfused vs fused: peak transient %s vs %s = %s",
              engine::format_bytes(unfused->peak_transient_bytes).c_str(),
              engine::format_bytes(fused->peak_transient_bytes).c_str(), transient.c_str());
  if (fused->ok && unfused->ok) {
    std::printf("; attention time %.3f s vs %.3f s = %s\n", unfused->attention_seconds,
                fused->attention_seconds,
                ratio_text(unfused->attention_seconds, fused->attention_seconds).c_str());
  } else {  // different token counts: only rates compare
    std::printf("; tokens/s %.1f vs %.1f = %s (over the tokens each prefilled)\n",
                unfused->tokens_per_second, fused->tokens_per_second,
                ratio_text(unfused->tokens_per_second, fused->tokens_per_second).c_str());
  }
}

// Runs args[0] (an absolute path) with our environment. Its stdout goes to /dev/null (the plot
// script prints only the file name, which we print ourselves, and --json output must stay one
// object); its stderr, where errors go, stays ours unless `quiet`. Returns the exit status, or -1
// if it could not start.
int run_program(const std::vector<std::string>& args, bool quiet) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  if (quiet) posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  std::fflush(stdout);
  std::fflush(stderr);
  pid_t pid;
  int err = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (err != 0) return -1;
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// The plot script: installed next to the binary (<prefix>/share/longattn), in the source tree
// relative to a build tree's cli/ directory, or in the source tree this binary was built from.
std::string find_plot_script() {
  std::vector<std::string> candidates;
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    std::string dir(exe, size_t(n));
    dir.resize(dir.rfind('/'));
    candidates.push_back(dir + "/../share/longattn/" + kPlotScript);
    candidates.push_back(dir + "/../../scripts/" + kPlotScript);
  }
#ifdef LONGATTN_SOURCE_DIR
  candidates.push_back(std::string(LONGATTN_SOURCE_DIR) + "/scripts/" + kPlotScript);
#endif
  std::string tried;
  for (const auto& c : candidates) {
    char real[PATH_MAX];
    if (access(c.c_str(), R_OK) == 0) return realpath(c.c_str(), real) ? real : c;
    tried += (tried.empty() ? "" : ", ") + c;
  }
  throw RunError(std::string("--plot: cannot find ") + kPlotScript + " (looked at " + tried + ")");
}

// Checked before the prefill, so a missing matplotlib or a bad file name does not cost a long
// run first.
std::string require_plotting(const std::string& out) {
  const size_t slash = out.rfind('/');
  const std::string dir = slash == std::string::npos ? "."
                          : slash == 0               ? "/"
                                                     : out.substr(0, slash);
  if (access(dir.c_str(), W_OK) != 0)
    throw RunError("--plot " + out + ": cannot write into the directory '" + dir + "' (" +
                   std::strerror(errno) + ")");
  if (access(kPython, X_OK) != 0)
    throw RunError(std::string("--plot needs ") + kPython + " with matplotlib, and there is no " +
                   kPython +
                   "; install Debian's python3-matplotlib (apt-get install python3-matplotlib) "
                   "or leave out --plot");
  if (run_program({kPython, "-c", "import matplotlib"}, /*quiet=*/true) != 0)
    throw RunError(std::string("--plot needs matplotlib for ") + kPython +
                   ", which cannot import it; install Debian's python3-matplotlib "
                   "(apt-get install python3-matplotlib) or leave out --plot");
  return find_plot_script();
}

void write_plot(const std::string& script, const std::string& json, const std::string& out) {
  const char* tmp = std::getenv("TMPDIR");
  std::string name = std::string(tmp && *tmp ? tmp : "/tmp") + "/longattn-prefill-XXXXXX.json";
  int fd = mkstemps(name.data(), 5);
  if (fd < 0) throw RunError("--plot: cannot create a temporary file " + name);
  FILE* f = fdopen(fd, "w");
  bool written = f && std::fwrite(json.data(), 1, json.size(), f) == json.size();
  written = f && std::fclose(f) == 0 && written;
  int status = written ? run_program({kPython, script, name, "-o", out}, false) : -1;
  unlink(name.c_str());
  if (!written) throw RunError("--plot: cannot write the report to " + name);
  if (status != 0)
    throw RunError("--plot: " + std::string(kPython) + " " + script + " failed (exit status " +
                   std::to_string(status) + "); its message is above");
}

}  // namespace

int run_prefill(int argc, char** argv) {
  PrefillOptions opt;
  FlagSet flags(
      "prefill",
      "Prefills a prompt through a model's attention layers in chunks, as a runtime does: each\n"
      "chunk attends to the KV cache so far, and a planner picks the largest chunk whose cache +\n"
      "attention transient + chunk buffers fit --budget. Prints every chunk's kv_len, size,\n"
      "transient memory and time, then tokens/s and peak memory per path, fused vs unfused.\n"
      "Attention only: Q/K/V come from a seeded generator; there are no weights and no output.\n"
      "Defaults: cuda when available (131072 tokens, chunks of 2048), else cpu (2048, 512).");
  add_prefill_flags(flags, opt);
  if (!flags.parse(argc, argv, 2)) return kExitOk;

  if (opt.list_models) {
    for (const auto& name : engine::preset_names()) {
      engine::ModelPreset p = engine::find_preset(name);
      std::printf("%-16s %3zu layers: %s\n", name.c_str(), p.layers.size(),
                  stack_summary(p).c_str());
    }
    return kExitOk;
  }
  try {
    engine::ModelPreset stack = engine::load_stack(opt.model);
    if (opt.show_model) {
      std::fputs(engine::stack_to_json(stack).c_str(), stdout);
      return kExitOk;
    }
    // On the GPU an FP8 cache runs on the fused path only, and on Hopper: otherwise auto takes
    // the CPU, which runs every path.
    if (opt.device == kAuto)
      opt.device = !longattn::numeric::is_fp8(opt.kv_dtype)
                       ? (cuda_available() ? LONGATTN_DEVICE_CUDA : LONGATTN_DEVICE_CPU)
                   : opt.paths == kFusedOnly && cuda_reads_fp8() ? LONGATTN_DEVICE_CUDA
                                                                 : LONGATTN_DEVICE_CPU;
    const longattn_device_info info = device_info(static_cast<longattn_device>(opt.device));
    if (!info.available)  // the name says why (no CUDA backend in this build, no GPU)
      throw RunError(std::string("--device ") + device_flag_name(opt.device) +
                     " is not available: " + info.name + "; use --device cpu or auto");
    const engine::PrefillConfig config = make_config(opt, std::move(stack));
    const std::string plot_script = opt.plot.empty() ? "" : require_plotting(opt.plot);
    if (!opt.json) print_header(config);

    // Progress: tokens this path has prefilled over what it is expected to prefill (every new
    // token once; the partial blocks a turn recomputes make it slightly more).
    Progress progress(!opt.json);
    const int64_t expected = config.conversation_tokens();
    size_t path_index = 0;
    longattn_path current = LONGATTN_PATH_AUTO;
    int64_t path_done = 0, previous_chunk = 0;
    auto on_chunk = [&](const engine::ProgressEvent& ev) {
      if (ev.path != current) {  // a path that stopped before its first chunk sends no event
        current = ev.path;
        path_index = size_t(std::find(config.paths.begin(), config.paths.end(), ev.path) -
                            config.paths.begin());
        path_done = previous_chunk = 0;
        if (!opt.json) {
          progress.clear();
          print_chunk_columns(ev.path);
        }
      }
      path_done += ev.chunk->chunk;
      if (!opt.json) {
        progress.clear();
        print_chunk(*ev.chunk, ev.chunk->chunk != previous_chunk);
      }
      previous_chunk = ev.chunk->chunk;
      double within = std::min(1.0, double(path_done) / double(expected));
      progress.show((double(path_index) + within) / double(config.paths.size()),
                    std::string(path_name(ev.path)) + " turn " + std::to_string(ev.turn) + "/" +
                        std::to_string(ev.turns) + " kv_len " + std::to_string(ev.chunk->kv_len));
    };
    progress.show(0, std::string(path_name(config.paths.front())) + " first chunk");
    const engine::PrefillReport report = engine::run_prefill(config, on_chunk);
    progress.clear();

    const std::string json = engine::report_to_json(report);
    if (opt.json)
      std::fputs(json.c_str(), stdout);
    else
      print_summary(report);
    if (!opt.plot.empty()) {
      write_plot(plot_script, json, opt.plot);
      if (!opt.json) std::printf("plot: %s\n", opt.plot.c_str());
    }
    // A path that stopped (over budget) is a result worth reporting, not a failure, as long as
    // some path prefilled the prompt; when none did, the job failed.
    std::string errors;
    for (const auto& p : report.paths) {
      if (p.ok) return kExitOk;
      errors += std::string(errors.empty() ? "" : "; ") + path_name(p.path) + ": " + p.error;
    }
    std::fflush(stdout);  // the report first, then main() prints the reason on stderr
    throw RunError("no path prefilled the whole prompt: " + errors);
  } catch (const Error& e) {  // the engine's errors name the argument or field
    throw RunError(e.what());
  }
}

}  // namespace longattn::cli
