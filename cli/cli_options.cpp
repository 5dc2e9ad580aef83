// Flag parsing and the shared helpers declared in cli.hpp.
#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "cli.hpp"
#include "core/numeric.hpp"

namespace longattn::cli {

void check_status(longattn_status status, const std::string& what) {
  if (status == LONGATTN_OK) return;
  throw RunError(what + ": " + longattn_status_string(status) + ": " + longattn_last_error());
}

void FlagSet::add(std::string name, std::string value_name, std::string help,
                  std::function<void(const std::string&)> apply) {
  flags_.push_back({std::move(name), std::move(value_name), std::move(help), std::move(apply)});
}

bool FlagSet::parse(int argc, char** argv, int first) const {
  for (int i = first; i < argc; ++i) {
    std::string token = argv[i];
    if (token == "--help" || token == "-h") {
      std::fputs(help().c_str(), stdout);
      return false;
    }
    if (token.rfind("--", 0) != 0)
      throw UsageError("unexpected argument '" + token + "' for 'longattn " + command_ +
                       "' (flags start with --)");
    std::string name = token, value;
    bool inline_value = false;
    if (size_t eq = token.find('='); eq != std::string::npos) {
      name = token.substr(0, eq);
      value = token.substr(eq + 1);
      inline_value = true;
    }
    auto flag =
        std::find_if(flags_.begin(), flags_.end(), [&](const Flag& f) { return f.name == name; });
    if (flag == flags_.end())
      throw UsageError("unknown flag '" + name + "' for 'longattn " + command_ + "'");
    if (flag->value_name.empty()) {
      if (inline_value) throw UsageError(name + " is a switch and takes no value");
    } else if (!inline_value) {
      if (i + 1 >= argc)
        throw UsageError(name + " needs a value: " + flag->value_name + " (" + flag->help + ")");
      value = argv[++i];
    }
    flag->apply(value);
  }
  return true;
}

std::string FlagSet::help() const {
  std::string s = "usage: longattn " + command_ + " [flags]\n\n" + summary_ + "\n\nflags:\n";
  auto line = [&s](std::string left, const std::string& help) {
    constexpr size_t kHelpColumn = 24, kWidth = 100;
    const std::string indent(kHelpColumn, ' ');
    left = "  " + left;
    if (left.size() < kHelpColumn)
      left.resize(kHelpColumn, ' ');
    else
      left += "\n" + indent;
    // Wraps the help at word boundaries so that no line passes kWidth columns.
    std::string text = left;
    size_t column = kHelpColumn, start = 0;
    while (start < help.size()) {
      size_t end = help.find(' ', start);
      if (end == std::string::npos) end = help.size();
      const std::string word = help.substr(start, end - start);
      if (column > kHelpColumn && column + 1 + word.size() > kWidth) {
        text += "\n" + indent;
        column = kHelpColumn;
      } else if (column > kHelpColumn) {
        text += ' ';
        ++column;
      }
      text += word;
      column += word.size();
      start = end + 1;
    }
    s += text + "\n";
  };
  for (const Flag& f : flags_)
    line(f.name + (f.value_name.empty() ? "" : " " + f.value_name), f.help);
  line("--help, -h", "this text");
  return s;
}

int64_t parse_int(const std::string& flag, const std::string& text, int64_t min, int64_t max) {
  std::string allowed = "an integer from " + std::to_string(min) + " to " + std::to_string(max);
  if (max == std::numeric_limits<int64_t>::max()) allowed = "an integer >= " + std::to_string(min);
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || std::isspace(static_cast<unsigned char>(text[0])))
    throw UsageError(flag + " = '" + text + "': not an integer; expected " + allowed);
  if (errno == ERANGE || v < min || v > max)
    throw UsageError(flag + " = " + text + ": out of range; expected " + allowed);
  return v;
}

uint64_t parse_uint64(const std::string& flag, const std::string& text) {
  errno = 0;
  char* end = nullptr;
  unsigned long long v = std::strtoull(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || !std::isdigit(static_cast<unsigned char>(text[0])) ||
      errno == ERANGE)
    throw UsageError(flag + " = '" + text + "': expected an integer from 0 to 2^64-1");
  return v;
}

