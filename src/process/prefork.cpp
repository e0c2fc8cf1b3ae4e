#include "process/prefork.hpp"

#include <dlfcn.h>
#include <execinfo.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <string>

#include <nlohmann/json.hpp>

#include "base/strings.hpp"
#include "keel/json_writer.hpp"
#include "log/log.hpp"
#include "process/sd_notify.hpp"
#include "process/worker_table.hpp"

namespace keel::process {
namespace {

void reopen_logs_handler(int) {
  log::request_reopen();
}

constexpr int kBootFailure = 3;                    // a worker that cannot start: do not respawn forever
constexpr std::int64_t kAbortGraceMs = 2000;       // SIGABRT -> SIGKILL
constexpr std::int64_t kReadyDeadlineMs = 30'000;  // a replacement must be ready by then
constexpr std::int64_t kMaxBackoffMs = 10'000;

// SIGABRT in a worker (sent by the master on --timeout): write the blocked thread's stack to
// stderr with async-signal-safe calls only, then die of SIGABRT. In JSON mode the stack is one
// JSON line like every other (the symbols stay mangled: demangling allocates, which a signal
// handler interrupting the allocator must not do; c++filt reads them).
bool g_abort_json = true;
int g_abort_worker_id = -1;

// A fixed buffer filled with async-signal-safe code only (no allocation, no locale, no stdio).
class SignalSafeLine {
 public:
  void raw(const char* s) {
    while (*s != '\0') put(*s++);
  }
  void number(std::uint64_t v, int min_digits = 1) {
    char digits[24];
    int n = 0;
    do {
      digits[n++] = static_cast<char>('0' + v % 10);
      v /= 10;
    } while (v != 0 || n < min_digits);
    while (n > 0) put(digits[--n]);
  }
  void hex(std::uintptr_t v) {
    raw("0x");
    char digits[2 * sizeof v];
    int n = 0;
    do {
      digits[n++] = base::kHexDigits[v & 0xf];
      v >>= 4;
    } while (v != 0);
    while (n > 0) put(digits[--n]);
  }
  // The inside of a JSON string, at most kMaxString bytes: quotes and backslashes escaped,
  // control and non-ASCII bytes replaced (paths and symbols are ASCII in practice; the line must
  // stay valid UTF-8).
  static constexpr std::size_t kMaxString = 500;
  void escaped(const char* s) {
    for (std::size_t n = 0; *s != '\0' && n < kMaxString; ++s, ++n) {  // a longer one is cut
      const auto c = static_cast<unsigned char>(*s);
      if (c == '"' || c == '\\') {
        put('\\');
        put(static_cast<char>(c));
      } else if (c < 0x20 || c >= 0x7f) {
        put('?');
      } else {
        put(static_cast<char>(c));
      }
    }
  }
  // 2026-12-07T04:00:00.000000Z, as the logger writes it.
  void timestamp() {
    timespec ts{};
    ::clock_gettime(CLOCK_REALTIME, &ts);
    const std::int64_t secs = ts.tv_sec;
    std::int64_t days = secs / 86400;
    const std::int64_t rem = secs % 86400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    days += 719468;
    const std::int64_t era = days / 146097;
    const std::int64_t doe = days - era * 146097;
    const std::int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const std::int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const std::int64_t mp = (5 * doy + 2) / 153;
    const std::int64_t d = doy - (153 * mp + 2) / 5 + 1;
    const std::int64_t m = mp < 10 ? mp + 3 : mp - 9;
    const std::int64_t y = yoe + era * 400 + (m <= 2 ? 1 : 0);
    number(static_cast<std::uint64_t>(y), 4);
    put('-');
    number(static_cast<std::uint64_t>(m), 2);
    put('-');
    number(static_cast<std::uint64_t>(d), 2);
    put('T');
    number(static_cast<std::uint64_t>(rem / 3600), 2);
    put(':');
    number(static_cast<std::uint64_t>(rem % 3600 / 60), 2);
    put(':');
    number(static_cast<std::uint64_t>(rem % 60), 2);
    put('.');
    number(static_cast<std::uint64_t>(ts.tv_nsec / 1000), 6);
    put('Z');
  }
  void reset() { len_ = 0; }
  [[nodiscard]] bool room(std::size_t n) const { return len_ + n < sizeof buf_; }
  void flush(int fd) const {
    std::size_t off = 0;
    while (off < len_) {
      const ssize_t n = ::write(fd, buf_ + off, len_ - off);
      if (n <= 0) return;
      off += static_cast<std::size_t>(n);
    }
  }

 private:
  void put(char c) {
    if (len_ < sizeof buf_) buf_[len_++] = c;
  }
  char buf_[16384];
  std::size_t len_ = 0;
};

void write_stack_json(void* const* frames, int count) {
  static SignalSafeLine line;  // static: a signal handler's stack may be small
  line.reset();
  line.raw("{\"ts\":\"");
  line.timestamp();
  line.raw("\",\"level\":\"critical\",\"event\":\"worker_timeout_stack\",\"logger\":\"keel.worker\",\"pid\":");
  line.number(static_cast<std::uint64_t>(::getpid()));
  if (g_abort_worker_id >= 0) {
    line.raw(",\"worker\":");
    line.number(static_cast<std::uint64_t>(g_abort_worker_id));
  }
  line.raw(",\"message\":\"worker timeout, stack of the blocked event loop\",\"frames\":[");
  for (int i = 0; i < count; ++i) {
    // A frame takes at most two cut strings (doubled by escaping) and 64 bytes more: room is
    // checked first, so the line always ends with "]}" and stays valid JSON.
    if (!line.room(4 * SignalSafeLine::kMaxString + 64)) break;
    if (i != 0) line.raw(",");
    line.raw("\"");
    Dl_info info{};
    if (::dladdr(frames[i], &info) != 0 && info.dli_fname != nullptr) {
      line.escaped(info.dli_fname);
      if (info.dli_sname != nullptr) {
        line.raw("(");
        line.escaped(info.dli_sname);
        line.raw("+");
        line.hex(reinterpret_cast<std::uintptr_t>(frames[i]) - reinterpret_cast<std::uintptr_t>(info.dli_saddr));
        line.raw(")");
      }
      line.raw(" ");
    }
    line.raw("[");
    line.hex(reinterpret_cast<std::uintptr_t>(frames[i]));
    line.raw("]\"");
  }
  line.raw("]}\n");
  line.flush(STDERR_FILENO);
}

void on_abort(int) {
  void* frames[64];
  const int count = ::backtrace(frames, 64);
  if (g_abort_json) {
    write_stack_json(frames, count);
  } else {
    static const char kHead[] = "keel: worker timeout, stack of the blocked event loop:\n";
    [[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, kHead, sizeof kHead - 1);
    ::backtrace_symbols_fd(frames, count, STDERR_FILENO);
  }
  ::signal(SIGABRT, SIG_DFL);
  ::raise(SIGABRT);
}

void install_abort_handler(int worker_id) {
  void* warm[1];
  ::backtrace(warm, 1);  // loads libgcc's unwinder now, not inside the signal handler
  g_abort_json = log::format() == log::Format::kJson;
  g_abort_worker_id = worker_id;
  struct sigaction sa {};
  sa.sa_handler = on_abort;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND;
  ::sigaction(SIGABRT, &sa, nullptr);
}

// Runs a user hook; an exception is logged, never allowed to take the master down.
template <class Fn, class... Args>
void run_hook(const char* name, const Fn& fn, Args&&... args) {
  if (!fn) return;
  try {
    fn(std::forward<Args>(args)...);
  } catch (const std::exception& e) {
    log::write(log::Level::kError, "keel.master", "hook_failed", {{"hook", name}, {"error", e.what()}});
  } catch (...) {
    log::write(log::Level::kError, "keel.master", "hook_failed", {{"hook", name}, {"error", "unknown exception"}});
  }
}

// Writes this process's pid to `path` (nothing when empty); throws naming the file on failure.
// Written to a new file in the same directory (mkstemp: O_EXCL, never through a link) and renamed
// over `path`, so a symbolic link planted at `path` is replaced, not followed, and a reader never
// sees a half-written file. Mode 0644: the pid is public (ps shows it), the file is ours.
void write_pid_file(const std::string& path) {
  if (path.empty()) return;
  std::string temp = path + ".XXXXXX";
  const int fd = ::mkostemp(temp.data(), O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("cannot write pid file " + path + ": " + std::strerror(errno));
  const std::string text = std::to_string(::getpid()) + "\n";
  int err = 0;
  if (::fchmod(fd, 0644) != 0 || ::write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size()))
    err = errno != 0 ? errno : EIO;
  if (::close(fd) != 0 && err == 0) err = errno;
  if (err == 0 && ::rename(temp.c_str(), path.c_str()) != 0) err = errno;
  if (err != 0) {
    ::unlink(temp.c_str());
    throw std::runtime_error("cannot write pid file " + path + ": " + std::strerror(err));
  }
}

// A control-socket peer we take commands from, or answers from: our own user, or root.
bool trusted_uid(uid_t uid) {
  return uid == ::geteuid() || uid == 0;
}

// Why `path` is no place for a control socket, empty when it is. Whoever can write to its
// directory can replace the socket with their own and answer `status` and `upgrade` (and decide a
// canary's verdict): refused unless the directory is only writable by us (or root), or is sticky
// (/tmp: others cannot remove or rename our files) and the path is not someone else's file.
std::string control_socket_path_problem(const std::string& path) {
  const auto slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) return "cannot use directory " + dir + ": " + std::strerror(errno);
  const bool others_write = (st.st_mode & (S_IWGRP | S_IWOTH)) != 0 || !trusted_uid(st.st_uid);
  if (!others_write) return {};
  char mode[8];
  std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
  if ((st.st_mode & S_ISVTX) == 0)
    return "directory " + dir + " (mode " + mode + ", owner uid " + std::to_string(st.st_uid) +
           ") can be written by other users, who could replace the control socket; use a directory only this "
           "user can write, such as /run/keel/";
  struct stat own {};
  if (::lstat(path.c_str(), &own) == 0 && own.st_uid != ::geteuid())
    return path + " already exists and belongs to uid " + std::to_string(own.st_uid) + " in the shared directory " +
           dir + "; remove it or use a directory only this user can write, such as /run/keel/";
  return {};
}

std::vector<std::string> g_command_line;
bool g_handed_over = false;

enum class ExitReason { kNone, kTimeout, kRecycled, kScaledDown, kReplaced, kShutdown };

const char* reason_name(ExitReason r, int status, bool boot_failed) {
  switch (r) {
    case ExitReason::kTimeout:
      return "timeout";
    case ExitReason::kRecycled:
      return "recycled";
    case ExitReason::kScaledDown:
      return "scaled_down";
    case ExitReason::kReplaced:
      return "rolling_restart";
    case ExitReason::kShutdown:
      return "shutdown";
    case ExitReason::kNone:
      break;
  }
  if (boot_failed) return "boot_failed";
  if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) return "killed_oom_suspected";
  if (WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) != 0)) return "crashed";
  return "exited";
}

