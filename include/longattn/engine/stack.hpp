// Layer stacks: the attention shapes of a model's layers (built-in presets and a JSON format), and
// the sizes derived from them (element and per-token KV bytes). Part of the engine (engine.hpp).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "longattn/attention.hpp"

namespace longattn::engine {

// The attention shape of one layer. window_left follows longattn_args: -1 is global attention,
// W >= 0 lets a query see itself and the W keys before it (a model's "window 1024" is W = 1023).
struct LayerSpec {
  int64_t head_dim_qk = 0;
  int64_t head_dim_v = 0;
  int64_t q_heads = 0;
  int64_t kv_heads = 0;
  int64_t window_left = -1;
  bool k_eq_v = false;  // K and V are one tensor (Gemma 4 global layers); the cache stores it once
  bool sinks = false;   // one learned logit per query head joins the softmax (gpt-oss)
  bool operator==(const LayerSpec& o) const {
    return head_dim_qk == o.head_dim_qk && head_dim_v == o.head_dim_v && q_heads == o.q_heads &&
           kv_heads == o.kv_heads && window_left == o.window_left && k_eq_v == o.k_eq_v &&
           sinks == o.sinks;
  }
  bool operator!=(const LayerSpec& o) const { return !(*this == o); }
};

struct ModelPreset {
  std::string name;
  std::vector<LayerSpec> layers;
  std::string notes;  // where the numbers come from, and what could not be verified
};

LONGATTN_API std::vector<std::string> preset_names();
// A built-in preset; throws for an unknown name, listing the known ones.
LONGATTN_API ModelPreset find_preset(const std::string& name);
// A stack in the JSON format (see presets/README.md); `origin` prefixes error positions.
LONGATTN_API ModelPreset parse_stack_json(const std::string& text,
                                          const std::string& origin = "<stack>");
// A preset name, or the path of a .json stack file.
LONGATTN_API ModelPreset load_stack(const std::string& name_or_path);
// Throws naming the first bad field: layers[i].q_heads etc.
LONGATTN_API void validate_stack(const ModelPreset& stack);
// The JSON format, consecutive equal layers folded into "repeat".
LONGATTN_API std::string stack_to_json(const ModelPreset& stack);

// Bytes of one element of a longattn_dtype (FP8 ones included); throws for an unknown dtype.
LONGATTN_API int64_t dtype_size(int32_t dtype);
// Bytes one token occupies in a layer's KV cache (K and V, or K alone when k_eq_v).
LONGATTN_API int64_t kv_bytes_per_token(const LayerSpec& layer, int32_t dtype);
// The same over every layer of a stack.
LONGATTN_API int64_t kv_bytes_per_token(const ModelPreset& stack, int32_t dtype);
// "1.50 GiB", "12.0 MiB", "512 B": for messages and tables.
LONGATTN_API std::string format_bytes(int64_t bytes);

}  // namespace longattn::engine
