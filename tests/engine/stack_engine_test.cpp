// Layer stacks: the presets' shapes, the JSON format (round trip, preset files) and every error
// the format can raise, each with a message naming the field and position.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "longattn/engine.hpp"

namespace longattn::engine {
namespace {

// The message of the Error that f throws (and that it throws INVALID_ARGUMENT).
template <class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), LONGATTN_INVALID_ARGUMENT) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no error thrown";
  return "";
}

std::string parse_error(const std::string& text) {
  return error_of([&] { parse_stack_json(text, "t.json"); });
}

TEST(StackEngine, Gemma4MoePresetMatchesTheIssue) {
  ModelPreset p = find_preset("gemma4-26b-a4b");
  ASSERT_EQ(p.layers.size(), 30u);
  int sliding = 0, global = 0;
  for (size_t i = 0; i < p.layers.size(); ++i) {
    const LayerSpec& l = p.layers[i];
    if ((i + 1) % 6 == 0) {  // every 6th layer is global
      ++global;
      EXPECT_EQ(l.window_left, -1) << i;
      EXPECT_EQ(l.head_dim_qk, 512);
      EXPECT_EQ(l.head_dim_v, 512);
      EXPECT_EQ(l.q_heads, 16);
      EXPECT_EQ(l.kv_heads, 2);
      EXPECT_TRUE(l.k_eq_v);
    } else {
      ++sliding;
      EXPECT_EQ(l.window_left, 1023) << i;  // window 1024 includes the query itself
      EXPECT_EQ(l.head_dim_qk, 256);
      EXPECT_EQ(l.q_heads, 16);
      EXPECT_EQ(l.kv_heads, 8);
      EXPECT_FALSE(l.k_eq_v);
    }
    EXPECT_FALSE(l.sinks);
  }
  EXPECT_EQ(sliding, 25);
  EXPECT_EQ(global, 5);
  EXPECT_NE(p.notes.find("config.json"), std::string::npos);
}

TEST(StackEngine, OtherPresetsHaveTheirPublishedShapes) {
  struct Expect {
    const char* name;
    size_t layers, global;
    int64_t d_global, hq, hkv_global;
  } expects[] = {{"gemma4-31b", 60, 10, 512, 32, 4},
                 {"gemma3-12b", 48, 8, 256, 16, 8},
                 {"qwen3.5-27b", 16, 16, 256, 24, 4},
                 {"qwen3-next-80b", 12, 12, 256, 16, 2},
                 {"gpt-oss-20b", 24, 12, 64, 64, 8}};
  for (const auto& e : expects) {
    SCOPED_TRACE(e.name);
    ModelPreset p = find_preset(e.name);
    ASSERT_EQ(p.layers.size(), e.layers);
    size_t global = 0;
    for (const auto& l : p.layers) {
      if (l.window_left >= 0) continue;
      ++global;
      EXPECT_EQ(l.head_dim_qk, e.d_global);
      EXPECT_EQ(l.q_heads, e.hq);
      EXPECT_EQ(l.kv_heads, e.hkv_global);
    }
    EXPECT_EQ(global, e.global);
    EXPECT_FALSE(p.notes.empty());
  }
  for (const auto& l : find_preset("gpt-oss-20b").layers) {
    EXPECT_TRUE(l.sinks);
    EXPECT_TRUE(l.window_left == -1 || l.window_left == 127);
  }
  EXPECT_EQ(find_preset("gpt-oss-20b").layers[0].window_left, 127);  // starts with sliding
}

TEST(StackEngine, EveryPresetRoundTripsAndMatchesItsFile) {
  ASSERT_EQ(preset_names().size(), 6u);
  for (const auto& name : preset_names()) {
    SCOPED_TRACE(name);
    ModelPreset p = find_preset(name);
    ModelPreset back = parse_stack_json(stack_to_json(p), name);
    EXPECT_EQ(back.name, p.name);
    EXPECT_EQ(back.notes, p.notes);
    EXPECT_EQ(back.layers, p.layers);

    std::string path = std::string(LONGATTN_SOURCE_DIR) + "/presets/" + name + ".json";
    ModelPreset file = load_stack(path);
    EXPECT_EQ(file.layers, p.layers) << path << " differs from the built-in preset";
    EXPECT_EQ(file.notes, p.notes);
    EXPECT_EQ(load_stack(name).layers, p.layers);
  }
}

