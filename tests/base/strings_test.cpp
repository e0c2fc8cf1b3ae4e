// Tests of base/strings.hpp: the one copy of each ASCII helper, and the three percent-decoding
// rules (strict for path segments, lenient for Baggage-style values and URL userinfo, form for
// query components) side by side on the same inputs.
#include "base/strings.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "keel/url.hpp"

namespace {

using keel::base::iequals;
using keel::base::percent_decode_strict;
using namespace std::string_literals;

TEST(PercentDecodeStrict, Basics) {
  std::string out = "previous contents";
  EXPECT_TRUE(percent_decode_strict("", out));
  EXPECT_EQ(out, "");
  EXPECT_TRUE(percent_decode_strict("abc", out));
  EXPECT_EQ(out, "abc");
  EXPECT_TRUE(percent_decode_strict("%41%42c", out));
  EXPECT_EQ(out, "ABc");
  EXPECT_TRUE(percent_decode_strict("a%20b", out));
  EXPECT_EQ(out, "a b");
  EXPECT_TRUE(percent_decode_strict("%7e%7E%7f", out));
  EXPECT_EQ(out, "~~\x7f");
  EXPECT_TRUE(percent_decode_strict("%e2%82%AC", out));
  EXPECT_EQ(out, "\xe2\x82\xac");
  EXPECT_TRUE(percent_decode_strict("%FF", out));
  EXPECT_EQ(out, "\xff");
  EXPECT_TRUE(percent_decode_strict("a+b", out));  // '+' is not a space in a path
  EXPECT_EQ(out, "a+b");
  EXPECT_TRUE(percent_decode_strict("%25", out));  // no double decoding
  EXPECT_EQ(out, "%");
  EXPECT_TRUE(percent_decode_strict("%2541", out));
  EXPECT_EQ(out, "%41");
}

TEST(PercentDecodeStrict, EncodedSlashIsKeptAsLiteral) {
  std::string out;
  EXPECT_TRUE(percent_decode_strict("a%2Fb", out));
  EXPECT_EQ(out, "a/b");
  EXPECT_TRUE(percent_decode_strict("%2f", out));
  EXPECT_EQ(out, "/");
}

TEST(PercentDecodeStrict, RejectsMalformedAndNul) {
  std::string out;
  EXPECT_FALSE(percent_decode_strict("%", out));
  EXPECT_FALSE(percent_decode_strict("%4", out));
  EXPECT_FALSE(percent_decode_strict("a%", out));
  EXPECT_FALSE(percent_decode_strict("a%4", out));
  EXPECT_FALSE(percent_decode_strict("%41%", out));
  EXPECT_FALSE(percent_decode_strict("%G1", out));
  EXPECT_FALSE(percent_decode_strict("%1G", out));
  EXPECT_FALSE(percent_decode_strict("%%41", out));
  EXPECT_FALSE(percent_decode_strict("% 1", out));
  EXPECT_FALSE(percent_decode_strict("%-1", out));
  EXPECT_FALSE(percent_decode_strict("%00", out));  // decoded NUL
  EXPECT_FALSE(percent_decode_strict("abc%00def", out));
}

TEST(Iequals, AsciiCaseInsensitive) {
  EXPECT_TRUE(iequals("", ""));
  EXPECT_TRUE(iequals("Content-Length", "content-length"));
  EXPECT_TRUE(iequals("HOST", "host"));
  EXPECT_TRUE(iequals("aBcXyZ", "AbCxYz"));
  EXPECT_TRUE(iequals("100-continue", "100-CONTINUE"));
  EXPECT_FALSE(iequals("host", "hos"));
  EXPECT_FALSE(iequals("host", "hostt"));
  EXPECT_FALSE(iequals("", "a"));
  EXPECT_FALSE(iequals("host", "h0st"));
  // Only letters fold: bytes that differ by 0x20 but are not letters stay distinct.
  EXPECT_FALSE(iequals("[", "{"));
  EXPECT_FALSE(iequals("@", "`"));
  EXPECT_FALSE(iequals("]", "}"));
  EXPECT_FALSE(iequals("^", "~"));
  EXPECT_FALSE(iequals("\xC0", "\xE0"));  // no Latin-1 folding
  EXPECT_TRUE(iequals("\xC0", "\xC0"));
  EXPECT_TRUE(iequals("a\0b"s, "A\0B"s));
  EXPECT_FALSE(iequals("a\0b"s, "a\0c"s));
}

TEST(AsciiCase, OnlyLettersChange) {
  using keel::base::ascii_lower;
  using keel::base::ascii_upper;
  EXPECT_EQ(ascii_lower('A'), 'a');
  EXPECT_EQ(ascii_lower('Z'), 'z');
  EXPECT_EQ(ascii_lower('a'), 'a');
  EXPECT_EQ(ascii_lower('@'), '@');
  EXPECT_EQ(ascii_lower('['), '[');
  EXPECT_EQ(ascii_lower('\xC0'), '\xC0');
  EXPECT_EQ(ascii_upper('a'), 'A');
  EXPECT_EQ(ascii_upper('`'), '`');
  EXPECT_EQ(ascii_upper('{'), '{');
  EXPECT_EQ(keel::base::to_lower("HTTP+Unix-1.X"), "http+unix-1.x");
  EXPECT_EQ(keel::base::to_lower(""), "");
  EXPECT_EQ(keel::base::to_lower("\xC0\xDE"), "\xC0\xDE");
  static_assert(iequals("Retry-After", "retry-after"));
}

TEST(Trim, OwsByDefault) {
  using keel::base::trim;
  EXPECT_EQ(trim(""), "");
  EXPECT_EQ(trim(" \t "), "");
  EXPECT_EQ(trim("  a b\t"), "a b");
  EXPECT_EQ(trim("\ta"), "a");
  EXPECT_EQ(trim("a"), "a");
  // Only SP and HTAB: CR, LF, VT and NBSP are not OWS.
  EXPECT_EQ(trim("\r\na\r\n"), "\r\na\r\n");
  EXPECT_EQ(trim("\va\v"), "\va\v");
  EXPECT_EQ(trim("\xA0"
                 "a"),
            "\xA0"
            "a");
}

TEST(Trim, OneSideAndOtherSets) {
  using keel::base::kOwsCrLf;
  using keel::base::trim;
  using keel::base::trim_left;
  using keel::base::trim_right;
  EXPECT_EQ(trim_left(" \ta \t"), "a \t");
  EXPECT_EQ(trim_right(" \ta \t"), " \ta");
  EXPECT_EQ(trim_right("5 \r\n \r\n", kOwsCrLf), "5");
  EXPECT_EQ(trim_right(trim_left("\r\n5"), kOwsCrLf), "\r\n5");  // the Retry-After rule keeps a leading CR
  EXPECT_EQ(trim_right("value\r\n", "\r\n"), "value");
  EXPECT_EQ(trim("xxaxx", "x"), "a");
  EXPECT_EQ(trim_left("   "), "");
  EXPECT_EQ(trim_right("   "), "");
}

TEST(Hex, DigitValues) {
  using keel::base::hex_value;
  using keel::base::lower_hex_value;
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(hex_value(keel::base::kHexDigits[i]), i);
    EXPECT_EQ(lower_hex_value(keel::base::kHexDigits[i]), i);
  }
  EXPECT_EQ(hex_value('A'), 10);
  EXPECT_EQ(hex_value('F'), 15);
  EXPECT_EQ(lower_hex_value('A'), -1);  // HEXDIGLC: uppercase is not a digit
  EXPECT_EQ(lower_hex_value('F'), -1);
  for (const char c : {'g', 'G', '/', ':', '@', '`', ' ', '\0', '\xFF'}) {
    EXPECT_EQ(hex_value(c), -1) << int(c);
    EXPECT_EQ(lower_hex_value(c), -1) << int(c);
  }
}

