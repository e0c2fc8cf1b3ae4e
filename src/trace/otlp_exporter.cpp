#include "trace/otlp_exporter.hpp"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cmath>
#include <condition_variable>
#include <exception>
#include <functional>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <stdexcept>
#include <thread>

#include "base/build_info.hpp"
#include "base/gzip.hpp"
#include "base/http_date.hpp"
#include "base/strings.hpp"
#include "client/curl_easy.hpp"
#include "keel/json_writer.hpp"
#include "log/log.hpp"

namespace keel::trace {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr std::string_view kLogger = "keel.trace";
constexpr auto kLogInterval = std::chrono::seconds(10);
constexpr std::size_t kMaxResponseBody = 64 * 1024;  // enough for a Status or partialSuccess message

// ---------------------------------------------------------------------------------------------
// JSON encoding
// ---------------------------------------------------------------------------------------------

template <std::size_t N>
std::string_view hex(const std::array<std::uint8_t, N>& bytes, char (&buf)[2 * N]) {
  base::hex_into(bytes, buf);
  return {buf, 2 * N};
}

template <class Int>
std::string_view decimal(Int n, char (&buf)[24]) {
  const auto r = std::to_chars(buf, buf + sizeof buf, n);
  return {buf, static_cast<std::size_t>(r.ptr - buf)};
}

void write_value(JsonWriter& w, const AttributeValue& v) {
  w.begin_object();
  if (const auto* s = std::get_if<std::string>(&v)) {
    w.key("stringValue").value(*s);
  } else if (const auto* i = std::get_if<std::int64_t>(&v)) {
    char buf[24];
    w.key("intValue").value(decimal(*i, buf));  // int64: a decimal string in proto3 JSON
  } else if (const auto* d = std::get_if<double>(&v)) {
    w.key("doubleValue");
    if (std::isfinite(*d)) {
      w.value(*d);
    } else if (std::isnan(*d)) {
      w.value("NaN");
    } else {
      w.value(*d > 0 ? "Infinity" : "-Infinity");
    }
  } else {
    w.key("boolValue").value(std::get<bool>(v));
  }
  w.end_object();
}

void write_attributes(JsonWriter& w, const std::vector<Attribute>& attributes) {
  w.begin_array();
  for (const Attribute& a : attributes) {
    w.begin_object().key("key").value(a.key).key("value");
    write_value(w, a.value);
    w.end_object();
  }
  w.end_array();
}

bool is_zero(const SpanIdBytes& id) {
  return std::all_of(id.begin(), id.end(), [](std::uint8_t b) { return b == 0; });
}

void write_span(JsonWriter& w, const SpanData& s) {
  char trace_buf[32];
  char span_buf[16];
  char num_buf[24];
  w.begin_object();
  w.key("traceId").value(hex(s.trace_id, trace_buf));
  w.key("spanId").value(hex(s.span_id, span_buf));
  if (!is_zero(s.parent_span_id)) w.key("parentSpanId").value(hex(s.parent_span_id, span_buf));
  if (!s.trace_state.empty()) w.key("traceState").value(s.trace_state);
  w.key("flags").value(static_cast<std::int64_t>(s.flags));
  w.key("name").value(s.name);
  w.key("kind").value(static_cast<int>(s.kind));
  w.key("startTimeUnixNano").value(decimal(s.start_unix_nano, num_buf));
  w.key("endTimeUnixNano").value(decimal(s.end_unix_nano, num_buf));
  w.key("attributes");
  write_attributes(w, s.attributes);
  if (!s.events.empty()) {
    w.key("events").begin_array();
    for (const SpanEvent& e : s.events) {
      w.begin_object();
      w.key("timeUnixNano").value(decimal(e.time_unix_nano, num_buf));
      w.key("name").value(e.name);
      if (!e.attributes.empty()) {
        w.key("attributes");
        write_attributes(w, e.attributes);
      }
      w.end_object();
    }
    w.end_array();
  }
  w.key("status").begin_object();
  if (!s.status_message.empty()) w.key("message").value(s.status_message);
  w.key("code").value(static_cast<int>(s.status));
  w.end_object();
  w.end_object();
}

// ---------------------------------------------------------------------------------------------
// libcurl
// ---------------------------------------------------------------------------------------------

using client::Response;

bool header_ok(std::string_view s) {
  return s.find_first_of("\r\n") == std::string_view::npos && s.find('\0') == std::string_view::npos;
}

// One easy handle in one multi handle, kept for the exporter's lifetime so the connection is
// reused. The multi interface lets shutdown() interrupt a request in flight (wakeup()).
class HttpClient {
 public:
  explicit HttpClient(const ExporterOptions& o) {
    client::HeaderList headers;
    headers.append("Content-Type: application/json");
    if (o.gzip) headers.append("Content-Encoding: gzip");
    headers.append("Expect:");  // no 100-continue round trip for large batches
    for (const auto& [name, value] : o.headers) {
      if (name.empty() || !header_ok(name) || !header_ok(value) || name.find(':') != std::string::npos) continue;
      headers.append(name + ": " + value);
    }
    easy_.set_headers(std::move(headers));
    easy_.keep_body(kMaxResponseBody, client::OverLimit::kTruncate);
    easy_.setopt(CURLOPT_URL, o.endpoint.c_str());
    easy_.setopt(CURLOPT_POST, 1L);
    easy_.setopt(CURLOPT_FOLLOWLOCATION, 0L);
    easy_.setopt(CURLOPT_ACCEPT_ENCODING, "");  // a collector may gzip its answer
    easy_.setopt(CURLOPT_TCP_KEEPALIVE, 1L);
    const std::string user_agent = "keel/" + std::string(base::keel_version()) + " otlp-exporter";
    easy_.setopt(CURLOPT_USERAGENT, user_agent.c_str());  // libcurl keeps a copy
#if LIBCURL_VERSION_NUM >= 0x075500                       // 7.85.0
    easy_.setopt(CURLOPT_PROTOCOLS_STR, "http,https");
#endif
  }

