// Reference checks of HTTP/1.1 grammar (RFC 9110 / RFC 9112 / RFC 3986) for the fuzz targets,
// written from the RFCs independently of src/http: the chunked target compares keel's decoder with
// them, the differential target uses them as witnesses for its documented exceptions.
#pragma once

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <cstring>
#include <string_view>

namespace keel::fuzz {

// RFC 9110 §5.6.2 tchar.
inline bool ref_tchar(unsigned char c) {
  if (c >= '0' && c <= '9') return true;
  if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return true;
  return c != 0 && std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}
// RFC 9110 §5.5 field-vchar / obs-text, SP, HTAB: what a field value (or quoted-string) may hold.
inline bool ref_field_vchar(unsigned char c) {
  return c == '\t' || (c >= 0x20 && c != 0x7f);
}
inline bool ref_ows(unsigned char c) {
  return c == ' ' || c == '\t';
}

// RFC 9112 §7.1.1: the chunk-ext after the chunk size,
//   *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] ), ext-val = token / quoted-string,
// with no whitespace at the end of the line (the grammar has none there).
inline bool ref_chunk_ext(std::string_view ext) {
  std::size_t i = 0;
  const std::size_t n = ext.size();
  const auto u = [&](std::size_t k) { return static_cast<unsigned char>(ext[k]); };
  const auto skip_ows = [&] {
    while (i < n && ref_ows(u(i))) ++i;
  };
  while (i < n) {
    skip_ows();
    if (i == n || ext[i] != ';') return false;
    ++i;
    skip_ows();
    const std::size_t name = i;
    while (i < n && ref_tchar(u(i))) ++i;
    if (i == name) return false;
    const std::size_t after_name = i;
    skip_ows();
    if (i == n) return i == after_name;
    if (ext[i] == ';') continue;
    if (ext[i] != '=') return false;
    ++i;
    skip_ows();
    if (i < n && ext[i] == '"') {
      ++i;
      for (;;) {
        if (i == n) return false;  // unterminated
        const unsigned char c = u(i++);
        if (c == '"') break;
        if (c == '\\') {
          if (i == n || !ref_field_vchar(u(i))) return false;
          ++i;
        } else if (!ref_field_vchar(c)) {
          return false;
        }
      }
    } else {
      const std::size_t value = i;
      while (i < n && ref_tchar(u(i))) ++i;
      if (i == value) return false;
    }
  }
  return true;
}

// RFC 3986 §3.2.2/§3.2.3: uri-host [ ":" port ] (port required when require_port), the host an
// IP-literal in brackets (checked for its character set only), or a reg-name / IPv4address of
// unreserved, pct-encoded and sub-delims; an empty host is refused (RFC 9110 §4.2.1).
inline bool ref_host_port(std::string_view v, bool require_port) {
  const auto reg = [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return (u >= '0' && u <= '9') || ((u | 0x20) >= 'a' && (u | 0x20) <= 'z') ||
           (u != 0 && std::strchr("-._~!$&'()*+,;=", u) != nullptr);
  };
  std::size_t i = 0;
  const std::size_t n = v.size();
  if (n > 0 && v[0] == '[') {
    const std::size_t close = v.find(']');
    if (close == std::string_view::npos || close == 1) return false;
    for (std::size_t j = 1; j < close; ++j)
      if (!reg(v[j]) && v[j] != ':' && v[j] != '%') return false;
    i = close + 1;
  } else {
    for (; i < n && v[i] != ':'; ++i) {
      if (v[i] == '%') {
        if (n - i < 3 || !std::isxdigit(static_cast<unsigned char>(v[i + 1])) ||
            !std::isxdigit(static_cast<unsigned char>(v[i + 2])))
          return false;
        i += 2;
      } else if (!reg(v[i])) {
        return false;
      }
    }
    if (i == 0) return false;
  }
  if (i == n) return !require_port;
  if (v[i] != ':') return false;
  return std::all_of(v.begin() + static_cast<std::ptrdiff_t>(i) + 1, v.end(),
                     [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace keel::fuzz
