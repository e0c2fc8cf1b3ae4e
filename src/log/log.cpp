#include "log/log.hpp"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <ctime>

namespace keel::log {
namespace {

int g_worker_id = -1;

constexpr std::string_view level_name(Level l) {
  switch (l) {
    case Level::kDebug:
      return "debug";
    case Level::kInfo:
      return "info";
    case Level::kWarning:
      return "warning";
    case Level::kError:
      return "error";
    case Level::kCritical:
      return "critical";
  }
  return "info";
}

// Length of the valid UTF-8 sequence starting at s[i], or 0 if it is invalid.
std::size_t utf8_sequence_length(std::string_view s, std::size_t i) {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  std::size_t n = 0;
  if (c >= 0xc2 && c <= 0xdf)
    n = 2;
  else if (c >= 0xe0 && c <= 0xef)
    n = 3;
  else if (c >= 0xf0 && c <= 0xf4)
    n = 4;
  else
    return 0;
  if (i + n > s.size()) return 0;
  for (std::size_t k = 1; k < n; ++k)
    if ((b(i + k) & 0xc0) != 0x80) return 0;
  if (c == 0xe0 && b(i + 1) < 0xa0) return 0;  // overlong
  if (c == 0xed && b(i + 1) > 0x9f) return 0;  // surrogates
  if (c == 0xf0 && b(i + 1) < 0x90) return 0;  // overlong
  if (c == 0xf4 && b(i + 1) > 0x8f) return 0;  // > U+10FFFF
  return n;
}

}  // namespace

void set_worker_id(int id) {
  g_worker_id = id;
}

void append_json_escaped(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (std::size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      const std::size_t n = utf8_sequence_length(s, i);
      if (n == 0) {
        out += "\xef\xbf\xbd";
        ++i;
      } else {
        out.append(s.substr(i, n));
        i += n;
      }
      continue;
    }
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 0xf];
        } else {
          out += static_cast<char>(c);
        }
    }
    ++i;
  }
}

void write(Level level, std::string_view logger, std::string_view event, std::initializer_list<Field> fields) {
  std::string line;
  line.reserve(256);
  const auto now = std::chrono::system_clock::now();
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(us / 1000000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char ts[64];
  std::snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(us % 1000000));
  line += "{\"ts\":\"";
  line += ts;
  line += "\",\"level\":\"";
  line += level_name(level);
  line += "\",\"event\":\"";
  append_json_escaped(line, event);
  line += "\",\"logger\":\"";
  append_json_escaped(line, logger);
  line += "\",\"pid\":";
  line += std::to_string(::getpid());
  if (g_worker_id >= 0) {
    line += ",\"worker\":";
    line += std::to_string(g_worker_id);
  }
  for (const Field& f : fields) {
    line += ",\"";
    append_json_escaped(line, f.key);
    line += "\":";
    if (const auto* s = std::get_if<std::string_view>(&f.value)) {
      line += '"';
      append_json_escaped(line, *s);
      line += '"';
    } else if (const auto* i = std::get_if<std::int64_t>(&f.value)) {
      line += std::to_string(*i);
    } else if (const auto* d = std::get_if<double>(&f.value)) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.6g", *d);
      line += buf;
    } else {
      line += std::get<bool>(f.value) ? "true" : "false";
    }
  }
  line += "}\n";
  std::size_t off = 0;
  while (off < line.size()) {
    const ssize_t n = ::write(STDOUT_FILENO, line.data() + off, line.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // stdout gone or full: logging must never stop serving
    off += static_cast<std::size_t>(n);
  }
}

}  // namespace keel::log
