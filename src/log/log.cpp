#include "log/log.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <mutex>
#include <new>
#include <stdexcept>
#include <thread>

#include "keel/json_writer.hpp"

namespace keel::log {
namespace {

struct State {
  std::mutex mutex;
  std::condition_variable wake;     // the writer: lines are waiting
  std::condition_variable drained;  // flush(): the writer emptied the buffer
  std::string pending;
  bool writing = false;  // the writer holds a batch outside the lock
  bool stop = false;
  bool writer_waiting = false;
  pid_t writer_pid = 0;  // the process whose writer thread runs (none after a fork)
  std::uint64_t dropped_unreported = 0;
  Options options;
  int fd = STDOUT_FILENO;
  // Synchronous logging (the master) must never block on a destination nobody reads: a pipe or
  // terminal is written through its own non-blocking open file description, a socket with
  // MSG_DONTWAIT; what does not fit now is dropped and counted.
  int sync_fd = -1;   // the non-blocking twin of fd
  int sync_for = -1;  // the fd it was made for
  bool sync_socket = false;
  bool sync_stalled = false;  // the last synchronous write gave up: do not wait on the next one
  bool rotator = true;
  bool synchronous = false;
  bool flush_requested = false;  // flush(): write now, do not wait for the interval
  std::chrono::steady_clock::time_point opened_at = std::chrono::steady_clock::now();
  std::string reopen_error;  // why the last reopen failed (logged once), empty after a success
};

void atfork_prepare();
void atfork_parent();
void atfork_child();

State& state() {
  // Never destroyed: workers exit with _Exit, threads may still log. The fork handlers are
  // registered with it, before any fork: a child must not keep its parent's cached pid (the
  // master logs synchronously and never starts the writer thread, so registering them there
  // left every worker's lines with the master's pid).
  static State* s = [] {
    auto* created = new State;
    ::pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
    return created;
  }();
  return *s;
}

std::atomic<std::uint64_t> g_dropped{0};
constexpr int kSyncWaitMs = 250;
std::atomic<bool> g_reopen{false};
std::atomic<int> g_worker_id{-1};
std::atomic<int> g_pid{0};  // getpid() is a system call in glibc 2.36: cached, reset after fork

// The writer wakes when this much is queued, or every kFlushInterval: one write per batch, not a
// wake-up (a futex call and a context switch) per line.
constexpr std::size_t kWakeBytes = 64 * 1024;
constexpr auto kFlushInterval = std::chrono::milliseconds(50);

int cached_pid() {
  int pid = g_pid.load(std::memory_order_relaxed);
  if (pid == 0) {
    pid = ::getpid();
    g_pid.store(pid, std::memory_order_relaxed);
  }
  return pid;
}
std::atomic<int> g_min_level{static_cast<int>(Level::kInfo)};  // fast path: below every threshold

std::string timestamp(std::chrono::system_clock::time_point now, bool for_file_name = false) {
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count();
  const auto secs = static_cast<std::time_t>(us / 1000000);
  char buf[64];
  if (for_file_name) {
    std::tm tm{};
    gmtime_r(&secs, &tm);
    std::snprintf(buf, sizeof buf, "%04d%02d%02dT%02d%02d%02dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                  tm.tm_hour, tm.tm_min, tm.tm_sec);
    return buf;
  }
  // The "YYYY-MM-DDTHH:MM:SS" part changes once a second: formatted once per second per thread.
  thread_local std::time_t cached_secs = -1;
  thread_local char cached[64];
  if (secs != cached_secs) {
    std::tm tm{};
    gmtime_r(&secs, &tm);
    std::snprintf(cached, sizeof cached, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                  tm.tm_hour, tm.tm_min, tm.tm_sec);
    cached_secs = secs;
  }
  std::string out(cached);
  auto frac = static_cast<unsigned>(us % 1000000);
  char digits[8] = {'.', '0', '0', '0', '0', '0', '0', 'Z'};
  for (int i = 6; i >= 1; --i, frac /= 10) digits[i] = static_cast<char>('0' + frac % 10);
  out.append(digits, sizeof digits);
  return out;
}

void append_number(std::string& out, double d) {
  if (d != d || d == 1.0 / 0.0 || d == -1.0 / 0.0) {
    out += "null";  // JSON has no NaN/Infinity
    return;
  }
  // As printf's %.6g (the standard defines to_chars with a precision that way), without
  // printf's cost: this runs for every access log line.
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::general, 6);
  out.append(buf, r.ptr);
}

void append_value_json(std::string& out, const Field& f) {
  if (const auto* s = std::get_if<std::string_view>(&f.value)) {
    out += '"';
    append_json_escaped(out, *s);
    out += '"';
  } else if (const auto* i = std::get_if<std::int64_t>(&f.value)) {
    char buf[24];
    const auto r = std::to_chars(buf, buf + sizeof buf, *i);
    out.append(buf, r.ptr);
  } else if (const auto* d = std::get_if<double>(&f.value)) {
    append_number(out, *d);
  } else {
    out += std::get<bool>(f.value) ? "true" : "false";
  }
}

void append_kv_json(std::string& out, std::string_view key, std::string_view value) {
  out += ",\"";
  append_json_escaped(out, key);
  out += "\":\"";
  append_json_escaped(out, value);
  out += '"';
}

// Console values: plain when they are simple words, quoted (JSON escaping) otherwise.
void append_console_value(std::string& out, std::string_view v) {
  bool plain = !v.empty();
  for (char c : v) plain = plain && static_cast<unsigned char>(c) > 0x20 && c != '"' && c != '\\' && c != '=';
  if (plain) {
    append_json_escaped(out, v);  // still replaces invalid UTF-8
  } else {
    out += '"';
    append_json_escaped(out, v);
    out += '"';
  }
}

// A key appears once per line: a field written at the call wins over the request context's, and
// of two context fields with one key (bind_log_field twice) the later wins. Duplicate keys are
// not valid JSON for many consumers (jq keeps the last, others reject the line).
bool shadowed(std::string_view key, std::span<const Field> fields) {
  for (const Field& f : fields)
    if (f.key == key) return true;
  return false;
}

// Bound from ctx.fields[from] on: a later binding of a key wins over an earlier one, and any
// binding over the request's own client_ip and route.
bool bound_from(const Context& ctx, std::size_t from, std::string_view key) {
  for (std::size_t i = from; i < ctx.fields.size(); ++i)
    if (ctx.fields[i].first == key) return true;
  return false;
}

// A request's client_ip or route, unless a field of the line or a bound field has that key.
bool request_key_shadowed(const Context& ctx, std::string_view key, std::span<const Field> fields) {
  return shadowed(key, fields) || bound_from(ctx, 0, key);
}

bool shadowed_in_context(const Context& ctx, std::size_t index, std::span<const Field> fields) {
  const std::string_view key = ctx.fields[index].first;
  return shadowed(key, fields) || bound_from(ctx, index + 1, key);
}

std::string format_line(Level level, std::string_view logger, std::string_view event, std::span<const Field> fields,
                        Format format) {
  std::string line;
  line.reserve(256);
  const std::string ts = timestamp(std::chrono::system_clock::now());
  const int worker = g_worker_id.load(std::memory_order_relaxed);
  const Context* ctx = current();
  if (format == Format::kConsole) {
    line += ts;
    line += ' ';
    std::string lv(level_name(level));
    for (auto& c : lv) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    lv.resize(8, ' ');
    line += lv;
    append_json_escaped(line, logger);
    line += ": ";
    append_json_escaped(line, event);
    if (worker >= 0) line += " worker=" + std::to_string(worker);
    if (ctx != nullptr) {
      if (!ctx->request_id.empty() && !shadowed("request_id", fields)) {
        line += " request_id=";
        append_console_value(line, ctx->request_id);
      }
      for (const auto& [key, value] : {std::pair{"client_ip", ctx->client_ip}, std::pair{"route", ctx->route}}) {
        if (value.empty() || request_key_shadowed(*ctx, key, fields)) continue;
        line += ' ';
        line += key;
        line += '=';
        append_console_value(line, value);
      }
      for (std::size_t i = 0; i < ctx->fields.size(); ++i) {
        if (shadowed_in_context(*ctx, i, fields)) continue;
        const auto& [k, v] = ctx->fields[i];
        line += ' ';
        append_json_escaped(line, k);
        line += '=';
        append_console_value(line, v);
      }
    }
    for (const Field& f : fields) {
      line += ' ';
      append_json_escaped(line, f.key);
      line += '=';
      if (const auto* s = std::get_if<std::string_view>(&f.value)) {
        append_console_value(line, *s);
      } else {
        append_value_json(line, f);
      }
    }
    line += '\n';
    return line;
  }
  line += "{\"ts\":\"";
  line += ts;
  line += "\",\"level\":\"";
  line += level_name(level);
  line += "\",\"event\":\"";
  append_json_escaped(line, event);
  line += "\",\"logger\":\"";
  append_json_escaped(line, logger);
  line += "\",\"pid\":";
  line += std::to_string(cached_pid());
  if (worker >= 0) {
    line += ",\"worker\":";
    line += std::to_string(worker);
  }
  if (ctx != nullptr) {
    if (!ctx->request_id.empty() && !shadowed("request_id", fields))
      append_kv_json(line, "request_id", ctx->request_id);
    if (!ctx->trace_id.empty()) {
      if (!shadowed("trace_id", fields)) append_kv_json(line, "trace_id", ctx->trace_id);
      if (!shadowed("span_id", fields)) append_kv_json(line, "span_id", ctx->span_id);
    }
    if (!ctx->client_ip.empty() && !request_key_shadowed(*ctx, "client_ip", fields))
      append_kv_json(line, "client_ip", ctx->client_ip);
    if (!ctx->route.empty() && !request_key_shadowed(*ctx, "route", fields)) append_kv_json(line, "route", ctx->route);
    for (std::size_t i = 0; i < ctx->fields.size(); ++i)
      if (!shadowed_in_context(*ctx, i, fields)) append_kv_json(line, ctx->fields[i].first, ctx->fields[i].second);
  }
  for (const Field& f : fields) {
    line += ",\"";
    append_json_escaped(line, f.key);
    line += "\":";
    append_value_json(line, f);
  }
  line += "}\n";
  return line;
}

std::size_t count_lines(std::string_view s) {
  return static_cast<std::size_t>(std::count(s.begin(), s.end(), '\n'));
}

// Writes everything or gives up (disk full, closed pipe, and for a non-blocking destination: full
// for longer than wait_ms): a log destination must never stop serving. Returns the number of
// lines that could not be written.
std::size_t write_all(int fd, std::string_view data, bool dont_wait_socket = false, int wait_ms = 0) {
  std::size_t off = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
  while (off < data.size()) {
    const ssize_t n = dont_wait_socket ? ::send(fd, data.data() + off, data.size() - off, MSG_DONTWAIT | MSG_NOSIGNAL)
                                       : ::write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
      pollfd p{fd, POLLOUT, 0};
      if (left > 0 && ::poll(&p, 1, static_cast<int>(left)) > 0) continue;
    }
    if (n <= 0) {
      // Count whole lines lost, including a partly written one.
      const std::size_t line_start = data.rfind('\n', off == 0 ? 0 : off - 1);
      const std::size_t from = (off == 0 || line_start == std::string_view::npos) ? 0 : line_start + 1;
      return count_lines(data.substr(from));
    }
    off += static_cast<std::size_t>(n);
  }
  return 0;
}

// The descriptor synchronous writes use for s.fd (see State::sync_fd).
int nonblocking_twin(State& s) {
  if (s.sync_for == s.fd) return s.sync_fd;
  if (s.sync_fd >= 0 && s.sync_fd != s.fd) ::close(s.sync_fd);
  s.sync_for = s.fd;
  s.sync_fd = s.fd;
  s.sync_socket = false;
  struct stat st {};
  if (::fstat(s.fd, &st) != 0) return s.sync_fd;
  if (S_ISSOCK(st.st_mode)) {
    s.sync_socket = true;
  } else if (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode)) {
    // A new open file description of the same pipe/terminal: O_NONBLOCK on it leaves the shared
    // one (stdout of every process) as it is.
    const std::string self = "/proc/self/fd/" + std::to_string(s.fd);
    if (const int twin = ::open(self.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC); twin >= 0) s.sync_fd = twin;
  }
  return s.sync_fd;
}

