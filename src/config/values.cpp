#include "config/values.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <system_error>

#include "base/strings.hpp"

namespace keel::config {
namespace {

using base::ascii_lower;
using base::ascii_upper;
using base::iequals;

constexpr bool is_digit(char c) noexcept {
  return c >= '0' && c <= '9';
}
constexpr bool is_alpha(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
constexpr bool is_hex(char c) noexcept {
  return base::hex_value(c) >= 0;
}

template <typename T>
Parsed<T> make(std::string_view text, std::string expected) {
  Parsed<T> p;
  p.expected = std::move(expected);
  p.got = std::string(text);
  return p;
}

std::string format_double(double d) {
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d);
  return ec == std::errc() ? std::string(buf, end) : std::string("?");
}

// "an integer from 1 to 10", "an integer >= 0", "an integer": open ends are left unsaid.
template <typename T>
std::string describe_range(std::string noun, T min, T max, std::string (*fmt)(T)) {
  const bool has_min = min > std::numeric_limits<T>::lowest();
  const bool has_max = max < std::numeric_limits<T>::max();
  if (has_min && has_max) return noun + " from " + fmt(min) + " to " + fmt(max);
  if (has_min) return noun + " >= " + fmt(min);
  if (has_max) return noun + " <= " + fmt(max);
  return noun;
}

std::string format_int(std::int64_t v) {
  return std::to_string(v);
}

// "a, b or c" (an Oxford-comma-free list, as messages elsewhere in keel read).
std::string join_or(std::span<const std::string_view> words) {
  std::string out;
  for (std::size_t i = 0; i < words.size(); ++i) {
    if (i > 0) out += i + 1 == words.size() ? " or " : ", ";
    out += words[i];
  }
  return out;
}

}  // namespace

Parsed<bool> parse_bool(std::string_view text) {
  auto p = make<bool>(text, "a boolean (true/false, yes/no, on/off, 1/0)");
  for (std::string_view t : {"true", "yes", "on", "1"})
    if (iequals(text, t)) p.value = true;
  for (std::string_view f : {"false", "no", "off", "0"})
    if (iequals(text, f)) p.value = false;
  return p;
}

Parsed<std::int64_t> parse_int(std::string_view text, std::int64_t min, std::int64_t max) {
  auto p = make<std::int64_t>(text, describe_range<std::int64_t>("an integer", min, max, format_int));
  // from_chars takes '-' but not '+'; strip a '+' ourselves, but only before a digit ("+-1" fails).
  std::string_view digits = text;
  if (digits.size() > 1 && digits[0] == '+' && is_digit(digits[1])) digits.remove_prefix(1);
  std::int64_t v = 0;
  const char* end = digits.data() + digits.size();
  const auto [ptr, ec] = std::from_chars(digits.data(), end, v);
  if (digits.empty() || ec != std::errc() || ptr != end || v < min || v > max) return p;
  p.value = v;
  return p;
}

Parsed<double> parse_float(std::string_view text, double min, double max) {
  auto p = make<double>(text, describe_range<double>("a number", min, max, format_double));
  std::string_view digits = text;
  if (digits.size() > 1 && digits[0] == '+' && (is_digit(digits[1]) || digits[1] == '.')) digits.remove_prefix(1);
  double v = 0;
  const char* end = digits.data() + digits.size();
  const auto [ptr, ec] = std::from_chars(digits.data(), end, v, std::chars_format::general);
  if (digits.empty() || ec != std::errc() || ptr != end || !std::isfinite(v) || v < min || v > max) return p;
  p.value = v;
  return p;
}

Parsed<std::chrono::milliseconds> parse_duration(std::string_view text) {
  auto p = make<std::chrono::milliseconds>(text, "a duration like 500ms, 30s, 5m or a number of seconds");
  std::size_t unit_at = 0;
  while (unit_at < text.size() && (is_digit(text[unit_at]) || text[unit_at] == '.')) ++unit_at;
  if (unit_at == 0) return p;
  double value = 0;
  const char* number_end = text.data() + unit_at;
  const auto [ptr, ec] = std::from_chars(text.data(), number_end, value, std::chars_format::fixed);
  if (ec != std::errc() || ptr != number_end) return p;
  const std::string_view unit = text.substr(unit_at);
  double ms = 0;
  if (unit.empty() || unit == "s")
    ms = value * 1000;
  else if (unit == "ms")
    ms = value;
  else if (unit == "m")
    ms = value * 60'000;
  else if (unit == "h")
    ms = value * 3'600'000;
  else
    return p;
  if (!(ms <= 1e12)) return p;  // also catches inf from a huge digit string
  p.value = std::chrono::milliseconds(static_cast<std::int64_t>(ms + 0.5));
  return p;
}

Parsed<std::uint64_t> parse_size(std::string_view text) {
  auto p = make<std::uint64_t>(
      text, "a size like 512MiB, 1GB or a number of bytes (units B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)");
  std::size_t unit_at = 0;
  while (unit_at < text.size() && is_digit(text[unit_at])) ++unit_at;
  if (unit_at == 0) return p;
  std::uint64_t value = 0;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + unit_at, value);
  if (ec != std::errc()) return p;
  struct Unit {
    std::string_view name;
    std::uint64_t multiplier;
  };
  static constexpr Unit kUnits[] = {
      {"", 1},
      {"B", 1},
      {"KB", 1000},
      {"MB", 1000 * 1000},
      {"GB", 1000ULL * 1000 * 1000},
      {"TB", 1000ULL * 1000 * 1000 * 1000},
      {"KiB", 1024},
      {"MiB", 1024 * 1024},
      {"GiB", 1024ULL * 1024 * 1024},
      {"TiB", 1024ULL * 1024 * 1024 * 1024},
  };
  const std::string_view unit = text.substr(unit_at);
  for (const Unit& u : kUnits) {
    if (unit != u.name) continue;
    if (value > std::numeric_limits<std::uint64_t>::max() / u.multiplier) return p;
    p.value = value * u.multiplier;
    return p;
  }
  return p;
}