class Master {
 public:
  Master(const SupervisorConfig& config, std::vector<net::Listener> listeners, const WorkerMain& worker_main,
         const LifecycleHooks& hooks, const ReloadConfig& reload_config, const SupervisionObserver& observer)
      : config_(config),
        listeners_(std::move(listeners)),
        worker_main_(worker_main),
        hooks_(hooks),
        reload_config_(reload_config),
        observer_(observer),
        target_(config.workers) {}

  int run();

 private:
  struct Worker {
    int id = 0;
    WorkerSlot* slot = nullptr;
    std::int64_t started_ms = 0;
    std::uint64_t max_requests = 0;
    ExitReason reason = ExitReason::kNone;
    std::int64_t abort_sent_ms = 0;  // SIGABRT sent (timeout)
    bool kill_sent = false;
    bool was_ready = false;
    pid_t replaced_by = 0;  // a replacement is booting for this worker
    pid_t replaces = 0;     // this worker is the replacement of that one
  };

  pid_t spawn(int id, pid_t replaces = 0);
  void reap();
  void supervise();
  void start_replacement(pid_t old_pid, Worker& old, ExitReason why);
  void on_signal(int sig);
  void start_upgrade();
  void check_upgrade(pid_t pid, int status);
  // fork + exec of a new master on our listening sockets (USR2 and `upgrade`); -1 on failure.
  pid_t exec_master(const std::vector<std::string>& argv, const std::vector<std::pair<std::string, std::string>>& env);
  // Listens on control_path_; false (with the reason in `error`) when it cannot.
  bool open_control(std::string& error);
  void open_control();  // the same, a failure logged
  void close_control();
  void serve_control();
  std::string handle_control(const std::string& request);
  std::string spawn_generation(const nlohmann::json& request);
  void retire();
  void park(std::int64_t window_ms);
  void unpark();
  std::string status_json() const;
  std::string stats_json() const;
  void watch_for_reload();
  void check_reload();
  void announce_to_supervisor() const;
  void begin_stop(bool graceful);
  void signal_all(int sig);
  void scale_to(int workers);
  std::uint64_t rss_bytes(pid_t pid) const;
  int highest_live_id() const;

  SupervisorConfig config_;  // replaced by a HUP's re-read one
  std::vector<net::Listener> listeners_;
  const WorkerMain& worker_main_;
  const LifecycleHooks& hooks_;
  const ReloadConfig& reload_config_;
  const SupervisionObserver& observer_;
  WorkerTable table_;
  std::map<pid_t, Worker> workers_;
  std::map<int, int> crash_streak_;         // id -> consecutive failures
  std::map<int, std::int64_t> respawn_at_;  // id -> when to start it again
  std::vector<pid_t> rolling_;              // HUP: workers still to replace, in order
  int target_;
  bool stopping_ = false;
  bool booted_ = false;  // every initial worker became ready once
  int exit_code_ = 0;
  std::int64_t stop_deadline_ms_ = INT64_MAX;
  std::int64_t last_memory_check_ms_ = 0;
  bool reloading_ = false;
  pid_t upgrade_pid_ = 0;  // the new master being started by SIGUSR2
  std::int64_t upgrade_deadline_ms_ = 0;
  pid_t upgrade_from_ = 0;                            // this master replaces that one: stop it once our workers serve
  pid_t parent_pid_ = ::getppid();                    // a change: the master that started this one exited
  int control_fd_ = -1;                               // --control-socket listener
  int inotify_fd_ = -1;                               // --reload watches
  std::vector<std::pair<int, std::string>> watched_;  // watch descriptor -> file name in that directory
  std::int64_t reload_at_ms_ = 0;                     // debounced re-exec time, 0: none pending
  // Generations (`upgrade`): ours, the next one we started (its master is our child), parking.
  int generation_ = generation();
  bool candidate_ = is_candidate_generation();
  std::string control_path_ = config_.control_socket;  // moves on promote / park
  pid_t next_gen_pid_ = 0;
  int next_gen_number_ = 0;
  std::string next_gen_control_;
  std::string next_gen_exit_;  // "exit code 3" / "signal 9" once the next generation's master ended
  bool parked_ = false;
  int parked_target_ = 0;
  std::int64_t park_deadline_ms_ = 0;
  std::uint64_t crashes_ = 0;     // worker exits that were not asked for (crash, timeout, OOM kill)
  std::string upgrade_progress_;  // the `upgrade` command's live numbers, shown by `status`
  std::optional<std::chrono::milliseconds> watchdog_ = sd_watchdog_interval();
  std::int64_t next_watchdog_ms_ = 0;
  std::mt19937_64 rng_{std::random_device{}()};
};

pid_t Master::spawn(int id, pid_t replaces) {
  WorkerSlot* slot = table_.acquire();
  if (slot == nullptr) {
    log::write(log::Level::kError, "keel.master", "worker_table_full", {{"worker_id", id}});
    return -1;
  }
  std::uint64_t max_requests = config_.max_requests;
  if (max_requests != 0 && config_.max_requests_jitter != 0)
    max_requests += std::uniform_int_distribution<std::uint64_t>(0, config_.max_requests_jitter)(rng_);
  run_hook("pre_fork", hooks_.pre_fork, id);
  const pid_t master_pid = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    log::write(log::Level::kError, "keel.master", "fork_failed", {{"error", std::strerror(errno)}});
    table_.release(*slot);
    return -1;
  }
  if (pid == 0) {
    // Child: die with the master, unblock what the master blocked, run the worker.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != master_pid) std::_Exit(0);  // the master died before prctl took effect
    if (control_fd_ >= 0) ::close(control_fd_);    // the master's alone
    if (inotify_fd_ >= 0) ::close(inotify_fd_);
    ::signal(SIGUSR1, reopen_logs_handler);  // reopen the log file (logrotate)
    ::signal(SIGUSR2, SIG_IGN);
    install_abort_handler(id);
    // Unblock what the master blocked, except the shutdown signals: the worker's event loop reads
    // those from a signalfd, so one arriving while it boots waits instead of killing it.
    sigset_t unblock;
    sigfillset(&unblock);
    for (int sig : {SIGTERM, SIGINT, SIGQUIT}) sigdelset(&unblock, sig);
    ::sigprocmask(SIG_UNBLOCK, &unblock, nullptr);
    log::set_worker_id(id);
    slot->pid.store(::getpid());
    if (observer_.worker_forked) observer_.worker_forked(table_.index_of(*slot), id);
    run_hook("post_fork", hooks_.post_fork, id);
    int code = 0;
    try {
      code = worker_main_(listeners_, id, slot, max_requests);
    } catch (const std::exception& e) {
      log::write(log::Level::kCritical, "keel.worker", "worker_boot_failed", {{"error", e.what()}});
      code = kBootFailure;
    }
    log::flush();
    std::fflush(nullptr);
    std::_Exit(code);
  }
  slot->pid.store(pid);
  log::write(log::Level::kInfo, "keel.master", "worker_spawned",
             {{"worker_pid", static_cast<std::int64_t>(pid)}, {"worker_id", id}});
  Worker w;
  w.id = id;
  w.slot = slot;
  w.started_ms = steady_ms();
  w.max_requests = max_requests;
  w.replaces = replaces;
  workers_[pid] = w;
  return pid;
}