float parse_float(const std::string& flag, const std::string& text, float min) {
  char* end = nullptr;
  errno = 0;
  float v = std::strtof(text.c_str(), &end);
  char allowed_buf[64];
  std::snprintf(allowed_buf, sizeof allowed_buf, "a finite number >= %g", double(min));
  const std::string allowed = allowed_buf;
  if (text.empty() || *end != '\0' || std::isspace(static_cast<unsigned char>(text[0])))
    throw UsageError(flag + " = '" + text + "': not a number; expected " + allowed);
  if (errno == ERANGE || !std::isfinite(v) || v < min)
    throw UsageError(flag + " = " + text + ": out of range; expected " + allowed);
  return v;
}

int64_t parse_bytes(const std::string& flag, const std::string& text,
                    const std::string& default_word, const std::string& default_meaning) {
  const std::string allowed =
      "a byte count such as 4096, 512K, 1.5GiB (K/M/G/T and KiB/MiB/GiB/TiB are powers of 1024, "
      "KB/MB/GB/TB powers of 1000), or -1/" +
      default_word + " for " + default_meaning;
  if (text == "-1" || text == default_word) return -1;
  char* end = nullptr;
  errno = 0;
  double number = std::strtod(text.c_str(), &end);
  if (text.empty() || end == text.c_str() || !std::isdigit(static_cast<unsigned char>(text[0])))
    throw UsageError(flag + " = '" + text + "': expected " + allowed);
  std::string suffix = end;
  for (char& c : suffix) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  static const struct {
    const char* name;
    double factor;
  } kSuffixes[] = {{"", 1},         {"B", 1},        {"K", 0x1p10},   {"KIB", 0x1p10},
                   {"KB", 1e3},     {"M", 0x1p20},   {"MIB", 0x1p20}, {"MB", 1e6},
                   {"G", 0x1p30},   {"GIB", 0x1p30}, {"GB", 1e9},     {"T", 0x1p40},
                   {"TIB", 0x1p40}, {"TB", 1e12}};
  for (const auto& s : kSuffixes) {
    if (suffix != s.name) continue;
    double bytes = std::floor(number * s.factor);
    if (errno == ERANGE || !(bytes < 0x1p63))
      throw UsageError(flag + " = " + text + ": too large for a 64-bit byte count");
    return static_cast<int64_t>(bytes);
  }
  throw UsageError(flag + " = '" + text + "': unknown suffix '" + std::string(end) +
                   "'; expected " + allowed);
}

std::vector<int32_t> parse_paths(const std::string& flag, const std::string& text) {
  static const struct {
    const char* name;
    int32_t path;
  } kPaths[] = {{"auto", LONGATTN_PATH_AUTO},
                {"reference", LONGATTN_PATH_REFERENCE},
                {"unfused", LONGATTN_PATH_UNFUSED},
                {"fused", LONGATTN_PATH_FUSED},
                {"split_kv", LONGATTN_PATH_SPLIT_KV}};
  if (text == "all") return {LONGATTN_PATH_FUSED, LONGATTN_PATH_UNFUSED, LONGATTN_PATH_SPLIT_KV};
  std::vector<int32_t> paths;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    std::string name = text.substr(start, comma == std::string::npos ? comma : comma - start);
    auto it = std::find_if(std::begin(kPaths), std::end(kPaths),
                           [&](const auto& p) { return name == p.name; });
    if (it == std::end(kPaths))
      throw UsageError(flag + " = '" + text + "': unknown path '" + name +
                       "'; allowed: auto, reference, unfused, fused, split_kv (comma-separated), "
                       "or all");
    if (std::find(paths.begin(), paths.end(), it->path) == paths.end()) paths.push_back(it->path);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return paths;
}

int32_t parse_choice(const std::string& flag, const std::string& text,
                     std::initializer_list<std::pair<const char*, int32_t>> choices) {
  std::string names;
  for (const auto& c : choices) {
    if (text == c.first) return c.second;
    names += names.empty() ? c.first : std::string(", ") + c.first;
  }
  throw UsageError(flag + " = '" + text + "': allowed values are " + names);
}

