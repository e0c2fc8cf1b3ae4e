// Tests of the OTLP/HTTP JSON span exporter. Network rule: every socket here is on 127.0.0.1.
// The collector is a small HTTP/1.1 server thread in this file: it gunzips request bodies and
// answers from a per-test script (status, headers, body).
#include "trace/otlp_exporter.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "log/log.hpp"

namespace {

using keel::trace::Attribute;
using keel::trace::BatchExporter;
using keel::trace::ExporterOptions;
using keel::trace::SpanData;
using keel::trace::SpanKind;
using keel::trace::StatusCode;
using nlohmann::json;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

SpanData make_span(int i) {
  SpanData s;
  for (std::size_t k = 0; k < s.trace_id.size(); ++k) s.trace_id[k] = static_cast<std::uint8_t>(0xa0 + k);
  for (std::size_t k = 0; k < s.span_id.size(); ++k) s.span_id[k] = static_cast<std::uint8_t>(i + static_cast<int>(k));
  s.name = "span-" + std::to_string(i);
  s.kind = SpanKind::kServer;
  s.start_unix_nano = 1700000000000000000ULL + static_cast<std::uint64_t>(i);
  s.end_unix_nano = s.start_unix_nano + 1000;
  s.attributes.push_back({"i", std::int64_t{i}});
  return s;
}

std::string gunzip(const std::string& in) {
  z_stream zs{};
  if (inflateInit2(&zs, 15 + 32) != Z_OK) throw std::runtime_error("inflateInit2");
  std::string out;
  char buf[16384];
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  int rc = Z_OK;
  do {
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof buf;
    rc = inflate(&zs, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) {
      inflateEnd(&zs);
      throw std::runtime_error("inflate failed");
    }
    out.append(buf, sizeof buf - zs.avail_out);
  } while (rc != Z_STREAM_END);
  inflateEnd(&zs);
  return out;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
  return s;
}

// Waits up to `limit` for pred().
template <class Pred>
bool eventually(Pred pred, milliseconds limit = milliseconds(5000)) {
  const auto end = Clock::now() + limit;
  while (Clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(milliseconds(5));
  }
  return pred();
}

// A listening socket on 127.0.0.1 with an ephemeral port.
int listen_loopback(int backlog, std::uint16_t& port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, backlog) != 0) {
    ::close(fd);
    throw std::runtime_error("bind/listen");
  }
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  port = ntohs(a.sin_port);
  return fd;
}

// A loopback port where nothing listens (connection refused).
std::uint16_t dead_port() {
  std::uint16_t port = 0;
  ::close(listen_loopback(1, port));
  return port;
}

// Captures what keel::log writes (file descriptor 1) while alive.
class StdoutCapture {
 public:
  StdoutCapture() { testing::internal::CaptureStdout(); }
  // Captured lines that are not log lines (a failed assertion's message, say) go to stderr.
  ~StdoutCapture() {
    if (!taken_) (void)lines("");
  }
  StdoutCapture(const StdoutCapture&) = delete;
  StdoutCapture& operator=(const StdoutCapture&) = delete;

  // Ends the capture; the JSON lines whose "event" is `event`. Other lines go to stderr.
  std::vector<json> lines(std::string_view event) {
    taken_ = true;
    keel::log::flush();  // keel::log writes from a background thread
    const std::string out = testing::internal::GetCapturedStdout();
    std::vector<json> found;
    std::size_t start = 0;
    while (start < out.size()) {
      const auto end = out.find('\n', start);
      const std::string line = out.substr(start, end == std::string::npos ? std::string::npos : end - start);
      start = end == std::string::npos ? out.size() : end + 1;
      const json j = json::parse(line, nullptr, false);
      if (!j.is_discarded() && j.is_object() && j.contains("event")) {
        if (j["event"] == event) found.push_back(j);
      } else {
        std::fprintf(stderr, "%s\n", line.c_str());
      }
    }
    return found;
  }

 private:
  bool taken_ = false;
};

// ---------------------------------------------------------------------------------------------
// The fake collector
// ---------------------------------------------------------------------------------------------