// Opens (creating it 0640: logs may hold client addresses and paths) the log file for appending.
// A symbolic link in its place is refused (O_NOFOLLOW: someone who can write to the log directory
// must not make us append to another file), and so is a regular file owned by another user (a
// file planted in the directory before a reopen or a rotation).
int open_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0640);
  if (fd < 0) {
    const int err = errno;
    struct stat st {};
    if (err == ELOOP && ::lstat(path.c_str(), &st) == 0 && S_ISLNK(st.st_mode))
      throw std::runtime_error("cannot open log file " + path + ": it is a symbolic link (not followed)");
    throw std::runtime_error("cannot open log file " + path + ": " + std::strerror(err));
  }
  struct stat st {};
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid != ::geteuid()) {
    ::close(fd);
    throw std::runtime_error("cannot open log file " + path + ": it is owned by uid " + std::to_string(st.st_uid) +
                             ", not by this process's uid " + std::to_string(::geteuid()));
  }
  return fd;
}

void reopen(State& s) {
  if (s.options.file.empty()) return;
  try {
    const int fd = open_file(s.options.file);
    const int old = s.fd;
    s.fd = fd;
    s.sync_for = -1;  // a new destination: its non-blocking twin is made on the next write
    if (old > STDERR_FILENO) ::close(old);
    s.opened_at = std::chrono::steady_clock::now();
    s.reopen_error.clear();
  } catch (const std::exception& e) {
    // Keep writing to the old descriptor, and say why there once; the next round tries again.
    if (s.reopen_error == e.what()) return;
    s.reopen_error = e.what();
    const Field fields[] = {{"file", s.options.file}, {"error", s.reopen_error}};
    const std::string line = format_line(Level::kError, "keel.log", "log_reopen_failed", fields, s.options.format);
    write_all(s.fd, line, false, 0);
  }
}

