#include "config/values.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace {

using namespace keel::config;
using std::chrono::milliseconds;

bool contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

TEST(ConfigValuesParsed, MessageShape) {
  const auto r = parse_duration("abc");
  EXPECT_FALSE(r);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.got, "abc");
  EXPECT_EQ(r.message(), "expected a duration like 500ms, 30s, 5m or a number of seconds, got 'abc'");
  const auto good = parse_duration("5s");
  ASSERT_TRUE(good);
  EXPECT_EQ(good.expected, r.expected);  // set on success too, usable as help text
}

TEST(ConfigValuesBool, AcceptsAllSpellingsInAnyCase) {
  for (std::string_view t : {"true", "TRUE", "True", "yes", "YES", "on", "On", "1"}) {
    const auto r = parse_bool(t);
    ASSERT_TRUE(r) << t;
    EXPECT_TRUE(*r.value) << t;
  }
  for (std::string_view f : {"false", "FALSE", "no", "No", "off", "OFF", "0"}) {
    const auto r = parse_bool(f);
    ASSERT_TRUE(r) << f;
    EXPECT_FALSE(*r.value) << f;
  }
}

TEST(ConfigValuesBool, RejectsEverythingElse) {
  for (std::string_view bad : {"", "y", "n", "t", "2", "-1", "01", " true", "true ", "enable", "yess", "of"}) {
    const auto r = parse_bool(bad);
    EXPECT_FALSE(r) << bad;
    EXPECT_TRUE(contains(r.message(), "true/false")) << r.message();
  }
}

TEST(ConfigValuesInt, AcceptsSignsAndBoundaries) {
  EXPECT_EQ(parse_int("0").value, 0);
  EXPECT_EQ(parse_int("42").value, 42);
  EXPECT_EQ(parse_int("+42").value, 42);
  EXPECT_EQ(parse_int("-42").value, -42);
  EXPECT_EQ(parse_int("-0").value, 0);
  EXPECT_EQ(parse_int("007").value, 7);
  EXPECT_EQ(parse_int("1", 1, 1024).value, 1);
  EXPECT_EQ(parse_int("1024", 1, 1024).value, 1024);
  EXPECT_EQ(parse_int("9223372036854775807").value, std::numeric_limits<std::int64_t>::max());
  EXPECT_EQ(parse_int("-9223372036854775808").value, std::numeric_limits<std::int64_t>::min());
}

TEST(ConfigValuesInt, RejectsMalformedAndOutOfRange) {
  for (std::string_view bad :
       {"", "+", "-", "+-1", "-+1", "++1", "1.0", "1e3", "0x10", " 1", "1 ", "1_000", "abc", "12abc", "\xd9\xa1"}) {
    EXPECT_FALSE(parse_int(bad)) << bad;
  }
  EXPECT_FALSE(parse_int("9223372036854775808"));   // overflow
  EXPECT_FALSE(parse_int("-9223372036854775809"));  // underflow
  EXPECT_FALSE(parse_int("99999999999999999999999"));
  EXPECT_FALSE(parse_int("0", 1, 1024));
  EXPECT_FALSE(parse_int("1025", 1, 1024));
  EXPECT_FALSE(parse_int("-1", 0));
}

TEST(ConfigValuesInt, MessageNamesTheRange) {
  EXPECT_EQ(parse_int("2000", 1, 1024).message(), "expected an integer from 1 to 1024, got '2000'");
  EXPECT_EQ(parse_int("x", 0).expected, "an integer >= 0");
  EXPECT_EQ(parse_int("x", std::numeric_limits<std::int64_t>::min(), 10).expected, "an integer <= 10");
  EXPECT_EQ(parse_int("x").expected, "an integer");
  EXPECT_EQ(parse_int("-5", -10, -1).expected, "an integer from -10 to -1");
}

TEST(ConfigValuesFloat, AcceptsFiniteNumbersInRange) {
  EXPECT_DOUBLE_EQ(*parse_float("0").value, 0.0);
  EXPECT_DOUBLE_EQ(*parse_float("0.5").value, 0.5);
  EXPECT_DOUBLE_EQ(*parse_float("+0.5").value, 0.5);
  EXPECT_DOUBLE_EQ(*parse_float("-2.25").value, -2.25);
  EXPECT_DOUBLE_EQ(*parse_float(".5").value, 0.5);
  EXPECT_DOUBLE_EQ(*parse_float("1e-3").value, 0.001);
  EXPECT_DOUBLE_EQ(*parse_float("1.5E2").value, 150.0);
  EXPECT_DOUBLE_EQ(*parse_float("0", 0, 1).value, 0.0);
  EXPECT_DOUBLE_EQ(*parse_float("1", 0, 1).value, 1.0);
}

