// keel::JsonWriter: a streaming JSON writer that appends straight into a string.
//
// nlohmann::json stays the convenient choice (Request::json(), Response::json(value)); this
// writer is for hot endpoints. Building and dumping a one-key nlohmann object costs ~340-490 ns
// here, which bench/ showed to be the bottleneck of pipelined /json; this writer takes ~20 ns.
//
//   keel::JsonWriter w;
//   w.begin_object().key("message").value("Hello, World!").end_object();
//   return keel::Response::json(std::move(w));
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace keel {

// Appends s as the body of a JSON string (no quotes): '"', '\' and control characters escaped,
// invalid UTF-8 replaced by U+FFFD, so the output is always valid JSON.
void append_json_escaped(std::string& out, std::string_view s);

class JsonWriter {
 public:
  JsonWriter() { out_.reserve(64); }

  JsonWriter& begin_object() { return open('{'); }
  JsonWriter& end_object() { return close('}', true); }
  JsonWriter& begin_array() { return open('['); }
  JsonWriter& end_array() { return close(']', false); }

  // In an object: the next member's name. Must alternate with values.
  JsonWriter& key(std::string_view name) {
    if (depth_ == 0 || !in_object(depth_) || expect_value_) throw std::logic_error("JsonWriter: key outside an object");
    separator();
    out_ += '"';
    append_json_escaped(out_, name);
    out_ += "\":";
    expect_value_ = true;
    return *this;
  }

  JsonWriter& value(std::string_view s) {
    before_value();
    out_ += '"';
    append_json_escaped(out_, s);
    out_ += '"';
    return *this;
  }
  JsonWriter& value(const char* s) { return value(std::string_view(s)); }
  JsonWriter& value(const std::string& s) { return value(std::string_view(s)); }
  JsonWriter& value(bool b) {
    before_value();
    out_ += b ? "true" : "false";
    return *this;
  }
  JsonWriter& value(std::int64_t n);
  JsonWriter& value(int n) { return value(static_cast<std::int64_t>(n)); }
  JsonWriter& value(std::uint64_t n);
  JsonWriter& value(double d);  // non-finite numbers have no JSON form: written as null
  JsonWriter& null() {
    before_value();
    out_ += "null";
    return *this;
  }
  // A value that is already a JSON document (the caller vouches for it), embedded as is.
  JsonWriter& raw(std::string_view json) {
    before_value();
    out_ += json;
    return *this;
  }

  // The document; throws std::logic_error if objects or arrays are still open.
  [[nodiscard]] const std::string& str() const {
    if (depth_ != 0) throw std::logic_error("JsonWriter: unclosed object or array");
    return out_;
  }
  [[nodiscard]] std::string take() && {
    (void)str();
    return std::move(out_);
  }

 private:
  static constexpr int kMaxDepth = 64;
  bool in_object(int level) const noexcept { return (object_bits_ >> level) & 1U; }
  void separator() {
    if (has_items_ >> depth_ & 1U) out_ += ',';
    has_items_ |= std::uint64_t{1} << depth_;
  }
  void before_value() {
    if (depth_ > 0 && in_object(depth_)) {
      if (!expect_value_) throw std::logic_error("JsonWriter: value without a key inside an object");
      expect_value_ = false;
    } else {
      if (depth_ == 0 && !out_.empty()) throw std::logic_error("JsonWriter: more than one top-level value");
      if (depth_ > 0) separator();
    }
  }
  JsonWriter& open(char c) {
    before_value();
    if (depth_ + 1 >= kMaxDepth) throw std::logic_error("JsonWriter: nesting too deep");
    ++depth_;
    const std::uint64_t bit = std::uint64_t{1} << depth_;
    object_bits_ = c == '{' ? (object_bits_ | bit) : (object_bits_ & ~bit);
    has_items_ &= ~bit;
    out_ += c;
    return *this;
  }
  JsonWriter& close(char c, bool object) {
    if (depth_ == 0 || in_object(depth_) != object || expect_value_)
      throw std::logic_error("JsonWriter: mismatched close");
    --depth_;
    out_ += c;
    return *this;
  }

  std::string out_;
  int depth_ = 0;
  bool expect_value_ = false;
  std::uint64_t object_bits_ = 0;  // bit d: level d is an object
  std::uint64_t has_items_ = 0;    // bit d: level d has at least one member/element
};

}  // namespace keel
