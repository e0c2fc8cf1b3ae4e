// Tests of keel's built-in HTTP metrics (the HttpMetrics observer): the network_protocol_version
// label of the RED series, the HTTP/2 connection, stream and error series, and that the protocol
// the dispatcher reports is the request's (an HTTP/2 stream says "2").
#include "metrics/http_metrics.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "app/dispatcher.hpp"
#include "app/router.hpp"
#include "http/handler.hpp"
#include "http/observer.hpp"
#include "http/request_parser.hpp"
#include "keel/request.hpp"
#include "keel/response.hpp"
#include "metrics/registry.hpp"

namespace {

using keel::http::Protocol;
using keel::metrics_detail::Format;
using keel::metrics_detail::HttpMetrics;
using keel::metrics_detail::Registry;

// A request as a protocol hands it over: HTTP/1.x from the parser's fields, HTTP/2 as the http2
// connection fills them (version 2, a stream id).
class FakeExchange final : public keel::http::Exchange {
 public:
  FakeExchange(std::string_view method, std::string_view path, int major, int minor, std::uint32_t stream_id = 0) {
    parsed_.method = method;
    parsed_.target = path;
    parsed_.path = path;
    parsed_.host = "example.test";
    parsed_.version_major = major;
    parsed_.version_minor = minor;
    parsed_.stream_id = stream_id;
    set_peer_address("127.0.0.1:1");
    begin_request(parsed_);
  }
  bool peer_gone() const noexcept override { return false; }
  keel::http::Delivery respond(keel::Response& r) override {
    status = r.status();
    return {true, 100, 200};
  }
  void finish() noexcept override { end_request(); }
  int status = 0;

 private:
  keel::http::ParsedRequest parsed_;
};

class HttpMetricsTest : public ::testing::Test {
 protected:
  void SetUp() override { fresh(); }
  void TearDown() override { fresh(); }
  static void fresh() {
    Registry::instance().reset_for_tests();
    keel::metrics_detail::forget_builtin_metrics_for_tests();
  }

  static std::string render() { return Registry::instance().render(Format::kPrometheus); }

  // The value of the sample line `series` (name and labels exactly as rendered), or NaN.
  static double sample(const std::string& text, const std::string& series) {
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);)
      if (line.starts_with(series + " ")) return std::stod(line.substr(series.size() + 1));
    return std::numeric_limits<double>::quiet_NaN();
  }

  static keel::http::RequestRecord record(const FakeExchange& e, Protocol protocol, std::string_view route,
                                          int status) {
    keel::http::RequestRecord r;
    r.request = &const_cast<FakeExchange&>(e).request();
    r.protocol = protocol;
    r.method = "GET";
    r.route = route;
    r.status = status;
    r.seconds = 0.002;
    r.bytes_in = 100;
    r.bytes_out = 200;
    return r;
  }

  HttpMetrics make() {
    return HttpMetrics([] { return std::size_t{0}; }, {});
  }
};

constexpr std::string_view kRoute = "/items/{id:int}";

TEST_F(HttpMetricsTest, ProtocolHelpersAreTheRequestsVersions) {
  EXPECT_EQ(keel::http::protocol_of("1.0"), Protocol::kHttp10);
  EXPECT_EQ(keel::http::protocol_of("1.1"), Protocol::kHttp11);
  EXPECT_EQ(keel::http::protocol_of("2"), Protocol::kHttp2);
  EXPECT_EQ(keel::http::version_of(Protocol::kHttp2), "2");
  EXPECT_EQ(keel::http::name_of(Protocol::kHttp2), "HTTP/2");
  EXPECT_EQ(keel::http::name_of(Protocol::kHttp10), "HTTP/1.0");
  FakeExchange h10("GET", "/", 1, 0), h11("GET", "/", 1, 1), h2("GET", "/", 2, 0, 7);
  EXPECT_EQ(keel::http::protocol_of(h10.request().http_version()), Protocol::kHttp10);
  EXPECT_EQ(keel::http::protocol_of(h11.request().http_version()), Protocol::kHttp11);
  EXPECT_EQ(keel::http::protocol_of(h2.request().http_version()), Protocol::kHttp2);
  EXPECT_EQ(h2.request().stream_id(), 7u);
  EXPECT_EQ(h11.request().stream_id(), 0u);
}

TEST_F(HttpMetricsTest, EveryProtocolAndHttp2SeriesIsDeclaredUpFront) {
  HttpMetrics m = make();
  const std::string text = render();
  for (const char* v : {"1.0", "1.1", "2"})
    EXPECT_EQ(sample(text, std::string("http_requests_in_flight{network_protocol_version=\"") + v + "\"}"), 0) << v;
  EXPECT_EQ(sample(text, "keel_http2_connections_open"), 0) << text;
  EXPECT_EQ(sample(text, "keel_http2_streams_open"), 0);
  for (const std::string_view reason : keel::http::kHttp2ErrorReasons)
    EXPECT_EQ(sample(text, "keel_http2_connection_errors_total{reason=\"" + std::string(reason) + "\"}"), 0) << reason;
  EXPECT_NE(text.find("# TYPE keel_http2_connection_errors_total counter"), std::string::npos);
  EXPECT_NE(text.find("# TYPE keel_http2_connections_open gauge"), std::string::npos);
}

