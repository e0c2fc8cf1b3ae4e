// Tests of net/ip.hpp: strict address parsing, the hop forms proxies write, and CIDR sets
// (--forwarded-allow-ips), IPv4 and IPv6, with IPv4-mapped IPv6 peers matching IPv4 entries.
#include "net/ip.hpp"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

namespace {

using keel::net::AddressSet;
using keel::net::format_ip_port;
using keel::net::parse_ip;
using keel::net::parse_ip_port;
using keel::net::peer_ip;

bool in(const AddressSet& set, const char* ip) {
  const auto parsed = parse_ip(ip);
  EXPECT_TRUE(parsed.has_value()) << ip;
  return parsed && set.contains(*parsed);
}

TEST(ParseIp, AcceptsLiteralAddressesOnly) {
  ASSERT_TRUE(parse_ip("192.0.2.1"));
  EXPECT_TRUE(parse_ip("192.0.2.1")->v4);
  EXPECT_EQ(parse_ip("192.0.2.1")->to_string(), "192.0.2.1");
  ASSERT_TRUE(parse_ip("2001:DB8::1"));
  EXPECT_FALSE(parse_ip("2001:DB8::1")->v4);
  EXPECT_EQ(parse_ip("2001:DB8::1")->to_string(), "2001:db8::1");
  EXPECT_TRUE(parse_ip("::"));
  for (const char* bad : {"", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "0x7f.0.0.1", "1.2.3.4 ", " 1.2.3.4",
                          "localhost", "[::1]", "::1%eth0", "1.2.3.4:80", "::g", "1:2:3:4:5:6:7:8:9",
                          "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"})
    EXPECT_FALSE(parse_ip(bad)) << bad;
}

TEST(ParseIp, Ipv4MappedIsIpv4) {
  const auto ip = parse_ip("::ffff:192.0.2.1");
  ASSERT_TRUE(ip);
  EXPECT_TRUE(ip->v4);
  EXPECT_EQ(*ip, *parse_ip("192.0.2.1"));
  EXPECT_EQ(ip->to_string(), "192.0.2.1");
}

TEST(ParseIpPort, HopForms) {
  auto hp = parse_ip_port("192.0.2.1");
  ASSERT_TRUE(hp);
  EXPECT_EQ(hp->port, 0);
  hp = parse_ip_port("192.0.2.1:8080");
  ASSERT_TRUE(hp);
  EXPECT_EQ(hp->port, 8080);
  EXPECT_EQ(hp->ip.to_string(), "192.0.2.1");
  hp = parse_ip_port("[2001:db8::1]");
  ASSERT_TRUE(hp);
  EXPECT_EQ(hp->ip.to_string(), "2001:db8::1");
  EXPECT_EQ(hp->port, 0);
  hp = parse_ip_port("[2001:db8::1]:443");
  ASSERT_TRUE(hp);
  EXPECT_EQ(hp->port, 443);
  hp = parse_ip_port("2001:db8::1");  // bare IPv6 (X-Forwarded-For): no port
  ASSERT_TRUE(hp);
  EXPECT_EQ(hp->port, 0);
  for (const char* bad : {"", ":80", "192.0.2.1:", "192.0.2.1:65536", "192.0.2.1:-1", "192.0.2.1:8o", "[192.0.2.1]",
                          "[2001:db8::1", "[2001:db8::1]x", "[2001:db8::1]:", "[2001:db8::1]:123456", "unknown",
                          "_hidden", "example.com:80", "192.0.2.1:80:80"})
    EXPECT_FALSE(parse_ip_port(bad)) << bad;
}

TEST(PeerIp, PeerForms) {
  EXPECT_EQ(peer_ip("127.0.0.1:5000")->to_string(), "127.0.0.1");
  EXPECT_EQ(peer_ip("[::1]:5000")->to_string(), "::1");
  EXPECT_FALSE(peer_ip("unix"));
  EXPECT_FALSE(peer_ip("unix:/run/app.sock"));
  EXPECT_FALSE(peer_ip("unknown"));
}

TEST(FormatIpPort, LikeFormatAddress) {
  EXPECT_EQ(format_ip_port(*parse_ip("192.0.2.1"), 80), "192.0.2.1:80");
  EXPECT_EQ(format_ip_port(*parse_ip("192.0.2.1"), 0), "192.0.2.1");
  EXPECT_EQ(format_ip_port(*parse_ip("2001:db8::1"), 443), "[2001:db8::1]:443");
  EXPECT_EQ(format_ip_port(*parse_ip("2001:db8::1"), 0), "[2001:db8::1]");
}

TEST(AddressSet, SingleAddresses) {
  const AddressSet set = AddressSet::parse({"127.0.0.1", "::1"});
  EXPECT_TRUE(in(set, "127.0.0.1"));
  EXPECT_TRUE(in(set, "::1"));
  EXPECT_TRUE(in(set, "::ffff:127.0.0.1"));  // a dual-stack socket's IPv4 peer
  EXPECT_FALSE(in(set, "127.0.0.2"));
  EXPECT_FALSE(in(set, "::2"));
  EXPECT_FALSE(set.any());
  EXPECT_FALSE(set.empty());
}

TEST(AddressSet, CidrBlocks) {
  const AddressSet set = AddressSet::parse({"10.0.0.0/8", "192.168.1.128/25", "2001:db8::/32", "fd00::/7"});
  EXPECT_TRUE(in(set, "10.0.0.0"));
  EXPECT_TRUE(in(set, "10.255.255.255"));
  EXPECT_FALSE(in(set, "11.0.0.0"));
  EXPECT_FALSE(in(set, "9.255.255.255"));
  EXPECT_TRUE(in(set, "192.168.1.128"));
  EXPECT_TRUE(in(set, "192.168.1.255"));
  EXPECT_FALSE(in(set, "192.168.1.127"));
  EXPECT_TRUE(in(set, "2001:db8:ffff::1"));
  EXPECT_FALSE(in(set, "2001:db9::1"));
  EXPECT_TRUE(in(set, "fc00::1"));
  EXPECT_TRUE(in(set, "fdff::1"));
  EXPECT_FALSE(in(set, "fe00::1"));
  EXPECT_TRUE(in(set, "::ffff:10.1.2.3"));
  EXPECT_FALSE(in(set, "::a01:203"));  // IPv4-compatible, not mapped: an IPv6 address
}

TEST(AddressSet, HostBitsAndEdgePrefixes) {
  // Host bits set in the base are cleared: 10.1.2.3/8 is 10.0.0.0/8.
  const AddressSet set = AddressSet::parse({"10.1.2.3/8", "0.0.0.0/0"});
  EXPECT_TRUE(in(set, "10.200.0.1"));
  EXPECT_TRUE(in(set, "203.0.113.9"));   // /0: every IPv4 address
  EXPECT_FALSE(in(set, "2001:db8::1"));  // ... but no IPv6 one
  const AddressSet v6all = AddressSet::parse({"::/0"});
  EXPECT_TRUE(in(v6all, "2001:db8::1"));
  EXPECT_FALSE(in(v6all, "192.0.2.1"));
  const AddressSet mapped = AddressSet::parse({"::ffff:10.0.0.0/104"});
  EXPECT_TRUE(in(mapped, "10.9.9.9"));
  EXPECT_FALSE(in(mapped, "11.0.0.1"));
  const AddressSet exact = AddressSet::parse({"192.0.2.1/32", "2001:db8::1/128"});
  EXPECT_TRUE(in(exact, "192.0.2.1"));
  EXPECT_FALSE(in(exact, "192.0.2.2"));
  EXPECT_TRUE(in(exact, "2001:db8::1"));
  EXPECT_FALSE(in(exact, "2001:db8::2"));
}

TEST(AddressSet, StarAndEmpty) {
  const AddressSet any = AddressSet::parse({"*"});
  EXPECT_TRUE(any.any());
  EXPECT_TRUE(in(any, "203.0.113.9"));
  EXPECT_TRUE(in(any, "2001:db8::1"));
  const AddressSet none = AddressSet::parse({});
  EXPECT_TRUE(none.empty());
  EXPECT_FALSE(in(none, "127.0.0.1"));
  EXPECT_TRUE(in(AddressSet::parse({" 127.0.0.1 "}), "127.0.0.1"));  // list items are trimmed
}

TEST(AddressSet, RejectsWhatIsNotAnAddress) {
  for (const char* bad : {"localhost", "10.0.0.0/33", "10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/8/8", "::/129",
                          "10.0.0.0/abc", "", "**", "10.0.0.0/0008", "::ffff:10.0.0.0/95"}) {
    EXPECT_THROW((void)AddressSet::parse({bad}), std::invalid_argument) << bad;
    EXPECT_FALSE(AddressSet::check({bad}).empty()) << bad;
  }
  EXPECT_NE(AddressSet::check({"127.0.0.1", "nope"}).find("'nope'"), std::string::npos);
  EXPECT_TRUE(AddressSet::check({"127.0.0.1", "10.0.0.0/8", "::1", "*"}).empty());
}

}  // namespace