// Rotated files: "<file>.<UTC timestamp>[.<n>]". Deletes those beyond max_files or max_age.
void apply_retention(const Options& o) {
  if (o.max_files == 0 && o.max_age.count() == 0) return;
  const auto slash = o.file.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : o.file.substr(0, slash));
  const std::string base = (slash == std::string::npos ? o.file : o.file.substr(slash + 1)) + ".";
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return;
  std::vector<std::pair<std::time_t, std::string>> rotated;
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name.rfind(base, 0) != 0) continue;
    struct stat st {};
    const std::string path = dir + "/" + name;
    if (::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) rotated.emplace_back(st.st_mtime, path);
  }
  ::closedir(d);
  std::sort(rotated.begin(), rotated.end(), std::greater<>());  // newest first
  const std::time_t now = std::time(nullptr);
  for (std::size_t i = 0; i < rotated.size(); ++i) {
    const bool too_many = o.max_files != 0 && i >= o.max_files;
    const bool too_old = o.max_age.count() != 0 && now - rotated[i].first > o.max_age.count();
    if (too_many || too_old) ::unlink(rotated[i].second.c_str());
  }
}

void rotate(State& s) {
  std::string target = s.options.file + "." + timestamp(std::chrono::system_clock::now(), true);
  struct stat st {};
  for (int n = 1; ::stat(target.c_str(), &st) == 0; ++n)
    target = s.options.file + "." + timestamp(std::chrono::system_clock::now(), true) + "." + std::to_string(n);
  if (::rename(s.options.file.c_str(), target.c_str()) == 0) reopen(s);
  apply_retention(s.options);
}

