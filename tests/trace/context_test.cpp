// Unit tests for W3C Trace Context Level 2 parsing/formatting (traceparent, tracestate), id
// generation and X-Request-ID validation. Test names carry the rule they check; the invalid and
// valid header cases include the examples of the specification and of the W3C conformance suite
// (w3c/trace-context test/test.py).

#include "trace/context.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

using keel::trace::format_traceparent;
using keel::trace::format_tracestate;
using keel::trace::kFlagRandom;
using keel::trace::kFlagSampled;
using keel::trace::new_request_id;
using keel::trace::new_root;
using keel::trace::new_span_id;
using keel::trace::new_trace_id;
using keel::trace::parse_traceparent;
using keel::trace::parse_tracestate;
using keel::trace::SpanIdBytes;
using keel::trace::to_hex;
using keel::trace::TraceIdBytes;
using keel::trace::TraceParent;
using keel::trace::TraceState;
using keel::trace::TraceStateMember;
using keel::trace::update_tracestate;
using keel::trace::valid_request_id;
using keel::trace::valid_tracestate_key;
using keel::trace::valid_tracestate_value;

constexpr std::string_view kTraceId = "4bf92f3577b34da6a3ce929d0e0e4736";
constexpr std::string_view kParentId = "00f067aa0ba902b7";

std::string tp(std::string_view version, std::string_view trace_id, std::string_view parent_id,
               std::string_view flags) {
  std::string s(version);
  s += '-';
  s += trace_id;
  s += '-';
  s += parent_id;
  s += '-';
  s += flags;
  return s;
}

std::string valid_tp(std::string_view flags = "01") {
  return tp("00", kTraceId, kParentId, flags);
}

void expect_invalid(std::string_view value) {
  EXPECT_FALSE(parse_traceparent(value).has_value()) << "accepted: \"" << value << "\"";
}

TraceState parse_fields(std::initializer_list<std::string_view> fields) {
  const std::vector<std::string_view> v(fields);
  return parse_tracestate(std::span<const std::string_view>(v));
}

TraceState members(std::initializer_list<std::pair<std::string, std::string>> kv) {
  TraceState out;
  for (const auto& [k, v] : kv) out.push_back({k, v});
  return out;
}

// ---- traceparent: the specification's examples ------------------------------------------------

