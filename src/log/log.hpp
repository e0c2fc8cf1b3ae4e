// Minimal structured logging: one JSON object per line on stdout. The full logging subsystem
// (levels per logger, sinks, request context, async buffer) builds on this event/field shape.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <variant>

namespace keel::log {

enum class Level { kDebug, kInfo, kWarning, kError, kCritical };

struct Field {
  std::string_view key;
  std::variant<std::string_view, std::int64_t, double, bool> value;
  Field(std::string_view k, std::string_view v) : key(k), value(v) {}
  Field(std::string_view k, const char* v) : key(k), value(std::string_view(v)) {}
  Field(std::string_view k, const std::string& v) : key(k), value(std::string_view(v)) {}
  Field(std::string_view k, std::int64_t v) : key(k), value(v) {}
  Field(std::string_view k, int v) : key(k), value(static_cast<std::int64_t>(v)) {}
  Field(std::string_view k, unsigned v) : key(k), value(static_cast<std::int64_t>(v)) {}
  Field(std::string_view k, std::size_t v) : key(k), value(static_cast<std::int64_t>(v)) {}
  Field(std::string_view k, double v) : key(k), value(v) {}
  Field(std::string_view k, bool v) : key(k), value(v) {}
};

// Writes {"ts":...,"level":...,"event":...,"logger":...,"pid":...,<fields>} and a newline with
// one write(2), so lines from several processes never interleave.
void write(Level level, std::string_view logger, std::string_view event, std::initializer_list<Field> fields = {});

void set_worker_id(int id);

}  // namespace keel::log