  // POSTs body; gives up at `deadline` or when stop() (read each time round) has passed.
  Response post(const std::string& body, Clock::time_point deadline, const std::function<Clock::time_point()>& stop) {
    const long timeout_ms = static_cast<long>(std::max<std::int64_t>(
        1, std::chrono::duration_cast<milliseconds>(std::min(deadline, stop()) - Clock::now()).count()));
    easy_.setopt(CURLOPT_POSTFIELDS, body.data());
    easy_.setopt(CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    easy_.setopt(CURLOPT_TIMEOUT_MS, timeout_ms);
    multi_.perform(easy_, deadline, stop, timeout_ms);
    return easy_.take_response();
  }

  // Makes a post() in progress look at stop() now. Thread-safe.
  void wakeup() noexcept {
    multi_.wakeup();
  }

 private:
  client::Multi multi_;  // destroyed after easy_, which it no longer holds by then
  client::Easy easy_;
};

// Transport failures worth another attempt: the collector was unreachable, reset the connection
// or did not answer in time (OTLP: "If the server disconnects without returning a response, the
// client SHOULD retry").
bool retryable_transport(CURLcode c) {
  switch (c) {
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
      return true;
    default:
      return false;
  }
}

bool retryable_status(long status) {
  return status == 429 || status == 502 || status == 503 || status == 504;
}

// "HTTP 400: <Status.message>" from a failure response (OTLP: a google.rpc.Status).
std::string describe_failure(const Response& r) {
  std::string out = "HTTP " + std::to_string(r.status);
  if (r.body.empty()) return out;
  const auto j = nlohmann::json::parse(r.body, nullptr, false);
  if (!j.is_discarded() && j.is_object()) {
    const auto m = j.find("message");
    if (m != j.end() && m->is_string() && !m->get_ref<const std::string&>().empty()) {
      return out + ": " + m->get<std::string>();
    }
    return out;
  }
  constexpr std::size_t kSnippet = 200;
  out += ": ";
  out += std::string_view(r.body).substr(0, kSnippet);
  return out;
}

struct PartialSuccess {
  std::uint64_t rejected = 0;
  std::string message;
};

std::optional<PartialSuccess> parse_partial_success(const std::string& body) {
  if (body.empty()) return std::nullopt;
  const auto j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  const auto ps = j.find("partialSuccess");
  if (ps == j.end() || !ps->is_object()) return std::nullopt;
  PartialSuccess out;
  if (const auto r = ps->find("rejectedSpans"); r != ps->end()) {
    if (r->is_number_unsigned()) {
      out.rejected = r->get<std::uint64_t>();
    } else if (r->is_number_integer()) {
      out.rejected = static_cast<std::uint64_t>(std::max<std::int64_t>(0, r->get<std::int64_t>()));
    } else if (r->is_string()) {  // int64 in proto3 JSON: a decimal string
      const auto& s = r->get_ref<const std::string&>();
      std::uint64_t v = 0;
      const auto res = std::from_chars(s.data(), s.data() + s.size(), v);
      if (res.ec == std::errc() && res.ptr == s.data() + s.size()) out.rejected = v;
    }
  }
  if (const auto m = ps->find("errorMessage"); m != ps->end() && m->is_string()) out.message = m->get<std::string>();
  if (out.rejected == 0 && out.message.empty()) return std::nullopt;  // an empty partialSuccess is a full success
  return out;
}

// At most one line per interval; the calls in between are counted.
struct RateLimit {
  std::optional<Clock::time_point> last;
  std::uint64_t suppressed = 0;