std::vector<std::string_view> split_list(std::string_view text) {
  std::vector<std::string_view> items;
  while (true) {
    const std::size_t comma = text.find(',');
    std::string_view item = text.substr(0, comma);
    const std::size_t first = item.find_first_not_of(" \t");
    if (first != std::string_view::npos) {
      item = item.substr(first, item.find_last_not_of(" \t") - first + 1);
      items.push_back(item);
    }
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return items;
}

Parsed<std::vector<std::string>> parse_list(std::string_view text) {
  return parse_list(text, [](std::string_view item) {
    auto p = make<std::string>(item, "any text");
    p.value = std::string(item);
    return p;
  });
}

Parsed<std::size_t> parse_enum(std::string_view text, std::span<const std::string_view> allowed) {
  auto p = make<std::size_t>(text, "one of " + join_or(allowed));
  for (std::size_t i = 0; i < allowed.size(); ++i) {
    if (text == allowed[i]) {
      p.value = i;
      break;
    }
  }
  return p;
}

Parsed<std::size_t> parse_enum(std::string_view text, std::initializer_list<std::string_view> allowed) {
  return parse_enum(text, std::span<const std::string_view>(allowed.begin(), allowed.size()));
}

namespace {

// Schemes whose URLs name a local path, so an empty host (or no "//" at all) is fine.
bool is_local_scheme(std::string_view scheme) noexcept {
  return scheme == "file" || scheme == "sqlite" || scheme == "sqlite3";
}

// RFC 3986 reg-name (which covers IPv4 dotted quads): unreserved, sub-delims, pct-encoded.
bool valid_reg_name(std::string_view host) noexcept {
  for (std::size_t i = 0; i < host.size(); ++i) {
    const char c = host[i];
    if (is_alpha(c) || is_digit(c) || std::string_view("-._~!$&'()*+,;=").find(c) != std::string_view::npos) continue;
    if (c == '%' && i + 2 < host.size() && is_hex(host[i + 1]) && is_hex(host[i + 2])) {
      i += 2;
      continue;
    }
    return false;
  }
  return true;
}

bool valid_ipv6(std::string_view addr) {
  if (addr.empty() || addr.size() >= INET6_ADDRSTRLEN) return false;
  const std::string z(addr);  // inet_pton wants a NUL-terminated string
  in6_addr out{};
  return inet_pton(AF_INET6, z.c_str(), &out) == 1;
}

}  // namespace

Parsed<Url> parse_url(std::string_view text, std::span<const std::string_view> schemes) {
  std::string base = "a URL like scheme://[user[:password]@]host[:port][/path][?query]";
  if (!schemes.empty()) base += " with scheme " + join_or(schemes);
  Parsed<Url> p;
  p.expected = base;
  p.got = redact_url(text);
  const auto fail = [&](std::string_view problem) {
    p.expected = base + " (" + std::string(problem) + ")";
    return std::move(p);
  };

  for (const char c : text)
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return fail("no spaces or control characters");
  if (text.find('#') != std::string_view::npos) return fail("fragments ('#') are not supported");

  const std::size_t colon = text.find(':');
  if (colon == std::string_view::npos || colon == 0) return fail("missing scheme");
  // Network URLs are percent-decoded by their clients (libpq, hiredis, libcurl), and a malformed
  // escape makes some of them echo the whole component, a password too, into their error message.
  if (!is_local_scheme(base::to_lower(text.substr(0, colon)))) {
    for (std::size_t i = colon; i < text.size(); ++i)
      if (text[i] == '%' && (i + 2 >= text.size() || !is_hex(text[i + 1]) || !is_hex(text[i + 2])))
        return fail("'%' must start a percent-escape of two hex digits, such as %25 for '%' itself");
  }
  Url url;
  for (std::size_t i = 0; i < colon; ++i) {
    const char c = text[i];
    if (!(is_alpha(c) || (i > 0 && (is_digit(c) || c == '+' || c == '-' || c == '.'))))
      return fail("the scheme must be a letter followed by letters, digits, '+', '-' or '.'");
    url.scheme += ascii_lower(c);
  }
  if (!schemes.empty() &&
      std::none_of(schemes.begin(), schemes.end(), [&](std::string_view s) { return iequals(s, url.scheme); }))
    return fail("unsupported scheme '" + url.scheme + "'");
  const bool local = is_local_scheme(url.scheme);

  std::string_view rest = text.substr(colon + 1);
  if (rest.starts_with("//")) {
    rest.remove_prefix(2);
    const std::size_t auth_end = std::min(rest.find_first_of("/?"), rest.size());
    std::string_view host_port = rest.substr(0, auth_end);
    rest.remove_prefix(auth_end);
    if (const std::size_t at = host_port.rfind('@'); at != std::string_view::npos) {
      url.userinfo = host_port.substr(0, at);
      host_port.remove_prefix(at + 1);
    }
    std::string_view port;
    bool has_port = false;
    if (host_port.starts_with('[')) {
      const std::size_t close = host_port.find(']');
      if (close == std::string_view::npos || !valid_ipv6(host_port.substr(1, close - 1)))
        return fail("invalid IPv6 address");
      url.host = host_port.substr(1, close - 1);
      const std::string_view after = host_port.substr(close + 1);
      if (!after.empty() && after[0] != ':') return fail("unexpected text after the IPv6 address");
      has_port = !after.empty();
      if (has_port) port = after.substr(1);
    } else {
      const std::size_t port_at = host_port.find(':');
      has_port = port_at != std::string_view::npos;
      if (has_port) port = host_port.substr(port_at + 1);
      const std::string_view host = host_port.substr(0, port_at);
      if (!valid_reg_name(host)) return fail("invalid host");
      url.host = host;
    }
    if (url.host.empty() && (!local || has_port || !url.userinfo.empty())) return fail("missing host");
    if (has_port) {
      int n = 0;
      const auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), n);
      if (port.empty() || port.size() > 5 || ec != std::errc() || ptr != port.data() + port.size() || n < 1 ||
          n > 65535)
        return fail("the port must be from 1 to 65535");
      url.port = static_cast<std::uint16_t>(n);
    }
  } else if (!local) {
    return fail("missing '//' after the scheme");
  }

  const std::size_t q = rest.find('?');
  url.path = rest.substr(0, q);
  if (q != std::string_view::npos) url.query = rest.substr(q + 1);
  if (url.host.empty() && url.path.empty()) return fail("missing path");
  p.value = std::move(url);
  return p;
}

