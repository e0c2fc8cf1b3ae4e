#include "metrics/http_metrics.hpp"

#include "base/build_info.hpp"
#include "log/log.hpp"
#include "tls/context.hpp"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <string>

namespace keel::metrics_detail {
namespace {

struct Families {
  Counter* requests;
  Histogram* duration;
  Gauge* in_flight;
  Histogram* request_size;
  Histogram* response_size;
  Counter* rejected;
  Gauge* connections_open;
  Counter* connections_accepted;
  Gauge* http2_connections_open;
  Gauge* http2_streams_open;
  Counter* http2_connection_errors;
  Counter* cpu;
  Gauge* rss;
  Gauge* vms;
  Gauge* open_fds;
  Gauge* max_fds;
  Gauge* start_time;
  Histogram* loop_lag;
  Gauge* pool_queue;
  Gauge* workers;
  Counter* restarts;
  Gauge* build_info;
  Gauge* generation_info;
  Counter* log_dropped;
  Counter* spans_dropped;
  Counter* tls_handshakes;
  Counter* tls_handshake_failures;
  Histogram* tls_handshake_duration;
  Gauge* tls_not_after;
};

Families* g_families = nullptr;
std::string g_service_version;  // the `version` label of the RED metrics

const std::vector<double>& size_buckets() {
  static const std::vector<double> b{64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216};
  return b;
}

// Methods outside the standard set share one label value: a client must not be able to mint
// series by inventing methods.
std::string_view method_label(std::string_view m) {
  static constexpr std::array<std::string_view, 9> kKnown{"GET",    "HEAD",    "POST",    "PUT",  "PATCH",
                                                          "DELETE", "OPTIONS", "CONNECT", "TRACE"};
  for (const auto k : kKnown)
    if (k == m) return k;
  return "other";
}

constexpr std::array<std::string_view, 8> kRejectionReasons{"parse_error",       "too_large",        "timeout",
                                                            "concurrency_limit", "connection_limit", "thread_pool_full",
                                                            "buffer_budget",     "proxy_protocol"};
static_assert(kRejectionReasons.size() == static_cast<std::size_t>(http::Rejection::kProxyProtocol) + 1,
              "one label per http::Rejection, in its order");

double boot_time_seconds() {
  FILE* f = std::fopen("/proc/stat", "re");
  if (f == nullptr) return 0;
  char line[256];
  double btime = 0;
  while (std::fgets(line, sizeof line, f) != nullptr)
    if (std::sscanf(line, "btime %lf", &btime) == 1) break;
  std::fclose(f);
  return btime;
}

// Seconds since the epoch when this process started (/proc/self/stat field 22, in clock ticks
// since boot).
double process_start_time() {
  FILE* f = std::fopen("/proc/self/stat", "re");
  if (f == nullptr) return 0;
  char buf[1024];
  const std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = '\0';
  const char* p = std::strrchr(buf, ')');
  if (p == nullptr) return 0;
  unsigned long long start_ticks = 0;
  // After ")": state(3) ... starttime is field 22, i.e. the 20th after the state.
  if (std::sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu",
                  &start_ticks) != 1)
    return 0;
  return boot_time_seconds() + static_cast<double>(start_ticks) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

}  // namespace

void register_builtin_metrics() {
  if (g_families != nullptr) return;
  MetricsRegistry& m = metrics();
  auto* f = new Families{};
  // network_protocol_version ("1.0", "1.1", "2": http::kProtocolVersions) before `version`, which
  // stays the last label.
  f->requests = &m.counter("http_requests_total",
                           "HTTP requests answered, by method, route template, status and protocol version.",
                           {"method", "route", "status", "network_protocol_version", "version"});
  f->duration =
      &m.histogram("http_request_duration_seconds", "Time from the parsed request head to the response being written.",
                   {"method", "route", "network_protocol_version", "version"});
  f->in_flight =
      &m.gauge("http_requests_in_flight", "Requests being handled, by protocol version.", {"network_protocol_version"});
  f->request_size = &m.histogram("http_request_size_bytes", "Request sizes (head and body) as received.",
                                 {"method", "route"}, size_buckets());
  f->response_size =
      &m.histogram("http_response_size_bytes", "Response sizes (head and body).", {"method", "route"}, size_buckets());
  f->rejected = &m.counter("http_requests_rejected_total",
                           "Requests and connections refused before a handler answered, by reason.", {"reason"});
  f->connections_open = &m.gauge("http_connections_open", "Open client connections.");
  f->connections_accepted = &m.counter("http_connections_accepted_total", "Client connections accepted.");
  f->http2_connections_open =
      &m.gauge("keel_http2_connections_open", "Client connections speaking HTTP/2 (also in http_connections_open).");
  f->http2_streams_open =
      &m.gauge("keel_http2_streams_open", "HTTP/2 streams open: requests being received, handled or answered.");
  f->http2_connection_errors =
      &m.counter("keel_http2_connection_errors_total",
                 "HTTP/2 connections ended by a defence or a fatal protocol error, by reason.", {"reason"});
  f->cpu = &m.counter("process_cpu_seconds_total", "User and system CPU time of the master and its workers.");
  f->rss = &m.gauge("process_resident_memory_bytes", "Resident memory of the master and its workers.");
  f->vms = &m.gauge("process_virtual_memory_bytes", "Virtual memory of the master and its workers.");
  f->open_fds = &m.gauge("process_open_fds", "Open file descriptors of the master and its workers.");
  f->max_fds = &m.gauge("process_max_fds", "The file descriptor limit (the largest of the processes').", {},
                        {.gauge_mode = GaugeMode::kMax});
  f->start_time = &m.gauge("process_start_time_seconds", "Start time of the service (its oldest process).", {},
                           {.gauge_mode = GaugeMode::kMin});
  f->loop_lag = &m.histogram("keel_event_loop_lag_seconds", "How late the workers' event loops ran a periodic timer.",
                             {}, {0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5});
  f->pool_queue =
      &m.gauge("keel_thread_pool_queue_depth", "Blocking calls waiting for a thread of a worker's pool (saturation).");
  f->workers = &m.gauge("keel_workers", "Worker processes the master keeps running.");
  f->restarts = &m.counter("keel_worker_restarts_total", "Worker exits the master replaced, by reason.", {"reason"});
  f->build_info = &m.gauge("keel_build_info", "The keel build serving: always 1.", {"version", "commit"},
                           {.gauge_mode = GaugeMode::kMax});
  f->generation_info = &m.gauge("keel_generation_info",
                                "The generation of workers serving (2 and up: started by `upgrade`) and its "
                                "service_version: always 1.",
                                {"generation", "version"}, {.gauge_mode = GaugeMode::kMax});
  f->log_dropped = &m.counter("keel_log_dropped_total",
                              "Log lines dropped: the in-memory buffer was full or the destination failed.");
  f->spans_dropped = &m.counter("keel_spans_dropped_total",
                                "Spans dropped: the export queue was full or the collector refused or failed.");
  f->tls_handshakes = &m.counter("keel_tls_handshakes_total",
                                 "TLS handshakes completed; resumed=\"true\": with a session ticket.", {"resumed"});
  f->tls_handshake_failures =
      &m.counter("keel_tls_handshake_failures_total", "TLS handshakes that failed, by reason.", {"reason"});
  f->tls_handshake_duration =
      &m.histogram("keel_tls_handshake_duration_seconds", "Time from accept to a completed TLS handshake.", {},
                   {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10});
  f->tls_not_after = &m.gauge("keel_tls_certificate_not_after_seconds",
                              "Expiry (Unix time) of each served TLS certificate, by its first name.", {"name"},
                              {.gauge_mode = GaugeMode::kMin});
  g_families = f;
}

void forget_builtin_metrics_for_tests() {
  delete g_families;
  g_families = nullptr;
  g_service_version.clear();
}

void set_build_info(int generation, std::string version) {
  g_service_version = std::move(version);
  g_families->build_info->labels({base::keel_version(), base::keel_commit()}).set(1);
  g_families->generation_info->labels({std::to_string(generation), g_service_version}).set(1);
}

ProcessSampler::ProcessSampler(std::function<std::uint64_t()> spans_dropped)
    : spans_dropped_total_(std::move(spans_dropped)) {
  register_builtin_metrics();
  g_families->start_time->labels({}).set(process_start_time());
}

void ProcessSampler::sample() noexcept {
  Families& f = *g_families;
  rusage ru{};
  if (::getrusage(RUSAGE_SELF, &ru) == 0) {
    const double cpu = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                       static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    // A counter: add what was used since the last sample, so an exited worker's share stays in
    // the retired totals.
    if (cpu > cpu_seconds_) f.cpu->labels({}).inc(cpu - cpu_seconds_);
    cpu_seconds_ = std::max(cpu_seconds_, cpu);
  }
  if (FILE* statm = std::fopen("/proc/self/statm", "re")) {
    unsigned long long size = 0, resident = 0;
    if (std::fscanf(statm, "%llu %llu", &size, &resident) == 2) {
      const auto page = static_cast<double>(::sysconf(_SC_PAGESIZE));
      f.vms->labels({}).set(static_cast<double>(size) * page);
      f.rss->labels({}).set(static_cast<double>(resident) * page);
    }
    std::fclose(statm);
  }
  if (DIR* d = ::opendir("/proc/self/fd")) {
    double n = 0;
    while (const dirent* e = ::readdir(d))
      if (e->d_name[0] != '.') ++n;
    ::closedir(d);
    f.open_fds->labels({}).set(n - 1);  // not the directory stream itself
  }
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0) f.max_fds->labels({}).set(static_cast<double>(rl.rlim_cur));
  const std::uint64_t dropped = log::dropped_total();
  if (dropped > log_dropped_) f.log_dropped->labels({}).inc(static_cast<double>(dropped - log_dropped_));
  log_dropped_ = dropped;
  const std::uint64_t spans = spans_dropped_total_ ? spans_dropped_total_() : 0;
  if (spans > spans_dropped_) f.spans_dropped->labels({}).inc(static_cast<double>(spans - spans_dropped_));
  spans_dropped_ = spans;
}