TEST(ConfigValuesFloat, RejectsNonFiniteMalformedAndOutOfRange) {
  for (std::string_view bad : {"", "+", "-", ".", "+-1", "inf", "-inf", "infinity", "nan", "NaN", "1e400", "-1e400",
                               "0x1p3", "1.0.0", " 1", "1 ", "1,5", "abc"}) {
    EXPECT_FALSE(parse_float(bad)) << bad;
  }
  EXPECT_FALSE(parse_float("-0.001", 0, 1));
  EXPECT_FALSE(parse_float("1.001", 0, 1));
  EXPECT_EQ(parse_float("2", 0, 1).message(), "expected a number from 0 to 1, got '2'");
  EXPECT_EQ(parse_float("x", 0.5).expected, "a number >= 0.5");
  EXPECT_EQ(parse_float("x").expected, "a number");
}

TEST(ConfigValuesDuration, AcceptsUnitsAndBareSeconds) {
  EXPECT_EQ(parse_duration("500ms").value, milliseconds(500));
  EXPECT_EQ(parse_duration("30s").value, milliseconds(30'000));
  EXPECT_EQ(parse_duration("5m").value, milliseconds(300'000));
  EXPECT_EQ(parse_duration("1h").value, milliseconds(3'600'000));
  EXPECT_EQ(parse_duration("1.5s").value, milliseconds(1500));
  EXPECT_EQ(parse_duration("0.25h").value, milliseconds(900'000));
  EXPECT_EQ(parse_duration("2.5").value, milliseconds(2500));
  EXPECT_EQ(parse_duration("10").value, milliseconds(10'000));
  EXPECT_EQ(parse_duration("0").value, milliseconds(0));
  EXPECT_EQ(parse_duration("0ms").value, milliseconds(0));
  EXPECT_EQ(parse_duration("0.4ms").value, milliseconds(0));  // rounded to the nearest ms
  EXPECT_EQ(parse_duration("0.5ms").value, milliseconds(1));
  EXPECT_EQ(parse_duration("1000000000s").value, milliseconds(1'000'000'000'000));  // the cap itself
}

TEST(ConfigValuesDuration, RejectsNegativeMalformedAndHuge) {
  for (std::string_view bad : {"",    "-1",  "-1s",    "+1s", "abc", "s",    "ms", "1x",   "1S",    "1 s",
                               " 1s", "1s ", "1.2.3s", ".",   "1e3", "1e3s", "1d", "5min", "1h30m", "1,5s"}) {
    const auto r = parse_duration(bad);
    EXPECT_FALSE(r) << bad;
    EXPECT_TRUE(contains(r.message(), "a duration like 500ms, 30s, 5m or a number of seconds")) << r.message();
  }
  EXPECT_FALSE(parse_duration("1000000001s"));  // just over 10^12 ms
  EXPECT_FALSE(parse_duration("99999999999h"));
  EXPECT_FALSE(parse_duration(std::string(400, '9')));  // would be inf as a double
}

TEST(ConfigValuesSize, AcceptsBytesAndUnits) {
  EXPECT_EQ(parse_size("0").value, 0u);
  EXPECT_EQ(parse_size("512").value, 512u);
  EXPECT_EQ(parse_size("10B").value, 10u);
  EXPECT_EQ(parse_size("64KiB").value, 64u * 1024);
  EXPECT_EQ(parse_size("1KB").value, 1000u);
  EXPECT_EQ(parse_size("1MB").value, 1'000'000u);
  EXPECT_EQ(parse_size("512MiB").value, 512ULL * 1024 * 1024);
  EXPECT_EQ(parse_size("1GB").value, 1'000'000'000ULL);
  EXPECT_EQ(parse_size("2GiB").value, 2ULL << 30);
  EXPECT_EQ(parse_size("3TB").value, 3'000'000'000'000ULL);
  EXPECT_EQ(parse_size("1TiB").value, 1ULL << 40);
  EXPECT_EQ(parse_size("18446744073709551615").value, std::numeric_limits<std::uint64_t>::max());
  EXPECT_EQ(parse_size("16777215TiB").value, 16777215ULL << 40);  // largest whole TiB count
}

TEST(ConfigValuesSize, RejectsMalformedLowercaseAndOverflow) {
  for (std::string_view bad : {"",    "B",  "KiB", "-1",   "+1",  "1.5GiB", "1 KiB", " 1",  "1 ",  "1kb",
                               "1mb", "1k", "1M",  "1kib", "1Kb", "1KIB",   "1b",    "1PB", "abc", "0x10"}) {
    const auto r = parse_size(bad);
    EXPECT_FALSE(r) << bad;
    EXPECT_TRUE(contains(r.message(), "a size like 512MiB, 1GB or a number of bytes")) << r.message();
  }
  EXPECT_FALSE(parse_size("18446744073709551616"));  // 2^64
  EXPECT_FALSE(parse_size("16777216TiB"));           // 2^64 bytes
  EXPECT_FALSE(parse_size("18446744073709551615KB"));
  EXPECT_FALSE(parse_size(std::string(40, '9')));
}

TEST(ConfigValuesList, SplitsTrimsAndDropsEmptyItems) {
  EXPECT_EQ(split_list("a, b,,c "), (std::vector<std::string_view>{"a", "b", "c"}));
  EXPECT_EQ(split_list("  one two , \tthree\t"), (std::vector<std::string_view>{"one two", "three"}));
  EXPECT_TRUE(split_list("").empty());
  EXPECT_TRUE(split_list(" , ,, ").empty());
  const auto r = parse_list("x,y");
  ASSERT_TRUE(r);
  EXPECT_EQ(*r.value, (std::vector<std::string>{"x", "y"}));
  const auto empty = parse_list("");
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty.value->empty());
}

TEST(ConfigValuesList, AppliesItemParser) {
  const auto durations = parse_list("500ms, 2s,1m", parse_duration);
  ASSERT_TRUE(durations);
  EXPECT_EQ(*durations.value, (std::vector<milliseconds>{milliseconds(500), milliseconds(2000), milliseconds(60'000)}));

  const auto ports = parse_list("80, 443", [](std::string_view s) { return parse_int(s, 1, 65535); });
  ASSERT_TRUE(ports);
  EXPECT_EQ(*ports.value, (std::vector<std::int64_t>{80, 443}));

  const auto none = parse_list(" , ", parse_size);
  ASSERT_TRUE(none);
  EXPECT_TRUE(none.value->empty());
}

TEST(ConfigValuesList, FailsOnFirstBadItemAndNamesIt) {
  const auto r = parse_list("80, 99999, abc", [](std::string_view s) { return parse_int(s, 1, 65535); });
  EXPECT_FALSE(r);
  EXPECT_EQ(r.got, "99999");
  EXPECT_EQ(r.message(), "expected each comma-separated item to be an integer from 1 to 65535, got '99999'");
  const auto d = parse_list("1s, soon", parse_duration);
  EXPECT_FALSE(d);
  EXPECT_TRUE(contains(d.message(), "a duration like 500ms")) << d.message();
  EXPECT_TRUE(contains(d.message(), "got 'soon'")) << d.message();
}

TEST(ConfigValuesEnum, ExactCaseSensitiveMatch) {
  const auto r = parse_enum("warn", {"debug", "info", "warn", "error"});
  ASSERT_TRUE(r);
  EXPECT_EQ(*r.value, 2u);
  const std::vector<std::string_view> formats = {"text", "json"};
  EXPECT_EQ(parse_enum("json", formats).value, 1u);
  EXPECT_EQ(parse_enum("text", {"text"}).value, 0u);
  EXPECT_FALSE(parse_enum("JSON", formats));
  EXPECT_FALSE(parse_enum("json ", formats));
  EXPECT_FALSE(parse_enum("", formats));
  EXPECT_FALSE(parse_enum("anything", std::vector<std::string_view>{}));
}

TEST(ConfigValuesEnum, MessageListsAllowedValues) {
  EXPECT_EQ(parse_enum("verbose", {"debug", "info", "warn", "error"}).message(),
            "expected one of debug, info, warn or error, got 'verbose'");
  EXPECT_EQ(parse_enum("x", {"text", "json"}).expected, "one of text or json");
  EXPECT_EQ(parse_enum("x", {"only"}).expected, "one of only");
}

TEST(ConfigValuesUrl, ParsesAllParts) {
  const auto r = parse_url("postgres://app:s3cret@db.internal:5432/app?sslmode=require", {"postgres", "postgresql"});
  ASSERT_TRUE(r) << r.message();
  EXPECT_EQ(r.value->scheme, "postgres");
  EXPECT_EQ(r.value->userinfo, "app:s3cret");
  EXPECT_EQ(r.value->host, "db.internal");
  EXPECT_EQ(r.value->port, 5432);
  EXPECT_EQ(r.value->path, "/app");
  EXPECT_EQ(r.value->query, "sslmode=require");
  EXPECT_EQ(r.got, "postgres://app:***@db.internal:5432/app?sslmode=require");  // never the password

  const auto minimal = parse_url("http://localhost");
  ASSERT_TRUE(minimal);
  EXPECT_EQ(*minimal.value, (Url{"http", "", "localhost", 0, "", ""}));

  const auto q = parse_url("redis://cache?db=2");
  ASSERT_TRUE(q);
  EXPECT_EQ(q.value->host, "cache");
  EXPECT_EQ(q.value->path, "");
  EXPECT_EQ(q.value->query, "db=2");

  EXPECT_EQ(parse_url("HTTPS://Example.com/").value->scheme, "https");
  EXPECT_EQ(parse_url("svn+ssh://host/repo").value->scheme, "svn+ssh");
  EXPECT_EQ(parse_url("http://10.0.0.1:1/").value->port, 1);
  EXPECT_EQ(parse_url("http://10.0.0.1:65535/").value->port, 65535);
  EXPECT_EQ(parse_url("http://h%41st/").value->host, "h%41st");
  EXPECT_EQ(parse_url("amqp://user:p@ss@rabbit/").value->userinfo, "user:p@ss");  // last '@' ends userinfo
  EXPECT_EQ(parse_url("amqp://user:p@ss@rabbit/").value->host, "rabbit");
  EXPECT_EQ(parse_url("redis://:pw@cache").value->userinfo, ":pw");
}

TEST(ConfigValuesUrl, Ipv6HostInBrackets) {
  const auto r = parse_url("http://[::1]:8080/health");
  ASSERT_TRUE(r) << r.message();
  EXPECT_EQ(r.value->host, "::1");
  EXPECT_EQ(r.value->port, 8080);
  EXPECT_EQ(r.value->path, "/health");
  EXPECT_EQ(parse_url("http://[2001:db8::7]").value->host, "2001:db8::7");
  EXPECT_EQ(parse_url("http://u:p@[::ffff:10.0.0.1]/").value->host, "::ffff:10.0.0.1");

  for (std::string_view bad : {"http://[::1", "http://[]/", "http://[not:an:address]/", "http://[12345::]/",
                               "http://[::1]x/", "http://[::1]:/", "http://::1/", "http://[10.0.0.1]/"}) {
    EXPECT_FALSE(parse_url(bad)) << bad;
  }
  EXPECT_TRUE(contains(parse_url("http://[::g]/").message(), "invalid IPv6 address"));
}

TEST(ConfigValuesUrl, MissingHostAndBadPort) {
  for (std::string_view bad : {"http://", "http:///path", "http://:8080/", "http://user@/", "http://?q"}) {
    const auto r = parse_url(bad);
    EXPECT_FALSE(r) << bad;
    EXPECT_TRUE(contains(r.message(), "missing host")) << r.message();
  }
  for (std::string_view bad :
       {"http://h:0/", "http://h:65536/", "http://h:/", "http://h:-1/", "http://h:+80/", "http://h:8o/",
        "http://h:123456/", "http://h:80:81/", "http://h:99999999999999999999/"}) {
    const auto r = parse_url(bad);
    EXPECT_FALSE(r) << bad;
    EXPECT_TRUE(contains(r.message(), "the port must be from 1 to 65535")) << r.message();
  }
}

TEST(ConfigValuesUrl, RejectsMalformedPercentEscapes) {
  // libpq echoes a component with a bad escape, password included, into its error message.
  for (std::string_view bad :
       {"postgresql://app:pa%zzword@db/app", "postgresql://app:pw%@db/app", "postgresql://app:pw%4@db/app",
        "http://h/p%", "http://h/p%g0", "redis://h/0?x=%2", "http://us%er@h/"}) {
    const auto r = parse_url(bad);
    EXPECT_FALSE(r) << bad;
    EXPECT_TRUE(contains(r.message(), "percent-escape")) << r.message();
  }
  EXPECT_EQ(parse_url("postgresql://app:pa%zzword@db/app").got, "postgresql://app:***@db/app");
  // Well-formed escapes (any case) are fine; local paths are not percent-decoded, so a '%' is too.
  for (std::string_view good : {"postgresql://app:p%40ss%2Fw@db/app", "http://h/a%2fb?x=%7E", "http://h%41st/",
                                "sqlite:./100%.db", "file:///tmp/%zz"}) {
    EXPECT_TRUE(parse_url(good)) << good << ": " << parse_url(good).message();
  }
}

TEST(ConfigValuesUrl, RejectsMalformed) {
  for (std::string_view bad : {"", "localhost", "localhost:5432", "://host", "1http://host", "ht tp://host",
                               "http:/host", "http:host", "http://host name/", "http://host/pa th", "http://host/\t",
                               "http://ho<st/", "http://host/#frag", "http://a/b\x7f"}) {
    EXPECT_FALSE(parse_url(bad)) << bad;
  }
  EXPECT_TRUE(contains(parse_url("http://h/#x").message(), "fragments"));
  EXPECT_TRUE(contains(parse_url("host:80").message(), "missing '//' after the scheme"));
}

TEST(ConfigValuesUrl, SchemeMustBeAllowed) {
  const auto r = parse_url("mysql://db/app", {"postgres", "postgresql"});
  EXPECT_FALSE(r);
  EXPECT_EQ(r.message(),
            "expected a URL like scheme://[user[:password]@]host[:port][/path][?query] with scheme postgres or "
            "postgresql (unsupported scheme 'mysql'), got 'mysql://db/app'");
  EXPECT_TRUE(parse_url("PostgreSQL://db/app", {"postgres", "postgresql"}));
  const std::vector<std::string_view> schemes = {"redis", "rediss"};
  EXPECT_TRUE(parse_url("rediss://cache:6380", schemes));
  EXPECT_FALSE(parse_url("http://cache", schemes));
}

TEST(ConfigValuesUrl, LocalPathSchemesNeedNoHost) {
  const auto rel = parse_url("sqlite:./data/app.db", {"sqlite", "postgres"});
  ASSERT_TRUE(rel) << rel.message();
  EXPECT_EQ(*rel.value, (Url{"sqlite", "", "", 0, "./data/app.db", ""}));

  const auto abs = parse_url("sqlite:///var/lib/keel/app.db?mode=ro");
  ASSERT_TRUE(abs) << abs.message();
  EXPECT_EQ(*abs.value, (Url{"sqlite", "", "", 0, "/var/lib/keel/app.db", "mode=ro"}));

  EXPECT_EQ(parse_url("sqlite::memory:").value->path, ":memory:");
  EXPECT_EQ(parse_url("sqlite3:app.db").value->path, "app.db");
  EXPECT_EQ(parse_url("file:///etc/keel.toml").value->path, "/etc/keel.toml");
  EXPECT_EQ(parse_url("file://server/share").value->host, "server");

  for (std::string_view bad :
       {"sqlite:", "sqlite://", "file://", "sqlite:?mode=ro", "sqlite://:5/x", "sqlite://u@/x"}) {
    EXPECT_FALSE(parse_url(bad)) << bad;
  }
}

TEST(ConfigValuesUrl, FailureMessageHidesPassword) {
  const auto r = parse_url("postgres://app:hunter2@db:0/app");
  EXPECT_FALSE(r);
  EXPECT_FALSE(contains(r.message(), "hunter2")) << r.message();
  EXPECT_TRUE(contains(r.message(), "got 'postgres://app:***@db:0/app'")) << r.message();
}

TEST(ConfigValuesRedact, ReplacesOnlyThePassword) {
  EXPECT_EQ(redact_url("postgres://app:s3cret@db:5432/app"), "postgres://app:***@db:5432/app");
  EXPECT_EQ(redact_url("redis://:s3cret@cache:6379/0"), "redis://:***@cache:6379/0");
  EXPECT_EQ(redact_url("amqp://user:p@ss@rabbit/vhost"), "amqp://user:***@rabbit/vhost");
  EXPECT_EQ(redact_url("http://u:pw@[::1]:80/?q=a@b"), "http://u:***@[::1]:80/?q=a@b");
  EXPECT_EQ(redact_url("HTTP://u:pw@h"), "HTTP://u:***@h");
}

TEST(ConfigValuesRedact, LeavesUrlsWithoutPasswordAlone) {
  for (std::string_view same :
       {"postgres://app@db/app", "postgres://db:5432/app", "http://h/path@x", "http://h/?u=a:b@c", "http://u:@h/",
        "sqlite:./app.db", "not a url", "", "user:pass@host"}) {
    EXPECT_EQ(redact_url(same), same);
  }
}

TEST(ConfigValuesSuggest, EditDistance) {
  EXPECT_EQ(edit_distance("", ""), 0u);
  EXPECT_EQ(edit_distance("abc", ""), 3u);
  EXPECT_EQ(edit_distance("", "abc"), 3u);
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(edit_distance("workers", "wokrers"), 1u);  // adjacent transposition costs 1
  EXPECT_EQ(edit_distance("ca", "abc"), 3u);           // optimal string alignment, not unrestricted DL
  EXPECT_EQ(edit_distance("Timeout", "TIMEOUT"), 0u);  // ASCII case ignored
}

TEST(ConfigValuesSuggest, DidYouMean) {
  const std::vector<std::string_view> settings = {"workers",    "timeout", "graceful_timeout",
                                                  "keep_alive", "bind",    "max_requests"};
  EXPECT_EQ(suggest("wrokers", settings), "workers");                    // transposition
  EXPECT_EQ(suggest("worker", settings), "workers");                     // deletion
  EXPECT_EQ(suggest("graceful_timout", settings), "graceful_timeout");   // one letter missing
  EXPECT_EQ(suggest("graceful-timeout", settings), "graceful_timeout");  // '-' for '_'
  EXPECT_EQ(suggest("GRACEFUL_TIMEOUT", settings), "graceful_timeout");  // case only
  EXPECT_EQ(suggest("keepalive", settings), "keep_alive");
  EXPECT_EQ(suggest("timeout", settings), "timeout");  // exact
  EXPECT_EQ(suggest("bnd", settings), "bind");         // short names still allow 1
  EXPECT_EQ(suggest("bd", settings), "");              // 2 edits > max(1, 2/3)
  EXPECT_EQ(suggest("threads", settings), "");         // nothing close
  EXPECT_EQ(suggest("max_connections", settings), "");
  EXPECT_EQ(suggest("", settings), "");
  EXPECT_EQ(suggest("workers", std::vector<std::string_view>{}), "");
  EXPECT_EQ(suggest("infi", {"info", "inf"}), "info");  // tie at distance 1: first candidate
  EXPECT_EQ(suggest("inof", {"debug", "info", "warn"}), "info");
}

TEST(ConfigValuesSuggest, ThresholdGrowsWithLength) {
  // 12 characters allow 4 edits, 11 allow 3.
  EXPECT_EQ(suggest("abcdefghijkl", {"abcdefghWXYZ"}), "abcdefghWXYZ");
  EXPECT_EQ(suggest("abcdefghijkl", {"abcdefgVWXYZ"}), "");
  EXPECT_EQ(suggest("abcdefghijk", {"abcdefghXYZ"}), "abcdefghXYZ");
  EXPECT_EQ(suggest("abcdefghijk", {"abcdefgWXYZ"}), "");
}

TEST(ConfigValuesNames, EnvAndFlagNames) {
  EXPECT_EQ(to_env_name("KEEL_", "graceful_timeout"), "KEEL_GRACEFUL_TIMEOUT");
  EXPECT_EQ(to_env_name("KEEL_", "workers"), "KEEL_WORKERS");
  EXPECT_EQ(to_env_name("KEEL_", "log.level"), "KEEL_LOG_LEVEL");
  EXPECT_EQ(to_env_name("KEEL_", "max-requests"), "KEEL_MAX_REQUESTS");
  EXPECT_EQ(to_env_name("", "bind"), "BIND");
  EXPECT_EQ(to_flag_name("graceful_timeout"), "--graceful-timeout");
  EXPECT_EQ(to_flag_name("workers"), "--workers");
  EXPECT_EQ(to_flag_name("log.level"), "--log-level");
  EXPECT_EQ(to_flag_name("Max_Requests"), "--max-requests");
}

}  // namespace
