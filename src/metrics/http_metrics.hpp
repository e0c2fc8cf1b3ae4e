// keel's built-in metrics: RED for HTTP by protocol version (an http::Observer on each worker's
// server), connections, HTTP/2 connections, streams and the errors that ended connections,
// process USE figures sampled by every process, the event-loop lag and the thread-pool queue,
// and the master's worker figures. Families are registered once, before the arena is mapped.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "http/observer.hpp"
#include "keel/metrics.hpp"

namespace keel::metrics_detail {

// Registers every built-in family (idempotent); call before Registry::create_arena().
void register_builtin_metrics();

// Samples this process's CPU, memory and descriptors into the process_* families (call about
// once a second from the process's own loop).
class ProcessSampler {
 public:
  // spans_dropped: the tracer's count of spans it had to drop (empty: no tracer).
  explicit ProcessSampler(std::function<std::uint64_t()> spans_dropped = {});
  void sample() noexcept;

 private:
  double cpu_seconds_ = 0;           // already counted
  std::uint64_t log_dropped_ = 0;    // already counted
  std::uint64_t spans_dropped_ = 0;  // already counted
  std::function<std::uint64_t()> spans_dropped_total_;
};

// The observer a worker's server reports to.
class HttpMetrics final : public http::Observer {
 public:
  // Sampled on ticks: pool_queue, the depth of the worker's blocking-call queue; spans_dropped, the
  // tracer's count of spans it had to drop (empty: no tracer).
  HttpMetrics(std::function<std::size_t()> pool_queue, std::function<std::uint64_t()> spans_dropped);

  void request_started(http::Protocol protocol) noexcept override;
  void request_finished(const http::RequestRecord& r) noexcept override;
  void rejected(http::Rejection why) noexcept override;
  void connection_opened() noexcept override;
  void connection_closed() noexcept override;
  std::chrono::steady_clock::time_point tick(std::chrono::steady_clock::time_point now) noexcept override;
  void tls_handshake(std::string_view failure, double seconds, bool resumed) noexcept override;
  void tls_contexts_loaded(const tls::Contexts& contexts) noexcept override;
  void http2_connection(int delta) noexcept override;
  void http2_streams(int delta) noexcept override;
  void http2_error(std::string_view reason) noexcept override;

 private:
  struct StatusChild {
    int status;
    std::string_view method;
    http::Protocol protocol;
    CounterChild* requests;
  };
  struct MethodChildren {
    std::string_view method;
    http::Protocol protocol;
    HistogramChild* duration;  // by protocol too
    HistogramChild* size_in;   // these two by method and route only
    HistogramChild* size_out;
  };
  struct RouteChildren {
    std::vector<StatusChild> by_status;
    std::vector<MethodChildren> by_method;
  };
  RouteChildren& route(std::string_view route);

  // Keyed by the route template's address: templates live in the router for the process's life,
  // so a pointer compare replaces hashing the string on every request.
  std::unordered_map<const char*, RouteChildren> routes_;
  GaugeChild* in_flight_[http::kProtocols];  // one per network_protocol_version
  GaugeChild* open_;
  CounterChild* accepted_;
  CounterChild* rejected_[static_cast<std::size_t>(http::Rejection::kProxyProtocol) + 1];  // one per reason
  GaugeChild* http2_open_;
  GaugeChild* http2_streams_;
  CounterChild* http2_errors_[http::kHttp2ErrorReasons.size()];  // in kHttp2ErrorReasons' order
  HistogramChild* loop_lag_;
  GaugeChild* pool_queue_;
  std::function<std::size_t()> pool_queue_depth_;
  ProcessSampler process_;
  std::chrono::steady_clock::time_point lag_due_{};
  std::chrono::steady_clock::time_point sample_due_{};
};

// keel_build_info{version,commit} = 1 and keel_generation_info{generation,version} = 1 (after the
// arena exists); `version` (service_version) also labels http_requests_total and
// http_request_duration_seconds from then on, so two generations of an upgrade stay apart.
void set_build_info(int generation, std::string version);

// For tests, after Registry::reset_for_tests(): the built-in families are registered afresh by
// the next register_builtin_metrics() (the old ones went with the registry).
void forget_builtin_metrics_for_tests();

// The master's figures.
void set_worker_count(int workers) noexcept;
void count_worker_restart(std::string_view reason) noexcept;

}  // namespace keel::metrics_detail
