// The application side of the request seam, through keel::testing::TestClient (no sockets): the
// dispatcher's routing answers, middleware of all three kinds, error mapping with problem
// details, coroutine handlers that suspend, and the operational routes' middleware exemption.

#include "keel/testing.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "app/dispatcher.hpp"
#include "app/router.hpp"
#include "http/request_parser.hpp"
#include "keel/app.hpp"
#include "keel/async.hpp"
#include "keel/errors.hpp"

namespace {

using namespace std::chrono_literals;
using keel::Request;
using keel::Response;
using keel::Task;
using keel::testing::TestClient;

TEST(TestClient, AnswersWhatNoRouteDoesLikeTheServer) {
  keel::App app;
  app.get("/items/{id:int}", [](Request& r) { return std::string(r.param("id")); });
  std::string seen_route;
  app.use({.after = [&](Request& r, Response&) { seen_route = std::string(r.route()); }});
  TestClient client(app);

  auto ok = client.get("/items/7");
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.body, "7");
  EXPECT_EQ(ok.header("content-type"), "text/plain; charset=utf-8");
  EXPECT_TRUE(ok.header("X-Request-ID").has_value());

  auto missing = client.get("/nothing");
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.header("Content-Type"), "application/problem+json");
  EXPECT_EQ(seen_route, "unmatched");

  // A 405 is labelled with the template of the route that exists for the path.
  auto wrong = client.del("/items/7");
  EXPECT_EQ(wrong.status, 405);
  EXPECT_EQ(wrong.header("Allow"), "GET, HEAD, OPTIONS");
  EXPECT_EQ(seen_route, "/items/{id:int}");

  // A malformed request gets the parser's answer; no handler runs.
  auto bad = client.request("GET", "/a b");
  EXPECT_EQ(bad.status, 400);
}

TEST(TestClient, HttpErrorCarriesProblemDetails) {
  keel::App app;
  app.post("/users", [](Request&) -> Response {
    throw keel::HttpError(422, "the request has invalid fields",
                          {{"errors", {{{"field", "email"}, {"message", "must contain @"}}}}});
  });
  app.get("/typed", [](Request&) -> Response {
    throw keel::HttpError(409, "taken", {{"type", "https://example.com/problems/taken"}, {"title", "Taken"}});
  });
  TestClient client(app);

  auto r = client.post("/users", R"({"email":"nope"})");
  EXPECT_EQ(r.status, 422);
  const auto body = r.json();
  EXPECT_EQ(body["type"], "about:blank");
  EXPECT_EQ(body["status"], 422);
  EXPECT_EQ(body["detail"], "the request has invalid fields");
  ASSERT_TRUE(body["errors"].is_array());
  EXPECT_EQ(body["errors"][0]["field"], "email");
  EXPECT_FALSE(body["request_id"].get<std::string>().empty());

  const auto typed = client.get("/typed").json();
  EXPECT_EQ(typed["type"], "https://example.com/problems/taken");
  EXPECT_EQ(typed["title"], "Taken");
  EXPECT_EQ(typed["status"], 409);
}

TEST(TestClient, CoroutineHandlersMayReturnJsonOrTextAndSuspend) {
  keel::App app;
  app.get("/json", [](Request&) -> Task<nlohmann::json> {
    co_await keel::sleep(5ms);
    co_return nlohmann::json{{"slept", true}};
  });
  app.get("/text", [](Request&) -> Task<std::string> {
    const int n = co_await keel::offload([] { return 41 + 1; });
    co_return std::to_string(n);
  });
  TestClient client(app);

  auto j = client.get("/json");
  EXPECT_EQ(j.status, 200);
  EXPECT_EQ(j.header("Content-Type"), "application/json");
  EXPECT_EQ(j.json()["slept"], true);
  auto t = client.get("/text");
  EXPECT_EQ(t.body, "42");
  EXPECT_EQ(t.header("Content-Type"), "text/plain; charset=utf-8");
}

