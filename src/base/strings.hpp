// ASCII text helpers every module shares: case, whitespace, hex, percent-decoding and the address
// part of a peer. No locale is consulted anywhere (HTTP, URLs, ids and setting names are ASCII), and
// no byte above 0x7f is ever folded or classified.
//
// The small, hot ones (iequals, trim, hex_value) are inline: the request parser calls them for
// every header field.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "keel/url.hpp"  // keel::percent_decode (lenient), public API

namespace keel::base {

// ---- case ----------------------------------------------------------------------------------

constexpr char ascii_lower(char c) noexcept {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}
constexpr char ascii_upper(char c) noexcept {
  return c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c;
}

// s with A-Z lowered.
std::string to_lower(std::string_view s);

// ASCII case-insensitive equality: only A-Z fold ('@' and '`', '[' and '{' differ; so do
// 0xC0 and 0xE0).
constexpr bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  return true;
}

// ---- whitespace ----------------------------------------------------------------------------

inline constexpr std::string_view kOws = " \t";          // RFC 9110 OWS: SP and HTAB
inline constexpr std::string_view kOwsCrLf = " \t\r\n";  // OWS plus a header line's end

constexpr std::string_view trim_left(std::string_view s, std::string_view chars = kOws) noexcept {
  const std::size_t first = s.find_first_not_of(chars);
  return first == std::string_view::npos ? std::string_view() : s.substr(first);
}
constexpr std::string_view trim_right(std::string_view s, std::string_view chars = kOws) noexcept {
  const std::size_t last = s.find_last_not_of(chars);
  return last == std::string_view::npos ? std::string_view() : s.substr(0, last + 1);
}
// s without leading and trailing `chars` (by default OWS).
constexpr std::string_view trim(std::string_view s, std::string_view chars = kOws) noexcept {
  return trim_right(trim_left(s, chars), chars);
}

// ---- hex -----------------------------------------------------------------------------------

inline constexpr char kHexDigits[] = "0123456789abcdef";

// The value of a hex digit of either case, or -1.
constexpr int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
// The value of a lowercase hex digit (HEXDIGLC: the W3C trace context grammar), or -1.
constexpr int lower_hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// Writes 2 * bytes.size() lowercase hex digits at out; returns the end of what was written.
char* hex_into(std::span<const std::uint8_t> bytes, char* out) noexcept;
void append_hex(std::string& out, std::span<const std::uint8_t> bytes);
std::string to_hex(std::span<const std::uint8_t> bytes);

// Decodes the first 2 * out.size() characters of hex, lowercase digits only, into out. False
// (out unspecified) when hex is shorter or holds anything else there.
bool decode_lower_hex(std::string_view hex, std::span<std::uint8_t> out) noexcept;

// ---- percent-encoding (RFC 3986 §2.1) ------------------------------------------------------
// Three callers, three rules; the lenient one is public as keel::percent_decode (keel/url.hpp):
// a '%' not followed by two hex digits stays as written, '+' stays '+', "%00" is a NUL byte.

// One path segment, strictly: false on a '%' not followed by two hex digits and on a decoded NUL.
// '+' stays '+'; a decoded '/' is a literal character of the segment (callers split on raw '/').
bool percent_decode_strict(std::string_view in, std::string& out);

// A form-urlencoded query component: '+' is a space; a malformed escape and "%00" stay as
// written (Request::query_param).
std::string form_decode(std::string_view in);

// ---- peer addresses ------------------------------------------------------------------------

// The address part of a peer as net::format_address prints it: "127.0.0.1:5000" -> "127.0.0.1",
// "[::1]:5000" -> "::1", "unix" -> "unix".
std::string_view client_ip(std::string_view peer) noexcept;  // a view into peer

}  // namespace keel::base
