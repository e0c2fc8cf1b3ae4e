// The figures `upgrade` compares generations with: parsed from the exposition, and the p99 the
// analysis computes from them.
#include "metrics/generation_stats.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "process/upgrade.hpp"

namespace keel {
namespace {

constexpr const char* kExposition = R"(# TYPE http_requests_total counter
http_requests_total{method="GET",route="/api/users/{id:int}",status="200",version="2"} 90
http_requests_total{method="POST",route="/api/users",status="500",version="2"} 7
http_requests_total{method="GET",route="/health/ready",status="503",version="2"} 40
http_requests_total{method="GET",route="/a\"b",status="502",version="2"} 3
http_requests_total_created 5
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{method="GET",route="/api/users/{id:int}",version="2",le="0.01"} 50
http_request_duration_seconds_bucket{method="GET",route="/api/users/{id:int}",version="2",le="0.1"} 90
http_request_duration_seconds_bucket{method="GET",route="/api/users/{id:int}",version="2",le="+Inf"} 90
http_request_duration_seconds_bucket{method="GET",route="/health/ready",version="2",le="0.01"} 40
http_request_duration_seconds_bucket{method="GET",route="/health/ready",version="2",le="0.1"} 40
http_request_duration_seconds_bucket{method="GET",route="/health/ready",version="2",le="+Inf"} 40
http_request_duration_seconds_bucket{method="POST",route="/api/users",version="2",le="0.01"} 0
http_request_duration_seconds_bucket{method="POST",route="/api/users",version="2",le="0.1"} 10
http_request_duration_seconds_bucket{method="POST",route="/api/users",version="2",le="+Inf"} 10
http_request_duration_seconds_sum{method="GET",route="/api/users/{id:int}",version="2"} 1.5
)";

TEST(GenerationStats, SumsRequestsErrorsAndBucketsWithoutExcludedRoutes) {
  const auto j = nlohmann::json::parse(metrics_detail::http_summary_json(kExposition, {"/health/ready"}));
  EXPECT_EQ(j["requests"].get<double>(), 100);  // 90 + 7 + 3 (escaped quote in a route), health excluded
  EXPECT_EQ(j["errors"].get<double>(), 10);     // 500 and 502
  EXPECT_EQ(j["count"].get<double>(), 100);
  EXPECT_EQ(j["le"], nlohmann::json::parse("[0.01, 0.1]"));
  EXPECT_EQ(j["cumulative"], nlohmann::json::parse("[50, 100]"));
}

TEST(GenerationStats, EmptyExpositionGivesZeros) {
  const auto j = nlohmann::json::parse(metrics_detail::http_summary_json("", {}));
  EXPECT_EQ(j["requests"].get<double>(), 0);
  EXPECT_TRUE(j["le"].empty());
}

TEST(HistogramQuantile, InterpolatesInsideTheBucketLikePrometheus) {
  // 100 observations: 50 up to 10 ms, 50 more up to 100 ms. p99: rank 99 -> 49/50 of the second
  // bucket: 0.01 + 0.09 * 0.98.
  EXPECT_NEAR(process::histogram_quantile(0.99, {0.01, 0.1}, {50, 100}, 100), 0.0982, 1e-9);
  EXPECT_NEAR(process::histogram_quantile(0.5, {0.01, 0.1}, {50, 100}, 100), 0.01, 1e-9);
  // In +Inf: the largest finite bound.
  EXPECT_EQ(process::histogram_quantile(0.99, {0.01, 0.1}, {50, 60}, 100), 0.1);
  EXPECT_TRUE(std::isnan(process::histogram_quantile(0.99, {0.01}, {0}, 0)));
  EXPECT_TRUE(std::isnan(process::histogram_quantile(0.99, {}, {}, 10)));
}

}  // namespace
}  // namespace keel