void Master::signal_all(int sig) {
  for (const auto& [pid, w] : workers_) ::kill(pid, sig);
}

void Master::scale_to(int workers) {
  workers = std::clamp(workers, 1, static_cast<int>(WorkerTable::kSlots) / 2);
  if (observer_.target_changed && workers != target_) observer_.target_changed(workers);
  while (target_ < workers) {
    ++target_;
    respawn_at_[target_ - 1] = steady_ms();
    log::write(log::Level::kInfo, "keel.master", "scale_up", {{"workers", target_}});
  }
  while (target_ > workers) {
    --target_;
    log::write(log::Level::kInfo, "keel.master", "scale_down", {{"workers", target_}});
    const int id = highest_live_id();
    for (auto& [pid, w] : workers_) {
      if (w.id == id && w.reason == ExitReason::kNone && w.replaces == 0) {
        w.reason = ExitReason::kScaledDown;
        ::kill(pid, SIGTERM);
      }
    }
  }
}

int Master::highest_live_id() const {
  int best = -1;
  for (const auto& [pid, w] : workers_)
    if (w.reason == ExitReason::kNone && w.replaces == 0) best = std::max(best, w.id);
  return best;
}

std::uint64_t Master::rss_bytes(pid_t pid) const {
  std::ifstream statm("/proc/" + std::to_string(pid) + "/statm");
  std::uint64_t size = 0, resident = 0;
  if (!(statm >> size >> resident)) return 0;
  return resident * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
}

void Master::start_replacement(pid_t old_pid, Worker& old, ExitReason why) {
  if (old.replaced_by != 0 || stopping_) return;
  const pid_t fresh = spawn(old.id, old_pid);
  if (fresh > 0) {
    old.replaced_by = fresh;
    old.reason = why;
    log::write(log::Level::kInfo, "keel.master", "worker_replacing",
               {{"worker_id", old.id},
                {"old_pid", static_cast<std::int64_t>(old_pid)},
                {"new_pid", static_cast<std::int64_t>(fresh)},
                {"reason", reason_name(why, 0, false)}});
  }
}

void Master::reap() {
  for (;;) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid <= 0) return;
    if (pid == upgrade_pid_) {
      check_upgrade(pid, status);
      if (observer_.generation_ended) observer_.generation_ended();
      continue;
    }
    if (pid == next_gen_pid_) {
      next_gen_exit_ = WIFSIGNALED(status) ? "signal " + std::to_string(WTERMSIG(status))
                                           : "exit code " + std::to_string(WEXITSTATUS(status));
      log::write(log::Level::kWarning, "keel.master", "generation_exited",
                 {{"generation", next_gen_number_},
                  {"master_pid", static_cast<std::int64_t>(pid)},
                  {"status", next_gen_exit_}});
      next_gen_pid_ = 0;
      if (observer_.generation_ended) observer_.generation_ended();
      continue;
    }
    const auto it = workers_.find(pid);
    if (it == workers_.end()) {
      // A generation this master started and let go of (it retired us, or we retired it).
      if (observer_.generation_ended) observer_.generation_ended();
      continue;
    }
    Worker w = it->second;
    workers_.erase(it);
    const std::uint64_t requests = w.slot->requests.load();
    const std::size_t slot_index = table_.index_of(*w.slot);
    const std::int64_t age_ms = steady_ms() - w.started_ms;
    const bool boot_failed = !w.was_ready && WIFEXITED(status) && WEXITSTATUS(status) == kBootFailure;
    const char* reason = reason_name(w.reason, status, boot_failed);
    const bool expected = w.reason != ExitReason::kNone && w.reason != ExitReason::kTimeout;
    if (!expected) ++crashes_;
    log::write(expected ? log::Level::kInfo : log::Level::kWarning, "keel.master", "worker_exited",
               {{"worker_pid", static_cast<std::int64_t>(pid)},
                {"worker_id", w.id},
                {"age_s", static_cast<double>(age_ms) / 1000.0},
                {"requests", static_cast<std::int64_t>(requests)},
                {"exit_code", WIFEXITED(status) ? WEXITSTATUS(status) : -1},
                {"signal", WIFSIGNALED(status) ? WTERMSIG(status) : 0},
                {"reason", reason}});
    // Before the slot can be handed to another worker: its metrics fold into the retired totals.
    if (observer_.worker_reaped) observer_.worker_reaped(slot_index, reason);
    table_.release(*w.slot);
    run_hook("worker_exit", hooks_.worker_exit, w.id, static_cast<int>(pid), std::string_view(reason));
    // This was the old worker of a replacement pair: the replacement carries on.
    for (auto& [other_pid, other] : workers_)
      if (other.replaces == pid) other.replaces = 0;
    if (stopping_) continue;
    if (w.replaces != 0) {
      // A replacement died before taking over: keep the old worker serving, stop any roll.
      if (auto old = workers_.find(w.replaces); old != workers_.end()) {
        old->second.replaced_by = 0;
        old->second.reason = ExitReason::kNone;
      }
      if (!rolling_.empty()) {
        log::write(log::Level::kError, "keel.master", "rolling_restart_aborted",
                   {{"reason", "a new worker failed before becoming ready"}, {"remaining", rolling_.size()}});
        rolling_.clear();
      }
      continue;
    }
    if (boot_failed && !booted_) {
      log::write(log::Level::kCritical, "keel.master", "worker_boot_failed",
                 {{"worker_pid", static_cast<std::int64_t>(pid)},
                  {"worker_id", w.id},
                  {"message", "a worker failed while starting; not respawning (exit code 3)"}});
      exit_code_ = kBootFailure;
      begin_stop(true);
      continue;
    }
    if (w.reason == ExitReason::kScaledDown || w.replaced_by != 0) continue;  // nothing to refill
    // Crash-loop guard: exponential backoff per worker id for workers that die before they are
    // ready (a boot that keeps failing). One that served comes back at once: killed from outside
    // (OOM killer, an operator) it is healthy, and delaying it only removes capacity.
    int& streak = crash_streak_[w.id];
    streak = w.was_ready ? 0 : streak + 1;
    const std::int64_t delay =
        streak == 0 ? 0 : std::min<std::int64_t>(kMaxBackoffMs, 100LL << std::min(streak - 1, 10));
    respawn_at_[w.id] = steady_ms() + delay;
  }
}

