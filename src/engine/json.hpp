// A small strict JSON reader (RFC 8259: no comments, no trailing commas, no duplicate keys) and a
// writer, enough for layer-stack files and prefill reports. No external dependency on purpose:
// the library must build anywhere. Every parse error says origin:line:column and what was wrong.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace longattn::engine::json {

struct Value {
  enum class Kind { kNull, kBool, kNumber, kString, kArray, kObject };
  Kind kind = Kind::kNull;
  bool boolean = false;
  std::string text;          // kString: the decoded string; kNumber: the number as written
  std::vector<Value> items;  // kArray
  std::vector<std::pair<std::string, Value>> members;  // kObject, in file order
  int line = 0, column = 0;                            // where the value starts

  const Value* find(const std::string& key) const;
};

const char* kind_name(Value::Kind kind);

// Throws longattn::Error(LONGATTN_INVALID_ARGUMENT, "origin:line:col: ...").
Value parse(const std::string& text, const std::string& origin);

// Appends JSON text to a string; the caller writes structure, this keeps commas and escapes right.
class Writer {
 public:
  explicit Writer(int indent = 2) : indent_(indent) {}
  Writer& begin_object();
  Writer& end_object();
  Writer& begin_array();
  Writer& end_array();
  Writer& key(const std::string& k);
  Writer& value(const std::string& s);
  Writer& value(const char* s) { return value(std::string(s)); }
  Writer& value(int64_t v);
  Writer& value(int v) { return value(static_cast<int64_t>(v)); }
  Writer& value(uint64_t v);
  Writer& value(double v);
  Writer& value(bool v);
  Writer& null();
  const std::string& str() const { return out_; }

 private:
  void before_value();
  void newline();
  Writer& close(char bracket);
  std::string out_;
  int indent_;
  std::vector<bool> first_;  // per open container: no element written yet
  bool after_key_ = false;
};

std::string escape(const std::string& s);

}  // namespace longattn::engine::json
