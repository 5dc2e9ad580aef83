// Layer stacks: the built-in model presets, the JSON stack format and its validation; the sizes
// derived from a layer (elements, KV bytes per token) and their formatting.
#include "longattn/engine/stack.hpp"

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/numeric.hpp"
#include "engine/common.hpp"
#include "engine/json.hpp"

namespace longattn::engine {
namespace {

constexpr int64_t kMaxHeadDim = 512;  // the library's largest head dim (DESIGN.md)
constexpr int64_t kMaxLayers = 4096;  // far above any real model; stops a typo from eating memory

LayerSpec make_layer(int64_t head_dim, int64_t q_heads, int64_t kv_heads, int64_t window_left,
                     bool k_eq_v = false, bool sinks = false) {
  LayerSpec l;
  l.head_dim_qk = l.head_dim_v = head_dim;
  l.q_heads = q_heads;
  l.kv_heads = kv_heads;
  l.window_left = window_left;
  l.k_eq_v = k_eq_v;
  l.sinks = sinks;
  return l;
}

// `blocks` times: `locals` sliding layers then one global layer (Gemma's 5:1 interleave; the
// global layer is the last of each group of six, layer_types index 5, 11, ...).
std::vector<LayerSpec> interleave(const LayerSpec& local, int locals, const LayerSpec& global,
                                  int blocks) {
  std::vector<LayerSpec> out;
  for (int b = 0; b < blocks; ++b) {
    for (int i = 0; i < locals; ++i) out.push_back(local);
    out.push_back(global);
  }
  return out;
}

// Where the numbers come from. HF = the model's config.json on Hugging Face; the values were read
// from copies of those files quoted verbatim in public repositories (config parsers' tests) and
// from the model cards, found with the project's code/pages search. A model's sliding_window of
// N tokens includes the query itself, hence window_left = N - 1 (see DESIGN.md section 1).
std::vector<ModelPreset> build_presets() {
  std::vector<ModelPreset> p;

  // google/gemma-4-26B-A4B, HF text_config: num_hidden_layers 30, num_attention_heads 16,
  // num_key_value_heads 8, head_dim 256, num_global_key_value_heads 2, global_head_dim 512,
  // attention_k_eq_v true, sliding_window 1024, layer_types (5 x sliding, 1 x full) x 5.
  p.push_back({"gemma4-26b-a4b",
               interleave(make_layer(256, 16, 8, 1023), 5, make_layer(512, 16, 2, -1, true), 5),
               "Gemma 4 26B-A4B (MoE; attention only): 30 layers, 25 sliding window 1024 at "
               "d=256 16q/8kv, 5 global at d=512 16q/2kv with K==V; every 6th layer global. "
               "Source: google/gemma-4-26B-A4B config.json text_config (num_key_value_heads 8, "
               "num_global_key_value_heads 2, global_head_dim 512, attention_k_eq_v true, "
               "sliding_window 1024). Not modelled: scaling and q/k norms (the kernel's default "
               "1/sqrt(d) scale is used)."});

  // google/gemma-4-31B, HF text_config: num_hidden_layers 60, num_attention_heads 32,
  // num_key_value_heads 16, head_dim 256, num_global_key_value_heads 4, global_head_dim 512,
  // attention_k_eq_v true, sliding_window 1024, layer_types (5 x sliding, 1 x full) x 10.
  p.push_back({"gemma4-31b",
               interleave(make_layer(256, 32, 16, 1023), 5, make_layer(512, 32, 4, -1, true), 10),
               "Gemma 4 31B (dense): 60 layers, 50 sliding window 1024 at d=256 32q/16kv, 10 "
               "global at d=512 32q/4kv with K==V. Source: google/gemma-4-31B config.json "
               "text_config. Not modelled: scaling and q/k norms."});

  // google/gemma-3-12b-it, HF text_config: num_hidden_layers 48, num_attention_heads 16,
  // num_key_value_heads 8, sliding_window 1024, hidden_size 3840; head_dim 256 and
  // sliding_window_pattern 6 are Gemma3TextConfig defaults the file does not override.
  p.push_back({"gemma3-12b",
               interleave(make_layer(256, 16, 8, 1023), 5, make_layer(256, 16, 8, -1), 8),
               "Gemma 3 12B: 48 layers, 40 sliding window 1024 and 8 global, all d=256 16q/8kv. "
               "Source: google/gemma-3-12b-it config.json text_config; head_dim 256 and the 5:1 "
               "pattern are the transformers Gemma3TextConfig defaults (not in the file itself). "
               "query_pre_attn_scalar 256 equals the default 1/sqrt(256) scale."});

  // Qwen/Qwen3.5-27B model card: 64 layers = 16 x (3 x Gated DeltaNet, 1 x Gated Attention);
  // gated attention 24 Q heads, 4 KV heads, head_dim 256 (full_attention_interval 4).
  p.push_back({"qwen3.5-27b", std::vector<LayerSpec>(16, make_layer(256, 24, 4, -1)),
               "Qwen3.5-27B: only its 16 full-attention layers (of 64; the other 48 are Gated "
               "DeltaNet linear attention with no KV cache), each 24q/4kv at d=256. Source: the "
               "Qwen3.5-27B model card as restated on public quantization cards; not checked "
               "against config.json itself. The attention output gate is not modelled."});

  // Qwen/Qwen3-Next-80B-A3B model card: 48 layers, hybrid layout 12 x (3 x (Gated DeltaNet ->
  // MoE), 1 x (Gated Attention -> MoE)); gated attention 16 Q heads, 2 KV heads, head dim 256.
  p.push_back({"qwen3-next-80b", std::vector<LayerSpec>(12, make_layer(256, 16, 2, -1)),
               "Qwen3-Next-80B-A3B: only its 12 full-attention layers (of 48; the rest are Gated "
               "DeltaNet), each 16q/2kv at d=256. Source: the Qwen3-Next-80B-A3B model card "
               "(hybrid layout 12 x (3 DeltaNet + 1 attention)). The output gate is not "
               "modelled."});

  // openai/gpt-oss-20b, HF config: num_hidden_layers 24, num_attention_heads 64,
  // num_key_value_heads 8, head_dim 64, sliding_window 128, layer_types alternating
  // sliding_attention / full_attention starting with sliding; every attention layer has learned
  // per-head sinks.
  {
    std::vector<LayerSpec> layers;
    for (int i = 0; i < 12; ++i) {
      layers.push_back(make_layer(64, 64, 8, 127, false, true));
      layers.push_back(make_layer(64, 64, 8, -1, false, true));
    }
    p.push_back({"gpt-oss-20b", layers,
                 "gpt-oss-20b: 24 layers alternating sliding window 128 and global, all d=64 "
                 "64q/8kv with attention sinks. Source: openai/gpt-oss-20b config.json "
                 "(layer_types, sliding_window 128) and the model card (learned sinks per head). "
                 "Sink values come from the seeded generator."});
  }
  return p;
}

const std::vector<ModelPreset>& presets() {
  static const std::vector<ModelPreset> kPresets = build_presets();
  return kPresets;
}

// The first rule a layer breaks: {field, message}, or an empty field when it is valid.
std::pair<std::string, std::string> check_layer(const LayerSpec& l) {
  auto num = [](int64_t v) { return std::to_string(v); };
  if (l.head_dim_qk < 1 || l.head_dim_qk > kMaxHeadDim)
    return {"head_dim_qk", num(l.head_dim_qk) + ": must be between 1 and 512"};
  if (l.head_dim_v < 1 || l.head_dim_v > kMaxHeadDim)
    return {"head_dim_v", num(l.head_dim_v) + ": must be between 1 and 512"};
  if (l.q_heads < 1) return {"q_heads", num(l.q_heads) + ": must be >= 1"};
  if (l.kv_heads < 1) return {"kv_heads", num(l.kv_heads) + ": must be >= 1"};
  if (l.q_heads % l.kv_heads != 0)
    return {"kv_heads",
            num(l.kv_heads) + ": q_heads (" + num(l.q_heads) + ") must be a multiple of kv_heads"};
  if (l.window_left < -1)
    return {"window_left", num(l.window_left) + ": must be -1 (global) or >= 0"};
  if (l.k_eq_v && l.head_dim_v != l.head_dim_qk)
    return {"head_dim_v", num(l.head_dim_v) + ": a k_eq_v layer needs head_dim_v == head_dim_qk (" +
                              num(l.head_dim_qk) + ")"};
  return {"", ""};
}

// ---- JSON stack format ----

struct FieldReader {
  const json::Value& obj;
  const std::string& origin;
  std::string path;  // e.g. layers[3]