void Master::supervise() {
  const std::int64_t now = steady_ms();
  if (observer_.tick) observer_.tick();
  // The master that started this one (an upgrade's previous generation) has exited: we were
  // reparented.
  if (const pid_t ppid = ::getppid(); ppid != parent_pid_) {
    parent_pid_ = ppid;
    if (observer_.generation_ended) observer_.generation_ended();
  }
  serve_control();
  check_reload();
  const bool check_memory = config_.max_worker_memory != 0 && now - last_memory_check_ms_ >= 1000;
  if (check_memory) last_memory_check_ms_ = now;
  bool all_ready = !workers_.empty();
  for (auto& [pid, w] : workers_) {
    const WorkerState state = w.slot->get_state();
    if (state == WorkerState::kReady || state == WorkerState::kRetiring) {
      if (!w.was_ready) {
        w.was_ready = true;
        if (w.replaces != 0) {
          // The replacement serves: retire the worker it replaces, gracefully.
          if (auto old = workers_.find(w.replaces); old != workers_.end()) ::kill(w.replaces, SIGTERM);
        }
      }
    } else if (state == WorkerState::kBooting) {
      all_ready = false;
      if (w.replaces != 0 && now - w.started_ms > kReadyDeadlineMs && !w.kill_sent) {
        log::write(log::Level::kError, "keel.master", "worker_not_ready",
                   {{"worker_pid", static_cast<std::int64_t>(pid)}, {"worker_id", w.id}});
        ::kill(pid, SIGKILL);
        w.kill_sent = true;
      }
    }
    // Liveness: a loop silent for --timeout is stuck (a blocking handler, a deadlock).
    if (config_.timeout.count() > 0 && !stopping_ && state != WorkerState::kDraining) {
      const std::int64_t silent = now - w.slot->heartbeat_ms.load(std::memory_order_relaxed);
      if (w.abort_sent_ms == 0 && silent > config_.timeout.count()) {
        log::write(log::Level::kCritical, "keel.master", "worker_timeout",
                   {{"worker_pid", static_cast<std::int64_t>(pid)},
                    {"worker_id", w.id},
                    {"silent_s", static_cast<double>(silent) / 1000.0}});
        w.reason = ExitReason::kTimeout;
        w.abort_sent_ms = now;
        ::kill(pid, SIGABRT);
      } else if (w.abort_sent_ms != 0 && !w.kill_sent && now - w.abort_sent_ms > kAbortGraceMs) {
        ::kill(pid, SIGKILL);
        w.kill_sent = true;
      }
    }
    if (stopping_ || w.replaced_by != 0 || w.reason != ExitReason::kNone || w.replaces != 0) continue;
    // Recycling: ask for a replacement first; the old worker stops once the new one is ready.
    if (state == WorkerState::kRetiring) {
      start_replacement(pid, w, ExitReason::kRecycled);
    } else if (state == WorkerState::kReady && config_.max_worker_lifetime.count() > 0 &&
               now - w.started_ms > config_.max_worker_lifetime.count()) {
      log::write(log::Level::kInfo, "keel.master", "max_worker_lifetime_reached", {{"worker_id", w.id}});
      start_replacement(pid, w, ExitReason::kRecycled);
    } else if (check_memory && state == WorkerState::kReady) {
      if (const std::uint64_t rss = rss_bytes(pid); rss > config_.max_worker_memory) {
        log::write(log::Level::kWarning, "keel.master", "max_worker_memory_reached",
                   {{"worker_id", w.id}, {"rss_bytes", static_cast<std::int64_t>(rss)}});
        start_replacement(pid, w, ExitReason::kRecycled);
      }
    }
  }
  if (all_ready && !booted_) {
    booted_ = true;
    log::write(log::Level::kInfo, "keel.master", "workers_ready", {{"workers", workers_.size()}});
    sd_notify("READY=1\nSTATUS=serving");
    run_hook("when_ready", hooks_.when_ready);
    if (upgrade_from_ != 0) {
      // Binary upgrade: our workers serve, so the old master may drain and go.
      log::write(log::Level::kInfo, "keel.master", "upgrade_takeover",
                 {{"old_master", static_cast<std::int64_t>(upgrade_from_)}});
      ::kill(upgrade_from_, SIGTERM);
      upgrade_from_ = 0;
    }
  }
  if (parked_ && now >= park_deadline_ms_) {
    log::write(log::Level::kInfo, "keel.master", "rollback_window_expired", {{"generation", generation_}});
    retire();
  }
  if (upgrade_pid_ != 0 && now > upgrade_deadline_ms_) {
    log::write(log::Level::kError, "keel.master", "upgrade_failed",
               {{"new_master", static_cast<std::int64_t>(upgrade_pid_)},
                {"reason", "the new master did not become ready in time"}});
    ::kill(upgrade_pid_, SIGKILL);
    upgrade_deadline_ms_ = INT64_MAX;  // reaped (and the pid file restored) in reap()
  }
  if (reloading_ && rolling_.empty()) {
    bool pending = false;
    for (const auto& [pid, w] : workers_) pending = pending || w.replaces != 0;
    if (!pending) {
      reloading_ = false;
      log::write(log::Level::kInfo, "keel.master", "rolling_restart_done", {});
      sd_notify("READY=1\nSTATUS=serving");
      run_hook("when_ready", hooks_.when_ready);
    }
  }
  if (watchdog_ && now >= next_watchdog_ms_) {
    sd_notify("WATCHDOG=1");
    next_watchdog_ms_ = now + watchdog_->count() / 2;
  }
  // HUP rolling restart: one worker at a time, the next once the previous replacement serves.
  if (!rolling_.empty() && !stopping_) {
    bool busy = false;
    for (const auto& [pid, w] : workers_) busy = busy || w.replaces != 0;
    if (!busy) {
      const pid_t next = rolling_.front();
      rolling_.erase(rolling_.begin());
      if (auto it = workers_.find(next); it != workers_.end())
        start_replacement(next, it->second, ExitReason::kReplaced);
      if (rolling_.empty()) log::write(log::Level::kInfo, "keel.master", "rolling_restart_last_worker", {});
    }
  }
  // Respawns whose backoff has passed, and scale-ups.
  for (auto it = respawn_at_.begin(); it != respawn_at_.end();) {
    if (stopping_ || it->first >= target_) {
      it = respawn_at_.erase(it);
    } else if (it->second <= now) {
      spawn(it->first);
      it = respawn_at_.erase(it);
    } else {
      ++it;
    }
  }
}

void Master::begin_stop(bool graceful) {
  if (!stopping_) {
    log::write(log::Level::kInfo, "keel.master", graceful ? "graceful_shutdown" : "fast_shutdown", {});
    sd_notify("STOPPING=1");
  }
  stopping_ = true;
  rolling_.clear();
  respawn_at_.clear();
  // The service stops: a generation an unfinished `upgrade` started stops with it.
  if (next_gen_pid_ != 0 && !g_handed_over) ::kill(next_gen_pid_, graceful ? SIGTERM : SIGINT);
  for (auto& [pid, w] : workers_)
    if (w.reason == ExitReason::kNone) w.reason = ExitReason::kShutdown;
  if (graceful && !g_handed_over) {
    // The whole service stops: tell the workers so (they refuse new connections, serve the
    // backlog, then close the sockets). After a hand-over the new master's workers share the
    // sockets, so ours just retire.
    for (const auto& [pid, w] : workers_) {
      sigval value{};
      value.sival_int = kStopServiceSignalValue;
      ::sigqueue(pid, SIGTERM, value);
    }
  } else {
    signal_all(graceful ? SIGTERM : SIGINT);
  }
  for (auto& l : listeners_) {
    if (l.fd >= 0) ::close(l.fd);
    l.fd = -1;
  }
  const auto grace = graceful ? config_.shutdown_delay + config_.graceful_timeout + std::chrono::seconds(1)
                              : std::chrono::milliseconds(5000);
  stop_deadline_ms_ = std::min(stop_deadline_ms_, steady_ms() + grace.count());
}

void Master::on_signal(int sig) {
  switch (sig) {
    case SIGTERM:
      if (upgrade_pid_ != 0 && !stopping_) {
        // The new master took over: its workers serve; ours drain.
        log::write(log::Level::kInfo, "keel.master", "upgrade_succeeded",
                   {{"new_master", static_cast<std::int64_t>(upgrade_pid_)}});
        g_handed_over = true;
        upgrade_pid_ = 0;
      }
      begin_stop(!stopping_);  // a second TERM escalates
      break;
    case SIGINT:
    case SIGQUIT:
      begin_stop(false);
      break;
    case SIGHUP: {
      if (stopping_) break;
      sd_notify("RELOADING=1");
      // New workers fork from this process: once the options here are the re-read ones, every
      // replacement starts with them. A rejected configuration keeps the old one; the roll still
      // happens (HUP also means "restart the workers").
      if (reload_config_)
        if (auto fresh = reload_config_()) config_ = std::move(*fresh);
      if (config_.workers != target_) scale_to(config_.workers);
      rolling_.clear();
      for (const auto& [pid, w] : workers_)
        if (w.reason == ExitReason::kNone && w.replaces == 0) rolling_.push_back(pid);
      log::write(log::Level::kInfo, "keel.master", "rolling_restart", {{"workers", rolling_.size()}});
      reloading_ = true;
      break;
    }
    case SIGUSR1:
      // A log file moved by an external logrotate: every process reopens it. (On stdout, the
      // owner of the stream rotates; nothing to do.)
      log::request_reopen();
      log::write(log::Level::kInfo, "keel.master", "reopen_logs", {{"workers", workers_.size()}});
      signal_all(SIGUSR1);
      break;
    case SIGUSR2:
      start_upgrade();
      break;
    case SIGTTIN:
      if (!stopping_) scale_to(target_ + 1);
      break;
    case SIGTTOU:
      if (!stopping_) scale_to(target_ - 1);
      break;
    default:
      break;
  }
}