TEST(StackEngine, ParsesDefaultsRepeatAndEscapes) {
  ModelPreset p = parse_stack_json(R"({
    "name": "t\u00e9st \"x\"",
    "layers": [
      {"head_dim": 128, "q_heads": 8, "kv_heads": 2, "window_left": 511, "repeat": 3},
      {"head_dim_qk": 192, "head_dim_v": 128, "q_heads": 4, "kv_heads": 4, "sinks": true},
      {"head_dim": 512, "q_heads": 8, "kv_heads": 1, "k_eq_v": true}
    ]
  })");
  EXPECT_EQ(p.name, "t\xc3\xa9st \"x\"");
  ASSERT_EQ(p.layers.size(), 5u);
  EXPECT_EQ(p.layers[2].head_dim_v, 128);
  EXPECT_EQ(p.layers[2].window_left, 511);
  EXPECT_EQ(p.layers[3].head_dim_qk, 192);
  EXPECT_EQ(p.layers[3].head_dim_v, 128);
  EXPECT_EQ(p.layers[3].window_left, -1);
  EXPECT_TRUE(p.layers[3].sinks);
  EXPECT_TRUE(p.layers[4].k_eq_v);
  EXPECT_EQ(kv_bytes_per_token(p.layers[4], LONGATTN_BFLOAT16), 512 * 2);  // K stored once
  EXPECT_EQ(kv_bytes_per_token(p.layers[3], LONGATTN_FLOAT32), 4 * (192 + 128) * 4);
}

TEST(StackEngine, BadJsonSaysWhereAndWhat) {
  std::string e = parse_error("{\n  \"layers\": [\n    {\"head_dim\": 64,}\n  ]\n}");
  EXPECT_NE(e.find("t.json:3:"), std::string::npos) << e;
  EXPECT_NE(e.find("bad JSON"), std::string::npos) << e;
  EXPECT_NE(e.find("trailing comma"), std::string::npos) << e;

  EXPECT_NE(parse_error("{\"layers\": [1, 2]").find("unterminated"), std::string::npos);
  EXPECT_NE(parse_error("{\"a\": 1} x").find("after the JSON value"), std::string::npos);
  EXPECT_NE(parse_error("{\"a\": 01}").find("leading zero"), std::string::npos);
  EXPECT_NE(parse_error("{\"a\": \"x\ny\"}").find("control character"), std::string::npos);
  EXPECT_NE(parse_error("{\"a\": tru}").find("expected 'true'"), std::string::npos);
  EXPECT_NE(parse_error("// c\n{}").find("t.json:1:1"), std::string::npos);
  EXPECT_NE(parse_error("{\"a\": \"\\ud800\"}").find("surrogate"), std::string::npos);
  EXPECT_NE(parse_error("").find("end of input"), std::string::npos);
  std::string deep(100, '[');
  EXPECT_NE(parse_error(deep).find("nesting deeper"), std::string::npos);
  std::string dup = parse_error("{\"layers\": [], \"layers\": []}");
  EXPECT_NE(dup.find("duplicate key \"layers\""), std::string::npos) << dup;
  EXPECT_NE(dup.find("t.json:1:16"), std::string::npos) << dup;
}

TEST(StackEngine, UnknownPresetListsTheKnownOnes) {
  std::string e = error_of([] { load_stack("gemma5-1t"); });
  EXPECT_NE(e.find("unknown preset 'gemma5-1t'"), std::string::npos) << e;
  for (const auto& n : preset_names()) EXPECT_NE(e.find(n), std::string::npos) << n;
  std::string f = error_of([] { load_stack("/nonexistent/stack.json"); });
  EXPECT_NE(f.find("cannot be read"), std::string::npos) << f;
}

