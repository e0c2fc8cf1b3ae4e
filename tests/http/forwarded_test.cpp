// Tests of http/forwarded.hpp: X-Forwarded-For walked from the right past trusted hops, the
// per-hop X-Forwarded-Proto/-Host/-Port, RFC 7239 Forwarded (quoted strings, IPv6 in brackets,
// ports, unknown and obfuscated nodes), which of the two wins, and malformed values that change
// nothing.
#include "http/forwarded.hpp"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace {

using keel::HeaderField;
using keel::http::ForwardedInfo;
using keel::http::HopList;
using keel::http::host_with_port;
using keel::http::parse_forwarded_element;
using keel::http::resolve_forwarded;
using keel::http::split_forwarded;
using keel::http::split_plain_list;
using keel::http::valid_forwarded_host;
using keel::net::AddressSet;

// Proxies at 10.0.0.0/8 and ::1 are trusted.
const AddressSet& trusted() {
  static const AddressSet set = AddressSet::parse({"10.0.0.0/8", "::1"});
  return set;
}

ForwardedInfo resolve(const std::vector<std::pair<std::string, std::string>>& fields,
                      const AddressSet& set = trusted()) {
  static std::vector<std::pair<std::string, std::string>> storage;  // the views below point into it
  storage = fields;
  std::vector<HeaderField> headers;
  for (const auto& [n, v] : storage) headers.push_back({n, v});
  return resolve_forwarded(headers, set);
}

std::string client(const ForwardedInfo& f) {
  return f.client ? keel::net::format_ip_port(f.client->ip, f.client->port) : "";
}

std::vector<std::string> items(const HopList& list) {
  std::vector<std::string> out;
  for (std::size_t i = list.size(); i-- > 0;) out.emplace_back(list.from_right(i));
  return out;
}

