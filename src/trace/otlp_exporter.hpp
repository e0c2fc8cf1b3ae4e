// OTLP/HTTP span exporter (OpenTelemetry Protocol, JSON encoding) with a batching queue.
//
// The request path only calls BatchExporter::enqueue(): it moves the span into a bounded,
// preallocated queue under a short mutex (no allocation, no I/O, never waits on the network).
// A background thread wakes when max_batch spans are queued or schedule_delay has passed,
// serialises batches with encode_json(), gzips them, and POSTs them with libcurl to the
// collector's /v1/traces endpoint, reusing one connection (keep-alive).
//
// Retries follow the OTLP/HTTP specification: 429, 502, 503, 504 and connection-level errors
// (refused, reset, timed out, no response) are retried with exponential backoff and jitter, or
// after the Retry-After the collector sent (delay-seconds or an HTTP date, base/http_date.hpp); every other 4xx/5xx
// is not retried. One batch, retries included, never takes longer than export_timeout; a batch
// that cannot be delivered in time is dropped and counted. A 200 with partialSuccess counts the
// rejected spans as dropped and logs the collector's message.
//
// Memory is bounded: at most max_queue spans are held at any time (queued plus being exported).
// When the collector is down or slow the queue fills and enqueue() drops new spans (counted in
// dropped()) at the same cost as a successful enqueue.
//
// Failures are logged with keel::log (logger "keel.trace"): "otlp_export_failed" (status, error,
// spans, will_retry, suppressed, dropped_total) at most once per 10 s, the lines in between
// counted in "suppressed"; "otlp_partial_success" (rejected_spans, error_message), same limit.
//
// Fork safety: a BatchExporter owns a thread and libcurl handles, neither of which survives
// fork(). Create it in each worker process after the fork, never in the master before forking
// (a child would inherit a queue whose thread does not exist). Create at most a few per process:
// each owns a thread, a connection and 2 x max_queue preallocated span slots.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "trace/span_data.hpp"

namespace keel::trace {

struct ExporterOptions {
  // Full URL of the traces endpoint (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or
  // OTEL_EXPORTER_OTLP_ENDPOINT + "/v1/traces").
  std::string endpoint = "http://localhost:4318/v1/traces";
  // Extra request headers (OTEL_EXPORTER_OTLP_HEADERS, parsed by the caller). A name or value
  // containing CR or LF is ignored.
  std::vector<std::pair<std::string, std::string>> headers;
  std::chrono::milliseconds timeout{10000};         // one HTTP request (OTEL_EXPORTER_OTLP_TIMEOUT)
  std::size_t max_queue = 2048;                     // OTEL_BSP_MAX_QUEUE_SIZE (at least 1)
  std::size_t max_batch = 512;                      // OTEL_BSP_MAX_EXPORT_BATCH_SIZE (clamped to max_queue)
  std::chrono::milliseconds schedule_delay{5000};   // OTEL_BSP_SCHEDULE_DELAY
  std::chrono::milliseconds export_timeout{30000};  // OTEL_BSP_EXPORT_TIMEOUT: one batch incl. retries
  // Backoff between retries without Retry-After: starts at retry_initial_backoff, doubles up to
  // retry_max_backoff; each wait is drawn uniformly from [backoff/2, backoff] (jitter).
  std::chrono::milliseconds retry_initial_backoff{1000};
  std::chrono::milliseconds retry_max_backoff{5000};
  bool gzip = true;                 // Content-Encoding: gzip
  std::vector<Attribute> resource;  // service.name etc.
  std::string scope_name = "keel";
  std::string scope_version;
};

// Serialises one batch as an OTLP/JSON ExportTraceServiceRequest: one resourceSpans with the
// options' resource attributes and one scopeSpans with the options' scope. Ids are lowercase hex,
// enums integers, 64-bit integers (times, intValue) decimal strings, non-finite doubles "NaN" /
// "Infinity" / "-Infinity"; a root span has no parentSpanId. Strings are escaped and invalid
// UTF-8 is replaced by U+FFFD, so the result is always valid JSON.
std::string encode_json(std::span<const SpanData> spans, const ExporterOptions& options);

class BatchExporter {
 public:
  // Starts the background thread. Throws std::runtime_error if libcurl cannot be initialised.
  explicit BatchExporter(ExporterOptions options);
  // shutdown(now): whatever is still queued is dropped and counted.
  ~BatchExporter();

  BatchExporter(const BatchExporter&) = delete;
  BatchExporter& operator=(const BatchExporter&) = delete;

  // Moves the span into the queue. Never waits on the network and never allocates; false when
  // the queue is full or the exporter is shut down (the span is dropped and counted).
  // Thread-safe.
  bool enqueue(SpanData span) noexcept;

  // Exports what is queued (retrying as usual, but never past `deadline`), then stops the
  // thread; spans not delivered by the deadline are dropped and counted. Returns by the deadline
  // (plus scheduling noise). Idempotent and thread-safe; later enqueue() calls return false.
  void shutdown(std::chrono::steady_clock::time_point deadline);

  // Spans dropped: queue full, enqueued after shutdown, in batches given up (retries exhausted
  // or a non-retryable answer) and rejected by the collector in a partial success.
  std::uint64_t dropped() const noexcept;
  // Spans the collector accepted (partial-success rejections excluded).
  std::uint64_t exported() const noexcept;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace keel::trace
