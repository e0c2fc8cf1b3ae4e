#include "app/router.hpp"

#include <gtest/gtest.h>

#include "http/request_parser.hpp"

namespace {

keel::Response ok(keel::Request&) {
  return keel::Response::text("ok");
}

struct RouterTest : ::testing::Test {
  keel::Router router;
  keel::http::ParsedRequest parsed;
  keel::Request req;
  keel::Router::Match match(std::string_view method, std::string_view path) { return router.match(method, path, req); }
};

TEST_F(RouterTest, LiteralAndTypedParams) {
  router.add("GET", "/api/users", ok);
  router.add("GET", "/api/users/{id:int}", ok);
  router.add("GET", "/api/items/{key:uuid}", ok);
  router.add("GET", "/api/names/{name}", ok);
  EXPECT_EQ(match("GET", "/api/users").status, 200);
  EXPECT_EQ(req.route(), "/api/users");
  auto m = match("GET", "/api/users/42");
  ASSERT_EQ(m.status, 200);
  EXPECT_EQ(req.route(), "/api/users/{id:int}");
  EXPECT_EQ(req.param("id"), "42");
  EXPECT_EQ(req.param_int("id"), 42);
  EXPECT_EQ(match("GET", "/api/users/abc").status, 404);
  EXPECT_EQ(match("GET", "/api/users/99999999999999999999").status, 404);  // overflows int64
  EXPECT_EQ(match("GET", "/api/items/123e4567-e89b-12d3-a456-426614174000").status, 200);
  EXPECT_EQ(match("GET", "/api/items/123e4567-e89b-12d3-a456-42661417400").status, 404);
  EXPECT_EQ(match("GET", "/api/names/bob").status, 200);
  EXPECT_EQ(req.param("name"), "bob");
  EXPECT_EQ(match("GET", "/api/names/").status, 404);
  EXPECT_EQ(match("GET", "/api/users/").status, 404);
}

TEST_F(RouterTest, PercentDecodingPerSegment) {
  router.add("GET", "/files/{name}", ok);
  router.add("GET", "/caf\xc3\xa9", ok);
  ASSERT_EQ(match("GET", "/files/a%2Fb").status, 200);
  EXPECT_EQ(req.param("name"), "a/b");  // an encoded slash stays inside its segment
  EXPECT_EQ(match("GET", "/caf%C3%A9").status, 200);
  EXPECT_EQ(match("GET", "/files/%zz").status, 400);
  EXPECT_EQ(match("GET", "/files/%00").status, 400);
}

TEST_F(RouterTest, WildcardTail) {
  router.add("GET", "/static/{rest:path}", ok);
  ASSERT_EQ(match("GET", "/static/css/site.css").status, 200);
  EXPECT_EQ(req.param("rest"), "css/site.css");
  EXPECT_EQ(req.route(), "/static/{rest:path}");
  EXPECT_THROW(router.add("GET", "/x/{rest:path}/more", ok), std::invalid_argument);
}

TEST_F(RouterTest, LiteralBeatsParameter) {
  router.add("GET", "/users/{id}", ok);
  router.add("GET", "/users/me", ok);
  ASSERT_EQ(match("GET", "/users/me").status, 200);
  EXPECT_EQ(req.route(), "/users/me");
  ASSERT_EQ(match("GET", "/users/7").status, 200);
  EXPECT_EQ(req.route(), "/users/{id}");
}

TEST_F(RouterTest, MethodNotAllowedListsAllow) {
  router.add("GET", "/things", ok);
  router.add("POST", "/things", ok);
  const auto m = match("DELETE", "/things");
  EXPECT_EQ(m.status, 405);
  EXPECT_EQ(m.allow, "GET, HEAD, OPTIONS, POST");
  EXPECT_EQ(req.route(), "/things");                // labelled with the route's template, not "unmatched"
  EXPECT_EQ(match("HEAD", "/things").status, 200);  // automatic HEAD for GET
  EXPECT_EQ(match("GET", "/nothing").status, 404);
  EXPECT_EQ(req.route(), "unmatched");
}

TEST_F(RouterTest, RejectsBadPatterns) {
  EXPECT_THROW(router.add("GET", "nope", ok), std::invalid_argument);
  EXPECT_THROW(router.add("GET", "/a/{id:float}", ok), std::invalid_argument);
  EXPECT_THROW(router.add("GET", "/a/{}", ok), std::invalid_argument);
  EXPECT_THROW(router.add("GET", "/a/{x}/{x}", ok), std::invalid_argument);
  EXPECT_THROW(router.add("GET", "/a/x{y}", ok), std::invalid_argument);
  router.add("GET", "/a/{id:int}", ok);
  EXPECT_THROW(router.add("GET", "/a/{other:int}", ok), std::invalid_argument);
}

}  // namespace