void add_problem_flags(FlagSet& f, ProblemOptions& o) {
  constexpr int64_t kMaxSize = std::numeric_limits<int32_t>::max();
  auto size_flag = [&](const char* name, const char* help, int64_t* dst, int64_t min) {
    f.add(name, "N", help, [=](const std::string& v) { *dst = parse_int(name, v, min, kMaxSize); });
  };
  size_flag("--batch", "batch size (default 1)", &o.batch, 1);
  size_flag("--q-heads", "query heads Hq (default 16)", &o.q_heads, 1);
  size_flag("--kv-heads", "key/value heads Hkv, dividing Hq (default 8)", &o.kv_heads, 1);
  size_flag("--q-len", "query tokens Lq (default 512)", &o.q_len, 1);
  size_flag("--kv-len", "key/value tokens Lk (default 4096)", &o.kv_len, 1);
  size_flag("--head-dim", "head dim of Q/K and of V (default 256)", &o.head_dim, 1);
  size_flag("--head-dim-qk", "head dim of Q and K (overrides --head-dim)", &o.head_dim_qk, 1);
  size_flag("--head-dim-v", "head dim of V and O (overrides --head-dim)", &o.head_dim_v, 1);
  f.add("--dtype", "f32|f16|bf16", "element type of Q, K, V, O (default f32)",
        [&o](const std::string& v) {
          o.dtype = parse_choice(
              "--dtype", v,
              {{"f32", LONGATTN_FLOAT32}, {"f16", LONGATTN_FLOAT16}, {"bf16", LONGATTN_BFLOAT16}});
        });
  f.add("--kv-dtype", "e4m3|e5m2", "an FP8 K/V cache (scales 1; default: K and V in --dtype)",
        [&o](const std::string& v) {
          o.kv_dtype = parse_choice(
              "--kv-dtype", v, {{"e4m3", LONGATTN_FLOAT8_E4M3}, {"e5m2", LONGATTN_FLOAT8_E5M2}});
        });
  f.add("--device", "cpu|cuda", "where the tensors live and the path runs (default cpu)",
        [&o](const std::string& v) {
          o.device = parse_choice("--device", v,
                                  {{"cpu", LONGATTN_DEVICE_CPU}, {"cuda", LONGATTN_DEVICE_CUDA}});
        });
  f.add("--causal", "", "bottom-right aligned causal mask (the default)",
        [&o](const std::string&) { o.causal = true; });
  f.add("--no-causal", "", "no causal mask", [&o](const std::string&) { o.causal = false; });
  f.add("--window", "N", "sliding window: each query sees itself and N keys before it (-1: none)",
        [&o](const std::string& v) { o.window_left = parse_int("--window", v, -1, kMaxSize); });
  f.add("--softcap", "X", "logit softcap X*tanh(s/X) (0: off)",
        [&o](const std::string& v) { o.softcap = parse_float("--softcap", v, 0.0f); });
  f.add("--sinks", "", "random per-head attention-sink logits",
        [&o](const std::string&) { o.sinks = true; });
  f.add("--threads", "N", "CPU worker threads (0: all cores, the default)",
        [&o](const std::string& v) { o.threads = int(parse_int("--threads", v, 0, 4096)); });
  f.add("--budget", "BYTES",
        "transient memory budget, e.g. 64M, 2GiB (default: the memory available)",
        [&o](const std::string& v) { o.budget = parse_bytes("--budget", v); });
  f.add("--seed", "N", "seed of the random inputs (default 1)",
        [&o](const std::string& v) { o.seed = parse_uint64("--seed", v); });
  f.add("--json", "", "machine-readable output, one JSON object per line",
        [&o](const std::string&) { o.json = true; });
}

void resolve_head_dims(ProblemOptions& o) {
  if (o.head_dim_qk == 0) o.head_dim_qk = o.head_dim;
  if (o.head_dim_v == 0) o.head_dim_v = o.head_dim;
}

longattn_options make_options(const ProblemOptions& opt, int32_t path) {
  longattn_options o;
  longattn_options_init(&o);
  o.path = path;
  o.memory_budget = opt.budget;
  o.num_threads = opt.threads;
  return o;
}