Parsed<Url> parse_url(std::string_view text, std::initializer_list<std::string_view> schemes) {
  return parse_url(text, std::span<const std::string_view>(schemes.begin(), schemes.size()));
}

std::string redact_url(std::string_view text) {
  std::string out(text);
  const std::size_t scheme_end = text.find("://");
  if (scheme_end == std::string_view::npos) return out;
  const std::size_t auth_start = scheme_end + 3;
  const std::size_t auth_end = std::min(text.find_first_of("/?#", auth_start), text.size());
  const std::string_view authority = text.substr(auth_start, auth_end - auth_start);
  const std::size_t at = authority.rfind('@');
  if (at == std::string_view::npos) return out;
  const std::size_t colon = authority.find(':');
  if (colon >= at || colon + 1 == at) return out;  // no password, or an empty one
  out.replace(auth_start + colon + 1, at - colon - 1, "***");
  return out;
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  // Three rolling rows of the optimal-string-alignment table: the transposition case looks two
  // rows back.
  std::vector<std::size_t> two_back(b.size() + 1), prev(b.size() + 1), cur(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const bool same = ascii_lower(a[i - 1]) == ascii_lower(b[j - 1]);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (same ? 0 : 1)});
      if (i > 1 && j > 1 && ascii_lower(a[i - 1]) == ascii_lower(b[j - 2]) &&
          ascii_lower(a[i - 2]) == ascii_lower(b[j - 1]))
        cur[j] = std::min(cur[j], two_back[j - 2] + 1);
    }
    std::swap(two_back, prev);
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string suggest(std::string_view name, std::span<const std::string_view> candidates) {
  const std::size_t limit = std::max<std::size_t>(1, name.size() / 3);
  std::string_view best;
  std::size_t best_distance = limit + 1;
  for (const std::string_view candidate : candidates) {
    const std::size_t d = edit_distance(name, candidate);
    if (d < best_distance) {
      best = candidate;
      best_distance = d;
    }
  }
  return std::string(best);
}

