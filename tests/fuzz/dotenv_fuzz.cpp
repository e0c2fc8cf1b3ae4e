// libFuzzer target for the .env parser (keel::config::parse_dotenv, src/config/dotenv.cpp).
//
// The input is the file's text. Checks:
//  1. invariants: every entry's key matches [A-Za-z_][A-Za-z0-9_.]* and appears once; entries are
//     in file order (strictly increasing lines); every line number is within the file; errors are
//     in file order with a non-empty message; no value holds a NUL byte;
//  2. round trip: keel has no .env writer, so the target writes the entries back itself, each as
//     KEY="value" with \ " $ and line breaks/tabs escaped; parsing that (with no variable lookup)
//     must give the same keys and values, on lines 1..n, without errors;
//  3. CRLF line endings give the same result as LF (for inputs without CR);
//  4. a UTF-8 BOM in front gives the same result (for inputs without one).
// The lookup knows a few variables so that ${VAR}, ${VAR:-default} and $VAR take both paths.
// Any violation calls __builtin_trap() so libFuzzer records the input as a crash.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "config/dotenv.hpp"
#include "fuzz_check.hpp"

namespace {

using keel::config::DotenvResult;

std::optional<std::string> lookup(std::string_view name) {
  if (name == "HOME") return "/home/keel";
  if (name == "EMPTY") return "";
  if (name == "USER") return "keel";
  if (name == "WEIRD") return "a\"b\\c$d\ne";
  return std::nullopt;
}

bool valid_key(std::string_view k) {
  const auto start = [](char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; };
  if (k.empty() || !start(k[0])) return false;
  return std::all_of(k.begin(), k.end(), [&](char c) { return start(c) || (c >= '0' && c <= '9') || c == '.'; });
}

bool same(const DotenvResult& a, const DotenvResult& b) {
  if (a.entries.size() != b.entries.size() || a.errors.size() != b.errors.size()) return false;
  for (std::size_t i = 0; i < a.entries.size(); ++i) {
    const auto &x = a.entries[i], &y = b.entries[i];
    if (x.key != y.key || x.value != y.value || x.line != y.line) return false;
  }
  for (std::size_t i = 0; i < a.errors.size(); ++i)
    if (a.errors[i].line != b.errors[i].line || a.errors[i].message != b.errors[i].message) return false;
  return true;
}

void print(const char* label, const DotenvResult& r) {
  std::fprintf(stderr, "  %s: %zu entries, %zu errors\n", label, r.entries.size(), r.errors.size());
  for (const auto& e : r.entries)
    std::fprintf(stderr, "    %d %s=[%zu bytes]\n", e.line, e.key.c_str(), e.value.size());
  for (const auto& e : r.errors) std::fprintf(stderr, "    %d error: %s\n", e.line, e.message.c_str());
}

void check_same(const DotenvResult& a, const DotenvResult& b, const char* what, int line) {
  if (same(a, b)) return;
  std::fprintf(stderr, "dotenv_fuzz: results differ (%s)\n", what);
  print("expected", a);
  print("actual  ", b);
  fail_check(what, line);
}

std::string write_back(const DotenvResult& r) {
  std::string out;
  for (const auto& e : r.entries) {
    out += e.key;
    out += "=\"";
    for (const char c : e.value) {
      switch (c) {
        case '\\':
          out += "\\\\";
          break;
        case '"':
          out += "\\\"";
          break;
        case '$':
          out += "\\$";
          break;
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        case '\t':
          out += "\\t";
          break;
        default:
          out += c;
      }
    }
    out += "\"\n";
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const DotenvResult r = keel::config::parse_dotenv(text, lookup);

  // 1. invariants.
  const int lines = 1 + static_cast<int>(std::count(text.begin(), text.end(), '\n'));
  std::set<std::string> keys;
  int last = 0;
  for (const auto& e : r.entries) {
    FUZZ_CHECK(valid_key(e.key));
    FUZZ_CHECK(keys.insert(e.key).second);
    FUZZ_CHECK(e.line > last && e.line <= lines);
    FUZZ_CHECK(e.value.find('\0') == std::string::npos);
    last = e.line;
  }
  last = 1;
  for (const auto& e : r.errors) {
    FUZZ_CHECK(e.line >= last && e.line <= lines);
    FUZZ_CHECK(!e.message.empty());
    last = e.line;
  }

  // 2. round trip through the target's own writer.
  const std::string written = write_back(r);
  const DotenvResult again = keel::config::parse_dotenv(written, {});
  DotenvResult want;
  want.entries = r.entries;
  for (std::size_t i = 0; i < want.entries.size(); ++i) want.entries[i].line = static_cast<int>(i + 1);
  check_same(want, again, "parse(write(entries))", __LINE__);

  // 3. CRLF line endings.
  if (text.find('\r') == std::string_view::npos && text.find('\n') != std::string_view::npos) {
    std::string crlf;
    for (const char c : text) {
      if (c == '\n') crlf += '\r';
      crlf += c;
    }
    check_same(r, keel::config::parse_dotenv(crlf, lookup), "CRLF vs LF", __LINE__);
  }

  // 4. a BOM.
  if (!text.starts_with("\xEF\xBB\xBF")) {
    const std::string bom = "\xEF\xBB\xBF" + std::string(text);
    check_same(r, keel::config::parse_dotenv(bom, lookup), "BOM", __LINE__);
  }
  return 0;
}