void Master::start_upgrade() {
  if (stopping_ || upgrade_pid_ != 0) return;
  if (g_command_line.empty()) {
    log::write(log::Level::kError, "keel.master", "upgrade_failed", {{"reason", "no command line to execute"}});
    return;
  }
  if (!config_.pid_file.empty()) ::rename(config_.pid_file.c_str(), (config_.pid_file + ".oldbin").c_str());
  // The new master answers `status` at the same path: ours is gone before it starts, so it
  // neither finds it in use nor has its own removed by our close.
  close_control();
  const pid_t pid = exec_master(g_command_line, {{kUpgradeFromEnv, std::to_string(::getpid())}});
  if (pid < 0) {
    open_control();
    if (!config_.pid_file.empty()) ::rename((config_.pid_file + ".oldbin").c_str(), config_.pid_file.c_str());
    return;
  }
  upgrade_pid_ = pid;
  upgrade_deadline_ms_ = steady_ms() + std::max<std::int64_t>(kReadyDeadlineMs, config_.graceful_timeout.count());
  log::write(log::Level::kInfo, "keel.master", "upgrade_started",
             {{"new_master", static_cast<std::int64_t>(pid)}, {"executable", g_command_line[0]}});
}

pid_t Master::exec_master(const std::vector<std::string>& command,
                          const std::vector<std::pair<std::string, std::string>>& env) {
  std::string fds;
  for (const auto& l : listeners_) {
    if (l.fd < 0) continue;
    if (!fds.empty()) fds += ',';
    fds += std::to_string(l.fd);
  }
  // Built before fork: the child only calls async-signal-safe functions and exec.
  std::vector<std::string> args = command;
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::pair<std::string, int>> inherited;
  if (observer_.handover_fds) inherited = observer_.handover_fds();
  std::vector<std::pair<std::string, std::string>> inherited_env;
  for (const auto& [name, fd] : inherited) inherited_env.emplace_back(name, std::to_string(fd));
  const pid_t pid = ::fork();
  if (pid < 0) {
    log::write(log::Level::kError, "keel.master", "upgrade_failed", {{"reason", std::strerror(errno)}});
    return -1;
  }
  if (pid == 0) {
    // The new master: the listening sockets survive exec, everything else is close-on-exec.
    for (const auto& l : listeners_)
      if (l.fd >= 0) ::fcntl(l.fd, F_SETFD, 0);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    for (const auto& [name, fd] : inherited) ::fcntl(fd, F_SETFD, 0);
    ::setenv(kListenFdsEnv, fds.c_str(), 1);
    for (const auto& [name, value] : inherited_env) ::setenv(name.c_str(), value.c_str(), 1);
    for (const auto& [name, value] : env) ::setenv(name.c_str(), value.c_str(), 1);
    ::execvp(argv[0], argv.data());
    const std::string msg =
        std::string("keel: upgrade: cannot execute ") + argv[0] + ": " + std::strerror(errno) + "\n";
    [[maybe_unused]] const ssize_t n = ::write(STDERR_FILENO, msg.data(), msg.size());
    std::_Exit(127);
  }
  return pid;
}

void Master::check_upgrade(pid_t pid, int status) {
  // The new master exited before taking over: keep serving with what we have.
  upgrade_pid_ = 0;
  open_control();
  if (!config_.pid_file.empty()) ::rename((config_.pid_file + ".oldbin").c_str(), config_.pid_file.c_str());
  log::write(log::Level::kError, "keel.master", "upgrade_failed",
             {{"new_master", static_cast<std::int64_t>(pid)},
              {"exit_code", WIFEXITED(status) ? WEXITSTATUS(status) : -1},
              {"signal", WIFSIGNALED(status) ? WTERMSIG(status) : 0},
              {"reason", "the new master exited before its workers were ready; the old master keeps serving"}});
}

bool Master::open_control(std::string& error) {
  if (control_path_.empty() || control_fd_ >= 0) return true;
  try {
    if (const std::string problem = control_socket_path_problem(control_path_); !problem.empty())
      throw std::runtime_error(problem);
    net::BindAddress addr;
    addr.kind = net::BindAddress::Kind::kUnix;
    addr.path = control_path_;
    control_fd_ = net::open_listener(addr, 16, false, 0600).fd;
    return true;
  } catch (const std::exception& e) {
    error = std::string("control_socket: ") + e.what();
    return false;
  }
}

void Master::open_control() {
  if (std::string error; !open_control(error))
    log::write(log::Level::kError, "keel.master", "control_socket_failed", {{"error", error}});
}

void Master::close_control() {
  if (control_fd_ < 0) return;
  ::close(control_fd_);
  control_fd_ = -1;
  ::unlink(control_path_.c_str());
}

std::string Master::status_json() const {
  static constexpr const char* kStates[] = {"free", "booting", "ready", "retiring", "draining"};
  const std::int64_t now = steady_ms();
  JsonWriter w;
  w.begin_object();
  w.key("master_pid").value(static_cast<std::int64_t>(::getpid()));
  w.key("workers_target").value(target_);
  w.key("stopping").value(stopping_);
  w.key("upgrading").value(upgrade_pid_ != 0);
  w.key("generation").value(generation_);
  w.key("version").value(config_.service_version);
  w.key("role").value(parked_ ? "parked" : candidate_ ? "candidate" : "primary");
  if (parked_) w.key("parked_for_s").value(static_cast<double>(park_deadline_ms_ - now) / 1000.0);
  w.key("crashes").value(static_cast<std::uint64_t>(crashes_));
  if (next_gen_number_ != 0) {
    w.key("next_generation").begin_object();
    w.key("generation").value(next_gen_number_);
    w.key("master_pid").value(static_cast<std::int64_t>(next_gen_pid_));
    w.key("control_socket").value(next_gen_control_);
    if (!next_gen_exit_.empty()) w.key("exited").value(next_gen_exit_);
    w.end_object();
  }
  if (!upgrade_progress_.empty()) w.key("upgrade").raw(upgrade_progress_);
  w.key("workers").begin_array();
  for (const auto& [pid, worker] : workers_) {
    const int state = static_cast<int>(worker.slot->get_state());
    w.begin_object();
    w.key("id").value(worker.id);
    w.key("pid").value(static_cast<std::int64_t>(pid));
    w.key("state").value(state >= 0 && state <= 4 ? kStates[state] : "unknown");
    w.key("age_s").value(static_cast<double>(now - worker.started_ms) / 1000.0);
    w.key("requests").value(static_cast<std::uint64_t>(worker.slot->requests.load(std::memory_order_relaxed)));
    w.end_object();
  }
  w.end_array().end_object();
  return std::move(w).take() + "\n";
}

namespace {
std::string control_error(std::string_view message) {
  JsonWriter w;
  w.begin_object().key("ok").value(false).key("error").value(message).end_object();
  return std::move(w).take() + "\n";
}
std::string control_ok() {
  return "{\"ok\":true}\n";
}
}  // namespace

void Master::serve_control() {
  for (int i = 0; control_fd_ >= 0 && i < 16; ++i) {
    const int c = ::accept4(control_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) return;
    // Short timeouts both ways: a client that sends or reads nothing cannot stall the master.
    const timeval tv{0, 200 * 1000};
    ::setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    // Only our user (or root) commands this master, whatever the socket file's mode became.
    ucred peer{};
    socklen_t len = sizeof peer;
    if (::getsockopt(c, SOL_SOCKET, SO_PEERCRED, &peer, &len) != 0 || !trusted_uid(peer.uid)) {
      log::write(log::Level::kWarning, "keel.master", "control_client_refused",
                 {{"pid", static_cast<std::int64_t>(peer.pid)}, {"uid", static_cast<std::int64_t>(peer.uid)}});
      const std::string body = control_error("permission denied: uid " + std::to_string(peer.uid) +
                                             " is neither this master's user nor root");
      [[maybe_unused]] const ssize_t n = ::send(c, body.data(), body.size(), MSG_NOSIGNAL);
      ::close(c);
      continue;
    }
    std::string request;
    char buf[4096];
    while (request.find('\n') == std::string::npos && request.size() < 65536) {
      const ssize_t n = ::recv(c, buf, sizeof buf, 0);
      if (n <= 0) break;
      request.append(buf, static_cast<std::size_t>(n));
    }
    std::string body;
    try {
      body = handle_control(request);
    } catch (const std::exception& e) {  // a malformed request must never take the master down
      body = control_error(std::string("invalid request: ") + e.what());
    }
    [[maybe_unused]] const ssize_t n = ::send(c, body.data(), body.size(), MSG_NOSIGNAL);
    ::close(c);
    if (control_fd_ < 0 || stopping_) return;  // the command moved or closed the socket
  }
}