  // True when a line may be written now; `skipped` is how many were suppressed before it.
  bool allow(Clock::time_point now, std::uint64_t& skipped) {
    if (last && now - *last < kLogInterval) {
      ++suppressed;
      return false;
    }
    last = now;
    skipped = suppressed;
    suppressed = 0;
    return true;
  }
};

std::int64_t to_rep(Clock::time_point t) {
  return t.time_since_epoch().count();
}
Clock::time_point from_rep(std::int64_t r) {
  return Clock::time_point(Clock::duration(r));
}

}  // namespace

std::string encode_json(std::span<const SpanData> spans, const ExporterOptions& options) {
  JsonWriter w;
  w.begin_object().key("resourceSpans").begin_array().begin_object();
  w.key("resource").begin_object().key("attributes");
  write_attributes(w, options.resource);
  w.end_object();
  w.key("scopeSpans").begin_array().begin_object();
  w.key("scope").begin_object().key("name").value(options.scope_name);
  if (!options.scope_version.empty()) w.key("version").value(options.scope_version);
  w.end_object();
  w.key("spans").begin_array();
  for (const SpanData& s : spans) write_span(w, s);
  w.end_array().end_object().end_array();   // spans, scopeSpans[0], scopeSpans
  w.end_object().end_array().end_object();  // resourceSpans[0], resourceSpans, request
  return std::move(w).take();
}

// ---------------------------------------------------------------------------------------------
// BatchExporter
// ---------------------------------------------------------------------------------------------

struct BatchExporter::State {
  explicit State(ExporterOptions o) : opt(std::move(o)), http(opt) {
    opt.max_queue = std::max<std::size_t>(opt.max_queue, 1);
    opt.max_batch = std::clamp<std::size_t>(opt.max_batch, 1, opt.max_queue);
    opt.retry_initial_backoff = std::max(opt.retry_initial_backoff, milliseconds(1));
    opt.retry_max_backoff = std::max(opt.retry_max_backoff, opt.retry_initial_backoff);
    // Constructed and destroyed once so the pages are touched now: the request path never takes
    // a page fault on a fresh slot.
    queue.resize(opt.max_queue);
    queue.clear();
    spare.resize(opt.max_queue);
    spare.clear();
  }