HttpMetrics::HttpMetrics(std::function<std::size_t()> pool_queue, std::function<std::uint64_t()> spans_dropped)
    : pool_queue_depth_(std::move(pool_queue)), process_(std::move(spans_dropped)) {
  register_builtin_metrics();
  Families& f = *g_families;
  // Every label value of these families exists from the start (shown as 0), so a hot-path update
  // is an index, never a lookup.
  for (std::size_t i = 0; i < http::kProtocols; ++i) in_flight_[i] = &f.in_flight->labels({http::kProtocolVersions[i]});
  open_ = &f.connections_open->labels({});
  accepted_ = &f.connections_accepted->labels({});
  for (std::size_t i = 0; i < kRejectionReasons.size(); ++i) rejected_[i] = &f.rejected->labels({kRejectionReasons[i]});
  http2_open_ = &f.http2_connections_open->labels({});
  http2_streams_ = &f.http2_streams_open->labels({});
  for (std::size_t i = 0; i < http::kHttp2ErrorReasons.size(); ++i)
    http2_errors_[i] = &f.http2_connection_errors->labels({http::kHttp2ErrorReasons[i]});
  loop_lag_ = &f.loop_lag->labels({});
  pool_queue_ = &f.pool_queue->labels({});
  process_.sample();
}

