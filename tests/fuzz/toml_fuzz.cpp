// libFuzzer target for the TOML configuration source (keel::config::parse_toml,
// src/config/toml_source.cpp, on toml++ compiled into the target).
//
// The input is the file's text. Checks:
//  1. parse_toml() never throws (toml++ parse errors become one FileError) and its line numbers are
//     within the file: entries and per-key errors on lines 1..n, a syntax error on 0..n+1;
//  2. a syntax error comes alone, without entries;
//  3. round trip: every entry written back as  "<dotted key>" = "<value>"  (a quoted key, a basic
//     string with \" \\ and control characters escaped) parses to the same key/value pairs,
//     without errors. No two entries share a flattened key (a.b = 1 next to "a.b" = 2 is an error
//     naming both lines, and only the first is an entry).
// Any violation calls __builtin_trap() so libFuzzer records the input as a crash.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/toml_source.hpp"
#include "fuzz_check.hpp"

namespace {

using keel::config::FileResult;

void append_basic_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  out += '"';
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20 || c == 0x7f) {
      out += "\\u00";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    } else {
      out += ch;  // UTF-8 as toml++ validated it
    }
  }
  out += '"';
}

FileResult parse(std::string_view text) {
  try {
    return keel::config::parse_toml(text, "fuzz.toml");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "toml_fuzz: parse_toml threw: %s\n", e.what());
    fail_check("parse_toml() threw", __LINE__);
  }
}

using Pairs = std::vector<std::pair<std::string, std::string>>;

Pairs sorted_pairs(const FileResult& r) {
  Pairs p;
  for (const auto& e : r.entries) p.emplace_back(e.key, e.value);
  std::sort(p.begin(), p.end());
  return p;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const FileResult r = parse(text);

  // 1. and 2.
  const int lines = 1 + static_cast<int>(std::count(text.begin(), text.end(), '\n'));
  for (const auto& e : r.entries) FUZZ_CHECK(e.line >= 1 && e.line <= lines);
  for (const auto& e : r.errors) {
    FUZZ_CHECK(e.line >= 0 && e.line <= lines + 1);
    FUZZ_CHECK(!e.message.empty());
  }
  const bool syntax_error = r.errors.size() == 1 && r.entries.empty();
  if (!syntax_error) {
    for (const auto& e : r.errors) FUZZ_CHECK(e.message.starts_with("key '"));
  }

  // 3. round trip.
  const Pairs want = sorted_pairs(r);
  for (std::size_t i = 1; i < want.size(); ++i) FUZZ_CHECK(want[i].first != want[i - 1].first);
  std::string doc;
  for (const auto& [k, v] : want) {
    append_basic_string(doc, k);
    doc += " = ";
    append_basic_string(doc, v);
    doc += '\n';
  }
  const FileResult again = parse(doc);
  if (!again.errors.empty()) {
    std::fprintf(stderr, "toml_fuzz: written document fails: line %d: %s\n", again.errors[0].line,
                 again.errors[0].message.c_str());
  }
  FUZZ_CHECK(again.errors.empty());
  FUZZ_CHECK(sorted_pairs(again) == want);
  return 0;
}