  ExporterOptions opt;
  HttpClient http;

  std::mutex mu;
  std::condition_variable cv;
  std::vector<SpanData> queue;  // capacity max_queue, never reallocated
  std::vector<SpanData> spare;  // swapped with queue by the thread; same capacity
  std::size_t held = 0;         // spans the thread has taken and not yet finished with
  bool stopping = false;
  std::atomic<std::int64_t> stop_deadline{std::numeric_limits<std::int64_t>::max()};  // Clock rep

  std::atomic<std::uint64_t> dropped{0};
  std::atomic<std::uint64_t> exported{0};

  std::mutex shutdown_mu;
  bool joined = false;
  std::thread thread;

  // Exporter thread only.
  RateLimit failure_log;
  RateLimit partial_log;
  std::minstd_rand rng{std::random_device{}()};

  Clock::time_point stop_at() const noexcept { return from_rep(stop_deadline.load(std::memory_order_acquire)); }

  void run() noexcept {
    std::vector<SpanData>& batch = spare;
    auto next = Clock::now() + opt.schedule_delay;
    std::unique_lock lk(mu);
    for (;;) {
      if (!stopping) cv.wait_until(lk, next, [&] { return stopping || queue.size() >= opt.max_batch; });
      if (queue.empty()) {
        if (stopping) break;
        next = Clock::now() + opt.schedule_delay;
        continue;
      }
      batch.swap(queue);  // O(1): the request path never waits for serialisation or I/O
      held = batch.size();
      lk.unlock();
      export_all(batch);
      batch.clear();
      lk.lock();
      held = 0;
      next = Clock::now() + opt.schedule_delay;
    }
  }

  void export_all(const std::vector<SpanData>& batch) {
    const std::span<const SpanData> all(batch);
    for (std::size_t off = 0; off < all.size(); off += opt.max_batch) {
      const auto chunk = all.subspan(off, std::min(opt.max_batch, all.size() - off));
      if (Clock::now() >= stop_at()) {
        dropped.fetch_add(chunk.size(), std::memory_order_relaxed);
      } else {
        export_chunk(chunk);
      }
      std::lock_guard g(mu);
      held -= chunk.size();
    }
  }

  void export_chunk(std::span<const SpanData> spans) noexcept {
    const std::size_t n = spans.size();
    std::string body;
    try {
      body = encode_json(spans, opt);
      if (opt.gzip) body = base::gzip(body);
    } catch (const std::exception& e) {
      give_up(n, 0, std::string("encoding: ") + e.what());
      return;
    }
    const auto batch_deadline = Clock::now() + opt.export_timeout;
    auto backoff = opt.retry_initial_backoff;
    for (;;) {
      const auto deadline = std::min(batch_deadline, stop_at());
      const auto now = Clock::now();
      if (now >= deadline) {
        give_up(n, 0, now >= stop_at() ? "shutdown deadline reached" : "export timeout reached");
        return;
      }
      Response r;
      try {
        r = http.post(body, std::min(now + opt.timeout, deadline), [this] { return stop_at(); });
      } catch (const std::exception& e) {
        give_up(n, 0, e.what());
        return;
      }
      if (r.result == CURLE_OK && r.status >= 200 && r.status < 300) {
        accepted(n, r);
        return;
      }
      const bool transport = r.result != CURLE_OK;
      const std::string error = transport ? r.error : describe_failure(r);
      const bool retryable = transport ? retryable_transport(r.result) : retryable_status(r.status);
      if (!retryable) {
        give_up(n, r.status, error);
        return;
      }
      milliseconds delay{0};
      std::optional<milliseconds> hinted;
      if (const auto retry_after = r.header("retry-after"); !transport && retry_after)
        hinted = base::parse_retry_after(*retry_after, std::chrono::system_clock::now());
      if (hinted) {
        delay = *hinted;
      } else {
        std::uniform_int_distribution<std::int64_t> jitter(backoff.count() / 2, backoff.count());
        delay = milliseconds(jitter(rng));
      }
      backoff = std::min(backoff * 2, opt.retry_max_backoff);
      const auto retry_at = Clock::now() + delay;
      if (retry_at >= std::min(batch_deadline, stop_at())) {
        give_up(n, r.status, error + (hinted ? " (Retry-After beyond the export timeout)" : ""));
        return;
      }
      log_failure(n, r.status, error, true);
      sleep_until(retry_at);
    }
  }

