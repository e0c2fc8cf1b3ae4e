// Structured logging for application code: JSON lines with a stable event name and typed fields,
// written asynchronously (never blocking the event loop). Lines logged while a request is handled
// carry its request_id, trace_id, span_id, route and client_ip — also after a co_await and from
// keel::offload work.
//
//   static const keel::Logger log("shop.orders");
//   log.info("order_placed", {{"order_id", id}, {"amount", 12.5}, {"express", true}});
//   keel::bind_log_field("tenant", tenant);   // on every later line of this request
#pragma once

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <variant>

namespace keel {

enum class LogLevel { kDebug, kInfo, kWarning, kError, kCritical };

// A typed field: strings, integers, doubles, bools; durations are written in milliseconds.
struct LogField {
  std::string_view key;
  std::variant<std::string_view, std::int64_t, double, bool> value;
  LogField(std::string_view k, std::string_view v) : key(k), value(v) {}
  LogField(std::string_view k, const char* v) : key(k), value(std::string_view(v)) {}
  LogField(std::string_view k, const std::string& v) : key(k), value(std::string_view(v)) {}
  LogField(std::string_view k, std::int64_t v) : key(k), value(v) {}
  LogField(std::string_view k, int v) : key(k), value(static_cast<std::int64_t>(v)) {}
  LogField(std::string_view k, unsigned v) : key(k), value(static_cast<std::int64_t>(v)) {}
  LogField(std::string_view k, std::size_t v) : key(k), value(static_cast<std::int64_t>(v)) {}
  LogField(std::string_view k, double v) : key(k), value(v) {}
  LogField(std::string_view k, bool v) : key(k), value(v) {}
  LogField(std::string_view k, std::chrono::nanoseconds v)
      : key(k), value(std::chrono::duration<double, std::milli>(v).count()) {}
};

class Logger {
 public:
  explicit Logger(std::string name) : name_(std::move(name)) {}
  void log(LogLevel level, std::string_view event, std::initializer_list<LogField> fields = {}) const;
  void debug(std::string_view event, std::initializer_list<LogField> fields = {}) const {
    log(LogLevel::kDebug, event, fields);
  }
  void info(std::string_view event, std::initializer_list<LogField> fields = {}) const {
    log(LogLevel::kInfo, event, fields);
  }
  void warning(std::string_view event, std::initializer_list<LogField> fields = {}) const {
    log(LogLevel::kWarning, event, fields);
  }
  void error(std::string_view event, std::initializer_list<LogField> fields = {}) const {
    log(LogLevel::kError, event, fields);
  }
  void critical(std::string_view event, std::initializer_list<LogField> fields = {}) const {
    log(LogLevel::kCritical, event, fields);
  }
  // False when this level is filtered out for this logger (skip expensive field building).
  [[nodiscard]] bool enabled(LogLevel level) const noexcept;
  [[nodiscard]] const std::string& name() const noexcept { return name_; }

 private:
  std::string name_;
};

// Adds a field to every later line of the request being handled (no-op outside a request).
void bind_log_field(std::string key, std::string value);

}  // namespace keel