struct Received {
  std::string method;
  std::string path;
  std::vector<std::pair<std::string, std::string>> headers;  // names lowercased
  std::string body;                                          // decoded (gunzipped if gzip)
  Clock::time_point at;

  std::string header(const std::string& name) const {
    for (const auto& [k, v] : headers)
      if (k == name) return v;
    return {};
  }
  json request() const { return json::parse(body); }
  std::size_t span_count() const {
    const json j = request();
    return j["resourceSpans"][0]["scopeSpans"][0]["spans"].size();
  }
};

struct Reply {
  int status = 200;
  std::string body = "{}";
  std::vector<std::pair<std::string, std::string>> headers;
};

class FakeCollector {
 public:
  using Script = std::function<Reply(std::size_t index, const Received&)>;

  explicit FakeCollector(Script script) : script_(std::move(script)) {
    fd_ = listen_loopback(16, port_);
    accept_thread_ = std::thread([this] { accept_loop(); });
  }
  ~FakeCollector() {
    stop_ = true;
    accept_thread_.join();
    for (auto& t : conn_threads_) t.join();
    ::close(fd_);
  }
  FakeCollector(const FakeCollector&) = delete;
  FakeCollector& operator=(const FakeCollector&) = delete;

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1/traces"; }
  std::vector<Received> received() const {
    std::lock_guard g(mu_);
    return received_;
  }
  std::size_t count() const {
    std::lock_guard g(mu_);
    return received_.size();
  }
  int connections() const { return connections_.load(); }

 private:
  void accept_loop() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      ++connections_;
      conn_threads_.emplace_back([this, c] {
        serve(c);
        ::close(c);
      });
    }
  }

  // Reads into buf until it holds `want` bytes or the peer closes; false on close/stop.
  bool fill(int c, std::string& buf, std::size_t want) {
    while (buf.size() < want) {
      pollfd p{c, POLLIN, 0};
      if (stop_) return false;
      if (::poll(&p, 1, 20) <= 0) continue;
      char tmp[65536];
      const ssize_t n = ::recv(c, tmp, sizeof tmp, 0);
      if (n <= 0) return false;
      buf.append(tmp, static_cast<std::size_t>(n));
    }
    return true;
  }

  void serve(int c) {
    std::string buf;
    while (!stop_) {
      std::size_t head_end = std::string::npos;
      while ((head_end = buf.find("\r\n\r\n")) == std::string::npos) {
        if (!fill(c, buf, buf.size() + 1)) return;
      }
      Received r;
      r.at = Clock::now();
      const std::string head = buf.substr(0, head_end);
      buf.erase(0, head_end + 4);
      std::size_t pos = head.find("\r\n");
      const std::string request_line = head.substr(0, pos);
      const auto sp1 = request_line.find(' ');
      const auto sp2 = request_line.find(' ', sp1 + 1);
      r.method = request_line.substr(0, sp1);
      r.path = request_line.substr(sp1 + 1, sp2 - sp1 - 1);
      std::size_t content_length = 0;
      while (pos != std::string::npos) {
        const std::size_t start = pos + 2;
        pos = head.find("\r\n", start);
        const std::string line = head.substr(start, pos == std::string::npos ? std::string::npos : pos - start);
        const auto colon = line.find(':');
        if (colon == std::string::npos) continue;
        std::string value = line.substr(colon + 1);
        while (!value.empty() && value.front() == ' ') value.erase(0, 1);
        r.headers.emplace_back(lower(line.substr(0, colon)), value);
        if (r.headers.back().first == "content-length") content_length = std::stoul(value);
      }
      if (!fill(c, buf, content_length)) return;
      r.body = buf.substr(0, content_length);
      buf.erase(0, content_length);
      if (r.header("content-encoding") == "gzip") r.body = gunzip(r.body);
      std::size_t index = 0;
      {
        std::lock_guard g(mu_);
        index = received_.size();
        received_.push_back(r);
      }
      const Reply reply = script_(index, r);
      std::string out = "HTTP/1.1 " + std::to_string(reply.status) + " X\r\nContent-Type: application/json\r\n";
      out += "Content-Length: " + std::to_string(reply.body.size()) + "\r\n";
      for (const auto& [k, v] : reply.headers) out += k + ": " + v + "\r\n";
      out += "\r\n" + reply.body;
      std::size_t off = 0;
      while (off < out.size()) {
        const ssize_t n = ::send(c, out.data() + off, out.size() - off, MSG_NOSIGNAL);
        if (n <= 0) return;
        off += static_cast<std::size_t>(n);
      }
    }
  }

  Script script_;
  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  mutable std::mutex mu_;
  std::vector<Received> received_;
  std::thread accept_thread_;
  std::vector<std::thread> conn_threads_;  // only touched by the accept thread until it is joined
};

