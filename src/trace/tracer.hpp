// The per-process tracer: continues or starts a trace for every request (W3C traceparent /
// tracestate), samples (OTel samplers), records a SERVER span with the HTTP semantic-convention
// attributes, and hands finished spans to the OTLP batch exporter. Created in each worker after
// the fork (the exporter owns a thread). The trace context exists for every request, sampled or
// not, so logs always carry trace_id/span_id.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "log/log.hpp"
#include "trace/context.hpp"
#include "trace/otlp_exporter.hpp"
#include "trace/span_data.hpp"

namespace keel {
class Request;
}

namespace keel::trace {

enum class Sampler { kAlwaysOn, kAlwaysOff, kTraceIdRatio, kParentAlwaysOn, kParentAlwaysOff, kParentTraceIdRatio };

// "always_on", "parentbased_traceidratio", ... (OTEL_TRACES_SAMPLER values); nullopt otherwise.
std::optional<Sampler> parse_sampler(std::string_view name);

struct TracerOptions {
  Sampler sampler = Sampler::kParentAlwaysOn;
  double ratio = 1.0;                       // traceidratio samplers
  std::optional<ExporterOptions> exporter;  // none: spans are not exported (context still propagates)
  std::vector<std::string> untraced_paths;  // health and metrics: context yes, spans no
};

// One request's trace state (lives in the connection).
struct RequestTrace {
  bool active = false;
  TraceParent context{};       // our trace id, our span id (parent_id field), flags
  SpanIdBytes parent{};        // the caller's span id (zero for a root)
  std::string trace_state;     // propagated as received (validated)
  std::string exception_type;  // a handler threw: recorded as the span's "exception" event
  std::string exception_message;
  bool recording = true;  // false for untraced paths
  std::uint64_t start_unix_nano = 0;
};

class Tracer {
 public:
  explicit Tracer(TracerOptions options);
  ~Tracer();

  // Reads traceparent/tracestate, decides sampling, sets trace_id/span_id in the log context.
  void begin_request(const Request& request, RequestTrace& trace, log::Context& context);
  // Records the SERVER span (when sampled).
  void end_request(RequestTrace& trace, const Request& request, std::string_view route, int status);
  // A finished child span (from keel::Span).
  void end_span(SpanData span);
  [[nodiscard]] bool sampled_root(const TraceIdBytes& id) const noexcept;
  [[nodiscard]] std::uint64_t dropped() const noexcept;
  // Spans go somewhere (an endpoint is configured): only then do exemplars point at traces.
  [[nodiscard]] bool exporting() const noexcept { return exporter_ != nullptr; }
  void shutdown(std::chrono::steady_clock::time_point deadline);

 private:
  TracerOptions options_;
  std::unique_ptr<BatchExporter> exporter_;
};

// This process's tracer, or null when tracing is off.
Tracer* tracer() noexcept;
void set_tracer(std::unique_ptr<Tracer> tracer);

std::uint64_t now_unix_nano() noexcept;

}  // namespace keel::trace