KeyRange visible_key_range(int64_t i, int64_t q_len, int64_t kv_len, bool causal,
                           int64_t window_left) {
  const int64_t off = kv_len - q_len;  // bottom-right alignment
  KeyRange r;
  r.hi = causal ? std::min(kv_len - 1, i + off) : kv_len - 1;
  r.lo = window_left >= 0 ? std::max<int64_t>(0, i + off - window_left) : 0;
  return r;
}

int64_t visible_pairs(int64_t q_len, int64_t kv_len, bool causal, int64_t window_left) {
  int64_t pairs = 0;
  for (int64_t i = 0; i < q_len; ++i) {
    const KeyRange r = visible_key_range(i, q_len, kv_len, causal, window_left);
    pairs += std::max<int64_t>(0, r.hi - r.lo + 1);
  }
  return pairs;
}

double attention_flops(const ProblemOptions& o) {
  double pairs = double(visible_pairs(o.q_len, o.kv_len, o.causal, o.window_left));
  return 2.0 * double(o.batch) * double(o.q_heads) * pairs * double(o.head_dim_qk + o.head_dim_v);
}

const char* dtype_flag_name(int32_t dtype) { return numeric::dtype_short_name(dtype); }

const char* device_flag_name(int32_t device) {
  return device == LONGATTN_DEVICE_CUDA ? "cuda" : "cpu";
}

std::string format_bytes(int64_t bytes) {
  if (bytes < 0) return "auto";
  static const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = double(bytes);
  int u = 0;
  while (v >= 1024 && u < 6) v /= 1024, ++u;
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.2f %s", v, kUnits[u]);
  return buf;
}

std::string json_number(double x) {
  if (!std::isfinite(x)) return "null";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.10g", x);
  return buf;
}

std::string json_string(const std::string& s) {
  std::string r = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      r += '\\';
      r += char(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      r += buf;
    } else {
      r += char(c);
    }
  }
  return r + "\"";
}

std::string shape_summary(const ProblemOptions& o) {
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "B=%" PRId64 " Hq=%" PRId64 " Hkv=%" PRId64 " Lq=%" PRId64 " Lk=%" PRId64
                " Dqk=%" PRId64 " Dv=%" PRId64 " %s%s",
                o.batch, o.q_heads, o.kv_heads, o.q_len, o.kv_len, o.head_dim_qk, o.head_dim_v,
                dtype_flag_name(o.dtype), o.causal ? " causal" : "");
  std::string s = buf;
  if (o.window_left >= 0) s += " window=" + std::to_string(o.window_left);
  if (o.softcap > 0) {
    std::snprintf(buf, sizeof buf, " softcap=%g", double(o.softcap));
    s += buf;
  }
  if (o.sinks) s += " sinks";
  if (o.kv_dtype) s += std::string(" kv=") + dtype_flag_name(o.kv_dtype);
  return s;
}

std::string shape_json_fields(const ProblemOptions& o) {
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "\"device\":\"%s\",\"dtype\":\"%s\",\"batch\":%" PRId64 ",\"q_heads\":%" PRId64
                ",\"kv_heads\":%" PRId64 ",\"q_len\":%" PRId64 ",\"kv_len\":%" PRId64
                ",\"head_dim_qk\":%" PRId64 ",\"head_dim_v\":%" PRId64
                ",\"causal\":%s,\"window_left\":%" PRId64
                ",\"softcap\":%g,\"sinks\":%s,\"kv_dtype\":\"%s\""
                ",\"seed\":%" PRIu64,
                device_flag_name(o.device), dtype_flag_name(o.dtype), o.batch, o.q_heads,
                o.kv_heads, o.q_len, o.kv_len, o.head_dim_qk, o.head_dim_v,
                o.causal ? "true" : "false", o.window_left, double(o.softcap),
                o.sinks ? "true" : "false",
                dtype_flag_name(numeric::kv_dtype_or_same(o.dtype, o.kv_dtype)), o.seed);
  return buf;
}

}  // namespace longattn::cli
