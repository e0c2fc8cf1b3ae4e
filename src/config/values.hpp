// Typed parsers for configuration values (config file, environment, command line).
//
// Every parser returns a Parsed<T>: `value` holds the result, or nullopt when the text was
// rejected; `expected` describes the accepted form ("a duration like 500ms, 30s, 5m or a number of
// seconds") and `got` the rejected text, so a caller that knows the setting's name and origin
// builds its message as  name + ": " + result.message()  ->
//   "graceful_timeout: expected a duration like 500ms, 30s, 5m or a number of seconds, got 'abc'".
// `expected` and `got` are set on success too (the same strings), so `expected` can double as
// help text. Parsers never throw on bad input (only std::bad_alloc) and are strict: no surrounding
// whitespace is skipped except by parse_list, which trims its items.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace keel::config {

template <typename T>
struct Parsed {
  using value_type = T;

  std::optional<T> value;
  std::string expected;  // the accepted form, without a leading "expected "
  std::string got;       // the offending text (for parse_list: the bad item; for URLs: redacted)

  [[nodiscard]] bool ok() const noexcept { return value.has_value(); }
  explicit operator bool() const noexcept { return value.has_value(); }
  // "expected <expected>, got '<got>'".
  [[nodiscard]] std::string message() const { return "expected " + expected + ", got '" + got + "'"; }
};

// true/false, yes/no, on/off, 1/0, in any letter case.
Parsed<bool> parse_bool(std::string_view text);

// Optional '+' or '-', then decimal digits only (no spaces, no "0x", no "1e3"); fails outside
// [min, max] and on overflow. `expected` names the range: "an integer from 1 to 1024".
Parsed<std::int64_t> parse_int(std::string_view text, std::int64_t min = std::numeric_limits<std::int64_t>::min(),
                               std::int64_t max = std::numeric_limits<std::int64_t>::max());

// Decimal floating point as std::from_chars reads it ("0.5", "1e-3", ".5"), with an optional
// leading '+'. inf, nan and values a double can't hold fail, as does anything outside [min, max].
Parsed<double> parse_float(std::string_view text, double min = std::numeric_limits<double>::lowest(),
                           double max = std::numeric_limits<double>::max());

// "500ms", "30s", "5m", "1h", "1.5s", or a bare number of seconds ("2.5"), rounded to the nearest
// millisecond; the same syntax as keel::cli::parse_duration. Signs, spaces and exponents fail, as
// does anything above 10^12 ms (~31 years), which can only be a typo.
Parsed<std::chrono::milliseconds> parse_duration(std::string_view text);

// A number of bytes, optionally followed by a unit: B, KB/MB/GB/TB (powers of 1000) or
// KiB/MiB/GiB/TiB (powers of 1024). Units are case-sensitive: "kb", "mb" or "m" fail rather than
// guess between bits and bytes or 1000 and 1024. Whole numbers only; overflow fails.
Parsed<std::uint64_t> parse_size(std::string_view text);

// Splits on ',', trims spaces and tabs from each item and drops empty items; the views point into
// `text`. "a, b,,c " -> {"a", "b", "c"}; "" -> {}.
std::vector<std::string_view> split_list(std::string_view text);

// split_list as strings; never fails.
Parsed<std::vector<std::string>> parse_list(std::string_view text);

// split_list, then `parse_item` (any callable taking std::string_view and returning a Parsed<T>)
// on each item. Fails at the first bad item: `got` is that item and `expected` reads "each
// comma-separated item to be <the item's expected>".
template <typename ItemParser>
auto parse_list(std::string_view text, ItemParser&& parse_item)
    -> Parsed<std::vector<typename std::invoke_result_t<ItemParser&, std::string_view>::value_type>> {
  using Item = typename std::invoke_result_t<ItemParser&, std::string_view>::value_type;
  Parsed<std::vector<Item>> out;
  out.expected = "a comma-separated list";
  out.got = std::string(text);
  std::vector<Item> items;
  for (const std::string_view piece : split_list(text)) {
    auto item = parse_item(piece);
    if (!item.value) {
      out.expected = "each comma-separated item to be " + item.expected;
      out.got = std::move(item.got);
      return out;
    }
    items.push_back(std::move(*item.value));
  }
  out.value = std::move(items);
  return out;
}