  std::string where(const json::Value& v) const {
    return origin + ":" + std::to_string(v.line) + ":" + std::to_string(v.column) + ": ";
  }
  [[noreturn]] void fail_at(const json::Value& v, const std::string& what) const {
    invalid(where(v) + what);
  }

  const json::Value* get(const char* key) const { return obj.find(key); }

  int64_t integer(const json::Value& v, const std::string& name) const {
    if (v.kind != json::Value::Kind::kNumber)
      fail_at(v, path + "." + name + ": must be an integer, got " + json::kind_name(v.kind));
    if (v.text.find_first_of(".eE") != std::string::npos)
      fail_at(v, path + "." + name + " = " + v.text + ": must be an integer");
    errno = 0;
    char* end = nullptr;
    long long x = std::strtoll(v.text.c_str(), &end, 10);
    if (errno == ERANGE || *end != '\0')
      fail_at(v, path + "." + name + " = " + v.text + ": out of range");
    return x;
  }
  bool boolean(const json::Value& v, const std::string& name) const {
    if (v.kind != json::Value::Kind::kBool)
      fail_at(v, path + "." + name + ": must be true or false, got " + json::kind_name(v.kind));
    return v.boolean;
  }
  std::string string(const json::Value& v, const std::string& name) const {
    if (v.kind != json::Value::Kind::kString)
      fail_at(v, path + name + ": must be a string, got " + json::kind_name(v.kind));
    return v.text;
  }
  void only(std::initializer_list<const char*> allowed) const {
    for (const auto& m : obj.members) {
      bool ok = false;
      for (const char* a : allowed) ok = ok || m.first == a;
      if (ok) continue;
      std::string list;
      for (const char* a : allowed) list += std::string(list.empty() ? "" : ", ") + a;
      fail_at(m.second, (path.empty() ? "" : path + ": ") + "unknown field \"" + m.first +
                            "\" (allowed: " + list + ")");
    }
  }
};

}  // namespace

int64_t dtype_size(int32_t dtype) {
  if (const int64_t bytes = numeric::dtype_bytes(dtype)) return bytes;
  invalid("dtype = " + std::to_string(dtype) +
          ": must be float32, float16 or bfloat16 (a KV cache's kv_dtype may also be float8_e4m3 "
          "or float8_e5m2)");
}

int64_t kv_bytes_per_token(const LayerSpec& l, int32_t dtype) {
  int64_t elems = l.kv_heads * (l.k_eq_v ? l.head_dim_qk : l.head_dim_qk + l.head_dim_v);
  return elems * dtype_size(dtype);
}

int64_t kv_bytes_per_token(const ModelPreset& stack, int32_t dtype) {
  int64_t bytes = 0;
  for (const auto& l : stack.layers) bytes += kv_bytes_per_token(l, dtype);
  return bytes;
}

std::string format_bytes(int64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while ((v >= 1024 || v <= -1024) && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  if (u == 0)
    std::snprintf(buf, sizeof buf, "%" PRId64 " B", bytes);
  else
    std::snprintf(buf, sizeof buf,
                  v < 10    ? "%.2f %s"
                  : v < 100 ? "%.1f %s"
                            : "%.0f %s",
                  v, units[u]);
  return buf;
}

std::vector<std::string> preset_names() {
  std::vector<std::string> names;
  for (const auto& p : presets()) names.push_back(p.name);
  return names;
}

ModelPreset find_preset(const std::string& name) {
  for (const auto& p : presets())
    if (p.name == name) return p;
  std::string known;
  for (const auto& n : preset_names()) known += (known.empty() ? "" : ", ") + n;
  invalid("unknown preset '" + name + "'; known presets: " + known +
          " (or give the path of a .json stack file)");
}

void validate_stack(const ModelPreset& stack) {
  if (stack.layers.empty()) invalid("stack '" + stack.name + "': layers must not be empty");
  if (static_cast<int64_t>(stack.layers.size()) > kMaxLayers)
    invalid("stack '" + stack.name + "': " + std::to_string(stack.layers.size()) +
            " layers; at most " + std::to_string(kMaxLayers));
  for (size_t i = 0; i < stack.layers.size(); ++i) {
    auto [field, message] = check_layer(stack.layers[i]);
    if (!field.empty())
      invalid("stack '" + stack.name + "': layers[" + std::to_string(i) + "]." + field + " = " +
              message);
  }
}

ModelPreset parse_stack_json(const std::string& text, const std::string& origin) {
  json::Value root = json::parse(text, origin);
  FieldReader top{root, origin, ""};
  if (root.kind != json::Value::Kind::kObject)
    top.fail_at(root,
                std::string("a stack must be a JSON object, got ") + json::kind_name(root.kind));
  top.only({"name", "notes", "layers"});

  ModelPreset stack;
  stack.name = origin;
  if (const auto* v = top.get("name")) stack.name = top.string(*v, "name");
  if (const auto* v = top.get("notes")) stack.notes = top.string(*v, "notes");
  const json::Value* layers = top.get("layers");
  if (!layers) top.fail_at(root, "missing field \"layers\" (an array of layer objects)");
  if (layers->kind != json::Value::Kind::kArray)
    top.fail_at(*layers,
                std::string("layers: must be an array, got ") + json::kind_name(layers->kind));
  if (layers->items.empty()) top.fail_at(*layers, "layers: must not be empty");

  for (size_t i = 0; i < layers->items.size(); ++i) {
    const json::Value& item = layers->items[i];
    FieldReader r{item, origin, "layers[" + std::to_string(i) + "]"};
    if (item.kind != json::Value::Kind::kObject)
      r.fail_at(item, r.path + ": must be an object, got " + json::kind_name(item.kind));
    r.only({"head_dim", "head_dim_qk", "head_dim_v", "q_heads", "kv_heads", "window_left", "k_eq_v",
            "sinks", "repeat"});
    auto required = [&](const char* key) -> const json::Value& {
      const json::Value* v = r.get(key);
      if (!v) r.fail_at(item, r.path + ": missing field \"" + key + "\"");
      return *v;
    };

    LayerSpec l;
    const json::Value* hd = r.get("head_dim");
    const json::Value* hd_qk = r.get("head_dim_qk");
    if (hd && hd_qk) r.fail_at(*hd_qk, r.path + ": give head_dim or head_dim_qk, not both");
    if (!hd && !hd_qk) r.fail_at(item, r.path + ": missing field \"head_dim\" (or head_dim_qk)");
    const json::Value& qk = hd ? *hd : *hd_qk;
    l.head_dim_qk = r.integer(qk, hd ? "head_dim" : "head_dim_qk");
    const json::Value* hd_v = r.get("head_dim_v");
    l.head_dim_v = hd_v ? r.integer(*hd_v, "head_dim_v") : l.head_dim_qk;
    l.q_heads = r.integer(required("q_heads"), "q_heads");
    l.kv_heads = r.integer(required("kv_heads"), "kv_heads");
    const json::Value* window = r.get("window_left");
    if (window) l.window_left = r.integer(*window, "window_left");
    if (const auto* v = r.get("k_eq_v")) l.k_eq_v = r.boolean(*v, "k_eq_v");
    if (const auto* v = r.get("sinks")) l.sinks = r.boolean(*v, "sinks");
    int64_t repeat = 1;
    const json::Value* rep = r.get("repeat");
    if (rep) {
      repeat = r.integer(*rep, "repeat");
      if (repeat < 1 || repeat > kMaxLayers)
        r.fail_at(*rep, r.path + ".repeat = " + std::to_string(repeat) +
                            ": must be between 1 and " + std::to_string(kMaxLayers));
    }

    auto [field, message] = check_layer(l);
    if (!field.empty()) {
      // Point at the value that breaks the rule (head_dim stands for head_dim_qk/v when used).
      const json::Value* at = nullptr;
      if (field == "head_dim_qk") at = &qk;
      if (field == "head_dim_v") at = hd_v ? hd_v : &qk;
      if (field == "q_heads") at = r.get("q_heads");
      if (field == "kv_heads") at = r.get("kv_heads");
      if (field == "window_left") at = window;
      std::string name = (hd && (field == "head_dim_qk" || (field == "head_dim_v" && !hd_v)))
                             ? std::string("head_dim")
                             : field;
      r.fail_at(at ? *at : item, r.path + "." + name + " = " + message);
    }
    if (static_cast<int64_t>(stack.layers.size()) + repeat > kMaxLayers)
      r.fail_at(item, "more than " + std::to_string(kMaxLayers) + " layers in total");
    for (int64_t k = 0; k < repeat; ++k) stack.layers.push_back(l);
  }
  validate_stack(stack);
  return stack;
}

ModelPreset load_stack(const std::string& name_or_path) {
  for (const auto& p : presets())
    if (p.name == name_or_path) return p;
  bool looks_like_path =
      name_or_path.find('/') != std::string::npos ||
      (name_or_path.size() > 5 && name_or_path.compare(name_or_path.size() - 5, 5, ".json") == 0);
  if (!looks_like_path) find_preset(name_or_path);  // throws, listing the known presets
  std::ifstream in(name_or_path, std::ios::binary);
  if (!in)
    invalid("stack file '" + name_or_path + "': cannot be read (" + std::strerror(errno) + ")");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_stack_json(ss.str(), name_or_path);
}

std::string stack_to_json(const ModelPreset& stack) {
  std::string out = "{\n  \"name\": " + json::escape(stack.name) + ",\n";
  if (!stack.notes.empty()) out += "  \"notes\": " + json::escape(stack.notes) + ",\n";
  out += "  \"layers\": [";
  for (size_t i = 0; i < stack.layers.size();) {
    const LayerSpec& l = stack.layers[i];
    size_t n = 1;
    while (i + n < stack.layers.size() && stack.layers[i + n] == l) ++n;
    out += i == 0 ? "\n" : ",\n";
    out += "    {\"head_dim_qk\": " + std::to_string(l.head_dim_qk) +
           ", \"head_dim_v\": " + std::to_string(l.head_dim_v) +
           ", \"q_heads\": " + std::to_string(l.q_heads) +
           ", \"kv_heads\": " + std::to_string(l.kv_heads) +
           ", \"window_left\": " + std::to_string(l.window_left) +
           ", \"k_eq_v\": " + (l.k_eq_v ? "true" : "false") +
           ", \"sinks\": " + (l.sinks ? "true" : "false");
    if (n > 1) out += ", \"repeat\": " + std::to_string(n);
    out += "}";
    i += n;
  }
  out += "\n  ]\n}\n";
  return out;
}

}  // namespace longattn::engine
