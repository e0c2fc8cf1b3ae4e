#include "metrics/exposition.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <string>
#include <string_view>
#include <system_error>

#include "base/strings.hpp"

namespace keel::metrics_detail {
namespace {

constexpr double kTwo53 = 9007199254740992.0;
constexpr std::string_view kReplacement = "\xef\xbf\xbd";  // U+FFFD

// Length of the well-formed UTF-8 sequence starting at in[i], or 0 with *bad set to the number of
// bytes of the maximal ill-formed subpart to replace.
std::size_t utf8_sequence(std::string_view in, std::size_t i, std::size_t* bad) noexcept {
  const auto c = static_cast<unsigned char>(in[i]);
  if (c < 0x80) return 1;
  std::size_t len = 0;
  unsigned char lo = 0x80;
  unsigned char hi = 0xbf;
  if (c >= 0xc2 && c <= 0xdf) {
    len = 2;
  } else if (c == 0xe0) {
    len = 3;
    lo = 0xa0;
  } else if ((c >= 0xe1 && c <= 0xec) || c == 0xee || c == 0xef) {
    len = 3;
  } else if (c == 0xed) {  // no surrogates
    len = 3;
    hi = 0x9f;
  } else if (c == 0xf0) {
    len = 4;
    lo = 0x90;
  } else if (c >= 0xf1 && c <= 0xf3) {
    len = 4;
  } else if (c == 0xf4) {  // nothing above U+10FFFF
    len = 4;
    hi = 0x8f;
  } else {
    *bad = 1;
    return 0;
  }
  for (std::size_t k = 1; k < len; ++k) {
    if (i + k >= in.size()) {
      *bad = k;
      return 0;
    }
    const auto d = static_cast<unsigned char>(in[i + k]);
    const unsigned char min = k == 1 ? lo : 0x80;
    const unsigned char max = k == 1 ? hi : 0xbf;
    if (d < min || d > max) {
      *bad = k;
      return 0;
    }
  }
  return len;
}

}  // namespace

bool is_valid_utf8(std::string_view in) noexcept {
  std::size_t i = 0;
  while (i < in.size()) {
    if (static_cast<unsigned char>(in[i]) < 0x80) {
      ++i;
      continue;
    }
    std::size_t bad = 0;
    const std::size_t n = utf8_sequence(in, i, &bad);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

bool append_utf8_repaired(std::string& out, std::string_view in) {
  if (is_valid_utf8(in)) {
    out.append(in);
    return true;
  }
  std::size_t i = 0;
  while (i < in.size()) {
    std::size_t bad = 0;
    const std::size_t n = utf8_sequence(in, i, &bad);
    if (n != 0) {
      out.append(in.substr(i, n));
      i += n;
    } else {
      out.append(kReplacement);
      i += bad;
    }
  }
  return false;
}

void append_uint(std::string& out, std::uint64_t v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void append_value(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
    return;
  }
  if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
    return;
  }
  char buf[32];
  std::to_chars_result r;
  if (std::fabs(v) < kTwo53 && v == std::trunc(v)) {
    r = std::to_chars(buf, buf + sizeof buf, static_cast<std::int64_t>(v));
  } else {
    r = std::to_chars(buf, buf + sizeof buf, v);  // shortest round trip
  }
  out.append(buf, r.ptr);
}

std::string format_bound(double v, Format format) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  // The shortest digits d.ddd and the exponent, then Go's rule for %g with the shortest precision:
  // exponent form when exp < -4 || exp >= 6 (the exponent with a sign and at least two digits, as
  // std::to_chars writes it too).
  char buf[40];
  const auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  std::string_view sci(buf, static_cast<std::size_t>(r.ptr - buf));
  std::string out;
  if (sci.front() == '-') {
    out += '-';
    sci.remove_prefix(1);
  }
  const std::size_t e = sci.find('e');
  std::string digits(1, sci[0]);
  if (e > 2) digits.append(sci.substr(2, e - 2));
  int exp = 0;
  const std::string_view exp_text = sci.substr(e + 1);
  std::from_chars(exp_text.data() + (exp_text.front() == '+' ? 1 : 0), exp_text.data() + exp_text.size(), exp);
  if (exp < -4 || exp >= 6) {
    out.append(sci);
    return out;
  }
  if (exp < 0) {
    out += "0.";
    out.append(static_cast<std::size_t>(-exp - 1), '0');
    out += digits;
    return out;
  }
  const auto int_digits = static_cast<std::size_t>(exp) + 1;
  if (digits.size() <= int_digits) {
    out += digits;
    out.append(int_digits - digits.size(), '0');
    if (format == Format::kOpenMetrics) out += ".0";
  } else {
    out.append(digits, 0, int_digits);
    out += '.';
    out.append(digits, int_digits);
  }
  return out;
}

void append_escaped_label_value(std::string& out, std::string_view v) {
  std::size_t start = 0;
  for (std::size_t i = 0; i < v.size(); ++i) {
    const char c = v[i];
    if (c != '\\' && c != '"' && c != '\n') continue;
    out.append(v.substr(start, i - start));
    out += '\\';
    out += c == '\n' ? 'n' : c;
    start = i + 1;
  }
  out.append(v.substr(start));
}

void append_escaped_help(std::string& out, std::string_view help, Format format) {
  const bool quote = format == Format::kOpenMetrics;
  std::size_t start = 0;
  for (std::size_t i = 0; i < help.size(); ++i) {
    const char c = help[i];
    if (c != '\\' && c != '\n' && !(quote && c == '"')) continue;
    out.append(help.substr(start, i - start));
    out += '\\';
    out += c == '\n' ? 'n' : c;
    start = i + 1;
  }
  out.append(help.substr(start));
}

namespace {

using base::iequals;
using base::trim;

// RFC 9110 qvalue, leniently: a number in [0, 1]; anything else makes the element ignored.
bool parse_q(std::string_view s, double* q) {
  if (s.empty()) return false;
  double v = 0;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec != std::errc() || r.ptr != s.data() + s.size() || !(v >= 0) || v > 1) return false;
  *q = v;
  return true;
}

}  // namespace