TEST(SplitLists, PlainAndForwarded) {
  HopList plain;
  split_plain_list(" 203.0.113.9 ,, 10.0.0.1,", plain);
  split_plain_list("10.0.0.2", plain);  // a second field line continues the list
  EXPECT_EQ(items(plain), (std::vector<std::string>{"203.0.113.9", "10.0.0.1", "10.0.0.2"}));
  HopList fwd;
  split_forwarded(R"(for="[2001:db8::1]:80";host="a,b", for=10.0.0.1 ,for="x\",y")", fwd);
  EXPECT_EQ(items(fwd),
            (std::vector<std::string>{R"(for="[2001:db8::1]:80";host="a,b")", "for=10.0.0.1", R"(for="x\",y")"}));
  HopList open;
  split_forwarded(R"(for=1.2.3.4, for="unterminated, for=5.6.7.8)", open);
  EXPECT_EQ(items(open), (std::vector<std::string>{"for=1.2.3.4", R"(for="unterminated, for=5.6.7.8)"}));
  HopList trailing_escape;
  split_forwarded(R"(for=1.2.3.4, for="x\)", trailing_escape);
  EXPECT_EQ(items(trailing_escape), (std::vector<std::string>{"for=1.2.3.4", R"(for="x\)"}));
}

TEST(HopList, KeepsTheLastEntries) {
  HopList list;
  std::vector<std::string> values;
  for (int i = 0; i < 40; ++i) values.push_back(std::to_string(i));
  for (const auto& v : values) list.push(v);
  EXPECT_EQ(list.size(), HopList::kCapacity);
  EXPECT_TRUE(list.truncated());
  EXPECT_EQ(list.from_right(0), "39");
  EXPECT_EQ(list.from_right(HopList::kCapacity - 1), "8");
}

TEST(ForwardedElement, Parameters) {
  auto e = parse_forwarded_element(R"(for="[2001:db8:cafe::17]:4711";proto=https;host="example.com:8443";by=_p)");
  ASSERT_TRUE(e);
  EXPECT_TRUE(e->has_for);
  EXPECT_EQ(e->for_node, "[2001:db8:cafe::17]:4711");
  EXPECT_EQ(e->proto, "https");
  EXPECT_EQ(e->host, "example.com:8443");
  e = parse_forwarded_element("For=192.0.2.60 ; Proto=http ; ext=\"x;y\"");  // names ignore case, OWS at ';'
  ASSERT_TRUE(e);
  EXPECT_EQ(e->for_node, "192.0.2.60");
  EXPECT_EQ(e->proto, "http");
  e = parse_forwarded_element("proto=https");
  ASSERT_TRUE(e);
  EXPECT_FALSE(e->has_for);
  EXPECT_TRUE(parse_forwarded_element(";;for=unknown;"));
  for (const char* bad : {"for", "for=", "=x", "for=192.0.2.60:80", "for=[::1]", R"(for="x)", "for=a;for=b",
                          "proto=http;proto=https", "host=a;host=b", "by=a;by=b", R"(for="\1.2.3.4")", "for=a b",
                          "for=a,b", "for=\"a\"b", "f r=a", "for=\"a\x01\""})
    EXPECT_FALSE(parse_forwarded_element(bad)) << bad;
  EXPECT_TRUE(parse_forwarded_element(R"(ext="a\"b";for=1.2.3.4)"));  // an escape elsewhere is fine
}

TEST(ForwardedHost, Validation) {
  for (const char* ok : {"example.com", "example.com:8443", "EXAMPLE.com", "192.0.2.1", "192.0.2.1:80", "[::1]",
                         "[2001:db8::1]:443", "xn--bcher-kva.example", "a_b.example", "a%20b"})
    EXPECT_TRUE(valid_forwarded_host(ok)) << ok;
  for (const char* bad :
       {"", "example.com:", "example.com:0", "example.com:65536", "example.com:80:80", "a b", "a/b", "user@example.com",
        "[::1", "[192.0.2.1]", "[zz::1]", ":80", "a\\b", "a\r\nb", "example.com:8o"})
    EXPECT_FALSE(valid_forwarded_host(bad)) << bad;
  EXPECT_FALSE(valid_forwarded_host(std::string(256, 'a')));
}

TEST(HostWithPort, ReplacesOrDropsThePort) {
  EXPECT_EQ(host_with_port("example.com", 8443, "https"), "example.com:8443");
  EXPECT_EQ(host_with_port("example.com:80", 443, "https"), "example.com");
  EXPECT_EQ(host_with_port("example.com:8080", 80, "http"), "example.com");
  EXPECT_EQ(host_with_port("example.com", 443, "http"), "example.com:443");
  EXPECT_EQ(host_with_port("[::1]:80", 8080, "http"), "[::1]:8080");
}

TEST(XForwardedFor, OneProxy) {
  const auto f = resolve({{"X-Forwarded-For", "203.0.113.9"}});
  EXPECT_EQ(client(f), "203.0.113.9");
  EXPECT_TRUE(f.scheme.empty());
  EXPECT_TRUE(f.host.empty());
}

TEST(XForwardedFor, RightmostUntrustedWins) {
  // The client forged "198.51.100.1"; the proxies appended the real client and each other.
  const auto f = resolve({{"x-forwarded-for", "198.51.100.1, 203.0.113.9, 10.0.0.2, 10.0.0.1"}});
  EXPECT_EQ(client(f), "203.0.113.9");
}

TEST(XForwardedFor, SeveralLinesAndPorts) {
  const auto f = resolve({{"X-Forwarded-For", "198.51.100.1"},
                          {"Accept", "*/*"},
                          {"X-Forwarded-For", "[2001:db8::9]:4711, 10.0.0.1:1234"}});
  EXPECT_EQ(client(f), "[2001:db8::9]:4711");
  EXPECT_EQ(client(resolve({{"X-Forwarded-For", "2001:db8::9, ::1"}})), "[2001:db8::9]");
  EXPECT_EQ(client(resolve({{"X-Forwarded-For", "::ffff:203.0.113.9"}})), "203.0.113.9");
}

TEST(XForwardedFor, AllTrustedIsTheLeftmost) {
  EXPECT_EQ(client(resolve({{"X-Forwarded-For", "10.1.1.1, 10.0.0.2, 10.0.0.1"}})), "10.1.1.1");
  EXPECT_EQ(client(resolve({{"X-Forwarded-For", "203.0.113.9, 10.0.0.1"}}, AddressSet::parse({"*"}))), "203.0.113.9");
}

TEST(XForwardedFor, GarbageWhereTheWalkStopsNamesNobody) {
  for (const char* value : {"not-an-ip", "203.0.113.9, unknown", "203.0.113.9, 10.0.0.1, _hidden", "1.2.3.4:99999",
                            "203.0.113.9 10.0.0.1", "[2001:db8::1", "", " , ", "\x01"}) {
    const auto f = resolve({{"X-Forwarded-For", value}});
    EXPECT_FALSE(f.client) << value;
  }
  // Garbage further left than the client does not matter.
  EXPECT_EQ(client(resolve({{"X-Forwarded-For", "garbage, 203.0.113.9, 10.0.0.1"}})), "203.0.113.9");
}

TEST(XForwardedFor, LongTrustedChains) {
  std::string chain = "203.0.113.9";
  for (int i = 0; i < 31; ++i) chain += ", 10.0.0." + std::to_string(i + 1);
  EXPECT_EQ(client(resolve({{"X-Forwarded-For", chain}})), "203.0.113.9");  // 32 entries: all kept
  std::string all_trusted = "10.0.1.1";
  for (int i = 0; i < 40; ++i) all_trusted += ", 10.0.0." + std::to_string(i + 1);
  EXPECT_FALSE(resolve({{"X-Forwarded-For", all_trusted}}).client);  // the leftmost was not kept
}

TEST(XForwardedProto, SchemeOfTheClientsHop) {
  auto f = resolve({{"X-Forwarded-For", "203.0.113.9"}, {"X-Forwarded-Proto", "https"}});
  EXPECT_EQ(f.scheme, "https");
  EXPECT_EQ(resolve({{"X-Forwarded-Proto", "HTTP"}}).scheme, "http");
  // Appending proxies: the client reached the first one over https, which reached the second over http.
  f = resolve({{"X-Forwarded-For", "203.0.113.9, 10.0.0.1"}, {"X-Forwarded-Proto", "https, http"}});
  EXPECT_EQ(f.scheme, "https");
  // An overwriting proxy leaves one value: the leftmost is taken.
  f = resolve({{"X-Forwarded-For", "203.0.113.9, 10.0.0.1"}, {"X-Forwarded-Proto", "https"}});
  EXPECT_EQ(f.scheme, "https");
  // Without X-Forwarded-For, the nearest proxy's (rightmost) value.
  EXPECT_EQ(resolve({{"X-Forwarded-Proto", "http, https"}}).scheme, "https");
  for (const char* bad : {"ftp", "h ttps", "", "wss", "https;", "javascript"})
    EXPECT_TRUE(resolve({{"X-Forwarded-Proto", bad}}).scheme.empty()) << bad;
}

TEST(XForwardedHostAndPort, Values) {
  auto f = resolve({{"X-Forwarded-Host", "example.com"}, {"X-Forwarded-Port", "8443"}});
  EXPECT_EQ(f.host, "example.com");
  EXPECT_EQ(f.port, 8443);
  f = resolve({{"X-Forwarded-For", "203.0.113.9, 10.0.0.1"}, {"X-Forwarded-Host", "public.example, internal.lan"}});
  EXPECT_EQ(f.host, "public.example");
  for (const char* bad : {"evil.com/path", "a b", "user@host", "", "[::1"})
    EXPECT_TRUE(resolve({{"X-Forwarded-Host", bad}}).host.empty()) << bad;
  for (const char* bad : {"0", "65536", "80a", "-80", "", "8 0"})
    EXPECT_EQ(resolve({{"X-Forwarded-Port", bad}}).port, 0) << bad;
}

TEST(Forwarded, Rfc7239Examples) {
  auto f = resolve({{"Forwarded", R"(for="_gazonk")"}});
  EXPECT_FALSE(f.client);  // obfuscated: nobody named
  f = resolve({{"Forwarded", R"(For="[2001:db8:cafe::17]:4711")"}});
  EXPECT_EQ(client(f), "[2001:db8:cafe::17]:4711");
  f = resolve({{"Forwarded", "for=192.0.2.60;proto=http;by=203.0.113.43"}});
  EXPECT_EQ(client(f), "192.0.2.60");
  EXPECT_EQ(f.scheme, "http");
  f = resolve({{"Forwarded", "for=192.0.2.43, for=198.51.100.17"}});
  EXPECT_EQ(client(f), "198.51.100.17");  // both untrusted: the rightmost
}

TEST(Forwarded, WalksPastTrustedHopsAndTakesTheClientsElement) {
  const auto f = resolve(
      {{"Forwarded", R"(for=198.51.100.1;proto=http, for="[2001:db8::9]:4711";proto=https;host="shop.example", )"
                     R"(for=10.0.0.1;proto=http;host=internal)"}});
  EXPECT_EQ(client(f), "[2001:db8::9]:4711");
  EXPECT_EQ(f.scheme, "https");
  EXPECT_EQ(f.host, "shop.example");
  const auto all = resolve({{"Forwarded", "for=10.0.0.2;proto=https"}, {"Forwarded", R"(for="[::1]";proto=http)"}});
  EXPECT_EQ(client(all), "10.0.0.2");
  EXPECT_EQ(all.scheme, "https");
}

TEST(Forwarded, UnknownAndObfuscatedNodes) {
  auto f = resolve({{"Forwarded", "for=unknown;proto=https, for=10.0.0.1"}});
  EXPECT_FALSE(f.client);
  EXPECT_EQ(f.scheme, "https");  // the element still says how the client came in
  f = resolve({{"Forwarded", R"(for="192.0.2.1:_port")"}});
  EXPECT_EQ(client(f), "192.0.2.1");  // an obfuscated port is dropped
  f = resolve({{"Forwarded", R"(for="[2001:db8::1]:_p")"}});
  EXPECT_EQ(client(f), "[2001:db8::1]");
  f = resolve({{"Forwarded", "proto=https;host=example.com"}});  // no for=: the peer stays
  EXPECT_FALSE(f.client);
  EXPECT_EQ(f.scheme, "https");
  EXPECT_EQ(f.host, "example.com");
}

TEST(Forwarded, MalformedChangesNothing) {
  for (const char* bad :
       {"for=192.0.2.1:80", "for=[2001:db8::1]", R"(for="2001:db8::1")", "for=", "garbage", R"(for="192.0.2.1)",
        "for=192.0.2.1;for=192.0.2.2", R"(for=192.0.2.1;proto="ht\tp")", ";;;=", "for=192.0.2.1 for=192.0.2.2"}) {
    const auto f = resolve({{"Forwarded", bad}});
    EXPECT_FALSE(f.client) << bad;
    EXPECT_TRUE(f.scheme.empty()) << bad;
    EXPECT_TRUE(f.host.empty()) << bad;
  }
  // A well-formed element with an invalid host: the host alone is dropped.
  const auto bad_host = resolve({{"Forwarded", R"(for=203.0.113.9;proto=https;host="a b")"}});
  EXPECT_EQ(client(bad_host), "203.0.113.9");
  EXPECT_EQ(bad_host.scheme, "https");
  EXPECT_TRUE(bad_host.host.empty());
  // A malformed element left of the client's does not matter; one on its own line is isolated.
  EXPECT_EQ(client(resolve({{"Forwarded", "garbage, for=203.0.113.9"}})), "203.0.113.9");
  EXPECT_EQ(client(resolve({{"Forwarded", R"(for="open)"}, {"Forwarded", "for=203.0.113.9"}})), "203.0.113.9");
}

TEST(Precedence, XForwardedWinsOverForwarded) {
  // A proxy that manages X-Forwarded-* passes a client's Forwarded through: it is ignored.
  auto f =
      resolve({{"Forwarded", "for=198.51.100.1;proto=https;host=evil.example"}, {"X-Forwarded-For", "203.0.113.9"}});
  EXPECT_EQ(client(f), "203.0.113.9");
  EXPECT_TRUE(f.scheme.empty());
  EXPECT_TRUE(f.host.empty());
  f = resolve({{"Forwarded", "for=198.51.100.1"}, {"X-Forwarded-Proto", "https"}});
  EXPECT_FALSE(f.client);
  EXPECT_EQ(f.scheme, "https");
  // Without any X-Forwarded-* field, Forwarded is read.
  f = resolve({{"Forwarded", "for=198.51.100.1;proto=https"}, {"X-Forwarded-Other", "1"}});
  EXPECT_EQ(client(f), "198.51.100.1");
}

TEST(Resolve, NothingWithoutProxyHeaders) {
  const auto f = resolve({{"Host", "example.com"}, {"X-Forwarded", "for=1.2.3.4"}, {"Forwarded-For", "1.2.3.4"}});
  EXPECT_FALSE(f.client);
  EXPECT_TRUE(f.scheme.empty());
  EXPECT_TRUE(f.host.empty());
  EXPECT_EQ(f.port, 0);
}

}  // namespace