// Once a second: external reopen requests (USR1), rotation (in the rotator), and following a
// rename done by the rotator or by logrotate (in the others).
void maintain(State& s) {
  if (s.options.file.empty()) return;
  if (g_reopen.exchange(false)) reopen(s);
  struct stat on_disk {
  }, ours{};
  const bool exists = ::stat(s.options.file.c_str(), &on_disk) == 0;
  ::fstat(s.fd, &ours);
  if (!exists || on_disk.st_ino != ours.st_ino || on_disk.st_dev != ours.st_dev) {
    reopen(s);
    return;
  }
  if (!s.rotator) return;
  const bool too_big = s.options.max_bytes != 0 && static_cast<std::uint64_t>(ours.st_size) >= s.options.max_bytes;
  const bool too_old =
      s.options.rotate_every.count() != 0 && std::chrono::steady_clock::now() - s.opened_at >= s.options.rotate_every;
  if (too_big || (too_old && ours.st_size > 0)) rotate(s);
}

void writer_loop() {
  // A closed pipe must not kill the process: with SIGPIPE blocked in this thread, write() just
  // fails with EPIPE and the lines are counted as dropped.
  sigset_t pipe;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  ::pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
  State& s = state();
  std::string batch;
  auto next_maintenance = std::chrono::steady_clock::now();
  std::unique_lock lock(s.mutex);
  for (;;) {
    s.writer_waiting = true;
    const auto until = std::min(next_maintenance, std::chrono::steady_clock::now() + kFlushInterval);
    s.wake.wait_until(lock, until, [&] { return s.pending.size() >= kWakeBytes || s.stop || s.flush_requested; });
    s.flush_requested = false;
    s.writer_waiting = false;
    if (s.pending.empty() && s.stop) break;
    batch.swap(s.pending);
    std::uint64_t dropped = std::exchange(s.dropped_unreported, 0);
    s.writing = true;
    // configure() may change the destination and format meanwhile (under the lock): use copies.
    int fd = s.fd;
    Format format = s.options.format;
    lock.unlock();
    // Lines queued before a rename or a reopen request belong to the old file: write first.
    std::size_t lost = 0;
    if (!batch.empty()) lost = write_all(fd, batch);
    if (std::chrono::steady_clock::now() >= next_maintenance) {
      maintain(s);
      next_maintenance = std::chrono::steady_clock::now() + std::chrono::seconds(1);
      const std::lock_guard relock(s.mutex);
      fd = s.fd;
      format = s.options.format;
    }
    if (dropped > 0 && lost == 0) {
      // Space is back: say what was lost, once.
      const Field fields[] = {{"count", static_cast<std::int64_t>(dropped)}};
      const std::string summary = format_line(Level::kWarning, "keel.log", "log_lines_dropped", fields, format);
      if (write_all(fd, summary) != 0) {
        lost += 1;
        dropped += 1;
      } else {
        dropped = 0;
      }
    }
    if (lost > 0) g_dropped.fetch_add(lost, std::memory_order_relaxed);
    batch.clear();
    if (batch.capacity() > (1u << 20)) batch.shrink_to_fit();
    lock.lock();
    s.dropped_unreported += dropped + lost;
    s.writing = false;
    s.drained.notify_all();
  }
  s.writing = false;
  s.drained.notify_all();
}

