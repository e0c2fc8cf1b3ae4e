// Tests of base/http_date.hpp: the Date header keel writes and the HTTP dates and Retry-After
// values it reads (the OTLP exporter's backoff).
#include "base/http_date.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <string_view>

namespace {

using keel::base::kHttpDateSize;
using keel::base::parse_http_date;
using keel::base::parse_retry_after;
using std::chrono::milliseconds;

std::string formatted(std::time_t t) {
  char buf[kHttpDateSize];
  keel::base::format_http_date(t, buf);
  return std::string(buf, kHttpDateSize);
}

std::time_t at(std::chrono::sys_seconds t) {
  return static_cast<std::time_t>(t.time_since_epoch().count());
}

TEST(HttpDate, FormatsImfFixdate) {
  using namespace std::chrono;
  EXPECT_EQ(formatted(0), "Thu, 01 Jan 1970 00:00:00 GMT");
  EXPECT_EQ(formatted(784111777), "Sun, 06 Nov 1994 08:49:37 GMT");  // RFC 9110's example
  EXPECT_EQ(formatted(at(sys_days{year{2024} / February / day{29}} + hours{23} + minutes{59} + seconds{59})),
            "Thu, 29 Feb 2024 23:59:59 GMT");
  EXPECT_EQ(formatted(at(sys_days{year{2038} / January / day{19}} + hours{3} + minutes{14} + seconds{8})),
            "Tue, 19 Jan 2038 03:14:08 GMT");
}

TEST(HttpDate, ParsesTheThreeForms) {
  const auto expected = std::chrono::system_clock::from_time_t(784111777);
  EXPECT_EQ(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), expected);
  EXPECT_EQ(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), expected);
  EXPECT_EQ(parse_http_date("Sun Nov  6 08:49:37 1994"), expected);
  EXPECT_EQ(parse_http_date("sun, 06 NOV 1994 08:49:37 GMT"), expected);  // names in any case
  EXPECT_EQ(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), std::chrono::system_clock::from_time_t(0));
  EXPECT_EQ(parse_http_date("Sat, 01-Jan-00 00:00:00 GMT"), std::chrono::system_clock::from_time_t(946684800));
}

TEST(HttpDate, RoundTrips) {
  for (const std::time_t t : {std::time_t{0}, std::time_t{784111777}, std::time_t{1700000000}, std::time_t{4102444799}})
    EXPECT_EQ(parse_http_date(formatted(t)), std::chrono::system_clock::from_time_t(t)) << t;
}

TEST(HttpDate, RejectsMalformed) {
  for (const std::string_view bad :
       {"", "Sun, 06 Nov 1994 08:49:37", "Sun, 06 Nov 1994 08:49:37 UTC", " Sun, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT ", "Sun, 6 Nov 1994 08:49:37 GMT", "Sun, 06 Nov 94 08:49:37 GMT",
        "Sun, 06 Foo 1994 08:49:37 GMT", "Sun, 06 Nov 1994 24:00:00 GMT", "Sun, 06 Nov 1994 08:60:00 GMT",
        "Sun, 30 Feb 1994 08:49:37 GMT", "Sun,06 Nov 1994 08:49:37 GMT", "1994-11-06T08:49:37Z"})
    EXPECT_FALSE(parse_http_date(bad)) << bad;
}

TEST(RetryAfter, SecondsAndDates) {
  using namespace std::chrono;
  const system_clock::time_point date = sys_days{year{1994} / November / day{6}} + hours{8} + minutes{49} + seconds{37};
  const auto now = date - seconds(5);
  EXPECT_EQ(parse_retry_after("1", now), milliseconds(1000));
  EXPECT_EQ(parse_retry_after(" 120 ", now), milliseconds(120000));
  EXPECT_EQ(parse_retry_after("0", now), milliseconds(0));
  EXPECT_EQ(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now), milliseconds(5000));
  EXPECT_EQ(parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", now), milliseconds(5000));
  EXPECT_EQ(parse_retry_after("Sun Nov  6 08:49:37 1994", now), milliseconds(5000));
  EXPECT_EQ(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", date + seconds(30)), milliseconds(0));  // past
  EXPECT_FALSE(parse_retry_after("", now));
  EXPECT_FALSE(parse_retry_after("-1", now));
  EXPECT_FALSE(parse_retry_after("1.5", now));
  EXPECT_FALSE(parse_retry_after("soon", now));
  EXPECT_FALSE(parse_retry_after("Sun, 31 Feb 1994 08:49:37 GMT", now));
  EXPECT_FALSE(parse_retry_after("Sun, 06 Nov 1994 25:49:37 GMT", now));
  EXPECT_FALSE(parse_retry_after("Sun, 06 Nov 1994 08:49:37 CET", now));
  EXPECT_FALSE(parse_retry_after("99999999999999999999", now));
}

TEST(RetryAfter, WhitespaceAroundTheValue) {
  const auto now = std::chrono::system_clock::from_time_t(784111777);
  EXPECT_EQ(parse_retry_after("\t7\r\n", now), milliseconds(7000));  // a raw header line's end
  EXPECT_EQ(parse_retry_after("Sun, 06 Nov 1994 08:49:39 GMT \r\n", now), milliseconds(2000));
  EXPECT_FALSE(parse_retry_after("\r\n7", now));  // CR/LF only at the end
  EXPECT_FALSE(parse_retry_after(" \t ", now));
  EXPECT_EQ(parse_retry_after("999999999", now), milliseconds(999999999000));
  EXPECT_FALSE(parse_retry_after("1000000000", now));  // 10 digits
}

}  // namespace