TEST(StackEngine, FieldErrorsNameTheFieldAndPosition) {
  struct Case {
    const char* layer;
    const char* expect;
  } cases[] = {
      {R"({"head_dim": 64, "q_heads": 0, "kv_heads": 1})", "layers[0].q_heads = 0: must be >= 1"},
      {R"({"head_dim": 64, "q_heads": 4, "kv_heads": 0})", "layers[0].kv_heads = 0: must be >= 1"},
      {R"({"head_dim": 64, "q_heads": 6, "kv_heads": 4})",
       "layers[0].kv_heads = 4: q_heads (6) must be a multiple of kv_heads"},
      {R"({"head_dim": 513, "q_heads": 4, "kv_heads": 1})",
       "layers[0].head_dim = 513: must be between 1 and 512"},
      {R"({"head_dim": 0, "q_heads": 4, "kv_heads": 1})",
       "layers[0].head_dim = 0: must be between 1 and 512"},
      {R"({"head_dim_qk": 64, "head_dim_v": 1024, "q_heads": 4, "kv_heads": 1})",
       "layers[0].head_dim_v = 1024: must be between 1 and 512"},
      {R"({"head_dim": 64, "q_heads": 4, "kv_heads": 1, "window_left": -2})",
       "layers[0].window_left = -2: must be -1 (global) or >= 0"},
      {R"({"head_dim_qk": 64, "head_dim_v": 32, "q_heads": 4, "kv_heads": 1, "k_eq_v": true})",
       "layers[0].head_dim_v = 32: a k_eq_v layer needs head_dim_v == head_dim_qk (64)"},
      {R"({"q_heads": 4, "kv_heads": 1})", "layers[0]: missing field \"head_dim\""},
      {R"({"head_dim": 64, "kv_heads": 1})", "layers[0]: missing field \"q_heads\""},
      {R"({"head_dim": 64, "q_heads": 4})", "layers[0]: missing field \"kv_heads\""},
      {R"({"head_dim": 64, "q_heads": 4, "kv_heads": 1, "heads": 2})", "unknown field \"heads\""},
      {R"({"head_dim": 64.5, "q_heads": 4, "kv_heads": 1})",
       "layers[0].head_dim = 64.5: must be an integer"},
      {R"({"head_dim": "64", "q_heads": 4, "kv_heads": 1})",
       "layers[0].head_dim: must be an integer, got a string"},
      {R"({"head_dim": 64, "q_heads": 4, "kv_heads": 1, "sinks": 1})",
       "layers[0].sinks: must be true or false"},
      {R"({"head_dim": 64, "q_heads": 4, "kv_heads": 1, "repeat": 0})",
       "layers[0].repeat = 0: must be between 1 and 4096"},
      {R"({"head_dim": 64, "head_dim_qk": 64, "q_heads": 4, "kv_heads": 1})",
       "give head_dim or head_dim_qk, not both"},
  };
  for (const auto& c : cases) {
    std::string text = std::string("{\"layers\": [\n  ") + c.layer + "\n]}";
    std::string e = parse_error(text);
    EXPECT_NE(e.find(c.expect), std::string::npos) << "got: " << e << "\nwant: " << c.expect;
    EXPECT_NE(e.find("t.json:2:"), std::string::npos) << e;  // line of the layer
  }
  EXPECT_NE(parse_error(R"({"name": "x"})").find("missing field \"layers\""), std::string::npos);
  EXPECT_NE(parse_error(R"({"layers": []})").find("must not be empty"), std::string::npos);
  EXPECT_NE(parse_error(R"([1])").find("must be a JSON object"), std::string::npos);
  EXPECT_NE(parse_error(R"({"layers": [], "x": 1})").find("unknown field \"x\""),
            std::string::npos);
  // The position is the offending value's: q_heads's 0 is at line 1, column 41.
  std::string e = parse_error(R"({"layers": [{"head_dim": 64, "q_heads": 0, "kv_heads": 1}]})");
  EXPECT_NE(e.find("t.json:1:41:"), std::string::npos) << e;
}

TEST(StackEngine, ValidateStackCatchesPresetsBuiltInCode) {
  ModelPreset p = find_preset("gemma3-12b");
  p.layers[7].kv_heads = 3;
  std::string e = error_of([&] { validate_stack(p); });
  EXPECT_NE(e.find("layers[7].kv_heads = 3"), std::string::npos) << e;
  p.layers.clear();
  EXPECT_NE(error_of([&] { validate_stack(p); }).find("must not be empty"), std::string::npos);
  EXPECT_NE(error_of([] { dtype_size(7); }).find("dtype = 7"), std::string::npos);
}

}  // namespace
}  // namespace longattn::engine