// The control protocol: one JSON object per connection, {"cmd": ...}, answered with one JSON
// object. An empty request (an older `status`) is a status request.
std::string Master::handle_control(const std::string& request) {
  if (request.find_first_not_of(" \t\r\n") == std::string::npos) return status_json();
  const auto j = nlohmann::json::parse(request, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("cmd") || !j["cmd"].is_string())
    return control_error("expected a JSON object with a \"cmd\" string");
  const std::string cmd = j["cmd"].get<std::string>();
  if (cmd == "status") return status_json();
  if (cmd == "stats") return stats_json();
  if (stopping_) return control_error("the master is stopping");
  if (cmd == "scale") {
    if (!j.contains("workers") || !j["workers"].is_number_integer() || j["workers"].get<std::int64_t>() < 1 ||
        j["workers"].get<std::int64_t>() > 4096)
      return control_error("scale: \"workers\" must be an integer >= 1");
    if (parked_) return control_error("scale: the master is parked (unpark first)");
    scale_to(j["workers"].get<int>());
    return control_ok();
  }
  if (cmd == "spawn") return spawn_generation(j);
  if (cmd == "retire") {
    log::write(log::Level::kInfo, "keel.master", "generation_retiring", {{"generation", generation_}});
    retire();
    return control_ok();
  }
  if (cmd == "promote") {
    if (j.contains("control_socket") && !j["control_socket"].is_string())
      return control_error("promote: \"control_socket\" must be a string (a path)");
    const std::string path = j.value("control_socket", std::string());
    if (!candidate_ && !parked_ && path == control_path_) return control_ok();
    close_control();
    if (!path.empty()) control_path_ = path;
    std::string control_failed;
    if (!open_control(control_failed))
      log::write(log::Level::kError, "keel.master", "control_socket_failed", {{"error", control_failed}});
    try {
      write_pid_file(config_.pid_file);
    } catch (const std::exception& e) {
      log::write(log::Level::kError, "keel.master", "pid_file_failed", {{"error", e.what()}});
    }
    candidate_ = false;
    parked_ = false;
    g_handed_over = false;  // the listening sockets are ours to close when the service stops
    upgrade_progress_.clear();
    log::write(log::Level::kInfo, "keel.master", "generation_promoted",
               {{"generation", generation_}, {"version", config_.service_version}, {"workers", target_}});
    if (!control_failed.empty()) return control_error("promoted, but " + control_failed);
    return control_ok();
  }
  if (cmd == "park") {
    if (!j.contains("window_ms") || !j["window_ms"].is_number_integer())
      return control_error("park: \"window_ms\" must be an integer > 0");
    const std::int64_t window = j["window_ms"].get<std::int64_t>();
    if (window <= 0) return control_error("park: \"window_ms\" must be > 0");
    park(window);
    return control_ok();
  }
  if (cmd == "unpark") {
    if (!parked_) return control_error("unpark: the master is not parked");
    unpark();
    return control_ok();
  }
  if (cmd == "progress") {
    if (j.contains("upgrade") && j["upgrade"].is_object()) {
      upgrade_progress_ = j["upgrade"].dump();
      if (j["upgrade"].contains("verdict"))
        log::write(log::Level::kInfo, "keel.master", "upgrade_verdict", {{"upgrade", upgrade_progress_}});
    } else {
      upgrade_progress_.clear();
    }
    return control_ok();
  }
  return control_error("unknown command '" + cmd +
                       "' (status, stats, scale, spawn, retire, promote, park, "
                       "unpark, progress)");
}

// {"cmd":"spawn","binary":PATH,"args":[...],"workers":K}: a new generation's master, executed
// with our listening sockets and the command line we were started with plus `args` (later flags
// win, so `--config FILE` or `--some-setting V` there override ours), on its own control socket.
std::string Master::spawn_generation(const nlohmann::json& j) {
  if (next_gen_pid_ != 0)
    return control_error("spawn: generation " + std::to_string(next_gen_number_) +
                         " is still running (retire it first)");
  if (candidate_ || parked_) return control_error("spawn: only the primary generation starts a new one");
  if (g_command_line.empty()) return control_error("spawn: no command line to execute");
  if (control_path_.empty()) return control_error("spawn: needs a control socket");
  if (!j.contains("workers") || !j["workers"].is_number_integer() || j["workers"].get<std::int64_t>() < 1 ||
      j["workers"].get<std::int64_t>() > 4096)
    return control_error("spawn: \"workers\" must be an integer >= 1");
  const int workers = j["workers"].get<int>();
  if (j.contains("binary") && !j["binary"].is_string())
    return control_error("spawn: \"binary\" must be a string (an absolute path)");
  std::vector<std::string> argv = g_command_line;
  if (j.contains("binary") && !j["binary"].get<std::string>().empty()) argv[0] = j["binary"].get<std::string>();
  if (j.contains("args")) {
    if (!j["args"].is_array()) return control_error("spawn: \"args\" must be an array of strings");
    for (const auto& a : j["args"]) {
      if (!a.is_string()) return control_error("spawn: \"args\" must be an array of strings");
      argv.push_back(a.get<std::string>());
    }
  }
  const int number = generation_ + 1;
  const std::string control = control_path_ + ".gen" + std::to_string(number);
  argv.insert(argv.end(), {"--workers", std::to_string(workers), "--control-socket", control});
  ::unlink(control.c_str());  // left over by a generation that was killed
  const pid_t pid = exec_master(argv, {{kGenerationEnv, std::to_string(number)}});
  if (pid < 0) return control_error(std::string("spawn: fork failed: ") + std::strerror(errno));
  next_gen_pid_ = pid;
  next_gen_number_ = number;
  next_gen_control_ = control;
  next_gen_exit_.clear();
  log::write(log::Level::kInfo, "keel.master", "generation_started",
             {{"generation", number},
              {"master_pid", static_cast<std::int64_t>(pid)},
              {"executable", argv[0]},
              {"workers", workers}});
  JsonWriter w;
  w.begin_object().key("ok").value(true).key("pid").value(static_cast<std::int64_t>(pid));
  w.key("generation").value(number).key("control_socket").value(control).end_object();
  return std::move(w).take() + "\n";
}

// This generation steps aside for another that shares the listening sockets: the workers finish
// what they have and exit, the sockets stay open for the other generation, the master exits.
void Master::retire() {
  g_handed_over = true;
  next_gen_pid_ = 0;  // the other generation carries on (reaped by init if we exit first)
  close_control();
  begin_stop(true);
}

// Blue-green: the old generation stops serving but its master stays, for an instant rollback
// (`upgrade --rollback`: unpark forks warm workers, no exec, no reconfiguration) until the window
// ends, then retires.
void Master::park(std::int64_t window_ms) {
  if (!parked_) parked_target_ = target_;
  parked_ = true;
  park_deadline_ms_ = steady_ms() + window_ms;
  respawn_at_.clear();
  rolling_.clear();
  target_ = 0;
  for (auto& [pid, w] : workers_) {
    if (w.reason != ExitReason::kNone) continue;
    w.reason = ExitReason::kScaledDown;
    ::kill(pid, SIGTERM);
  }
  // The new generation is on its own now: a signal to this parked master must not reach it, and
  // the listening sockets are its too.
  next_gen_pid_ = 0;
  g_handed_over = true;
  close_control();
  control_path_ = config_.control_socket + ".parked";
  open_control();
  log::write(log::Level::kInfo, "keel.master", "generation_parked",
             {{"generation", generation_}, {"rollback_window_s", static_cast<double>(window_ms) / 1000.0}});
}

void Master::unpark() {
  parked_ = false;
  candidate_ = true;  // serving again, but not primary until promoted
  const std::int64_t now = steady_ms();
  target_ = parked_target_;
  for (int id = 0; id < target_; ++id) respawn_at_[id] = now;
  if (observer_.target_changed) observer_.target_changed(target_);
  log::write(log::Level::kInfo, "keel.master", "generation_unparked",
             {{"generation", generation_}, {"workers", target_}});
}

std::string Master::stats_json() const {
  int ready = 0;
  for (const auto& [pid, w] : workers_) {
    const WorkerState state = w.slot->get_state();
    if (w.reason == ExitReason::kNone && (state == WorkerState::kReady || state == WorkerState::kRetiring)) ++ready;
  }
  JsonWriter w;
  w.begin_object();
  w.key("generation").value(generation_);
  w.key("version").value(config_.service_version);
  w.key("workers_target").value(target_);
  w.key("workers_ready").value(ready);
  w.key("crashes").value(static_cast<std::uint64_t>(crashes_));
  w.key("stopping").value(stopping_);
  const std::string http = observer_.generation_stats ? observer_.generation_stats() : std::string();
  if (!http.empty()) w.key("http").raw(http);
  w.end_object();
  return std::move(w).take() + "\n";
}

