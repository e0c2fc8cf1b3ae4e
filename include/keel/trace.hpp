// Child spans for handlers: RAII, nested under the request's SERVER span (or the enclosing
// keel::Span), also across co_await and inside keel::offload work. Lines logged while a span is
// open carry its span_id. A span of an unsampled trace records nothing and costs little.
//
//   keel::Span span("SELECT users", keel::SpanKind::kClient);
//   span.set_attribute("db.system.name", "postgresql").set_attribute("db.operation.name", "SELECT");
//   if (failed) span.set_attribute("error.type", "57014").set_error("timeout");
// Setting an attribute again replaces its value (OTLP: keys are unique).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace keel {

// OTLP's span kinds a handler's span can have (keel records the SERVER span itself): INTERNAL
// for work in the process, CLIENT for a call to another service over the network (a database
// server, a cache, an HTTP API), PRODUCER / CONSUMER for messaging.
enum class SpanKind { kInternal = 1, kClient = 3, kProducer = 4, kConsumer = 5 };

class Span {
 public:
  explicit Span(std::string name);
  Span(std::string name, SpanKind kind);
  ~Span();
  Span(const Span&) = delete;
  Span& operator=(const Span&) = delete;

  Span& set_attribute(std::string key, std::string value);
  Span& set_attribute(std::string key, const char* value) { return set_attribute(std::move(key), std::string(value)); }
  Span& set_attribute(std::string key, std::int64_t value);
  Span& set_attribute(std::string key, int value) { return set_attribute(std::move(key), std::int64_t{value}); }
  Span& set_attribute(std::string key, double value);
  Span& set_attribute(std::string key, bool value);
  Span& add_event(std::string name);
  Span& set_error(std::string message);
  // False outside a request or when the trace is not sampled.
  [[nodiscard]] bool recording() const noexcept;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace keel