// Exact, case-sensitive match against `allowed`; the value is the index of the match. `expected`
// lists the choices: "one of debug, info, warn or error".
Parsed<std::size_t> parse_enum(std::string_view text, std::span<const std::string_view> allowed);
Parsed<std::size_t> parse_enum(std::string_view text, std::initializer_list<std::string_view> allowed);

struct Url {
  std::string scheme;      // lowercased
  std::string userinfo;    // "user" or "user:password" as written (still percent-encoded); empty when absent
  std::string host;        // IPv6 literals without the brackets; empty only for file:/sqlite: forms
  std::uint16_t port = 0;  // 0 when absent (an explicit port 0 is rejected)
  std::string path;        // "/db", or the opaque part of "sqlite:./app.db"; still percent-encoded
  std::string query;       // after '?', without it

  friend bool operator==(const Url&, const Url&) = default;
};

// scheme://[userinfo@]host[:port][/path][?query], as RFC 3986 spells it:
//  - the scheme is a letter then letters, digits, '+', '-', '.'; it is matched case-insensitively
//    against `schemes` (lowercase; empty allows any scheme);
//  - host is a registered name / IPv4 address, or an IPv6 address in brackets ("[::1]");
//  - the port, when present, is 1-65535;
//  - the last '@' of the authority ends the userinfo, so a raw '@' in a password still works;
//    '/', '?' and '#' in a password must be percent-encoded.
// The file, sqlite and sqlite3 schemes name local paths, so their host may be empty:
// "sqlite:///var/lib/app.db", "sqlite:./app.db", "file:///etc/keel.toml". Fragments ('#'),
// spaces and control characters fail, and so does a '%' that does not start a two-hex-digit
// escape in any other scheme (clients such as libpq echo such a component, password and all).
// `expected` ends with the problem found, e.g. "... (the port must be from 1 to 65535)", and `got`
// is the input passed through redact_url.
Parsed<Url> parse_url(std::string_view text, std::span<const std::string_view> schemes = {});
Parsed<Url> parse_url(std::string_view text, std::initializer_list<std::string_view> schemes);

// The URL with a non-empty password in its userinfo replaced by "***", for printing configuration:
// "postgres://app:s3cret@db:5432/app" -> "postgres://app:***@db:5432/app". Anything without a
// password (or not URL-shaped) comes back unchanged.
std::string redact_url(std::string_view text);

// Optimal-string-alignment Damerau-Levenshtein distance (insertions, deletions, substitutions and
// adjacent transpositions cost 1), ignoring ASCII letter case.
std::size_t edit_distance(std::string_view a, std::string_view b);

// Did-you-mean: the candidate closest to `name` by edit_distance when that distance is at most
// max(1, name.size() / 3); the first one on ties. Empty when nothing is that close.
std::string suggest(std::string_view name, std::span<const std::string_view> candidates);
std::string suggest(std::string_view name, std::initializer_list<std::string_view> candidates);

// The shortest text parse_duration / parse_size read back to the same amount: 30000ms -> "30s",
// 1500ms -> "1500ms", 300000ms -> "5m"; 65536 -> "64KiB", 1000000 -> "1MB", 1000 -> "1KB", 7 -> "7".
std::string format_duration(std::chrono::milliseconds d);
std::string format_size(std::uint64_t bytes);

// ("KEEL_", "graceful_timeout") -> "KEEL_GRACEFUL_TIMEOUT": the name uppercased with '-' and '.'
// turned into '_'; the prefix is used as given.
std::string to_env_name(std::string_view prefix, std::string_view setting_name);

// "graceful_timeout" -> "--graceful-timeout": lowercased, '_' and '.' turned into '-'.
std::string to_flag_name(std::string_view setting_name);

}  // namespace keel::config