TEST(TestClient, MiddlewareOfEveryKindRunsInOrder) {
  keel::App app;
  std::vector<std::string> trace;
  app.get("/work", [&](Request&) {
    trace.push_back("handler");
    return std::string("done");
  });
  app.get("/boom", [](Request&) -> Response { throw std::runtime_error("boom"); });
  app.use({.before = [&](Request&) -> std::optional<Response> {
             trace.push_back("before 1");
             return std::nullopt;
           },
           .after = [&](Request&, Response&) { trace.push_back("after 1"); }});
  // An async check: co_awaits before deciding, and sees the rest's answer (never an exception).
  app.use({.around = [&](Request& req, keel::Next next) -> Task<Response> {
    trace.push_back("around in");
    co_await keel::sleep(1ms);
    if (req.header("X-API-Key") != "secret") co_return Response::text("no key", 401);
    Response r = co_await next(req);
    trace.push_back("around out " + std::to_string(r.status()));
    r.add_header("X-Around", "yes");
    co_return r;
  }});
  app.use({.after = [&](Request&, Response&) { trace.push_back("after 3"); }});
  TestClient client(app);

  auto denied = client.get("/work");
  EXPECT_EQ(denied.status, 401);
  EXPECT_EQ(trace, (std::vector<std::string>{"before 1", "around in", "after 1"}));

  trace.clear();
  auto ok = client.get("/work", {{"X-API-Key", "secret"}});
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.header("X-Around"), "yes");
  EXPECT_EQ(trace,
            (std::vector<std::string>{"before 1", "around in", "handler", "after 3", "around out 200", "after 1"}));

  trace.clear();
  auto failed = client.get("/boom", {{"X-API-Key", "secret"}});
  EXPECT_EQ(failed.status, 500);
  EXPECT_EQ(failed.json()["detail"], "internal server error");
  EXPECT_EQ(trace, (std::vector<std::string>{"before 1", "around in", "after 3", "around out 500", "after 1"}));

  trace.clear();
  EXPECT_EQ(client.get("/nothing", {{"X-API-Key", "secret"}}).status, 404);  // around 404s too
  EXPECT_EQ(trace, (std::vector<std::string>{"before 1", "around in", "after 3", "around out 404", "after 1"}));
}

// The operational routes (health, metrics), which serve() adds, skip the application's
// middleware unless operational_middleware is on: driven here through the dispatcher itself.
class OneExchange final : public keel::http::Exchange {
 public:
  explicit OneExchange(std::string wire) : wire_(std::move(wire)) {
    set_peer_address("127.0.0.1:1");
    EXPECT_EQ(parser_.parse(wire_.data(), wire_.size()), keel::http::ParseStatus::kComplete);
    begin_request(parser_.request());
  }
  bool peer_gone() const noexcept override { return false; }
  keel::http::Delivery respond(Response& r) override {
    status = r.status();
    return {true, wire_.size(), r.body().size()};
  }
  void finish() noexcept override { end_request(); }
  int status = 0;

 private:
  std::string wire_;
  keel::http::RequestParser parser_;
};

TEST(Dispatcher, OperationalRoutesSkipTheApplicationsMiddlewareUnlessAsked) {
  keel::Router router;
  router.add("GET", "/healthz", [](Request&) { return std::string("ok"); }).operational = true;
  router.add("GET", "/api", [](Request&) { return std::string("data"); });
  std::vector<keel::Middleware> middleware;
  middleware.push_back({.before = [](Request& r) -> std::optional<Response> {
    if (r.header("X-API-Key")) return std::nullopt;
    return Response(401);
  }});
  for (const bool operational_middleware : {false, true}) {
    keel::app::Dispatcher d(router, middleware, 0, operational_middleware);
    OneExchange health("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    d.handle(health);
    EXPECT_EQ(health.status, operational_middleware ? 401 : 200);
    OneExchange api("GET /api HTTP/1.1\r\nHost: x\r\n\r\n");
    d.handle(api);
    EXPECT_EQ(api.status, 401);
  }
}

}  // namespace
