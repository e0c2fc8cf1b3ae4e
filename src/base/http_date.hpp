// HTTP dates (RFC 9110 §5.6.7) and the Retry-After header (§10.2.3).
#pragma once

#include <chrono>
#include <cstddef>
#include <ctime>
#include <optional>
#include <string_view>

namespace keel::base {

// The length of an IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT".
inline constexpr std::size_t kHttpDateSize = 29;

// Writes the IMF-fixdate of t (UTC) to out[0, kHttpDateSize), with no terminating NUL. English
// day and month names whatever the locale; years outside 0-9999 are clamped.
void format_http_date(std::time_t t, char* out) noexcept;

// An HTTP date: IMF-fixdate, or the obsolete RFC 850 ("Sunday, 06-Nov-94 08:49:37 GMT") and
// asctime ("Sun Nov  6 08:49:37 1994") forms a recipient must accept. nullopt when malformed
// (also an impossible date such as 31 Feb, or anything around it, whitespace included).
std::optional<std::chrono::system_clock::time_point> parse_http_date(std::string_view text);

// The wait a Retry-After value asks for: delay-seconds, or an HTTP date relative to `now` (zero
// when already past). Leading SP/HTAB and trailing SP/HTAB/CR/LF are ignored. nullopt when
// malformed or a delay of more than 9 digits.
std::optional<std::chrono::milliseconds> parse_retry_after(std::string_view value,
                                                           std::chrono::system_clock::time_point now);

}  // namespace keel::base
