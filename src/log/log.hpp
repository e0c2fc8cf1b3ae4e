// Structured logging: one JSON object per line (or a console format for people), written by a
// background thread from a bounded in-memory buffer so the event loop never waits on a disk or a
// pipe. When the buffer is full, lines are dropped and counted, and a summary line is written once
// space returns. Lines logged while a request is handled carry its context (request id, trace and
// span ids, bound fields), also from coroutines after a co_await and from offloaded work.
#pragma once

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "keel/logger.hpp"
#include "runtime/request_context.hpp"

namespace keel::log {

using Level = LogLevel;
using Field = LogField;

// The request context lines carry (runtime/request_context.hpp), under the names log uses.
using Context = runtime::RequestContext;
using ScopedContext = runtime::ScopedRequestContext;
inline Context* current() noexcept {
  return runtime::current_request();
}

enum class Format { kJson, kConsole };

struct Options {
  Level level = Level::kInfo;
  std::vector<std::pair<std::string, Level>> logger_levels{};  // "keel.http" -> debug: that logger and its children
  Format format = Format::kJson;
  std::string file{};                    // empty: stdout
  std::uint64_t max_bytes = 0;           // rotate the file above this size (0: never)
  std::chrono::seconds rotate_every{0};  // and/or at this interval (0: never)
  std::size_t max_files = 0;             // keep this many rotated files (0: all)
  std::chrono::seconds max_age{0};       // delete rotated files older than this (0: never)
  std::size_t buffer_bytes = 4u << 20;   // the in-memory buffer; beyond it lines are dropped
};

// Applies options (before the first fork: every process inherits them). Opens the file; throws
// std::runtime_error naming it when it cannot.
void configure(const Options& options);

// The configured line format (JSON unless --log-format console).
Format format() noexcept;
// A plain message on stderr cannot end up among JSON log lines: the format is console, or the
// lines go to a file. (In JSON mode on stdout, a collector often merges both streams.)
bool plain_stderr_ok() noexcept;

// Synchronous mode writes each line at once, with no writer thread: for the master, which forks.
// A fork while another thread holds a lock (the allocator's, stdio's) leaves the child that lock
// held forever — ASan's allocator did exactly that — so the process that forks stays
// single-threaded. Workers switch back to the asynchronous writer after the fork.
void set_synchronous(bool synchronous);

// This process rotates the file (worker 0, or the single process); the others follow renames.
void set_rotator(bool rotator);

// False when the level is below the logger's threshold (the line would be discarded).
bool enabled(Level level, std::string_view logger) noexcept;

// Formats the line now (with the current context) and queues it for the writer thread.
void write(Level level, std::string_view logger, std::string_view event, std::span<const Field> fields);
inline void write(Level level, std::string_view logger, std::string_view event,
                  std::initializer_list<Field> fields = {}) {
  write(level, logger, event, std::span<const Field>(fields.begin(), fields.size()));
}

// Waits until queued lines are written, at most until the deadline (before exit).
void flush(std::chrono::milliseconds timeout = std::chrono::milliseconds(2000));

// SIGUSR1: reopen the log file (after an external logrotate moved it). Async-signal-safe.
void request_reopen() noexcept;

// Lines dropped because the buffer was full or the destination failed, since start.
std::uint64_t dropped_total() noexcept;

void set_worker_id(int id);

// "debug", "info", "warning", "error", "critical".
std::string_view level_name(Level level) noexcept;

}  // namespace keel::log
