// Text building blocks of the two exposition formats (Prometheus text 0.0.4 and OpenMetrics 1.0):
// numbers, escaping, UTF-8 repair. The formats themselves are written by Registry::render().
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "metrics/registry.hpp"

namespace keel::metrics_detail {

// A sample value: integers up to 2^53 without exponent or decimal point ("5"), other values in
// the shortest form that reads back to the same double ("0.25", "1e-07"), "+Inf", "-Inf", "NaN".
void append_value(std::string& out, double v);
void append_uint(std::string& out, std::uint64_t v);

// A histogram bound as the "le" label value: Go's %g with the shortest digits ("0.005", "1",
// "1e+06", "+Inf"); OpenMetrics canonical numbers add ".0" to integral values ("1.0").
std::string format_bound(double v, Format format);

// Label value escaping (both formats): backslash, double quote and line feed.
void append_escaped_label_value(std::string& out, std::string_view v);
// HELP escaping: backslash and line feed; OpenMetrics also escapes the double quote.
void append_escaped_help(std::string& out, std::string_view help, Format format);

// Appends `in` to `out` with every maximal ill-formed UTF-8 subsequence (Unicode 15, 3.9) replaced
// by U+FFFD. Returns false when something was replaced.
bool append_utf8_repaired(std::string& out, std::string_view in);
[[nodiscard]] bool is_valid_utf8(std::string_view in) noexcept;

}  // namespace keel::metrics_detail