TEST(Hex, EncodeAndDecodeBytes) {
  const std::array<std::uint8_t, 4> bytes{0x00, 0xff, 0x1a, 0x09};
  EXPECT_EQ(keel::base::to_hex(bytes), "00ff1a09");
  EXPECT_EQ(keel::base::to_hex({}), "");
  std::string out = "id=";
  keel::base::append_hex(out, bytes);
  EXPECT_EQ(out, "id=00ff1a09");
  char buf[8];
  EXPECT_EQ(keel::base::hex_into(bytes, buf), buf + 8);
  EXPECT_EQ(std::string_view(buf, 8), "00ff1a09");

  std::array<std::uint8_t, 4> back{};
  EXPECT_TRUE(keel::base::decode_lower_hex("00ff1a09", back));
  EXPECT_EQ(back, bytes);
  EXPECT_TRUE(keel::base::decode_lower_hex("00ff1a09-and-more", back));  // reads only what it needs
  EXPECT_FALSE(keel::base::decode_lower_hex("00FF1a09", back));          // uppercase
  EXPECT_FALSE(keel::base::decode_lower_hex("00ff1a0", back));           // too short
  EXPECT_FALSE(keel::base::decode_lower_hex("00ff1a0g", back));
  EXPECT_TRUE(keel::base::decode_lower_hex("", std::span<std::uint8_t>()));
}

