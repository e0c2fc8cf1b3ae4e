// Tests of net/proxy_protocol.hpp: PROXY protocol v1 lines and v2 blocks, valid, truncated at
// every byte, and malformed; the length reported is exactly the header's, whatever follows it.
#include "net/proxy_protocol.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace {

using keel::net::parse_proxy_header;
using keel::net::ProxyHeader;
using Status = ProxyHeader::Status;

const std::string kSig("\r\n\r\n\0\r\nQUIT\n", 12);

// A v2 header: ver_cmd, fam, then the payload (its length is filled in).
std::string v2(std::uint8_t ver_cmd, std::uint8_t fam, const std::vector<std::uint8_t>& payload) {
  std::string out = kSig;
  out += static_cast<char>(ver_cmd);
  out += static_cast<char>(fam);
  out += static_cast<char>(payload.size() >> 8);
  out += static_cast<char>(payload.size() & 0xff);
  for (auto b : payload) out += static_cast<char>(b);
  return out;
}

std::vector<std::uint8_t> tcp4_payload() {
  return {192, 0, 2, 1, 198, 51, 100, 7, 0xc8, 0x22 /* 51234 */, 0x01, 0xbb /* 443 */};
}

std::vector<std::uint8_t> tcp6_payload() {
  std::vector<std::uint8_t> p = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01};  // 2001:db8::1
  const std::vector<std::uint8_t> dst = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02};
  p.insert(p.end(), dst.begin(), dst.end());
  p.insert(p.end(), {0x13, 0x88 /* 5000 */, 0x00, 0x50});
  return p;
}

TEST(ProxyProtocolV1, Tcp4) {
  const std::string line = "PROXY TCP4 192.0.2.1 198.51.100.7 51234 443\r\n";
  const ProxyHeader h = parse_proxy_header(line + "GET / HTTP/1.1\r\n");
  ASSERT_EQ(h.status, Status::kDone) << h.error;
  EXPECT_EQ(h.version, 1);
  EXPECT_EQ(h.length, line.size());
  EXPECT_EQ(h.source, "192.0.2.1:51234");
}

TEST(ProxyProtocolV1, Tcp6) {
  const std::string line = "PROXY TCP6 2001:db8::1 2001:db8::2 5000 80\r\n";
  const ProxyHeader h = parse_proxy_header(line + "\x16\x03\x01");  // a ClientHello follows
  ASSERT_EQ(h.status, Status::kDone) << h.error;
  EXPECT_EQ(h.length, line.size());
  EXPECT_EQ(h.source, "[2001:db8::1]:5000");
}

TEST(ProxyProtocolV1, UnknownKeepsThePeer) {
  for (const std::string line : {"PROXY UNKNOWN\r\n", "PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"}) {
    const ProxyHeader h = parse_proxy_header(line);
    ASSERT_EQ(h.status, Status::kDone) << line;
    EXPECT_EQ(h.length, line.size());
    EXPECT_TRUE(h.source.empty());
  }
}

TEST(ProxyProtocolV1, EveryPrefixIsIncomplete) {
  const std::string line = "PROXY TCP4 192.0.2.1 198.51.100.7 51234 443\r\n";
  for (std::size_t n = 0; n < line.size(); ++n)
    EXPECT_EQ(parse_proxy_header(line.substr(0, n)).status, Status::kIncomplete) << n;
}

TEST(ProxyProtocolV1, Malformed) {
  for (const std::string bad : {
           "PROXY TCP4 192.0.2.1 198.51.100.7 51234\r\n",          // missing field
           "PROXY TCP4 192.0.2.1 198.51.100.7 51234 443 1\r\n",    // extra field
           "PROXY TCP4  192.0.2.1 198.51.100.7 51234 443\r\n",     // double space
           "PROXY TCP4 2001:db8::1 198.51.100.7 51234 443\r\n",    // family mismatch
           "PROXY TCP6 192.0.2.1 2001:db8::2 51234 443\r\n",       // family mismatch
           "PROXY TCP4 192.0.2.256 198.51.100.7 51234 443\r\n",    // bad address
           "PROXY TCP4 192.0.2.1 198.51.100.7 65536 443\r\n",      // port range
           "PROXY TCP4 192.0.2.1 198.51.100.7 -1 443\r\n",         // port sign
           "PROXY TCP4 192.0.2.1 198.51.100.7 51234 443 \r\n",     // trailing space
           "PROXY UDP4 192.0.2.1 198.51.100.7 51234 443\r\n",      // protocol
           "PROXY tcp4 192.0.2.1 198.51.100.7 51234 443\r\n",      // case
           "PROXY TCP4 192.0.2.1 198.51.100.7 51234 443\n",        // LF without CR
           "PROXY TCP4 192.0.2.1\r198.51.100.7 51234 443\r\n",     // bare CR
           "PROXY TCP4 192.0.2.1\x01 198.51.100.7 51234 443\r\n",  // control character
           "GET / HTTP/1.1\r\nHost: x\r\n\r\n",                    // no header at all
           "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",         // a TLS ClientHello without one
           "PROXX TCP4",                                           // not the prefix
       }) {
    const ProxyHeader h = parse_proxy_header(bad);
    EXPECT_EQ(h.status, Status::kInvalid) << bad;
    EXPECT_FALSE(h.error.empty()) << bad;
  }
}

TEST(ProxyProtocolV1, NoCrlfWithin107Bytes) {
  const std::string start = "PROXY UNKNOWN ";
  EXPECT_EQ(parse_proxy_header(start + std::string(90, 'a')).status, Status::kIncomplete);
  EXPECT_EQ(parse_proxy_header(start + std::string(93, 'a')).status, Status::kInvalid);
}