Format negotiate(std::string_view accept) {
  double q_openmetrics = 0;
  double q_text = 0;  // of the most specific range matching text/plain
  int text_specificity = 0;
  while (!accept.empty()) {
    const std::size_t comma = accept.find(',');
    std::string_view element = accept.substr(0, comma);
    accept = comma == std::string_view::npos ? std::string_view() : accept.substr(comma + 1);

    std::size_t semi = element.find(';');
    const std::string_view media = trim(element.substr(0, semi));
    double q = 1;
    bool ok = true;
    bool known_version = true;
    while (semi != std::string_view::npos) {
      element = element.substr(semi + 1);
      semi = element.find(';');
      const std::string_view param = trim(element.substr(0, semi));
      const std::size_t eq = param.find('=');
      if (eq == std::string_view::npos) continue;
      const std::string_view name = trim(param.substr(0, eq));
      std::string_view value = trim(param.substr(eq + 1));
      if (value.size() >= 2 && value.front() == '"' && value.back() == '"') value = value.substr(1, value.size() - 2);
      if (iequals(name, "q")) {
        ok = parse_q(value, &q);
      } else if (iequals(name, "version")) {
        known_version = value == "1.0.0" || value == "0.0.1";
      }
    }
    if (!ok || media.empty()) continue;
    if (iequals(media, "application/openmetrics-text")) {
      if (known_version) q_openmetrics = std::max(q_openmetrics, q);
      continue;
    }
    int specificity = 0;
    if (iequals(media, "text/plain")) {
      specificity = 3;
    } else if (iequals(media, "text/*")) {
      specificity = 2;
    } else if (media == "*/*") {
      specificity = 1;
    }
    if (specificity == 0) continue;
    if (specificity > text_specificity) {
      text_specificity = specificity;
      q_text = q;
    } else if (specificity == text_specificity) {
      q_text = std::max(q_text, q);
    }
  }
  // A tie with text/plain listed by name keeps the Prometheus format; a tie with a wildcard only
  // ("application/openmetrics-text, */*") goes to the type the client named.
  const bool openmetrics =
      q_openmetrics > 0 && (q_openmetrics > q_text || (text_specificity < 3 && q_openmetrics >= q_text));
  return openmetrics ? Format::kOpenMetrics : Format::kPrometheus;
}

const char* content_type(Format format) {
  return format == Format::kOpenMetrics ? "application/openmetrics-text; version=1.0.0; charset=utf-8"
                                        : "text/plain; version=0.0.4; charset=utf-8";
}

}  // namespace keel::metrics_detail
