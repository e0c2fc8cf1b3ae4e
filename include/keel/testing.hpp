// An in-process client for a service's tests, like FastAPI's TestClient: requests go through the
// application's routes, middleware and error mapping (and its coroutines, keel::sleep and
// keel::offload) without sockets, workers or fork — from GoogleTest or any test framework.
//
//   keel::App app;
//   add_user_routes(app);                       // what main() registers
//   keel::testing::TestClient client(app);
//   auto r = client.post("/api/users", R"({"name":"Ada","email":"ada@example.com"})");
//   EXPECT_EQ(r.status, 201);
//   EXPECT_EQ(r.json()["name"], "Ada");
//
// Each call returns when the answer is complete. The request is parsed by keel's HTTP/1.1 parser
// (so a malformed one gets the status a server would answer). What a server adds around the
// application — the health and metrics endpoints, access logs, metrics, traces, limits of the
// connection — is not part of it: docs/testing-your-service.md.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace keel {
class App;
}

namespace keel::testing {

using Headers = std::vector<std::pair<std::string, std::string>>;

struct TestResponse {
  int status = 0;
  Headers headers;  // Content-Type first, then the response's own, then X-Request-ID
  std::string body;

  // First header with this name (case-insensitive).
  [[nodiscard]] std::optional<std::string> header(std::string_view name) const;
  // The body parsed as JSON; throws nlohmann::json::parse_error when it is not.
  [[nodiscard]] nlohmann::json json() const { return nlohmann::json::parse(body); }
};

class TestClient {
 public:
  // The app's routes and middleware as registered so far; its options() (threads,
  // limit_request_body, operational_middleware, root_path, ...) as they are now. Requests come
  // from the peer 127.0.0.1: with proxy_headers on and 127.0.0.1 in forwarded_allow_ips (the
  // defaults), their X-Forwarded-* / Forwarded headers count as a server would count them.
  explicit TestClient(App& app);
  ~TestClient();
  TestClient(const TestClient&) = delete;
  TestClient& operator=(const TestClient&) = delete;

  TestResponse request(std::string_view method, std::string_view target, const Headers& headers = {},
                       std::string_view body = {});
  TestResponse get(std::string_view target, const Headers& headers = {}) { return request("GET", target, headers); }
  TestResponse del(std::string_view target, const Headers& headers = {}) { return request("DELETE", target, headers); }
  // A body sent as application/json unless the headers say otherwise.
  TestResponse post(std::string_view target, std::string_view body, const Headers& headers = {});
  TestResponse put(std::string_view target, std::string_view body, const Headers& headers = {});
  TestResponse patch(std::string_view target, std::string_view body, const Headers& headers = {});

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace keel::testing