  // Waits until t, or less if shutdown's deadline comes first.
  void sleep_until(Clock::time_point t) {
    std::unique_lock lk(mu);
    for (;;) {
      const auto until = std::min(t, stop_at());
      if (Clock::now() >= until) return;
      cv.wait_until(lk, until);
    }
  }

  void accepted(std::size_t n, const Response& r) {
    const auto partial = parse_partial_success(r.body);
    const std::uint64_t rejected = partial ? std::min<std::uint64_t>(partial->rejected, n) : 0;
    exported.fetch_add(n - rejected, std::memory_order_relaxed);
    if (rejected > 0) dropped.fetch_add(rejected, std::memory_order_relaxed);
    if (!partial) return;
    std::uint64_t skipped = 0;
    if (!partial_log.allow(Clock::now(), skipped)) return;
    log::write(log::Level::kWarning, kLogger, "otlp_partial_success",
               {{"rejected_spans", static_cast<std::int64_t>(partial->rejected)},
                {"error_message", partial->message},
                {"spans", n},
                {"suppressed", static_cast<std::int64_t>(skipped)}});
  }

  void give_up(std::size_t n, long status, const std::string& error) {
    dropped.fetch_add(n, std::memory_order_relaxed);
    log_failure(n, status, error, false);
  }

  void log_failure(std::size_t n, long status, const std::string& error, bool will_retry) {
    std::uint64_t skipped = 0;
    if (!failure_log.allow(Clock::now(), skipped)) return;
    log::write(will_retry ? log::Level::kWarning : log::Level::kError, kLogger, "otlp_export_failed",
               {{"status", static_cast<std::int64_t>(status)},
                {"error", error},
                {"spans", n},
                {"will_retry", will_retry},
                {"suppressed", static_cast<std::int64_t>(skipped)},
                {"dropped_total", static_cast<std::int64_t>(dropped.load(std::memory_order_relaxed))}});
  }
};

BatchExporter::BatchExporter(ExporterOptions options) : state_(std::make_unique<State>(std::move(options))) {
  state_->thread = std::thread([s = state_.get()] { s->run(); });
}

BatchExporter::~BatchExporter() {
  shutdown(Clock::now());
}

bool BatchExporter::enqueue(SpanData span) noexcept {
  State& s = *state_;
  bool wake = false;
  {
    std::lock_guard g(s.mu);
    if (s.stopping || s.queue.size() + s.held >= s.opt.max_queue) {
      s.dropped.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    s.queue.push_back(std::move(span));  // within the reserved capacity: no allocation
    wake = s.queue.size() == s.opt.max_batch;
  }
  if (wake) s.cv.notify_one();
  return true;
}

void BatchExporter::shutdown(std::chrono::steady_clock::time_point deadline) {
  State& s = *state_;
  std::lock_guard g(s.shutdown_mu);
  if (s.joined) return;
  {
    std::lock_guard lk(s.mu);
    s.stopping = true;
    s.stop_deadline.store(to_rep(deadline), std::memory_order_release);
  }
  s.cv.notify_all();
  s.http.wakeup();
  s.thread.join();
  s.joined = true;
}

std::uint64_t BatchExporter::dropped() const noexcept {
  return state_->dropped.load(std::memory_order_relaxed);
}

std::uint64_t BatchExporter::exported() const noexcept {
  return state_->exported.load(std::memory_order_relaxed);
}

}  // namespace keel::trace
