// A finished span as the exporter sees it: plain data, OTLP's model (trace/v1 Span) without
// protobuf. Ids are raw bytes; an all-zero parent means a root span.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

namespace keel::trace {

using TraceIdBytes = std::array<std::uint8_t, 16>;
using SpanIdBytes = std::array<std::uint8_t, 8>;

// OTLP's SpanKind values.
enum class SpanKind : int { kInternal = 1, kServer = 2, kClient = 3, kProducer = 4, kConsumer = 5 };
// OTLP's Status.code values.
enum class StatusCode : int { kUnset = 0, kOk = 1, kError = 2 };

using AttributeValue = std::variant<std::string, std::int64_t, double, bool>;

struct Attribute {
  std::string key;
  AttributeValue value;
};

struct SpanEvent {
  std::string name;
  std::uint64_t time_unix_nano = 0;
  std::vector<Attribute> attributes;
};

struct SpanData {
  TraceIdBytes trace_id{};
  SpanIdBytes span_id{};
  SpanIdBytes parent_span_id{};  // all zero: root
  std::string trace_state;       // W3C tracestate as received/propagated
  std::uint8_t flags = 1;        // W3C trace flags (bit 0: sampled)
  std::string name;
  SpanKind kind = SpanKind::kInternal;
  std::uint64_t start_unix_nano = 0;
  std::uint64_t end_unix_nano = 0;
  std::vector<Attribute> attributes;
  std::vector<SpanEvent> events;
  StatusCode status = StatusCode::kUnset;
  std::string status_message;
};

}  // namespace keel::trace
