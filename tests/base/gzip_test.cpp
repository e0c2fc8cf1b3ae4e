// Tests of base/gzip.hpp: Accept-Encoding negotiation for /metrics, and the gzip member the
// metrics endpoint and the OTLP exporter send.
#include "base/gzip.hpp"

#include <gtest/gtest.h>
#include <zlib.h>

#include <string>
#include <string_view>

namespace {

using keel::base::accepts_gzip;

// Inflates a complete gzip member whose decompressed size is known.
std::string inflate_member(std::string_view member, std::size_t size) {
  z_stream zs{};
  EXPECT_EQ(inflateInit2(&zs, 15 + 16), Z_OK);  // gzip only: no zlib header accepted
  std::string out(size + 1, '\0');              // one spare byte: more output than expected shows
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(member.data()));
  zs.avail_in = static_cast<uInt>(member.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  const int rc = inflate(&zs, Z_FINISH);
  out.resize(out.size() - zs.avail_out);
  inflateEnd(&zs);
  EXPECT_EQ(rc, Z_STREAM_END);
  EXPECT_EQ(zs.avail_in, 0u);
  return out;
}

TEST(AcceptsGzip, ListedWithAPositiveQ) {
  EXPECT_TRUE(accepts_gzip("gzip"));
  EXPECT_TRUE(accepts_gzip("GZip"));
  EXPECT_TRUE(accepts_gzip("x-gzip"));
  EXPECT_TRUE(accepts_gzip("deflate, gzip;q=0.5, br"));
  EXPECT_TRUE(accepts_gzip(" \tgzip \t; q=1"));
  EXPECT_TRUE(accepts_gzip("gzip;Q=0.001"));
  EXPECT_TRUE(accepts_gzip("*"));
  EXPECT_TRUE(accepts_gzip("br, *;q=0.1"));
}

TEST(AcceptsGzip, AbsentRefusedOrMalformed) {
  EXPECT_FALSE(accepts_gzip(""));
  EXPECT_FALSE(accepts_gzip("identity"));
  EXPECT_FALSE(accepts_gzip("deflate, br"));
  EXPECT_FALSE(accepts_gzip("gzip;q=0"));
  EXPECT_FALSE(accepts_gzip("gzip;q=0.000"));
  EXPECT_FALSE(accepts_gzip("gzip;q=1.5"));  // above 1: malformed, so 0
  EXPECT_FALSE(accepts_gzip("gzip;q=abc"));
  EXPECT_FALSE(accepts_gzip("gzip;q=0.12345"));  // more than three decimals
  EXPECT_FALSE(accepts_gzip("gzips"));
  EXPECT_FALSE(accepts_gzip("x-gzip2"));
  EXPECT_FALSE(accepts_gzip("*;q=0"));
  EXPECT_FALSE(accepts_gzip("gzip;q=0, *"));  // an explicit refusal beats the wildcard
}

TEST(Gzip, RoundTripsThroughInflate) {
  for (const std::string& data : {std::string(), std::string("hello"), std::string(100000, 'x'),
                                  std::string("# HELP a\n# TYPE a counter\na_total 1\n")}) {
    const std::string member = keel::base::gzip(data);
    ASSERT_GE(member.size(), 18u);  // 10-byte header + 8-byte trailer at least
    EXPECT_EQ(static_cast<unsigned char>(member[0]), 0x1f);
    EXPECT_EQ(static_cast<unsigned char>(member[1]), 0x8b);
    EXPECT_EQ(inflate_member(member, data.size()), data);
  }
  EXPECT_LT(keel::base::gzip(std::string(100000, 'x')).size(), 1000u);
}

}  // namespace