TEST_F(HttpMetricsTest, RequestsCountedByProtocolVersion) {
  HttpMetrics m = make();
  FakeExchange h11("GET", "/items/1", 1, 1), h2("GET", "/items/2", 2, 0, 3), h10("GET", "/items/3", 1, 0);
  m.request_started(Protocol::kHttp2);
  m.request_started(Protocol::kHttp11);
  m.request_started(Protocol::kHttp2);
  std::string text = render();
  EXPECT_EQ(sample(text, "http_requests_in_flight{network_protocol_version=\"2\"}"), 2);
  EXPECT_EQ(sample(text, "http_requests_in_flight{network_protocol_version=\"1.1\"}"), 1);
  EXPECT_EQ(sample(text, "http_requests_in_flight{network_protocol_version=\"1.0\"}"), 0);

  m.request_finished(record(h2, Protocol::kHttp2, kRoute, 200));
  m.request_finished(record(h2, Protocol::kHttp2, kRoute, 200));
  m.request_finished(record(h11, Protocol::kHttp11, kRoute, 200));
  m.request_started(Protocol::kHttp10);
  m.request_finished(record(h10, Protocol::kHttp10, kRoute, 404));
  text = render();
  for (const char* v : {"1.0", "1.1", "2"})
    EXPECT_EQ(sample(text, std::string("http_requests_in_flight{network_protocol_version=\"") + v + "\"}"), 0) << v;
  const std::string labels = "method=\"GET\",route=\"/items/{id:int}\"";
  // The new label sits before `version` (service_version), which stays last.
  EXPECT_EQ(
      sample(text, "http_requests_total{" + labels + ",status=\"200\",network_protocol_version=\"2\",version=\"\"}"), 2)
      << text;
  EXPECT_EQ(
      sample(text, "http_requests_total{" + labels + ",status=\"200\",network_protocol_version=\"1.1\",version=\"\"}"),
      1);
  EXPECT_EQ(
      sample(text, "http_requests_total{" + labels + ",status=\"404\",network_protocol_version=\"1.0\",version=\"\"}"),
      1);
  EXPECT_EQ(
      sample(text, "http_request_duration_seconds_count{" + labels + ",network_protocol_version=\"2\",version=\"\"}"),
      2);
  EXPECT_EQ(
      sample(text, "http_request_duration_seconds_count{" + labels + ",network_protocol_version=\"1.1\",version=\"\"}"),
      1);
  // The size histograms are not split by protocol.
  EXPECT_EQ(sample(text, "http_request_size_bytes_count{" + labels + "}"), 4);
  EXPECT_EQ(sample(text, "http_response_size_bytes_count{" + labels + "}"), 4);
}

TEST_F(HttpMetricsTest, Http2ConnectionsStreamsAndErrors) {
  HttpMetrics m = make();
  m.http2_connection(+1);
  m.http2_connection(+1);
  m.http2_streams(+1);
  m.http2_streams(+1);
  m.http2_streams(+1);
  m.http2_streams(-1);
  m.http2_error("rapid_reset");
  m.http2_error("rapid_reset");
  m.http2_error("slow_reader");
  std::string text = render();
  EXPECT_EQ(sample(text, "keel_http2_connections_open"), 2);
  EXPECT_EQ(sample(text, "keel_http2_streams_open"), 2);
  EXPECT_EQ(sample(text, "keel_http2_connection_errors_total{reason=\"rapid_reset\"}"), 2);
  EXPECT_EQ(sample(text, "keel_http2_connection_errors_total{reason=\"slow_reader\"}"), 1);
  EXPECT_EQ(sample(text, "keel_http2_connection_errors_total{reason=\"bad_preface\"}"), 0);
  m.http2_connection(-1);
  m.http2_streams(-2);
  m.http2_error("a_reason_not_listed_yet");  // counted all the same
  text = render();
  EXPECT_EQ(sample(text, "keel_http2_connections_open"), 1);
  EXPECT_EQ(sample(text, "keel_http2_streams_open"), 0);
  EXPECT_EQ(sample(text, "keel_http2_connection_errors_total{reason=\"a_reason_not_listed_yet\"}"), 1);
}

// What the dispatcher tells observers: the protocol of the request it handles, at the start and
// in the record, which carries the request (its stream id) too.
class Recorder final : public keel::http::Observer {
 public:
  void request_started(Protocol p) noexcept override { started.push_back(p); }
  void request_finished(const keel::http::RequestRecord& r) noexcept override {
    finished.push_back(r.protocol);
    stream_ids.push_back(r.request->stream_id());
  }
  void rejected(keel::http::Rejection) noexcept override {}
  void connection_opened() noexcept override {}
  void connection_closed() noexcept override {}
  std::chrono::steady_clock::time_point tick(std::chrono::steady_clock::time_point) noexcept override {
    return std::chrono::steady_clock::time_point::max();
  }
  std::vector<Protocol> started, finished;
  std::vector<std::uint32_t> stream_ids;
};

TEST(DispatcherProtocol, ObserversGetTheRequestsProtocol) {
  keel::Router router;
  router.add("GET", "/x", [](keel::Request&) { return std::string("ok"); });
  std::vector<keel::Middleware> middleware;
  keel::app::Dispatcher d(router, middleware, 0, false);
  Recorder recorder;
  d.set_observer(&recorder);
  FakeExchange h2("GET", "/x", 2, 0, 5), h11("GET", "/x", 1, 1), h10("GET", "/x", 1, 0);
  d.handle(h2);
  d.handle(h11);
  d.handle(h10);
  EXPECT_EQ(h2.status, 200);
  const std::vector<Protocol> expected{Protocol::kHttp2, Protocol::kHttp11, Protocol::kHttp10};
  EXPECT_EQ(recorder.started, expected);
  EXPECT_EQ(recorder.finished, expected);
  EXPECT_EQ(recorder.stream_ids, (std::vector<std::uint32_t>{5, 0, 0}));
}

}  // namespace