// The same inputs through the three rules: where they differ is the point.
TEST(PercentDecodeRules, SideBySide) {
  struct Case {
    std::string_view in;
    bool strict_ok;
    std::string strict;   // when strict_ok
    std::string lenient;  // keel::percent_decode
    std::string form;     // base::form_decode
  };
  const Case cases[] = {
      {"a%20b", true, "a b", "a b", "a b"},
      {"a+b", true, "a+b", "a+b", "a b"},
      {"%2B", true, "+", "+", "+"},
      {"%2f", true, "/", "/", "/"},
      {"%zz", false, "", "%zz", "%zz"},
      {"%4", false, "", "%4", "%4"},
      {"100%", false, "", "100%", "100%"},
      {"%%41", false, "", "%A", "%A"},
      {"%00", false, "", "\0"s, "%00"},
      {"a%00b", false, "", "a\0b"s, "a%00b"},
      {"%e2%82%AC", true, "\xe2\x82\xac", "\xe2\x82\xac", "\xe2\x82\xac"},
      {"%2541", true, "%41", "%41", "%41"},
      {"", true, "", "", ""},
  };
  for (const Case& c : cases) {
    std::string strict;
    EXPECT_EQ(percent_decode_strict(c.in, strict), c.strict_ok) << c.in;
    if (c.strict_ok) {
      EXPECT_EQ(strict, c.strict) << c.in;
    }
    EXPECT_EQ(keel::percent_decode(c.in), c.lenient) << c.in;
    EXPECT_EQ(keel::base::form_decode(c.in), c.form) << c.in;
  }
}

TEST(PercentDecodeLenient, PasswordsAndBaggageValues) {
  EXPECT_EQ(keel::percent_decode("p%40ss%3Aw%2Frd"), "p@ss:w/rd");
  EXPECT_EQ(keel::percent_decode("Bearer%20abc%3D%3d"), "Bearer abc==");
  EXPECT_EQ(keel::percent_decode("50%"), "50%");
  EXPECT_EQ(keel::percent_decode("%G0%0G"), "%G0%0G");
  EXPECT_EQ(keel::percent_decode("%41"), "A");  // an escape that ends the text
}

TEST(FormDecode, QueryComponents) {
  using keel::base::form_decode;
  EXPECT_EQ(form_decode("hello+world"), "hello world");
  EXPECT_EQ(form_decode("a%2Bb"), "a+b");
  EXPECT_EQ(form_decode("++"), "  ");
  EXPECT_EQ(form_decode("%"), "%");
  EXPECT_EQ(form_decode("%4"), "%4");
  EXPECT_EQ(form_decode("x%41"), "xA");
}

TEST(ClientIp, AddressPartOfAPeer) {
  using keel::base::client_ip;
  EXPECT_EQ(client_ip("127.0.0.1:5000"), "127.0.0.1");
  EXPECT_EQ(client_ip("[::1]:5000"), "::1");
  EXPECT_EQ(client_ip("[fe80::1%eth0]:80"), "fe80::1%eth0");
  EXPECT_EQ(client_ip("unix"), "unix");
  EXPECT_EQ(client_ip(""), "");
  EXPECT_EQ(client_ip("[::1"), "::1");  // unterminated: the rest
}

}  // namespace