std::string suggest(std::string_view name, std::initializer_list<std::string_view> candidates) {
  return suggest(name, std::span<const std::string_view>(candidates.begin(), candidates.size()));
}

std::string to_env_name(std::string_view prefix, std::string_view setting_name) {
  std::string out(prefix);
  for (const char c : setting_name) out += c == '-' || c == '.' ? '_' : ascii_upper(c);
  return out;
}

std::string to_flag_name(std::string_view setting_name) {
  std::string out = "--";
  for (const char c : setting_name) out += c == '_' || c == '.' ? '-' : ascii_lower(c);
  return out;
}

std::string format_duration(std::chrono::milliseconds d) {
  const auto ms = d.count();
  if (ms == 0) return "0s";
  for (const auto& [unit, per] : {std::pair{"h", 3600000LL}, std::pair{"m", 60000LL}, std::pair{"s", 1000LL}})
    if (ms % per == 0) return std::to_string(ms / per) + unit;
  return std::to_string(ms) + "ms";
}

std::string format_size(std::uint64_t bytes) {
  if (bytes == 0) return "0";
  constexpr std::pair<const char*, std::uint64_t> kUnits[] = {{"TiB", 1ULL << 40}, {"TB", 1000ULL * 1000 * 1000 * 1000},
                                                              {"GiB", 1ULL << 30}, {"GB", 1000ULL * 1000 * 1000},
                                                              {"MiB", 1ULL << 20}, {"MB", 1000ULL * 1000},
                                                              {"KiB", 1ULL << 10}, {"KB", 1000ULL}};
  for (const auto& [unit, per] : kUnits)
    if (bytes % per == 0) return std::to_string(bytes / per) + unit;
  return std::to_string(bytes);
}

}  // namespace keel::config