HttpMetrics::RouteChildren& HttpMetrics::route(std::string_view route) {
  return routes_[route.data()];
}

void HttpMetrics::tls_handshake(std::string_view failure, double seconds, bool resumed) noexcept {
  Families& f = *g_families;
  if (failure.empty()) {
    f.tls_handshakes->labels({resumed ? "true" : "false"}).inc();
    f.tls_handshake_duration->labels({}).observe(seconds);
  } else {
    f.tls_handshake_failures->labels({failure}).inc();
  }
}

void HttpMetrics::tls_contexts_loaded(const tls::Contexts& contexts) noexcept {
  for (const tls::Certificate& c : contexts.certificates())
    g_families->tls_not_after->labels({c.name}).set(static_cast<double>(c.not_after));
}

void HttpMetrics::request_started(http::Protocol protocol) noexcept {
  in_flight_[static_cast<std::size_t>(protocol)]->add(1);
}

void HttpMetrics::request_finished(const http::RequestRecord& r) noexcept {
  in_flight_[static_cast<std::size_t>(r.protocol)]->add(-1);
  const std::string_view method = method_label(r.method);
  const std::string_view protocol = http::version_of(r.protocol);
  RouteChildren& rc = route(r.route);
  CounterChild* requests = nullptr;
  for (const auto& s : rc.by_status)
    if (s.status == r.status && s.method == method && s.protocol == r.protocol) requests = s.requests;
  if (requests == nullptr) {  // first time for this (route, method, status, protocol): the slow path
    requests = &g_families->requests->labels({method, r.route, std::to_string(r.status), protocol, g_service_version});
    rc.by_status.push_back({r.status, method, r.protocol, requests});
  }
  const MethodChildren* mc = nullptr;
  for (const auto& m : rc.by_method)
    if (m.method == method && m.protocol == r.protocol) mc = &m;
  if (mc == nullptr) {
    rc.by_method.push_back(
        {method, r.protocol, &g_families->duration->labels({method, r.route, protocol, g_service_version}),
         &g_families->request_size->labels({method, r.route}), &g_families->response_size->labels({method, r.route})});
    mc = &rc.by_method.back();
  }
  if (r.trace_id != nullptr) {  // a sampled request: its trace id as the exemplar
    TraceId id;
    std::memcpy(id.bytes, r.trace_id, sizeof id.bytes);
    requests->inc(1.0, id);
    mc->duration->observe(r.seconds, id);
  } else {
    requests->inc();
    mc->duration->observe(r.seconds);
  }
  mc->size_in->observe(static_cast<double>(r.bytes_in));
  mc->size_out->observe(static_cast<double>(r.bytes_out));
}