void atfork_prepare() {
  state().mutex.lock();
}
void atfork_parent() {
  state().mutex.unlock();
}
void atfork_child() {
  State& s = state();
  // The writer thread did not survive the fork; the parent writes its own pending lines. The
  // condition variables still count the parent's waiting writer as a waiter — glibc's
  // pthread_cond_signal would wait for that phantom forever — so this process gets fresh ones
  // (and a fresh mutex instead of unlocking the one locked in prepare).
  s.pending.clear();
  s.writing = false;
  s.writer_waiting = false;
  s.writer_pid = 0;
  s.dropped_unreported = 0;
  s.flush_requested = false;
  g_pid.store(0, std::memory_order_relaxed);
  new (&s.wake) std::condition_variable();
  new (&s.drained) std::condition_variable();
  new (&s.mutex) std::mutex();
}

// Starts this process's writer thread once (again in a forked child).
void ensure_writer(State& s) {
  if (s.writer_pid == cached_pid()) return;
  s.writer_pid = cached_pid();
  s.stop = false;
  std::thread(writer_loop).detach();
}

Level threshold(const Options& o, std::string_view logger) {
  std::size_t best = 0;
  Level level = o.level;
  for (const auto& [name, l] : o.logger_levels) {
    const bool match = logger == name || (logger.size() > name.size() && logger.substr(0, name.size()) == name &&
                                          logger[name.size()] == '.');
    if (match && name.size() >= best) {
      best = name.size();
      level = l;
    }
  }
  return level;
}

}  // namespace