TEST(ProxyProtocolV1, LongestLine) {
  // 107 bytes with the CRLF is the longest line; one more is not a header.
  std::string line = "PROXY UNKNOWN ";
  line += std::string(107 - line.size() - 2, 'a') + "\r\n";
  ASSERT_EQ(line.size(), 107u);
  EXPECT_EQ(parse_proxy_header(line).status, Status::kDone);
  std::string longer = "PROXY UNKNOWN ";
  longer += std::string(108 - longer.size() - 2, 'a') + "\r\n";
  EXPECT_EQ(parse_proxy_header(longer).status, Status::kInvalid);
}

TEST(ProxyProtocolV2, Tcp4) {
  const std::string h2 = v2(0x21, 0x11, tcp4_payload());
  const ProxyHeader h = parse_proxy_header(h2 + "GET / HTTP/1.1\r\n");
  ASSERT_EQ(h.status, Status::kDone) << h.error;
  EXPECT_EQ(h.version, 2);
  EXPECT_EQ(h.length, 16u + 12u);
  EXPECT_EQ(h.source, "192.0.2.1:51234");
}

TEST(ProxyProtocolV2, Tcp6) {
  const ProxyHeader h = parse_proxy_header(v2(0x21, 0x21, tcp6_payload()));
  ASSERT_EQ(h.status, Status::kDone) << h.error;
  EXPECT_EQ(h.length, 16u + 36u);
  EXPECT_EQ(h.source, "[2001:db8::1]:5000");
}

TEST(ProxyProtocolV2, TlvsAreCountedNotRead) {
  auto payload = tcp4_payload();
  // PP2_TYPE_AUTHORITY "example.com", then a large custom TLV that has not arrived yet.
  payload.insert(payload.end(), {0x02, 0x00, 0x0b});
  for (char c : std::string("example.com")) payload.push_back(static_cast<std::uint8_t>(c));
  payload.insert(payload.end(), {0xe0, 0x01, 0x00});
  payload.resize(payload.size() + 256, 0xaa);
  const std::string whole = v2(0x21, 0x11, payload);
  const ProxyHeader h = parse_proxy_header(std::string_view(whole).substr(0, 16 + 12));  // addresses only
  ASSERT_EQ(h.status, Status::kDone) << h.error;
  EXPECT_EQ(h.length, whole.size());
  EXPECT_EQ(h.source, "192.0.2.1:51234");
}

TEST(ProxyProtocolV2, LocalUnspecAndUnixKeepThePeer) {
  for (const std::string& header : {v2(0x20, 0x00, {}),              // LOCAL (a health check)
                                    v2(0x20, 0x11, tcp4_payload()),  // LOCAL with addresses: ignored
                                    v2(0x21, 0x00, {}),              // PROXY, UNSPEC
                                    v2(0x21, 0x31, std::vector<std::uint8_t>(216, 0))}) {  // PROXY, unix
    const ProxyHeader h = parse_proxy_header(header);
    ASSERT_EQ(h.status, Status::kDone) << h.error;
    EXPECT_EQ(h.length, header.size());
    EXPECT_TRUE(h.source.empty());
  }
}

TEST(ProxyProtocolV2, Ipv4MappedSourceIsIpv4) {
  auto p = tcp6_payload();
  const std::uint8_t mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 203, 0, 113, 9};
  std::copy(std::begin(mapped), std::end(mapped), p.begin());
  const ProxyHeader h = parse_proxy_header(v2(0x21, 0x21, p));
  ASSERT_EQ(h.status, Status::kDone);
  EXPECT_EQ(h.source, "203.0.113.9:5000");
}

TEST(ProxyProtocolV2, EveryPrefixIsIncomplete) {
  for (const std::string& header : {v2(0x21, 0x11, tcp4_payload()), v2(0x21, 0x21, tcp6_payload())})
    for (std::size_t n = 0; n < header.size(); ++n)
      EXPECT_EQ(parse_proxy_header(header.substr(0, n)).status, Status::kIncomplete) << n;
}

TEST(ProxyProtocolV2, Malformed) {
  EXPECT_EQ(parse_proxy_header(v2(0x11, 0x11, tcp4_payload())).status, Status::kInvalid);  // version 1 nibble
  EXPECT_EQ(parse_proxy_header(v2(0x22, 0x11, tcp4_payload())).status, Status::kInvalid);  // command 2
  EXPECT_EQ(parse_proxy_header(v2(0x21, 0x41, tcp4_payload())).status, Status::kInvalid);  // family 4
  EXPECT_EQ(parse_proxy_header(v2(0x21, 0x13, tcp4_payload())).status, Status::kInvalid);  // transport 3
  auto short4 = tcp4_payload();
  short4.resize(11);
  EXPECT_EQ(parse_proxy_header(v2(0x21, 0x11, short4)).status, Status::kInvalid);  // length < 12
  auto short6 = tcp6_payload();
  short6.resize(35);
  EXPECT_EQ(parse_proxy_header(v2(0x21, 0x21, short6)).status, Status::kInvalid);  // length < 36
  std::string bad_sig = v2(0x21, 0x11, tcp4_payload());
  bad_sig[5] = 'x';
  EXPECT_EQ(parse_proxy_header(bad_sig).status, Status::kInvalid);
  EXPECT_EQ(parse_proxy_header(std::string("\r\n\r\n\0\r\nQUIX", 11)).status, Status::kInvalid);
}

}  // namespace
