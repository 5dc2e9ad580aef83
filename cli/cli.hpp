// Shared pieces of the `longattn` command-line tool: errors and their exit codes, the flag parser,
// the shape/run options that `check` and `bench` share, and small formatting helpers.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "longattn/longattn.h"

namespace longattn::cli {

// Exit codes: 0 success, 1 a library error or a failed check, 2 a bad command line.
constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

// A bad command line; main() prints it with a pointer to --help and exits with kExitUsage.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The library (or the machine) refused; main() prints it and exits with kExitFailure.
struct RunError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Throws RunError with longattn_last_error() unless status is LONGATTN_OK.
void check_status(longattn_status status, const std::string& what);

// One command's flags. Flags are "--name value", "--name=value" or switches ("--causal").
class FlagSet {
 public:
  explicit FlagSet(std::string command, std::string summary)
      : command_(std::move(command)), summary_(std::move(summary)) {}
  // value_name empty: a switch, `apply` receives "".
  void add(std::string name, std::string value_name, std::string help,
           std::function<void(const std::string&)> apply);
  // Parses argv[first..argc). Returns false if --help was asked for (and printed).
  bool parse(int argc, char** argv, int first) const;
  std::string help() const;

 private:
  struct Flag {
    std::string name, value_name, help;
    std::function<void(const std::string&)> apply;
  };
  std::string command_, summary_;
  std::vector<Flag> flags_;
};

// Value parsers; each throws UsageError naming `flag` and what it accepts.
int64_t parse_int(const std::string& flag, const std::string& text, int64_t min, int64_t max);
uint64_t parse_uint64(const std::string& flag, const std::string& text);
float parse_float(const std::string& flag, const std::string& text, float min);
// Bytes with an optional suffix: K/M/G/T and KiB/MiB/GiB/TiB (powers of 1024), KB/MB/GB/TB
// (powers of 1000); "-1" or `default_word` give -1, which means `default_meaning`.
int64_t parse_bytes(
    const std::string& flag, const std::string& text, const std::string& default_word = "auto",
    const std::string& default_meaning = "the library's default (the memory available)");
// One of `choices` by name; otherwise throws UsageError listing the allowed names.
int32_t parse_choice(const std::string& flag, const std::string& text,
                     std::initializer_list<std::pair<const char*, int32_t>> choices);
// A comma-separated list of path names; "all" means fused,unfused,split_kv.
std::vector<int32_t> parse_paths(const std::string& flag, const std::string& text);

// The problem `check` and `bench` run. Defaults are issue #2's benchmark shape.
struct ProblemOptions {
  int64_t batch = 1, q_heads = 16, kv_heads = 8, q_len = 512, kv_len = 4096;
  int64_t head_dim = 256;                   // --head-dim: both, unless given one by one
  int64_t head_dim_qk = 0, head_dim_v = 0;  // --head-dim-qk/-v; resolve_head_dims fills 0s
  int32_t dtype = LONGATTN_FLOAT32;
  int32_t kv_dtype = 0;  // --kv-dtype: an FP8 cache (0: K and V in dtype)
  int32_t device = LONGATTN_DEVICE_CPU;
  bool causal = true;
  int64_t window_left = -1;
  float softcap = 0.0f;
  bool sinks = false;
  int threads = 0;      // 0: all cores
  int64_t budget = -1;  // bytes; -1: the library's default (the memory available)
  uint64_t seed = 1;
  bool json = false;
};
// Adds --batch ... --json to `flags`, writing into `opt`. Call resolve_head_dims after parsing,
// so --head-dim and --head-dim-qk/-v combine the same way in any order.
void add_problem_flags(FlagSet& flags, ProblemOptions& opt);
void resolve_head_dims(ProblemOptions& opt);
longattn_options make_options(const ProblemOptions& opt, int32_t path);

// The keys [lo, hi] query row i sees under the causal and window masks, bottom-right aligned
// (DESIGN.md section 1); empty when hi < lo. What visible_pairs and bench's key count add up.
struct KeyRange {
  int64_t lo = 0, hi = -1;
};
KeyRange visible_key_range(int64_t i, int64_t q_len, int64_t kv_len, bool causal,
                           int64_t window_left);
// Exactly how many (query, key) pairs are visible under causal and window masks, over all rows
// of one (batch, head); the FLOP count of attention is built on it.
int64_t visible_pairs(int64_t q_len, int64_t kv_len, bool causal, int64_t window_left);
// 2 flops per multiply-add, Dqk of them per visible pair for Q.K^T and Dv for P.V.
double attention_flops(const ProblemOptions& opt);

const char* dtype_flag_name(int32_t dtype);  // "f32", "f16", "bf16"
const char* device_flag_name(int32_t device);
std::string format_bytes(int64_t bytes);        // "1.50 MiB"
std::string json_string(const std::string& s);  // quoted and escaped
std::string json_number(double x);              // null when not finite (JSON has no inf or NaN)
std::string shape_summary(const ProblemOptions& opt);      // "B=1 Hq=16 ... f32 causal"
std::string shape_json_fields(const ProblemOptions& opt);  // "\"batch\":1,...", no braces

int run_info(int argc, char** argv);
int run_check(int argc, char** argv);
int run_bench(int argc, char** argv);
int run_prefill(int argc, char** argv);

}  // namespace longattn::cli