TEST(TraceParent, SpecExampleSampled) {
  const auto p = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(to_hex(p->trace_id), kTraceId);
  EXPECT_EQ(to_hex(p->parent_id), kParentId);
  EXPECT_EQ(p->flags, 0x01);
  EXPECT_TRUE(p->sampled());
  EXPECT_FALSE(p->random());
  EXPECT_EQ(format_traceparent(*p), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
}

TEST(TraceParent, SpecExampleNotSampled) {
  const auto p = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->flags, 0x00);
  EXPECT_FALSE(p->sampled());
  EXPECT_EQ(format_traceparent(*p), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
}

TEST(TraceParent, SpecExamplesOfTheRelationshipSection) {
  for (const char* v : {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                        "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01",
                        "00-0af7651916cd43dd8448eb211c80319c-b9c7c989f97918e1-01",
                        "00-12345678901234567890123456789012-1234567890123456-01"}) {
    const auto p = parse_traceparent(v);
    ASSERT_TRUE(p.has_value()) << v;
    EXPECT_EQ(format_traceparent(*p), v);
  }
}

// ---- traceparent: one test per rule -----------------------------------------------------------

TEST(TraceParent, RuleVersion00IsExactly55Characters) {
  EXPECT_EQ(valid_tp().size(), 55U);
  EXPECT_TRUE(parse_traceparent(valid_tp()).has_value());
  expect_invalid(valid_tp().substr(0, 54));
  expect_invalid(valid_tp() + ".");                              // W3C suite: extra trailing characters
  expect_invalid(valid_tp() + "-");                              // 00 has no further fields
  expect_invalid(valid_tp() + "-what-the-future-will-be-like");  // W3C suite
  expect_invalid("");
  expect_invalid("00");
}

TEST(TraceParent, RuleFieldLengths) {
  expect_invalid(tp("000", "12345678901234567890123456789012", "1234567890123456", "01"));   // version too long
  expect_invalid(tp("0000", "12345678901234567890123456789012", "1234567890123456", "01"));  // version too long
  expect_invalid(tp("0", "12345678901234567890123456789012", "1234567890123456", "01"));     // version too short
  expect_invalid(tp("00", "123456789012345678901234567890123", "1234567890123456", "01"));   // trace-id 33
  expect_invalid(tp("00", "1234567890123456789012345678901", "1234567890123456", "01"));     // trace-id 31
  expect_invalid(tp("00", "12345678901234567890123456789012", "12345678901234567", "01"));   // parent-id 17
  expect_invalid(tp("00", "12345678901234567890123456789012", "123456789012345", "01"));     // parent-id 15
  expect_invalid(tp("00", "12345678901234567890123456789012", "1234567890123456", "001"));   // flags 3
  expect_invalid(tp("00", "12345678901234567890123456789012", "1234567890123456", "1"));     // flags 1
}

TEST(TraceParent, RuleFieldsAreSeparatedByDashes) {
  const std::string good = valid_tp();
  for (const std::size_t pos : {2U, 35U, 52U}) {
    for (const char c : {'_', '.', ' ', '0', 'a'}) {
      std::string bad = good;
      bad[pos] = c;
      expect_invalid(bad);
    }
  }
}

TEST(TraceParent, RuleOnlyHexDigitsInFields) {
  expect_invalid(tp(".0", "12345678901234567890123456789012", "1234567890123456", "01"));
  expect_invalid(tp("0.", "12345678901234567890123456789012", "1234567890123456", "01"));
  expect_invalid(tp("00", ".2345678901234567890123456789012", "1234567890123456", "01"));
  expect_invalid(tp("00", "1234567890123456789012345678901.", "1234567890123456", "01"));
  expect_invalid(tp("00", "12345678901234567890123456789012", ".234567890123456", "01"));
  expect_invalid(tp("00", "12345678901234567890123456789012", "123456789012345.", "01"));
  expect_invalid(tp("00", "12345678901234567890123456789012", "1234567890123456", ".0"));
  expect_invalid(tp("00", "12345678901234567890123456789012", "1234567890123456", "0."));
  expect_invalid(tp("00", "1234567890123456789012345678901g", "1234567890123456", "01"));
  expect_invalid(tp("0g", "12345678901234567890123456789012", "1234567890123456", "01"));
}

TEST(TraceParent, RuleUppercaseHexIsInvalid) {
  expect_invalid(tp("00", "4BF92F3577B34DA6A3CE929D0E0E4736", kParentId, "01"));
  expect_invalid(tp("00", "4bf92f3577b34da6a3ce929d0e0e473A", kParentId, "01"));
  expect_invalid(tp("00", kTraceId, "00F067AA0BA902B7", "01"));
  expect_invalid(tp("00", kTraceId, kParentId, "0A"));
  expect_invalid(tp("0A", kTraceId, kParentId, "01"));  // a higher version in uppercase
  expect_invalid(tp("CC", kTraceId, kParentId, "01"));
  EXPECT_TRUE(parse_traceparent(tp("00", kTraceId, kParentId, "0a")).has_value());
}

TEST(TraceParent, RuleAllZeroTraceIdIsInvalid) {
  expect_invalid(tp("00", "00000000000000000000000000000000", "1234567890123456", "01"));
  expect_invalid(tp("cc", "00000000000000000000000000000000", "1234567890123456", "01"));
  EXPECT_TRUE(parse_traceparent(tp("00", "00000000000000000000000000000001", "1234567890123456", "01")).has_value());
}

TEST(TraceParent, RuleAllZeroParentIdIsInvalid) {
  expect_invalid(tp("00", "12345678901234567890123456789012", "0000000000000000", "01"));
  expect_invalid(tp("cc", "12345678901234567890123456789012", "0000000000000000", "01"));
  EXPECT_TRUE(parse_traceparent(tp("00", "12345678901234567890123456789012", "1000000000000000", "01")).has_value());
}

TEST(TraceParent, RuleVersionFfIsInvalid) {
  expect_invalid(tp("ff", "12345678901234567890123456789012", "1234567890123456", "01"));
  expect_invalid(tp("ff", "12345678901234567890123456789012", "1234567890123456", "01") + "-x");
}

TEST(TraceParent, RuleFutureVersionIsParsedWithTheVersion00Layout) {
  // W3C suite test_traceparent_version_0xcc.
  const std::string base = tp("cc", "12345678901234567890123456789012", "1234567890123456", "01");
  for (const std::string& v : {base, base + "-what-the-future-will-be-like", base + "-", base + "-x-y-z"}) {
    const auto p = parse_traceparent(v);
    ASSERT_TRUE(p.has_value()) << v;
    EXPECT_EQ(to_hex(p->trace_id), "12345678901234567890123456789012");
    EXPECT_EQ(to_hex(p->parent_id), "1234567890123456");
    EXPECT_EQ(p->flags, kFlagSampled);
    // Re-sent with the highest version we know: 00, without the unknown fields.
    EXPECT_EQ(format_traceparent(*p), "00-12345678901234567890123456789012-1234567890123456-01");
  }
  for (const char* version : {"01", "02", "10", "fe"})
    EXPECT_TRUE(parse_traceparent(tp(version, kTraceId, kParentId, "01")).has_value()) << version;
}

TEST(TraceParent, RuleFutureVersionNeedsADashAfterTheFlags) {
  const std::string base = tp("cc", "12345678901234567890123456789012", "1234567890123456", "01");
  expect_invalid(base + ".what-the-future-will-be-like");  // W3C suite
  expect_invalid(base + "0");
  expect_invalid(base + " x");
}

TEST(TraceParent, RuleFutureVersionShorterThan55IsInvalid) {
  expect_invalid(tp("cc", "12345678901234567890123456789012", "1234567890123456", "0"));
  expect_invalid(tp("cc", "1234567890123456789012345678901", "1234567890123456", "01"));
  expect_invalid("cc-12345678901234567890123456789012-1234567890123456");
}

TEST(TraceParent, RuleFlagsKeepSampledAndRandomBitsAsReceived) {
  EXPECT_EQ(parse_traceparent(valid_tp("00"))->flags, 0x00);
  EXPECT_EQ(parse_traceparent(valid_tp("01"))->flags, kFlagSampled);
  EXPECT_EQ(parse_traceparent(valid_tp("02"))->flags, kFlagRandom);
  EXPECT_EQ(parse_traceparent(valid_tp("03"))->flags, kFlagSampled | kFlagRandom);
  EXPECT_TRUE(parse_traceparent(valid_tp("02"))->random());
  EXPECT_FALSE(parse_traceparent(valid_tp("02"))->sampled());
  EXPECT_EQ(format_traceparent(*parse_traceparent(valid_tp("02"))), valid_tp("02"));
  EXPECT_EQ(format_traceparent(*parse_traceparent(valid_tp("03"))), valid_tp("03"));
}

TEST(TraceParent, RuleReservedFlagBitsAreClearedNotRejected) {
  // Bit field: 09 = sampled + 0x08 (the specification's masking example).
  EXPECT_EQ(parse_traceparent(valid_tp("09"))->flags, kFlagSampled);
  EXPECT_EQ(parse_traceparent(valid_tp("04"))->flags, 0x00);
  EXPECT_EQ(parse_traceparent(valid_tp("ff"))->flags, kFlagSampled | kFlagRandom);
  EXPECT_EQ(parse_traceparent(valid_tp("fe"))->flags, kFlagRandom);
  EXPECT_EQ(format_traceparent(*parse_traceparent(valid_tp("ff"))), valid_tp("03"));
  // A future version's unknown flag bits too.
  EXPECT_EQ(parse_traceparent(tp("cc", kTraceId, kParentId, "f5"))->flags, kFlagSampled);
}

TEST(TraceParent, RuleFormatWritesReservedFlagBitsAsZero) {
  TraceParent p = *parse_traceparent(valid_tp());
  p.flags = 0xfd;
  EXPECT_EQ(format_traceparent(p), valid_tp("01"));
  p.flags = 0x06;
  EXPECT_EQ(format_traceparent(p), valid_tp("02"));
}

TEST(TraceParent, RuleSurroundingSpacesAndTabsAreIgnored) {
  // W3C suite test_traceparent_ows_handling.
  const std::string v = "00-12345678901234567890123456789012-1234567890123456-01";
  for (const std::string& s : {" " + v, "\t" + v, v + " ", v + "\t", "\t " + v + " \t", "   " + v + "   "}) {
    const auto p = parse_traceparent(s);
    ASSERT_TRUE(p.has_value()) << "\"" << s << "\"";
    EXPECT_EQ(format_traceparent(*p), v);
  }
}

TEST(TraceParent, RuleOtherWhitespaceIsNotOptionalWhitespace) {
  const std::string v = valid_tp();
  expect_invalid(v + "\r");
  expect_invalid(v + "\n");
  expect_invalid("\n" + v);
  expect_invalid(v + '\0');
  expect_invalid("00- 4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  expect_invalid("00-4bf92f3577b34da6a3ce929d0e0e4736 -00f067aa0ba902b7-01");
  expect_invalid("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7- 1");
}

TEST(TraceParent, RuleExactlyOneTraceparentField) {
  // W3C suite test_traceparent_duplicated: two traceparent fields, a new trace.
  const std::string a = valid_tp("01");
  const std::string b = tp("00", "12345678901234567890123456789012", kParentId, "01");
  const auto fields = [](std::initializer_list<std::string_view> f) {
    const std::vector<std::string_view> v(f);
    return parse_traceparent(std::span<const std::string_view>(v));
  };
  ASSERT_TRUE(fields({a}).has_value());
  EXPECT_EQ(to_hex(fields({a})->trace_id), kTraceId);
  EXPECT_FALSE(fields({}).has_value());
  EXPECT_FALSE(fields({a, b}).has_value());
  EXPECT_FALSE(fields({a, a}).has_value());  // even the same value twice
  EXPECT_FALSE(fields({a, "garbage"}).has_value());
}

TEST(TraceParent, FormatIsLowercaseAndRoundTrips) {
  TraceParent p;
  for (std::size_t i = 0; i < p.trace_id.size(); ++i) p.trace_id[i] = static_cast<std::uint8_t>(0xa0 + i);
  for (std::size_t i = 0; i < p.parent_id.size(); ++i) p.parent_id[i] = static_cast<std::uint8_t>(0xf0 + i);
  p.flags = kFlagSampled | kFlagRandom;
  const std::string s = format_traceparent(p);
  EXPECT_EQ(s, "00-a0a1a2a3a4a5a6a7a8a9aaabacadaeaf-f0f1f2f3f4f5f6f7-03");
  EXPECT_EQ(parse_traceparent(s), p);
}

// ---- tracestate: the specification's examples -------------------------------------------------

TEST(TraceState, SpecExamples) {
  EXPECT_EQ(parse_tracestate("rojo=00f067aa0ba902b7"), members({{"rojo", "00f067aa0ba902b7"}}));
  EXPECT_EQ(parse_tracestate("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
            members({{"rojo", "00f067aa0ba902b7"}, {"congo", "t61rcWkgMzE"}}));
  EXPECT_EQ(parse_tracestate("congo=t61rcWkgMzE"), members({{"congo", "t61rcWkgMzE"}}));
  EXPECT_EQ(parse_tracestate("vendorname1=opaqueValue1,vendorname2=opaqueValue2"),
            members({{"vendorname1", "opaqueValue1"}, {"vendorname2", "opaqueValue2"}}));
  EXPECT_EQ(format_tracestate(parse_tracestate("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")),
            "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
}

// ---- tracestate: one test per rule ------------------------------------------------------------

TEST(TraceState, RuleMultipleFieldsAreCombinedInOrder) {
  // W3C suite test_tracestate_multiple_headers_different_keys.
  const TraceState ts = parse_fields({"foo=1,bar=2", "rojo=1,congo=2", "baz=3"});
  EXPECT_EQ(ts, members({{"foo", "1"}, {"bar", "2"}, {"rojo", "1"}, {"congo", "2"}, {"baz", "3"}}));
  EXPECT_EQ(ts, parse_tracestate("foo=1,bar=2,rojo=1,congo=2,baz=3"));
  EXPECT_EQ(format_tracestate(ts), "foo=1,bar=2,rojo=1,congo=2,baz=3");
}

TEST(TraceState, RuleEmptyAndWhitespaceOnlyMembersAreSkipped) {
  const TraceState ab = members({{"a", "1"}, {"b", "2"}});
  for (const char* s : {"a=1,b=2", ",a=1,b=2", "a=1,,b=2", "a=1,b=2,", "a=1, ,b=2", "a=1,\t,b=2", ",,a=1,,,b=2,,",
                        " , a=1 , \t , b=2 , "})
    EXPECT_EQ(parse_tracestate(s), ab) << "\"" << s << "\"";
  EXPECT_TRUE(parse_tracestate("").empty());
  EXPECT_TRUE(parse_tracestate("   ").empty());
  EXPECT_TRUE(parse_tracestate(",").empty());
  EXPECT_TRUE(parse_tracestate(" , \t ,").empty());
  // W3C suite test_tracestate_empty_header.
  EXPECT_EQ(parse_fields({"foo=1", ""}), members({{"foo", "1"}}));
  EXPECT_EQ(parse_fields({"", "foo=1"}), members({{"foo", "1"}}));
  EXPECT_TRUE(parse_fields({}).empty());
}

TEST(TraceState, RuleOptionalWhitespaceAroundMembersIsIgnored) {
  // W3C suite test_tracestate_ows_handling.
  const TraceState three = members({{"foo", "1"}, {"bar", "2"}, {"baz", "3"}});
  EXPECT_EQ(parse_tracestate("foo=1 \t , \t bar=2, \t baz=3"), three);
  EXPECT_EQ(parse_tracestate("foo=1\t \t,\t \tbar=2,\t \tbaz=3"), three);
  for (const char* s : {" foo=1", "\tfoo=1", "foo=1 ", "foo=1\t", "\t foo=1 \t"})
    EXPECT_EQ(parse_tracestate(s), members({{"foo", "1"}})) << "\"" << s << "\"";
}

TEST(TraceState, RuleValueLeadingSpacesArePartOfTheValue) {
  EXPECT_EQ(parse_tracestate("a= x"), members({{"a", " x"}}));
  EXPECT_EQ(parse_tracestate("a=  x y ,b=2"), members({{"a", "  x y"}, {"b", "2"}}));
  EXPECT_EQ(format_tracestate(parse_tracestate("a= x")), "a= x");
}

TEST(TraceState, RuleValueTrailingSpacesAreOptionalWhitespace) {
  EXPECT_EQ(parse_tracestate("a=x  "), members({{"a", "x"}}));
  EXPECT_FALSE(valid_tracestate_value("x "));
  EXPECT_FALSE(valid_tracestate_value(" "));
  EXPECT_TRUE(valid_tracestate_value(" x"));
}

TEST(TraceState, RuleKeyGrammarAcceptsAllAllowedCharacters) {
  // W3C suite test_tracestate_all_allowed_characters.
  const std::string key = "abcdefghijklmnopqrstuvwxyz0123456789_-*/";
  const std::string key_with_vendor = key + "@a-z0-9_-*/";
  std::string value;
  for (int c = 0x20; c <= 0x7e; ++c)
    if (c != ',' && c != '=') value.push_back(static_cast<char>(c));
  EXPECT_EQ(parse_tracestate(key + "=" + value), members({{key, value}}));
  EXPECT_EQ(parse_tracestate(key_with_vendor + "=" + value), members({{key_with_vendor, value}}));
}

TEST(TraceState, RuleKeyGrammarLevel1FormsAreValid) {
  // simple-key = lcalpha 0*255(...); multi-tenant-key = tenant-id "@" system-id, tenant-id may start
  // with a digit and has up to 241 characters, system-id up to 14.
  EXPECT_TRUE(valid_tracestate_key("a"));
  EXPECT_TRUE(valid_tracestate_key("congo"));
  EXPECT_TRUE(valid_tracestate_key("fw529a3039@dt"));
  EXPECT_TRUE(valid_tracestate_key("9abc@dt"));
  EXPECT_TRUE(valid_tracestate_key(std::string(241, 't') + "@" + std::string(14, 's')));
  EXPECT_TRUE(valid_tracestate_key(std::string(256, 'k')));
}

TEST(TraceState, RuleKeyGrammarLevel2StartsWithLetterOrDigitAndMayContainAt) {
  // Level 2: key = ( lcalpha / DIGIT ) 0*255( lcalpha / DIGIT / "_" / "-" / "*" / "/" / "@" ).
  EXPECT_TRUE(valid_tracestate_key("0"));
  EXPECT_TRUE(valid_tracestate_key("1abc"));
  EXPECT_TRUE(valid_tracestate_key("a@b@c"));
  EXPECT_TRUE(valid_tracestate_key("foo@"));
  EXPECT_TRUE(valid_tracestate_key("foo@@bar"));
  EXPECT_TRUE(valid_tracestate_key("t@" + std::string(20, 's')));
  EXPECT_EQ(parse_tracestate("1abc=1,a@b@c=2"), members({{"1abc", "1"}, {"a@b@c", "2"}}));
}

TEST(TraceState, RuleKeyGrammarRejects) {
  EXPECT_FALSE(valid_tracestate_key(""));
  EXPECT_FALSE(valid_tracestate_key("FOO"));
  EXPECT_FALSE(valid_tracestate_key("fOo"));
  EXPECT_FALSE(valid_tracestate_key("foo.bar"));
  EXPECT_FALSE(valid_tracestate_key("foo "));
  EXPECT_FALSE(valid_tracestate_key(" foo"));
  EXPECT_FALSE(valid_tracestate_key("@foo"));
  EXPECT_FALSE(valid_tracestate_key("_a"));
  EXPECT_FALSE(valid_tracestate_key("-a"));
  EXPECT_FALSE(valid_tracestate_key("*a"));
  EXPECT_FALSE(valid_tracestate_key("/a"));
  EXPECT_FALSE(valid_tracestate_key("a=b"));
  EXPECT_FALSE(valid_tracestate_key("a\tb"));
  EXPECT_FALSE(valid_tracestate_key("caf\xc3\xa9"));
  EXPECT_FALSE(valid_tracestate_key(std::string(257, 'k')));
}

TEST(TraceState, RuleValueGrammar) {
  EXPECT_TRUE(valid_tracestate_value("x"));
  EXPECT_TRUE(valid_tracestate_value("!"));
  EXPECT_TRUE(valid_tracestate_value("~"));
  EXPECT_TRUE(valid_tracestate_value("a b"));
  EXPECT_TRUE(valid_tracestate_value(std::string(256, 'v')));
  EXPECT_FALSE(valid_tracestate_value(""));
  EXPECT_FALSE(valid_tracestate_value(std::string(257, 'v')));
  EXPECT_FALSE(valid_tracestate_value("a,b"));
  EXPECT_FALSE(valid_tracestate_value("a=b"));
  EXPECT_FALSE(valid_tracestate_value("a\tb"));
  EXPECT_FALSE(valid_tracestate_value("a\nb"));
  EXPECT_FALSE(valid_tracestate_value("a\x7f"));
  EXPECT_FALSE(valid_tracestate_value("a\x1f"));
  EXPECT_FALSE(valid_tracestate_value(std::string("a\0b", 3)));
  EXPECT_FALSE(valid_tracestate_value("caf\xc3\xa9"));
}

TEST(TraceState, RuleAtMost32Members) {
  std::string s32, s33;
  for (int i = 0; i < 33; ++i) {
    std::string m = "k" + std::to_string(i) + "=v";
    if (i < 32) s32 += (i ? "," : "") + m;
    s33 += (i ? "," : "") + m;
  }
  EXPECT_EQ(parse_tracestate(s32).size(), 32U);
  EXPECT_TRUE(parse_tracestate(s33).empty());             // W3C suite test_tracestate_member_count_limit
  EXPECT_TRUE(parse_fields({s32, "z=1"}).empty());        // counted across combined fields
  EXPECT_EQ(parse_fields({s32, "", " , "}).size(), 32U);  // empty members do not count
  EXPECT_EQ(parse_tracestate(",," + s32 + ",,").size(), 32U);
}

TEST(TraceState, RuleDuplicateKeysAreInheritedOnce) {
  // W3C suite test_tracestate_duplicated_keys (STRICT_LEVEL 2): the tracestate is inherited, the
  // duplicated keys "either kept as-is or one of them discarded". The left-most one stays.
  EXPECT_EQ(parse_tracestate("foo=1,foo=1"), members({{"foo", "1"}}));
  EXPECT_EQ(parse_tracestate("foo=1,foo=2"), members({{"foo", "1"}}));
  EXPECT_EQ(parse_fields({"foo=1", "foo=1"}), members({{"foo", "1"}}));
  EXPECT_EQ(parse_fields({"foo=1", "foo=2"}), members({{"foo", "1"}}));
  EXPECT_EQ(parse_tracestate("a=1,foo=1,b=2,foo=3"), members({{"a", "1"}, {"foo", "1"}, {"b", "2"}}));
  // A duplicate does not count against the 32 members, and an invalid member still discards all.
  std::string s32;
  for (int i = 0; i < 32; ++i) s32 += (i ? "," : "") + std::string("k") + std::to_string(i) + "=v";
  EXPECT_EQ(parse_fields({s32, "k0=again"}).size(), 32U);
  EXPECT_TRUE(parse_tracestate("foo=1,foo=2,BAD=3").empty());
}

TEST(TraceState, RuleAnInvalidMemberDiscardsTheWholeTracestate) {
  // W3C suite test_tracestate_key_illegal_characters / _key_illegal_vendor_format.
  for (const char* s : {"foo =1", "FOO=1", "foo.bar=1", "@foo=1,bar=2", "bar=2,@foo=1", "a=1,malformed,b=2", "a=1,=2",
                        "a=,b=2", "a=b=c", "a=1,b=2\t3", "a=1,b=\x7f", "a=1,b=caf\xc3\xa9", "a\t=1", "a=\"x\"\n"}) {
    EXPECT_TRUE(parse_tracestate(s).empty()) << "\"" << s << "\"";
  }
  EXPECT_TRUE(parse_tracestate("a=" + std::string(257, 'v')).empty());
  EXPECT_TRUE(parse_tracestate(std::string(257, 'k') + "=v").empty());
  EXPECT_TRUE(parse_fields({"a=1", "b=2", "C=3"}).empty());
  // The limits themselves are fine.
  EXPECT_EQ(parse_tracestate("a=" + std::string(256, 'v')).size(), 1U);
  EXPECT_EQ(parse_tracestate(std::string(256, 'k') + "=v").size(), 1U);
}

TEST(TraceState, FormatRoundTrips) {
  EXPECT_EQ(format_tracestate({}), "");
  const char* s = "congo=ucfJifl5GOE,rojo=00f067aa0ba902b7,t@sys= a b";
  EXPECT_EQ(format_tracestate(parse_tracestate(s)), s);
  EXPECT_EQ(format_tracestate(parse_tracestate(" congo=1 ,, rojo=2\t")), "congo=1,rojo=2");
}

// ---- update_tracestate ----------------------------------------------------------------------

TEST(UpdateTraceState, NewKeyIsPrepended) {
  TraceState ts = parse_tracestate("congo=t61rcWkgMzE");
  ASSERT_TRUE(update_tracestate(ts, "rojo", "00f067aa0ba902b7"));
  EXPECT_EQ(format_tracestate(ts), "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");  // the spec's example
  TraceState empty;
  ASSERT_TRUE(update_tracestate(empty, "keel", "1"));
  EXPECT_EQ(format_tracestate(empty), "keel=1");
}

TEST(UpdateTraceState, ExistingKeyMovesToTheFrontWithItsNewValue) {
  TraceState ts = parse_tracestate("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
  ASSERT_TRUE(update_tracestate(ts, "congo", "ucfJifl5GOE"));
  EXPECT_EQ(format_tracestate(ts), "congo=ucfJifl5GOE,rojo=00f067aa0ba902b7");  // the spec's example
  ts = parse_tracestate("a=1,b=2,c=3,d=4");
  ASSERT_TRUE(update_tracestate(ts, "c", "9"));
  EXPECT_EQ(format_tracestate(ts), "c=9,a=1,b=2,d=4");  // the others keep their order
  ASSERT_TRUE(update_tracestate(ts, "c", "10"));
  EXPECT_EQ(format_tracestate(ts), "c=10,a=1,b=2,d=4");
}

TEST(UpdateTraceState, KeepsAtMost32ByDroppingFromTheEnd) {
  TraceState ts;
  for (int i = 0; i < 32; ++i) ts.push_back({"k" + std::to_string(i), "v"});
  ASSERT_TRUE(update_tracestate(ts, "keel", "x"));
  ASSERT_EQ(ts.size(), 32U);
  EXPECT_EQ(ts.front(), (TraceStateMember{"keel", "x"}));
  EXPECT_EQ(ts[1].key, "k0");
  EXPECT_EQ(ts.back().key, "k30");  // k31, the right-most, was dropped
  // Updating a key already present in a full list drops nothing else.
  ASSERT_TRUE(update_tracestate(ts, "k30", "y"));
  ASSERT_EQ(ts.size(), 32U);
  EXPECT_EQ(ts.front(), (TraceStateMember{"k30", "y"}));
  EXPECT_EQ(ts.back().key, "k29");
  EXPECT_EQ(parse_tracestate(format_tracestate(ts)), ts);
}

TEST(UpdateTraceState, InvalidKeyOrValueLeavesTheListUnchanged) {
  const TraceState before = parse_tracestate("a=1,b=2");
  TraceState ts = before;
  EXPECT_FALSE(update_tracestate(ts, "A", "1"));
  EXPECT_FALSE(update_tracestate(ts, "", "1"));
  EXPECT_FALSE(update_tracestate(ts, "a", ""));
  EXPECT_FALSE(update_tracestate(ts, "a", "x,y"));
  EXPECT_FALSE(update_tracestate(ts, "a", "x=y"));
  EXPECT_FALSE(update_tracestate(ts, "a", "x "));
  EXPECT_EQ(ts, before);
}

// ---- ids --------------------------------------------------------------------------------------

TEST(Ids, NewRootSetsTheRandomTraceIdFlag) {
  const TraceParent sampled = new_root(true);
  EXPECT_EQ(sampled.flags, kFlagSampled | kFlagRandom);
  const TraceParent unsampled = new_root(false);
  EXPECT_EQ(unsampled.flags, kFlagRandom);
  for (const TraceParent& p : {sampled, unsampled}) {
    const std::string s = format_traceparent(p);
    EXPECT_EQ(parse_traceparent(s), p) << s;
  }
  EXPECT_NE(sampled.trace_id, unsampled.trace_id);
}

TEST(Ids, NeverZeroAndDistinct) {
  constexpr int kN = 20000;
  std::set<TraceIdBytes> traces;
  std::set<SpanIdBytes> spans;
  const TraceIdBytes zero_trace{};
  const SpanIdBytes zero_span{};
  for (int i = 0; i < kN; ++i) {
    const TraceIdBytes t = new_trace_id();
    const SpanIdBytes s = new_span_id();
    ASSERT_NE(t, zero_trace);
    ASSERT_NE(s, zero_span);
    traces.insert(t);
    spans.insert(s);
  }
  EXPECT_EQ(traces.size(), static_cast<std::size_t>(kN));
  EXPECT_EQ(spans.size(), static_cast<std::size_t>(kN));
}

TEST(Ids, ThreadsHaveTheirOwnSequences) {
  std::vector<SpanIdBytes> here, there;
  std::thread t([&] {
    for (int i = 0; i < 100; ++i) there.push_back(new_span_id());
  });
  t.join();
  for (int i = 0; i < 100; ++i) here.push_back(new_span_id());
  const std::set<SpanIdBytes> a(here.begin(), here.end());
  for (const SpanIdBytes& s : there) EXPECT_EQ(a.count(s), 0U);
}

// Generates `n` span ids in a forked child and returns them (through a pipe).
std::vector<SpanIdBytes> span_ids_from_child(int n) {
  int fds[2];
  if (::pipe(fds) != 0) return {};
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    for (int i = 0; i < n; ++i) {
      const SpanIdBytes id = new_span_id();
      if (::write(fds[1], id.data(), id.size()) != static_cast<ssize_t>(id.size())) ::_exit(1);
    }
    ::_exit(0);
  }
  ::close(fds[1]);
  std::vector<SpanIdBytes> out;
  SpanIdBytes id;
  while (::read(fds[0], id.data(), id.size()) == static_cast<ssize_t>(id.size())) out.push_back(id);
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  return out;
}

TEST(Ids, ChildAfterForkIsReseeded) {
  constexpr int kN = 64;
  static_cast<void>(new_span_id());  // this thread's generator is seeded before fork()
  const std::vector<SpanIdBytes> child1 = span_ids_from_child(kN);
  const std::vector<SpanIdBytes> child2 = span_ids_from_child(kN);
  std::vector<SpanIdBytes> parent;
  for (int i = 0; i < kN; ++i) parent.push_back(new_span_id());
  ASSERT_EQ(child1.size(), static_cast<std::size_t>(kN));
  ASSERT_EQ(child2.size(), static_cast<std::size_t>(kN));
  // Without re-seeding, both children would repeat the parent's next kN ids exactly.
  const std::set<SpanIdBytes> p(parent.begin(), parent.end());
  std::set<SpanIdBytes> all(p);
  for (const SpanIdBytes& s : child1) {
    EXPECT_EQ(p.count(s), 0U);
    all.insert(s);
  }
  for (const SpanIdBytes& s : child2) {
    EXPECT_EQ(p.count(s), 0U);
    all.insert(s);
  }
  EXPECT_EQ(all.size(), static_cast<std::size_t>(3 * kN));  // children differ from each other too
}

TEST(Ids, ToHex) {
  EXPECT_EQ(to_hex({}), "");
  const std::array<std::uint8_t, 4> b = {0x00, 0xff, 0x1a, 0x09};
  EXPECT_EQ(to_hex(b), "00ff1a09");
}

// ---- X-Request-ID -----------------------------------------------------------------------------

TEST(RequestId, LengthFrom1To128) {
  EXPECT_FALSE(valid_request_id(""));
  EXPECT_TRUE(valid_request_id("a"));
  EXPECT_TRUE(valid_request_id(std::string(128, 'x')));
  EXPECT_FALSE(valid_request_id(std::string(129, 'x')));
}

TEST(RequestId, OnlyVisibleAscii) {
  EXPECT_TRUE(valid_request_id("!"));  // 0x21
  EXPECT_TRUE(valid_request_id("~"));  // 0x7e
  EXPECT_TRUE(valid_request_id("f47ac10b-58cc-4372-a567-0e02b2c3d479"));
  EXPECT_TRUE(valid_request_id("req:1/2?x=\"y\",z"));
  EXPECT_FALSE(valid_request_id(" "));
  EXPECT_FALSE(valid_request_id("a b"));
  EXPECT_FALSE(valid_request_id(" a"));
  EXPECT_FALSE(valid_request_id("a\t"));
  EXPECT_FALSE(valid_request_id("a\x7f"));  // DEL
  EXPECT_FALSE(valid_request_id("\x1f"));
  EXPECT_FALSE(valid_request_id(std::string("a\0b", 3)));
  EXPECT_FALSE(valid_request_id("caf\xc3\xa9"));  // non-ASCII (UTF-8)
  EXPECT_FALSE(valid_request_id("\x80"));
  EXPECT_FALSE(valid_request_id("\xff"));
}

TEST(RequestId, NewRequestIdIs32LowercaseHexAndDistinct) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    const std::string id = new_request_id();
    ASSERT_EQ(id.size(), 32U);
    for (const char c : id) ASSERT_TRUE((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) << id;
    ASSERT_TRUE(valid_request_id(id));
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 1000U);
}

}  // namespace