void HttpMetrics::rejected(http::Rejection why) noexcept {
  rejected_[static_cast<std::size_t>(why)]->inc();
}

void HttpMetrics::connection_opened() noexcept {
  open_->add(1);
  accepted_->inc();
}

void HttpMetrics::connection_closed() noexcept {
  open_->add(-1);
}

void HttpMetrics::http2_connection(int delta) noexcept {
  http2_open_->add(delta);
}

void HttpMetrics::http2_streams(int delta) noexcept {
  http2_streams_->add(delta);
}

void HttpMetrics::http2_error(std::string_view reason) noexcept {
  for (std::size_t i = 0; i < http::kHttp2ErrorReasons.size(); ++i) {
    if (http::kHttp2ErrorReasons[i] == reason) {
      http2_errors_[i]->inc();
      return;
    }
  }
  // A reason the list does not have yet (the list is the http module's, the call sites too): still
  // counted, through the family's lookup and its cardinality cap.
  g_families->http2_connection_errors->labels({reason}).inc();
}

std::chrono::steady_clock::time_point HttpMetrics::tick(std::chrono::steady_clock::time_point now) noexcept {
  using std::chrono::milliseconds;
  if (lag_due_ == std::chrono::steady_clock::time_point{}) lag_due_ = now + milliseconds(100);
  if (now >= lag_due_) {
    loop_lag_->observe(std::chrono::duration<double>(now - lag_due_).count());
    lag_due_ = now + milliseconds(100);
  }
  if (now >= sample_due_) {
    process_.sample();
    pool_queue_->set(static_cast<double>(pool_queue_depth_ ? pool_queue_depth_() : 0));
    sample_due_ = now + milliseconds(1000);
  }
  return std::min(lag_due_, sample_due_);
}

void set_worker_count(int workers) noexcept {
  g_families->workers->labels({}).set(workers);
}

void count_worker_restart(std::string_view reason) noexcept {
  g_families->restarts->labels({reason}).inc();
}

}  // namespace keel::metrics_detail
