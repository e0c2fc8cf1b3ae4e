#include "base/http_date.hpp"

#include <algorithm>
#include <charconv>
#include <cstdint>

#include "base/strings.hpp"

namespace keel::base {
namespace {

using std::chrono::milliseconds;

constexpr std::string_view kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
constexpr std::string_view kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

// Writes n digits of v (zero-padded) at out.
char* digits_into(int v, int n, char* out) noexcept {
  for (int i = n - 1; i >= 0; --i, v /= 10) out[i] = static_cast<char>('0' + v % 10);
  return out + n;
}

struct Cursor {
  std::string_view s;

  bool lit(std::string_view t) {
    if (s.substr(0, t.size()) != t) return false;
    s.remove_prefix(t.size());
    return true;
  }
  bool digits(std::size_t min_n, std::size_t max_n, int& out) {
    std::size_t n = 0;
    out = 0;
    while (n < max_n && n < s.size() && s[n] >= '0' && s[n] <= '9') out = out * 10 + (s[n++] - '0');
    if (n < min_n) return false;
    s.remove_prefix(n);
    return true;
  }
  bool letters(std::size_t min_n, std::size_t max_n) {
    std::size_t n = 0;
    while (n < max_n && n < s.size() && ((s[n] | 0x20) >= 'a' && (s[n] | 0x20) <= 'z')) ++n;
    if (n < min_n) return false;
    s.remove_prefix(n);
    return true;
  }
  bool month(int& m) {
    if (s.size() < 3) return false;
    for (int i = 0; i < 12; ++i) {
      const std::string_view name = kMonths[i];
      if (iequals(s.substr(0, 3), name)) {
        m = i + 1;
        s.remove_prefix(3);
        return true;
      }
    }
    return false;
  }
  bool time(int& h, int& mi, int& sec) {
    return digits(2, 2, h) && lit(":") && digits(2, 2, mi) && lit(":") && digits(2, 2, sec) && h <= 23 && mi <= 59 &&
           sec <= 60;
  }
};

}  // namespace

void format_http_date(std::time_t t, char* out) noexcept {
  std::tm tm{};
  gmtime_r(&t, &tm);
  const auto put = [&out](std::string_view s) { out = std::copy(s.begin(), s.end(), out); };
  put(kDays[static_cast<std::size_t>(tm.tm_wday) % 7]);
  put(", ");
  out = digits_into(tm.tm_mday, 2, out);
  put(" ");
  put(kMonths[static_cast<std::size_t>(tm.tm_mon) % 12]);
  put(" ");
  out = digits_into(std::clamp(tm.tm_year + 1900, 0, 9999), 4, out);
  put(" ");
  out = digits_into(tm.tm_hour, 2, out);
  put(":");
  out = digits_into(tm.tm_min, 2, out);
  put(":");
  out = digits_into(tm.tm_sec, 2, out);
  put(" GMT");
}

std::optional<std::chrono::system_clock::time_point> parse_http_date(std::string_view text) {
  Cursor c{text};
  int day = 0, mon = 0, year = 0, h = 0, mi = 0, sec = 0;
  if (!c.letters(3, 9)) return std::nullopt;
  if (c.lit(", ")) {
    if (!c.digits(2, 2, day)) return std::nullopt;
    if (c.lit(" ")) {  // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
      if (!c.month(mon) || !c.lit(" ") || !c.digits(4, 4, year) || !c.lit(" ")) return std::nullopt;
    } else if (c.lit("-")) {  // RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
      if (!c.month(mon) || !c.lit("-") || !c.digits(2, 2, year) || !c.lit(" ")) return std::nullopt;
      year += year < 70 ? 2000 : 1900;
    } else {
      return std::nullopt;
    }
    if (!c.time(h, mi, sec) || !c.lit(" GMT")) return std::nullopt;
  } else if (c.lit(" ")) {  // asctime: Sun Nov  6 08:49:37 1994
    if (!c.month(mon) || !c.lit(" ")) return std::nullopt;
    c.lit(" ");
    if (!c.digits(1, 2, day) || !c.lit(" ") || !c.time(h, mi, sec) || !c.lit(" ") || !c.digits(4, 4, year)) {
      return std::nullopt;
    }
  } else {
    return std::nullopt;
  }
  if (!c.s.empty()) return std::nullopt;
  const std::chrono::year_month_day ymd{std::chrono::year{year}, std::chrono::month{static_cast<unsigned>(mon)},
                                        std::chrono::day{static_cast<unsigned>(day)}};
  if (!ymd.ok()) return std::nullopt;
  return std::chrono::sys_days{ymd} + std::chrono::hours{h} + std::chrono::minutes{mi} + std::chrono::seconds{sec};
}

std::optional<milliseconds> parse_retry_after(std::string_view value, std::chrono::system_clock::time_point now) {
  value = trim_right(trim_left(value), kOwsCrLf);
  if (value.empty()) return std::nullopt;
  if (std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    if (value.size() > 9) return std::nullopt;  // over 31 years: not a delay anyone means
    std::int64_t seconds = 0;
    std::from_chars(value.data(), value.data() + value.size(), seconds);
    return milliseconds(seconds * 1000);
  }
  const auto at = parse_http_date(value);
  if (!at) return std::nullopt;
  if (*at <= now) return milliseconds(0);
  return std::chrono::ceil<milliseconds>(*at - now);
}

}  // namespace keel::base