void Master::watch_for_reload() {
  if (!config_.reload || g_command_line.empty()) return;
  inotify_fd_ = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (inotify_fd_ < 0) {
    log::write(log::Level::kError, "keel.master", "reload_unavailable", {{"error", std::strerror(errno)}});
    return;
  }
  std::vector<std::string> files{g_command_line[0]};
  files.insert(files.end(), config_.reload_extra_files.begin(), config_.reload_extra_files.end());
  files.insert(files.end(), config_.config_files.begin(), config_.config_files.end());
  for (const auto& f : files) {
    // Watch the directory: builds and deploys replace files (rename), which a file watch misses.
    const auto slash = f.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : f.substr(0, slash));
    const std::string name = slash == std::string::npos ? f : f.substr(slash + 1);
    const int wd = ::inotify_add_watch(inotify_fd_, dir.c_str(), IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE);
    if (wd < 0) {
      log::write(log::Level::kError, "keel.master", "reload_watch_failed",
                 {{"file", f}, {"error", std::strerror(errno)}});
      continue;
    }
    watched_.emplace_back(wd, name);
  }
  log::write(log::Level::kInfo, "keel.master", "reload_watching", {{"files", files.size()}});
}

void Master::check_reload() {
  if (inotify_fd_ < 0) return;
  alignas(inotify_event) char buf[4096];
  for (;;) {
    const ssize_t n = ::read(inotify_fd_, buf, sizeof buf);
    if (n <= 0) break;
    for (ssize_t off = 0; off < n;) {
      const auto* ev = reinterpret_cast<const inotify_event*>(buf + off);
      const std::string name = ev->len > 0 ? std::string(ev->name) : std::string();
      for (const auto& [wd, file] : watched_)
        if (wd == ev->wd && name == file) reload_at_ms_ = steady_ms() + 300;  // debounce a build's writes
      off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
    }
  }
  if (reload_at_ms_ != 0 && steady_ms() >= reload_at_ms_ && upgrade_pid_ == 0 && booted_) {
    reload_at_ms_ = 0;
    log::write(log::Level::kInfo, "keel.master", "reload", {{"reason", "a watched file changed"}});
    start_upgrade();
  }
}

void Master::announce_to_supervisor() const {
  const char* fd = std::getenv(kSupervisorFdEnv);
  if (fd == nullptr) return;
  const pid_t pid = ::getpid();
  [[maybe_unused]] const ssize_t n = ::write(std::atoi(fd), &pid, sizeof pid);  // atomic: below PIPE_BUF
}

int Master::run() {
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGTTIN, SIGTTOU, SIGUSR1, SIGUSR2}) sigaddset(&set, s);
  ::sigprocmask(SIG_BLOCK, &set, nullptr);

  if (const char* from = std::getenv(kUpgradeFromEnv)) {
    // Only the master that executed us (USR2) is stopped once we serve: a pid that is not our
    // parent's came from somewhere else (an inherited or hand-written environment) and is ignored.
    const std::string text = from;
    ::unsetenv(kUpgradeFromEnv);
    if (text == std::to_string(::getppid())) {
      upgrade_from_ = ::getppid();
    } else {
      log::write(log::Level::kWarning, "keel.master", "upgrade_from_ignored",
                 {{"variable", kUpgradeFromEnv},
                  {"value", text},
                  {"parent_pid", static_cast<std::int64_t>(::getppid())},
                  {"reason", "not the pid of the master that started this one"}});
    }
  }
  // A control socket that cannot be had is a startup error: `status` and `upgrade` would talk to
  // nobody, or to whoever holds the path.
  if (std::string error; !open_control(error)) {
    log::write(log::Level::kCritical, "keel.master", "control_socket_failed", {{"error", error}, {"exit_code", 78}});
    return 78;
  }
  announce_to_supervisor();
  if (observer_.target_changed) observer_.target_changed(target_);
  for (int id = 0; id < target_; ++id) spawn(id);
  log::write(log::Level::kInfo, "keel.master", "workers_started", {{"workers", target_}});
  watch_for_reload();

  for (;;) {
    reap();
    if (stopping_ && workers_.empty()) break;
    if (stopping_ && steady_ms() >= stop_deadline_ms_) {
      log::write(log::Level::kWarning, "keel.master", "workers_killed", {{"remaining", workers_.size()}});
      signal_all(SIGKILL);
      stop_deadline_ms_ = INT64_MAX;
    }
    supervise();
    timespec timeout{0, 100 * 1000 * 1000};
    siginfo_t info{};
    const int sig = ::sigtimedwait(&set, &info, &timeout);
    if (sig > 0 && sig != SIGCHLD) on_signal(sig);
  }
  if (!g_handed_over) close_control();  // else the new master owns the path now
  if (inotify_fd_ >= 0) ::close(inotify_fd_);
  run_hook("on_exit", hooks_.on_exit);
  log::write(log::Level::kInfo, "keel.master", "stopped", {{"exit_code", exit_code_}});
  return exit_code_;
}

// --reload re-executes the master, and the master that started the new one then exits: without
// a supervisor the process the user started would end after the first reload (the shell takes
// the terminal back, Ctrl-C no longer reaches the server, which runs on re-parented to PID 1).
// So with --reload the started process stays in the foreground, as uvicorn's reloader does: it
// runs the master as its child, adopts the masters that re-executions start (child subreaper),
// passes the stop and control signals on to them, and exits with the last master's status once
// none is left.
class Supervisor {
 public:
  int run(pid_t first_master, int announcements) {
    announce_fd_ = announcements;
    masters_.push_back(first_master);
    log::write(log::Level::kInfo, "keel.supervisor", "supervisor_started",
               {{"master_pid", static_cast<std::int64_t>(first_master)}});
    sigset_t set;
    sigemptyset(&set);
    for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGTTIN, SIGTTOU, SIGUSR1, SIGUSR2}) sigaddset(&set, s);
    ::sigprocmask(SIG_BLOCK, &set, nullptr);
    int code = 0;
    for (;;) {
      read_announcements();
      int status = 0;
      pid_t pid;
      while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
        const auto it = std::find(masters_.begin(), masters_.end(), pid);
        if (it == masters_.end()) continue;  // an orphaned worker, adopted and reaped
        masters_.erase(it);
        code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      if (pid < 0 && errno == ECHILD) break;  // nothing left under us
      timespec timeout{0, 100 * 1000 * 1000};
      siginfo_t info{};
      const int sig = ::sigtimedwait(&set, &info, &timeout);
      if (sig <= 0 || sig == SIGCHLD) continue;
      read_announcements();
      // Stop signals reach every master (one re-executing has a successor booting); the others
      // go to the newest. Ctrl-C in a terminal reaches the whole process group anyway.
      const bool stop = sig == SIGTERM || sig == SIGINT || sig == SIGQUIT;
      if (stop && !stopping_) {
        stopping_ = true;
        log::write(log::Level::kInfo, "keel.supervisor", "supervisor_stopping", {{"signal", sig}});
      }
      for (auto it = masters_.rbegin(); it != masters_.rend(); ++it) {
        ::kill(*it, sig);
        if (!stop) break;
      }
    }
    ::close(announce_fd_);
    log::write(log::Level::kInfo, "keel.supervisor", "supervisor_stopped", {{"exit_code", code}});
    return code;
  }

 private:
  void read_announcements() {
    pid_t pids[64];
    for (;;) {
      const ssize_t n = ::read(announce_fd_, pids, sizeof pids);
      if (n <= 0) return;
      for (ssize_t i = 0; i < n / static_cast<ssize_t>(sizeof(pid_t)); ++i) {
        if (std::find(masters_.begin(), masters_.end(), pids[i]) != masters_.end()) continue;
        masters_.push_back(pids[i]);
        // A master announced after the stop (a re-execution under way) stops too.
        if (stopping_) ::kill(pids[i], SIGTERM);
      }
    }
  }

  int announce_fd_ = -1;
  std::vector<pid_t> masters_;  // oldest first; not yet reaped
  bool stopping_ = false;
};

// Becomes the --reload supervisor: forks the first master (which returns false here and goes on)
// and, in the started process, supervises until every master ended (true, `code` set).
bool supervise_reloads(const SupervisorConfig& options, std::vector<net::Listener>& listeners, int& code) {
  if (!options.reload || std::getenv(kSupervisorFdEnv) != nullptr || std::getenv(kUpgradeFromEnv) != nullptr ||
      is_candidate_generation())
    return false;
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    log::write(log::Level::kError, "keel.supervisor", "supervisor_unavailable", {{"error", std::strerror(errno)}});
    return false;
  }
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);  // masters whose parent (an older master) exits come to us
  const pid_t pid = ::fork();
  if (pid < 0) {
    log::write(log::Level::kError, "keel.supervisor", "supervisor_unavailable", {{"error", std::strerror(errno)}});
    ::close(fds[0]);
    ::close(fds[1]);
    ::prctl(PR_SET_CHILD_SUBREAPER, 0);
    return false;
  }
  if (pid == 0) {
    // The master: its successors inherit the write end (exec keeps it: not close-on-exec).
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);  // the supervisor was killed: stop, do not run on unseen
    ::close(fds[0]);
    ::fcntl(fds[1], F_SETFD, 0);
    ::setenv(kSupervisorFdEnv, std::to_string(fds[1]).c_str(), 1);
    return false;
  }
  ::close(fds[1]);
  ::fcntl(fds[0], F_SETFL, O_NONBLOCK);
  for (auto& l : listeners) {  // the masters own the sockets
    if (l.fd >= 0) ::close(l.fd);
    l.fd = -1;
  }
  code = Supervisor().run(pid, fds[0]);
  return true;
}