std::string_view level_name(Level l) noexcept {
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

void configure(const Options& options) {
  // Lines queued before this call belong to the destination they were logged for: written there
  // first, not into the new one.
  flush();
  State& s = state();
  int fd = STDOUT_FILENO;
  if (!options.file.empty()) fd = open_file(options.file);
  std::lock_guard lock(s.mutex);
  if (s.fd > STDERR_FILENO && s.fd != fd) ::close(s.fd);
  s.fd = fd;
  s.sync_for = -1;  // a new destination: its non-blocking twin is made on the next write
  s.options = options;
  s.opened_at = std::chrono::steady_clock::now();
  int min = static_cast<int>(options.level);
  for (const auto& [name, l] : options.logger_levels) min = std::min(min, static_cast<int>(l));
  g_min_level.store(min, std::memory_order_relaxed);
}

void set_synchronous(bool synchronous) {
  State& s = state();
  std::unique_lock lock(s.mutex);
  if (synchronous && s.writer_pid == cached_pid()) {
    // Stop this process's writer thread after it wrote what is queued.
    s.stop = true;
    s.wake.notify_one();
    s.drained.wait(lock, [&] { return s.pending.empty() && !s.writing; });
    s.writer_pid = 0;
  }
  s.synchronous = synchronous;
}

void set_rotator(bool rotator) {
  State& s = state();
  std::lock_guard lock(s.mutex);
  s.rotator = rotator;
}

Format format() noexcept {
  return state().options.format;
}

bool plain_stderr_ok() noexcept {
  const State& s = state();
  return s.options.format == Format::kConsole || !s.options.file.empty();
}

bool enabled(Level level, std::string_view logger) noexcept {
  if (static_cast<int>(level) < g_min_level.load(std::memory_order_relaxed)) return false;
  State& s = state();
  if (s.options.logger_levels.empty()) return level >= s.options.level;
  return level >= threshold(s.options, logger);
}

void write(Level level, std::string_view logger, std::string_view event, std::span<const Field> fields) {
  if (!enabled(level, logger)) return;
  State& s = state();
  const std::string line = format_line(level, logger, event, fields, s.options.format);
  std::unique_lock lock(s.mutex);
  if (s.synchronous) {
    // Reopen requests and renames are noticed here, at most once a second, instead of by a thread.
    static std::chrono::steady_clock::time_point next_maintenance{};
    if (const auto now = std::chrono::steady_clock::now(); now >= next_maintenance) {
      maintain(s);
      next_maintenance = now + std::chrono::seconds(1);
    }
    // A destination full right now (its reader is busy, e.g. with the workers' access log) gets a
    // moment to drain: the master's lines are few and matter. One that stayed full through that
    // moment (nobody reads) is not waited for again until a line gets through.
    const int fd = nonblocking_twin(s);
    const std::size_t lost = write_all(fd, line, s.sync_socket, s.sync_stalled ? 0 : kSyncWaitMs);
    s.sync_stalled = lost > 0;
    if (lost > 0) g_dropped.fetch_add(lost, std::memory_order_relaxed);
    return;
  }
  ensure_writer(s);
  if (s.pending.size() + line.size() > s.options.buffer_bytes) {
    ++s.dropped_unreported;
    g_dropped.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  s.pending += line;
  const bool wake = s.writer_waiting && s.pending.size() >= kWakeBytes;
  lock.unlock();
  if (wake) s.wake.notify_one();
}

void flush(std::chrono::milliseconds timeout) {
  State& s = state();
  std::unique_lock lock(s.mutex);
  if (s.writer_pid != ::getpid()) return;  // nothing was logged by this process
  s.flush_requested = true;
  s.wake.notify_one();
  s.drained.wait_for(lock, timeout, [&] { return s.pending.empty() && !s.writing; });
}

void request_reopen() noexcept {
  g_reopen.store(true);
}

std::uint64_t dropped_total() noexcept {
  return g_dropped.load(std::memory_order_relaxed);
}

void set_worker_id(int id) {
  g_worker_id.store(id);
}

}  // namespace keel::log

namespace keel {

void Logger::log(LogLevel level, std::string_view event, std::initializer_list<LogField> fields) const {
  log::write(level, name_, event, fields);
}

bool Logger::enabled(LogLevel level) const noexcept {
  return log::enabled(level, name_);
}

void bind_log_field(std::string key, std::string value) {
  if (log::Context* ctx = log::current()) ctx->fields.emplace_back(std::move(key), std::move(value));
}

}  // namespace keel