Reply ok(std::size_t, const Received&) {
  return {};
}

// Options for tests: short delays, small backoff.
ExporterOptions test_options(const std::string& url) {
  ExporterOptions o;
  o.endpoint = url;
  o.schedule_delay = milliseconds(50);
  o.timeout = milliseconds(2000);
  o.export_timeout = milliseconds(3000);
  o.retry_initial_backoff = milliseconds(20);
  o.retry_max_backoff = milliseconds(100);
  o.resource = {{"service.name", std::string("otlp-test")}};
  return o;
}

// ---------------------------------------------------------------------------------------------
// encode_json
// ---------------------------------------------------------------------------------------------

TEST(OtlpEncodeJson, GoldenShape) {
  ExporterOptions o;
  o.resource = {{"service.name", std::string("svc")}, {"service.instance.id", std::int64_t{7}}};
  o.scope_name = "keel";
  o.scope_version = "0.1.0";

  SpanData root;
  root.trace_id = {0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36};
  root.span_id = {0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7};
  root.name = "GET /users/{id}";
  root.kind = SpanKind::kServer;
  root.start_unix_nano = 1718000000000000000ULL;
  root.end_unix_nano = 18446744073709551615ULL;  // beyond 2^53: only a string keeps it exact
  root.trace_state = "vendor=x";
  root.attributes = {{"http.status_code", std::int64_t{200}},
                     {"big", std::numeric_limits<std::int64_t>::min()},
                     {"ratio", 0.25},
                     {"ok", true},
                     {"route", std::string("/users/{id}")}};
  root.events = {{"exception", 1718000000500000000ULL, {{"exception.message", std::string("boom")}}}};
  root.status = StatusCode::kError;
  root.status_message = "failed";

  SpanData child;
  child.trace_id = root.trace_id;
  child.span_id = {1, 2, 3, 4, 5, 6, 7, 8};
  child.parent_span_id = root.span_id;
  child.name = "db";
  child.kind = SpanKind::kClient;
  child.flags = 0;

  const json j = json::parse(encode_json(std::vector<SpanData>{root, child}, o));
  ASSERT_EQ(j["resourceSpans"].size(), 1U);
  const json& rs = j["resourceSpans"][0];
  EXPECT_EQ(rs["resource"]["attributes"], json::parse(R"([{"key":"service.name","value":{"stringValue":"svc"}},
                            {"key":"service.instance.id","value":{"intValue":"7"}}])"));
  ASSERT_EQ(rs["scopeSpans"].size(), 1U);
  EXPECT_EQ(rs["scopeSpans"][0]["scope"], json::parse(R"({"name":"keel","version":"0.1.0"})"));
  const json& spans = rs["scopeSpans"][0]["spans"];
  ASSERT_EQ(spans.size(), 2U);

  const json& s0 = spans[0];
  EXPECT_EQ(s0["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(s0["spanId"], "00f067aa0ba902b7");
  EXPECT_FALSE(s0.contains("parentSpanId"));  // root
  EXPECT_EQ(s0["traceState"], "vendor=x");
  EXPECT_EQ(s0["flags"], 1);
  EXPECT_EQ(s0["name"], "GET /users/{id}");
  EXPECT_EQ(s0["kind"], 2);  // integer, not "SPAN_KIND_SERVER"
  EXPECT_EQ(s0["startTimeUnixNano"], "1718000000000000000");
  EXPECT_EQ(s0["endTimeUnixNano"], "18446744073709551615");
  EXPECT_EQ(s0["attributes"], json::parse(R"([
      {"key":"http.status_code","value":{"intValue":"200"}},
      {"key":"big","value":{"intValue":"-9223372036854775808"}},
      {"key":"ratio","value":{"doubleValue":0.25}},
      {"key":"ok","value":{"boolValue":true}},
      {"key":"route","value":{"stringValue":"/users/{id}"}}])"));
  EXPECT_EQ(s0["events"], json::parse(R"([{"timeUnixNano":"1718000000500000000","name":"exception",
      "attributes":[{"key":"exception.message","value":{"stringValue":"boom"}}]}])"));
  EXPECT_EQ(s0["status"], json::parse(R"({"code":2,"message":"failed"})"));

  const json& s1 = spans[1];
  EXPECT_EQ(s1["spanId"], "0102030405060708");
  EXPECT_EQ(s1["parentSpanId"], "00f067aa0ba902b7");
  EXPECT_EQ(s1["kind"], 3);
  EXPECT_EQ(s1["flags"], 0);
  EXPECT_FALSE(s1.contains("traceState"));
  EXPECT_FALSE(s1.contains("events"));
  EXPECT_EQ(s1["status"], json::parse(R"({"code":0})"));
  EXPECT_EQ(s1["startTimeUnixNano"], "0");
}

TEST(OtlpEncodeJson, ExactBytes) {
  ExporterOptions o;
  o.scope_version.clear();
  SpanData s;
  s.trace_id[15] = 1;
  s.span_id[7] = 2;
  s.name = "n";
  EXPECT_EQ(encode_json(std::vector<SpanData>{s}, o),
            R"({"resourceSpans":[{"resource":{"attributes":[]},"scopeSpans":[{"scope":{"name":"keel"},"spans":[)"
            R"({"traceId":"00000000000000000000000000000001","spanId":"0000000000000002","flags":1,"name":"n",)"
            R"("kind":1,"startTimeUnixNano":"0","endTimeUnixNano":"0","attributes":[],"status":{"code":0}}]}]}]})");
  const json empty = json::parse(encode_json({}, o));
  EXPECT_TRUE(empty["resourceSpans"][0]["scopeSpans"][0]["spans"].empty());
}

TEST(OtlpEncodeJson, EscapingAndInvalidUtf8) {
  ExporterOptions o;
  o.resource = {{"k\"\\", std::string("v\x01\x1f")}};
  SpanData s;
  s.name = std::string("quote\" backslash\\ nl\n tab\t ctl\x02 nul") + '\0' + " end";
  s.status_message = "bad \xff\xfe utf8 \xc3(";
  s.attributes = {{"utf8", std::string("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80")},
                  {"overlong", std::string("\xc0\xaf")},
                  {"surrogate", std::string("\xed\xa0\x80")},
                  {"truncated", std::string("ab\xe2\x82")}};
  s.events = {{"ev\x7f", 5, {}}};
  const std::string text = encode_json(std::vector<SpanData>{s}, o);
  const json j = json::parse(text);  // throws on invalid JSON or invalid UTF-8
  const json& span = j["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
  EXPECT_EQ(span["name"], std::string("quote\" backslash\\ nl\n tab\t ctl\x02 nul") + '\0' + " end");
  EXPECT_EQ(span["status"]["message"], "bad \xef\xbf\xbd\xef\xbf\xbd utf8 \xef\xbf\xbd(");
  EXPECT_EQ(span["attributes"][0]["value"]["stringValue"], "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
  for (std::size_t i = 1; i < 4; ++i) {
    const std::string v = span["attributes"][i]["value"]["stringValue"];
    EXPECT_NE(v.find("\xef\xbf\xbd"), std::string::npos) << span["attributes"][i]["key"];
  }
  EXPECT_EQ(span["events"][0]["name"], "ev\x7f");
  EXPECT_FALSE(span["events"][0].contains("attributes"));
  EXPECT_EQ(j["resourceSpans"][0]["resource"]["attributes"][0]["key"], "k\"\\");
  EXPECT_EQ(j["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"], "v\x01\x1f");
  EXPECT_EQ(text.find('\n'), std::string::npos);  // control characters are escaped
}

TEST(OtlpEncodeJson, NonFiniteDoubles) {
  ExporterOptions o;
  SpanData s;
  s.attributes = {{"nan", std::numeric_limits<double>::quiet_NaN()},
                  {"inf", std::numeric_limits<double>::infinity()},
                  {"ninf", -std::numeric_limits<double>::infinity()},
                  {"tiny", 5e-324}};
  const json j = json::parse(encode_json(std::vector<SpanData>{s}, o));
  const json& a = j["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"];
  EXPECT_EQ(a[0]["value"]["doubleValue"], "NaN");  // proto3 JSON's names for non-finite doubles
  EXPECT_EQ(a[1]["value"]["doubleValue"], "Infinity");
  EXPECT_EQ(a[2]["value"]["doubleValue"], "-Infinity");
  EXPECT_EQ(a[3]["value"]["doubleValue"].get<double>(), 5e-324);
}

// ---------------------------------------------------------------------------------------------
// BatchExporter against the fake collector
// ---------------------------------------------------------------------------------------------

TEST(OtlpBatchExporter, DeliversGzippedCompleteBatches) {
  FakeCollector collector(ok);
  ExporterOptions o = test_options(collector.url());
  o.headers = {{"x-api-key", "secret"}, {"bad\r\nInjected", "x"}, {"x-ok", "a\r\nInjected: 1"}};
  o.max_batch = 4;
  o.scope_version = "9.9";
  BatchExporter exporter(o);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(exporter.enqueue(make_span(i)));
  ASSERT_TRUE(eventually([&] { return exporter.exported() == 10; }));
  EXPECT_EQ(exporter.dropped(), 0U);

  const auto got = collector.received();
  std::vector<std::string> names;
  for (const Received& r : got) {
    EXPECT_EQ(r.method, "POST");
    EXPECT_EQ(r.path, "/v1/traces");
    EXPECT_EQ(r.header("content-type"), "application/json");
    EXPECT_EQ(r.header("content-encoding"), "gzip");
    EXPECT_EQ(r.header("x-api-key"), "secret");
    EXPECT_EQ(r.header("injected"), "");
    EXPECT_EQ(r.header("x-ok"), "");
    EXPECT_EQ(r.header("expect"), "");
    const json j = r.request();
    EXPECT_EQ(j["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"], "otlp-test");
    EXPECT_EQ(j["resourceSpans"][0]["scopeSpans"][0]["scope"]["version"], "9.9");
    const json& spans = j["resourceSpans"][0]["scopeSpans"][0]["spans"];
    EXPECT_LE(spans.size(), 4U);  // max_batch
    for (const json& s : spans) {
      names.push_back(s["name"].get<std::string>());
      EXPECT_EQ(s["traceId"], "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf");
      EXPECT_EQ(s["kind"], 2);
    }
  }
  ASSERT_EQ(names.size(), 10U);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(names[static_cast<std::size_t>(i)], "span-" + std::to_string(i));
  EXPECT_EQ(collector.connections(), 1);  // keep-alive: one connection for every batch
}

TEST(OtlpBatchExporter, PlainJsonWithoutGzip) {
  FakeCollector collector(ok);
  ExporterOptions o = test_options(collector.url());
  o.gzip = false;
  BatchExporter exporter(o);
  ASSERT_TRUE(exporter.enqueue(make_span(1)));
  ASSERT_TRUE(eventually([&] { return exporter.exported() == 1; }));
  const auto got = collector.received();
  ASSERT_EQ(got.size(), 1U);
  EXPECT_EQ(got[0].header("content-encoding"), "");
  EXPECT_EQ(got[0].span_count(), 1U);
}

TEST(OtlpBatchExporter, Retries503ThenDelivers) {
  FakeCollector collector([](std::size_t i, const Received&) {
    if (i == 0) return Reply{503, R"({"code":14,"message":"overloaded"})", {}};
    return Reply{};
  });
  StdoutCapture capture;
  BatchExporter exporter(test_options(collector.url()));
  for (int i = 0; i < 3; ++i) exporter.enqueue(make_span(i));
  ASSERT_TRUE(eventually([&] { return exporter.exported() == 3; }));
  EXPECT_EQ(exporter.dropped(), 0U);
  const auto got = collector.received();
  ASSERT_EQ(got.size(), 2U);
  EXPECT_EQ(got[0].body, got[1].body);  // the same batch again
  EXPECT_EQ(got[1].span_count(), 3U);
  const auto lines = capture.lines("otlp_export_failed");
  ASSERT_EQ(lines.size(), 1U);
  EXPECT_EQ(lines[0]["logger"], "keel.trace");
  EXPECT_EQ(lines[0]["status"], 503);
  EXPECT_EQ(lines[0]["error"], "HTTP 503: overloaded");
  EXPECT_EQ(lines[0]["spans"], 3);
  EXPECT_EQ(lines[0]["will_retry"], true);
}

TEST(OtlpBatchExporter, HonoursRetryAfterOn429) {
  FakeCollector collector([](std::size_t i, const Received&) {
    if (i == 0) return Reply{429, "{}", {{"Retry-After", "1"}}};
    return Reply{};
  });
  StdoutCapture capture;
  ExporterOptions o = test_options(collector.url());
  BatchExporter exporter(o);
  exporter.enqueue(make_span(1));
  ASSERT_TRUE(eventually([&] { return exporter.exported() == 1; }));
  const auto got = collector.received();
  ASSERT_EQ(got.size(), 2U);
  EXPECT_GE(got[1].at - got[0].at, milliseconds(1000));  // not the 20 ms backoff
  EXPECT_LT(got[1].at - got[0].at, milliseconds(2000));
}

TEST(OtlpBatchExporter, RetryAfterBeyondExportTimeoutGivesUp) {
  FakeCollector collector([](std::size_t, const Received&) { return Reply{503, "{}", {{"Retry-After", "30"}}}; });
  StdoutCapture capture;
  BatchExporter exporter(test_options(collector.url()));
  exporter.enqueue(make_span(1));
  ASSERT_TRUE(eventually([&] { return exporter.dropped() == 1; }));
  EXPECT_EQ(collector.count(), 1U);
  const auto lines = capture.lines("otlp_export_failed");
  ASSERT_EQ(lines.size(), 1U);
  EXPECT_EQ(lines[0]["will_retry"], false);
}

TEST(OtlpBatchExporter, DoesNotRetry400) {
  FakeCollector collector([](std::size_t, const Received&) {
    return Reply{400, R"({"code":3,"message":"bad span"})", {}};
  });
  StdoutCapture capture;
  BatchExporter exporter(test_options(collector.url()));
  for (int i = 0; i < 5; ++i) exporter.enqueue(make_span(i));
  ASSERT_TRUE(eventually([&] { return exporter.dropped() == 5; }));
  std::this_thread::sleep_for(milliseconds(200));  // > max backoff: a retry would have come
  EXPECT_EQ(collector.count(), 1U);
  EXPECT_EQ(exporter.exported(), 0U);
  EXPECT_EQ(exporter.dropped(), 5U);
  const auto lines = capture.lines("otlp_export_failed");
  ASSERT_EQ(lines.size(), 1U);
  EXPECT_EQ(lines[0]["level"], "error");
  EXPECT_EQ(lines[0]["status"], 400);
  EXPECT_EQ(lines[0]["error"], "HTTP 400: bad span");
  EXPECT_EQ(lines[0]["will_retry"], false);
  EXPECT_EQ(lines[0]["spans"], 5);
}

TEST(OtlpBatchExporter, OtherStatusesAreNotRetried) {
  for (const int status : {401, 404, 413, 500}) {
    FakeCollector collector([status](std::size_t, const Received&) { return Reply{status, "", {}}; });
    StdoutCapture capture;
    BatchExporter exporter(test_options(collector.url()));
    exporter.enqueue(make_span(1));
    ASSERT_TRUE(eventually([&] { return exporter.dropped() == 1; })) << status;
    exporter.shutdown(Clock::now() + milliseconds(500));
    EXPECT_EQ(collector.count(), 1U) << status;
  }
}

TEST(OtlpBatchExporter, PartialSuccessIsLoggedAndExcluded) {
  FakeCollector collector([](std::size_t, const Received&) {
    return Reply{200, R"({"partialSuccess":{"rejectedSpans":"2","errorMessage":"2 spans had no name"}})", {}};
  });
  StdoutCapture capture;
  BatchExporter exporter(test_options(collector.url()));
  for (int i = 0; i < 5; ++i) exporter.enqueue(make_span(i));
  ASSERT_TRUE(eventually([&] { return exporter.exported() + exporter.dropped() == 5; }));
  EXPECT_EQ(exporter.exported(), 3U);
  EXPECT_EQ(exporter.dropped(), 2U);
  std::this_thread::sleep_for(milliseconds(100));
  EXPECT_EQ(collector.count(), 1U);  // a partial success is never retried
  const auto lines = capture.lines("otlp_partial_success");
  ASSERT_EQ(lines.size(), 1U);
  EXPECT_EQ(lines[0]["logger"], "keel.trace");
  EXPECT_EQ(lines[0]["level"], "warning");
  EXPECT_EQ(lines[0]["rejected_spans"], 2);
  EXPECT_EQ(lines[0]["error_message"], "2 spans had no name");
}

TEST(OtlpBatchExporter, PartialSuccessAsNumberAndEmpty) {
  FakeCollector collector([](std::size_t i, const Received&) {
    if (i == 0) return Reply{200, R"({"partialSuccess":{"rejectedSpans":1}})", {}};
    return Reply{200, R"({"partialSuccess":{}})", {}};  // an empty partialSuccess: full success
  });
  StdoutCapture capture;
  ExporterOptions o = test_options(collector.url());
  o.max_batch = 2;
  BatchExporter exporter(o);
  for (int i = 0; i < 4; ++i) exporter.enqueue(make_span(i));
  ASSERT_TRUE(eventually([&] { return exporter.exported() + exporter.dropped() == 4; }));
  EXPECT_EQ(exporter.exported(), 3U);
  EXPECT_EQ(exporter.dropped(), 1U);
}

TEST(OtlpBatchExporter, ConnectionRefusedRetriesThenDropsAtExportTimeout) {
  const std::string url = "http://127.0.0.1:" + std::to_string(dead_port()) + "/v1/traces";
  StdoutCapture capture;
  ExporterOptions o = test_options(url);
  o.export_timeout = milliseconds(800);
  o.retry_initial_backoff = milliseconds(50);
  o.retry_max_backoff = milliseconds(200);
  BatchExporter exporter(o);
  const auto start = Clock::now();
  for (int i = 0; i < 3; ++i) exporter.enqueue(make_span(i));
  ASSERT_TRUE(eventually([&] { return exporter.dropped() == 3; }));
  const auto took = Clock::now() - start;
  // Refused connections fail in microseconds: only retries make this last until about the export
  // timeout (the last backoff that would overrun it ends the batch early, by at most 200 ms).
  EXPECT_GE(took, milliseconds(550));
  EXPECT_LT(took, milliseconds(1500));
  EXPECT_EQ(exporter.exported(), 0U);
  const auto lines = capture.lines("otlp_export_failed");
  ASSERT_EQ(lines.size(), 1U);  // rate-limited: the retries and the final drop are not logged again
  EXPECT_EQ(lines[0]["status"], 0);
  EXPECT_EQ(lines[0]["will_retry"], true);
  EXPECT_NE(lines[0]["error"].get<std::string>().find("onnect"), std::string::npos) << lines[0]["error"];
}

TEST(OtlpBatchExporter, ShutdownFlushesQueuedSpans) {
  FakeCollector collector(ok);
  ExporterOptions o = test_options(collector.url());
  o.schedule_delay = milliseconds(60000);  // only shutdown can send these
  BatchExporter exporter(o);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(exporter.enqueue(make_span(i)));
  std::this_thread::sleep_for(milliseconds(50));
  EXPECT_EQ(collector.count(), 0U);
  const auto start = Clock::now();
  exporter.shutdown(Clock::now() + milliseconds(2000));
  EXPECT_LT(Clock::now() - start, milliseconds(1000));
  EXPECT_EQ(exporter.exported(), 10U);
  ASSERT_EQ(collector.count(), 1U);
  EXPECT_EQ(collector.received()[0].span_count(), 10U);
  EXPECT_FALSE(exporter.enqueue(make_span(11)));  // after shutdown: dropped and counted
  EXPECT_EQ(exporter.dropped(), 1U);
  exporter.shutdown(Clock::now() + milliseconds(2000));  // idempotent
}

TEST(OtlpBatchExporter, ShutdownWithHangingCollectorKeepsItsDeadline) {
  std::uint16_t port = 0;
  const int fd = listen_loopback(64, port);  // accepts connections (backlog), never answers
  StdoutCapture capture;
  ExporterOptions o = test_options("http://127.0.0.1:" + std::to_string(port) + "/v1/traces");
  o.timeout = milliseconds(10000);
  o.export_timeout = milliseconds(30000);
  {
    BatchExporter exporter(o);
    for (int i = 0; i < 5; ++i) exporter.enqueue(make_span(i));
    std::this_thread::sleep_for(milliseconds(150));  // the request is in flight now
    const auto start = Clock::now();
    exporter.shutdown(Clock::now() + milliseconds(300));
    const auto took = Clock::now() - start;
    EXPECT_GE(took, milliseconds(250));
    EXPECT_LT(took, milliseconds(800));
    EXPECT_EQ(exporter.dropped(), 5U);
  }
  ::close(fd);
}

TEST(OtlpBatchExporter, QueueOverflowDropsWithoutBlocking) {
  std::uint16_t port = 0;
  const int fd = listen_loopback(64, port);  // a collector that never answers
  StdoutCapture capture;
  ExporterOptions o = test_options("http://127.0.0.1:" + std::to_string(port) + "/v1/traces");
  o.max_queue = 1000;
  o.max_batch = 100;
  o.timeout = milliseconds(10000);
  o.export_timeout = milliseconds(30000);
  {
    BatchExporter exporter(o);
    constexpr int kThreads = 4;
    constexpr int kPerThread = 25000;
    std::atomic<int> accepted{0};
    const SpanData proto = make_span(1);
    std::vector<std::vector<SpanData>> inputs(kThreads, std::vector<SpanData>(kPerThread, proto));
    const auto start = Clock::now();
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        int n = 0;
        for (SpanData& s : inputs[static_cast<std::size_t>(t)]) n += exporter.enqueue(std::move(s)) ? 1 : 0;
        accepted += n;
      });
    }
    for (auto& t : threads) t.join();
    const auto took = Clock::now() - start;
    // 100k enqueues: a few ms optimised, well under a second in a debug/sanitizer build.
    EXPECT_LT(took, milliseconds(2000)) << std::chrono::duration_cast<milliseconds>(took).count() << " ms";
    EXPECT_LE(accepted.load(), 1000);
    EXPECT_GE(accepted.load(), 100);
    EXPECT_EQ(exporter.dropped(), static_cast<std::uint64_t>(kThreads * kPerThread - accepted.load()));
    EXPECT_EQ(exporter.exported(), 0U);
    const auto stop_start = Clock::now();
    exporter.shutdown(Clock::now());  // in flight and queued: all dropped, immediately
    EXPECT_LT(Clock::now() - stop_start, milliseconds(500));
    EXPECT_EQ(exporter.dropped(), static_cast<std::uint64_t>(kThreads * kPerThread));
  }
  ::close(fd);
}

TEST(OtlpBatchExporter, DestructorReturnsPromptlyWithDeadCollector) {
  const std::string url = "http://127.0.0.1:" + std::to_string(dead_port()) + "/v1/traces";
  StdoutCapture capture;
  ExporterOptions o = test_options(url);
  o.export_timeout = milliseconds(30000);
  o.retry_initial_backoff = milliseconds(5000);
  const auto start = Clock::now();
  {
    BatchExporter exporter(o);
    for (int i = 0; i < 3; ++i) exporter.enqueue(make_span(i));
    std::this_thread::sleep_for(milliseconds(100));  // first attempt refused, now in backoff
  }
  EXPECT_LT(Clock::now() - start, milliseconds(600));
}

}  // namespace