// Writes the pid file and removes it (if still ours) when the process ends.
class PidFile {
 public:
  // write: false for a new generation of `upgrade`, which writes it when promoted; either way the
  // file is removed at exit if it still holds our pid.
  PidFile(std::string path, bool write) : path_(std::move(path)) {
    if (write) write_pid_file(path_);
  }
  ~PidFile() {
    if (path_.empty()) return;
    for (const std::string& p : {path_, path_ + ".oldbin"}) {  // .oldbin: we were upgraded away
      std::ifstream in(p);
      pid_t pid = 0;
      if (in >> pid && pid == ::getpid()) ::unlink(p.c_str());
    }
  }
  PidFile(const PidFile&) = delete;
  PidFile& operator=(const PidFile&) = delete;

 private:
  std::string path_;
};

}  // namespace

void set_command_line(int argc, char** argv) {
  g_command_line.assign(argv, argv + argc);
  if (!g_command_line.empty() && g_command_line[0].find('/') != std::string::npos && g_command_line[0][0] != '/') {
    char cwd[4096];
    if (::getcwd(cwd, sizeof cwd) != nullptr) g_command_line[0] = std::string(cwd) + "/" + g_command_line[0];
  }
}

bool listeners_handed_over() {
  return g_handed_over;
}

int generation() {
  static const int value = [] {
    const char* env = std::getenv(kGenerationEnv);
    const int n = env != nullptr ? std::atoi(env) : 1;
    return n >= 1 ? n : 1;
  }();
  return value;
}

bool is_candidate_generation() {
  return generation() > 1;
}

std::optional<std::string> control_request(const std::string& control_socket, const std::string& request,
                                           std::string& error, int timeout_ms, pid_t expected_pid, bool* refused) {
  if (refused != nullptr) *refused = false;
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (control_socket.empty() || control_socket.size() >= sizeof sa.sun_path) {
    error = "invalid control socket path '" + control_socket + "'";
    return std::nullopt;
  }
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = std::strerror(errno);
    return std::nullopt;
  }
  std::memcpy(sa.sun_path, control_socket.c_str(), control_socket.size() + 1);
  const timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    error = "no master answers on " + control_socket + ": " + std::strerror(errno);
    ::close(fd);
    return std::nullopt;
  }
  // Whoever listens there must be our user (or root) and, when we know which master it is, that
  // master: a socket planted by someone else must not receive our commands or feed us answers.
  ucred peer{};
  socklen_t len = sizeof peer;
  std::string wrong;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &len) != 0)
    wrong = std::string("cannot check who listens there: ") + std::strerror(errno);
  else if (!trusted_uid(peer.uid))
    wrong = "it is held by pid " + std::to_string(peer.pid) + " of uid " + std::to_string(peer.uid) +
            ", neither this user nor root";
  else if (expected_pid > 0 && peer.pid != expected_pid)
    wrong = "it is held by pid " + std::to_string(peer.pid) + ", not by the expected master (pid " +
            std::to_string(expected_pid) + ")";
  if (!wrong.empty()) {
    error = "refusing the control socket " + control_socket + ": " + wrong;
    if (refused != nullptr) *refused = true;
    ::close(fd);
    return std::nullopt;
  }
  const std::string line = request + "\n";
  if (::send(fd, line.data(), line.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(line.size())) {
    error = "cannot send to " + control_socket + ": " + std::strerror(errno);
    ::close(fd);
    return std::nullopt;
  }
  std::string body;
  char buf[4096];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) body.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  if (body.empty()) {
    error = "the master at " + control_socket + " sent nothing";
    return std::nullopt;
  }
  return body;
}

namespace {

int print_status_unchecked(const std::string& control_socket, bool as_json) {
  std::string error;
  const auto body = control_request(control_socket, R"({"cmd":"status"})", error);
  if (!body) {
    std::fprintf(stderr, "status: %s\n", error.c_str());
    return 1;
  }
  if (as_json) {
    std::fputs(body->c_str(), stdout);
    return 0;
  }
  const auto j = nlohmann::json::parse(*body, nullptr, false);
  if (j.is_discarded()) {
    std::fprintf(stderr, "status: unreadable answer from %s\n", control_socket.c_str());
    return 1;
  }
  const auto print_master = [](const nlohmann::json& m) {
    std::printf("master %lld  generation %lld  version %s  %s  workers %lld%s%s\n", m.value("master_pid", 0LL),
                m.value("generation", 1LL),
                m.value("version", std::string()).empty() ? "-" : m.value("version", std::string()).c_str(),
                m.value("role", std::string("primary")).c_str(), m.value("workers_target", 0LL),
                m.value("stopping", false) ? "  (stopping)" : "", m.value("upgrading", false) ? "  (upgrading)" : "");
    std::printf("%-4s %-8s %-9s %10s %10s\n", "ID", "PID", "STATE", "AGE(s)", "REQUESTS");
    for (const auto& w : m.value("workers", nlohmann::json::array()))
      std::printf("%-4lld %-8lld %-9s %10.1f %10llu\n", w.value("id", 0LL), w.value("pid", 0LL),
                  w.value("state", std::string("?")).c_str(), w.value("age_s", 0.0), w.value("requests", 0ULL));
  };
  print_master(j);
  if (j.contains("next_generation")) {
    const auto& next = j["next_generation"];
    std::printf("\n");
    std::string err;
    const auto other = next.value("exited", std::string()).empty()
                           ? control_request(next.value("control_socket", std::string()), R"({"cmd":"status"})", err,
                                             3000, static_cast<pid_t>(next.value("master_pid", 0LL)))
                           : std::nullopt;
    const auto o = other ? nlohmann::json::parse(*other, nullptr, false) : nlohmann::json();
    if (other && !o.is_discarded()) {
      print_master(o);
    } else {
      std::printf("generation %lld (master %lld): %s\n", next.value("generation", 0LL), next.value("master_pid", 0LL),
                  next.value("exited", err.empty() ? std::string("not answering") : err).c_str());
    }
  }
  if (j.contains("upgrade")) std::printf("\nupgrade: %s\n", j["upgrade"].dump().c_str());
  return 0;
}

}  // namespace

int print_status(const std::string& control_socket, bool as_json) {
  try {
    return print_status_unchecked(control_socket, as_json);
  } catch (const std::exception& e) {  // an answer of the wrong shape (another keel version?)
    std::fprintf(stderr, "status: unexpected answer from %s: %s\n", control_socket.c_str(), e.what());
    return 1;
  }
}

int run(const SupervisorConfig& options, std::vector<net::Listener> listeners, const WorkerMain& worker_main,
        const LifecycleHooks& hooks, const ReloadConfig& reload_config, const SupervisionObserver& observer) {
  if (int code = 0; supervise_reloads(options, listeners, code)) {
    g_handed_over = true;  // the sockets (and unix socket paths) were the masters' to close
    return code;
  }
  // A new generation of `upgrade` writes the pid file when it is promoted.
  PidFile pid_file(options.pid_file, !is_candidate_generation());
  run_hook("on_starting", hooks.on_starting);
  const bool needs_master = options.workers > 1 || options.max_requests != 0 || is_candidate_generation() ||
                            options.max_worker_lifetime.count() != 0 || options.max_worker_memory != 0 ||
                            options.reload || !options.control_socket.empty();
  if (!needs_master) {
    // One worker and nothing to recycle: serve in this process, no master needed.
    ::signal(SIGUSR1, reopen_logs_handler);  // reopen the log file (logrotate)
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    ::sigprocmask(SIG_UNBLOCK, &usr1, nullptr);
    ::signal(SIGUSR2, SIG_IGN);
    const int code = worker_main(std::move(listeners), 0, nullptr, 0);
    run_hook("on_exit", hooks.on_exit);
    return code;
  }
  Master master(options, std::move(listeners), worker_main, hooks, reload_config, observer);
  return master.run();
}

}  // namespace keel::process
