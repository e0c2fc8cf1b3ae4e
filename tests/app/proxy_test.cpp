// What handlers see behind a proxy, through keel::testing::TestClient (peer 127.0.0.1): the
// client address, scheme and host of trusted proxy headers, the peer kept apart, proxy headers
// ignored when the peer is not trusted or proxy_headers is off, and --root-path routing.
#include <gtest/gtest.h>

#include <string>

#include "keel/app.hpp"
#include "keel/testing.hpp"

namespace {

using keel::Request;
using keel::testing::TestClient;

void add_echo(keel::App& app) {
  app.get("/echo", [](Request& r) {
    return nlohmann::json{{"client", r.client_address()},
                          {"peer", r.peer_address()},
                          {"scheme", r.scheme()},
                          {"host", r.host()},
                          {"path", r.path()},
                          {"root_path", r.root_path()}};
  });
}

TEST(ProxyHeaders, TrustedLoopbackPeerByDefault) {
  keel::App app;
  add_echo(app);
  TestClient client(app);
  const auto plain = client.get("/echo").json();
  EXPECT_EQ(plain["client"], "127.0.0.1:0");
  EXPECT_EQ(plain["peer"], "127.0.0.1:0");
  EXPECT_EQ(plain["scheme"], "http");
  EXPECT_EQ(plain["host"], "testclient");
  const auto r = client
                     .get("/echo", {{"X-Forwarded-For", "198.51.100.1, 203.0.113.9"},
                                    {"X-Forwarded-Proto", "https"},
                                    {"X-Forwarded-Host", "shop.example"},
                                    {"X-Forwarded-Port", "8443"}})
                     .json();
  EXPECT_EQ(r["client"], "203.0.113.9");
  EXPECT_EQ(r["peer"], "127.0.0.1:0");
  EXPECT_EQ(r["scheme"], "https");
  EXPECT_EQ(r["host"], "shop.example:8443");
  // The next request on the same client starts from the peer again.
  EXPECT_EQ(client.get("/echo").json()["client"], "127.0.0.1:0");
  const auto fwd =
      client.get("/echo", {{"Forwarded", R"(for="[2001:db8::7]:4711";proto=https;host=api.example)"}}).json();
  EXPECT_EQ(fwd["client"], "[2001:db8::7]:4711");
  EXPECT_EQ(fwd["scheme"], "https");
  EXPECT_EQ(fwd["host"], "api.example");
  // X-Forwarded-Port alone re-ports the Host header; the scheme's default port is left out.
  EXPECT_EQ(client.get("/echo", {{"Host", "example.com:8080"}, {"X-Forwarded-Port", "9000"}}).json()["host"],
            "example.com:9000");
  EXPECT_EQ(
      client.get("/echo", {{"Host", "example.com:8080"}, {"X-Forwarded-Proto", "https"}, {"X-Forwarded-Port", "443"}})
          .json()["host"],
      "example.com");
}

TEST(ProxyHeaders, UntrustedPeerOrOffIsIgnored) {
  for (const bool off : {false, true}) {
    keel::App app;
    add_echo(app);
    if (off)
      app.options().proxy_headers = false;
    else
      app.options().forwarded_allow_ips = {"10.0.0.1"};
    TestClient client(app);
    const auto r =
        client
            .get("/echo",
                 {{"X-Forwarded-For", "203.0.113.9"}, {"X-Forwarded-Proto", "https"}, {"Forwarded", "for=1.2.3.4"}})
            .json();
    EXPECT_EQ(r["client"], "127.0.0.1:0");
    EXPECT_EQ(r["scheme"], "http");
    EXPECT_EQ(r["host"], "testclient");
  }
}

TEST(ProxyHeaders, MalformedKeepsThePeer) {
  keel::App app;
  add_echo(app);
  TestClient client(app);
  const auto r = client
                     .get("/echo", {{"X-Forwarded-For", "203.0.113.9, not an address"},
                                    {"X-Forwarded-Proto", "gopher"},
                                    {"X-Forwarded-Host", "evil.example/path"},
                                    {"X-Forwarded-Port", "99999"}})
                     .json();
  EXPECT_EQ(r["client"], "127.0.0.1:0");
  EXPECT_EQ(r["scheme"], "http");
  EXPECT_EQ(r["host"], "testclient");
}

TEST(RootPath, RoutesWithOrWithoutThePrefix) {
  keel::App app;
  add_echo(app);
  app.get("/", [](Request& r) { return std::string(r.root_path()) + "|" + std::string(r.path()); });
  app.options().root_path = "/api/";  // a trailing '/' is dropped
  TestClient client(app);
  for (const char* target : {"/api/echo", "/echo"}) {  // the proxy passes the prefix on, or strips it
    const auto r = client.get(target);
    ASSERT_EQ(r.status, 200) << target;
    EXPECT_EQ(r.json()["path"], "/echo");
    EXPECT_EQ(r.json()["root_path"], "/api");
  }
  EXPECT_EQ(client.get("/api").body, "/api|/");
  EXPECT_EQ(client.get("/api/").body, "/api|/");
  EXPECT_EQ(client.get("/api/echo?x=1").json()["path"], "/echo");
  EXPECT_EQ(client.get("/apiecho").status, 404);       // not at a segment boundary: not the prefix
  EXPECT_EQ(client.get("/api/api/echo").status, 404);  // stripped once
}

}  // namespace
