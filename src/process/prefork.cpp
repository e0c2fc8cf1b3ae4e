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
#include "process/supervisor_policy.hpp"
#include "process/worker_table.hpp"

namespace keel::process {
namespace {

void reopen_logs_handler(int) {
  log::request_reopen();
}

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

// The policy's view of the workers: their shared-memory slots and /proc.
class SlotProbe final : public WorkerProbe {
 public:
  explicit SlotProbe(const std::map<pid_t, WorkerSlot*>& slots) : slots_(slots) {}
  [[nodiscard]] WorkerState state(pid_t pid) const override { return slots_.at(pid)->get_state(); }
  [[nodiscard]] std::int64_t heartbeat_ms(pid_t pid) const override {
    return slots_.at(pid)->heartbeat_ms.load(std::memory_order_relaxed);
  }
  [[nodiscard]] std::uint64_t rss_bytes(pid_t pid) const override {
    std::ifstream statm("/proc/" + std::to_string(pid) + "/statm");
    std::uint64_t size = 0, resident = 0;
    if (!(statm >> size >> resident)) return 0;
    return resident * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  }

 private:
  const std::map<pid_t, WorkerSlot*>& slots_;
};

// Carries out the supervisor's decisions (process/supervisor_policy.hpp): forks, signals, reaps,
// and everything around the workers (hooks, logs, sd_notify, generations, the control socket).
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
        policy_(config, std::random_device{}()) {}

  int run();

 private:
  // Carries out the policy's actions, in order.
  void execute(const Actions& actions);
  // Forks the worker of a kSpawn action; its pid, or -1.
  pid_t spawn(const Action& action);
  void reap();
  void supervise();
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

  SupervisorConfig config_;  // replaced by a HUP's re-read one
  std::vector<net::Listener> listeners_;
  const WorkerMain& worker_main_;
  const LifecycleHooks& hooks_;
  const ReloadConfig& reload_config_;
  const SupervisionObserver& observer_;
  WorkerTable table_;
  SupervisorPolicy policy_;             // the workers and what becomes of them
  std::map<pid_t, WorkerSlot*> slots_;  // the policy's workers' shared-memory slots
  int exit_code_ = 0;
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
  std::string upgrade_progress_;  // the `upgrade` command's live numbers, shown by `status`
  std::optional<std::chrono::milliseconds> watchdog_ = sd_watchdog_interval();
  std::int64_t next_watchdog_ms_ = 0;
};

pid_t Master::spawn(const Action& action) {
  const int id = action.worker_id;
  WorkerSlot* slot = table_.acquire();
  if (slot == nullptr) {
    log::write(log::Level::kError, "keel.master", "worker_table_full", {{"worker_id", id}});
    return -1;
  }
  const std::uint64_t max_requests = action.max_requests;
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
  slots_[pid] = slot;
  policy_.spawned(action, pid, steady_ms());
  return pid;
}

void Master::execute(const Actions& actions) {
  using Kind = Action::Kind;
  using Cause = Action::Cause;
  for (const Action& a : actions) {
    switch (a.kind) {
      case Kind::kSpawn: {
        if (a.pid == 0) {
          spawn(a);
          break;
        }
        // Recycling, HUP: the replacement first; the old worker stops once the new one is ready.
        if (a.cause == Cause::kRecycleLifetime)
          log::write(log::Level::kInfo, "keel.master", "max_worker_lifetime_reached", {{"worker_id", a.worker_id}});
        else if (a.cause == Cause::kRecycleMemory)
          log::write(log::Level::kWarning, "keel.master", "max_worker_memory_reached",
                     {{"worker_id", a.worker_id}, {"rss_bytes", a.value}});
        if (const pid_t fresh = spawn(a); fresh > 0)
          log::write(log::Level::kInfo, "keel.master", "worker_replacing",
                     {{"worker_id", a.worker_id},
                      {"old_pid", static_cast<std::int64_t>(a.pid)},
                      {"new_pid", static_cast<std::int64_t>(fresh)},
                      {"reason", reason_name(a.replacement_reason(), 0, false)}});
        break;
      }
      case Kind::kSignal:
        if (a.cause == Cause::kTimeout) {
          log::write(log::Level::kCritical, "keel.master", "worker_timeout",
                     {{"worker_pid", static_cast<std::int64_t>(a.pid)},
                      {"worker_id", a.worker_id},
                      {"silent_s", static_cast<double>(a.value) / 1000.0}});
        } else if (a.cause == Cause::kNotReady) {
          log::write(log::Level::kError, "keel.master", "worker_not_ready",
                     {{"worker_pid", static_cast<std::int64_t>(a.pid)}, {"worker_id", a.worker_id}});
        }
        if (a.cause == Cause::kStopService) {
          sigval value{};
          value.sival_int = kStopServiceSignalValue;
          ::sigqueue(a.pid, a.signal, value);
        } else {
          ::kill(a.pid, a.signal);
        }
        break;
      case Kind::kTargetChanged:
        if (observer_.target_changed) observer_.target_changed(static_cast<int>(a.value));
        break;
      case Kind::kScaleUp:
        log::write(log::Level::kInfo, "keel.master", "scale_up", {{"workers", a.value}});
        break;
      case Kind::kScaleDown:
        log::write(log::Level::kInfo, "keel.master", "scale_down", {{"workers", a.value}});
        break;
      case Kind::kWorkersReady:
        log::write(log::Level::kInfo, "keel.master", "workers_ready", {{"workers", a.value}});
        sd_notify("READY=1\nSTATUS=serving");
        run_hook("when_ready", hooks_.when_ready);
        if (upgrade_from_ != 0) {
          // Binary upgrade: our workers serve, so the old master may drain and go.
          log::write(log::Level::kInfo, "keel.master", "upgrade_takeover",
                     {{"old_master", static_cast<std::int64_t>(upgrade_from_)}});
          ::kill(upgrade_from_, SIGTERM);
          upgrade_from_ = 0;
        }
        break;
      case Kind::kRollingRestartLastWorker:
        log::write(log::Level::kInfo, "keel.master", "rolling_restart_last_worker", {});
        break;
      case Kind::kRollingRestartDone:
        log::write(log::Level::kInfo, "keel.master", "rolling_restart_done", {});
        sd_notify("READY=1\nSTATUS=serving");
        run_hook("when_ready", hooks_.when_ready);
        break;
      case Kind::kStopOverdue:
        log::write(log::Level::kWarning, "keel.master", "workers_killed", {{"remaining", a.value}});
        break;
    }
  }
}

void Master::signal_all(int sig) {
  for (const auto& [pid, w] : policy_.workers()) ::kill(pid, sig);
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
    const auto exit = policy_.exited(pid, status, steady_ms());
    if (!exit) {
      // A generation this master started and let go of (it retired us, or we retired it).
      if (observer_.generation_ended) observer_.generation_ended();
      continue;
    }
    const auto slot_it = slots_.find(pid);
    WorkerSlot& slot = *slot_it->second;
    slots_.erase(slot_it);
    const std::uint64_t requests = slot.requests.load();
    const std::size_t slot_index = table_.index_of(slot);
    log::write(exit->expected ? log::Level::kInfo : log::Level::kWarning, "keel.master", "worker_exited",
               {{"worker_pid", static_cast<std::int64_t>(pid)},
                {"worker_id", exit->worker.id},
                {"age_s", static_cast<double>(exit->age_ms) / 1000.0},
                {"requests", static_cast<std::int64_t>(requests)},
                {"exit_code", WIFEXITED(status) ? WEXITSTATUS(status) : -1},
                {"signal", WIFSIGNALED(status) ? WTERMSIG(status) : 0},
                {"reason", exit->reason}});
    // Before the slot can be handed to another worker: its metrics fold into the retired totals.
    if (observer_.worker_reaped) observer_.worker_reaped(slot_index, exit->reason);
    table_.release(slot);
    run_hook("worker_exit", hooks_.worker_exit, exit->worker.id, static_cast<int>(pid), std::string_view(exit->reason));
    if (exit->rolling_aborted != 0)
      log::write(log::Level::kError, "keel.master", "rolling_restart_aborted",
                 {{"reason", "a new worker failed before becoming ready"}, {"remaining", exit->rolling_aborted}});
    if (exit->exit_code) {
      log::write(log::Level::kCritical, "keel.master", "worker_boot_failed",
                 {{"worker_pid", static_cast<std::int64_t>(pid)},
                  {"worker_id", exit->worker.id},
                  {"message", "a worker failed while starting; not respawning (exit code 3)"}});
      exit_code_ = *exit->exit_code;
      begin_stop(true);
    }
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
  execute(policy_.check_workers(now, SlotProbe(slots_)));
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
  if (watchdog_ && now >= next_watchdog_ms_) {
    sd_notify("WATCHDOG=1");
    next_watchdog_ms_ = now + watchdog_->count() / 2;
  }
  execute(policy_.start_due(now));
}

void Master::begin_stop(bool graceful) {
  if (!policy_.stopping()) {
    log::write(log::Level::kInfo, "keel.master", graceful ? "graceful_shutdown" : "fast_shutdown", {});
    sd_notify("STOPPING=1");
  }
  // The service stops: a generation an unfinished `upgrade` started stops with it.
  if (next_gen_pid_ != 0 && !g_handed_over) ::kill(next_gen_pid_, graceful ? SIGTERM : SIGINT);
  // The whole service stops unless our listeners were handed over (then the new master's workers
  // share the sockets, so ours just retire).
  execute(policy_.stop(graceful, !g_handed_over, steady_ms()));
  for (auto& l : listeners_) {
    if (l.fd >= 0) ::close(l.fd);
    l.fd = -1;
  }
}

void Master::on_signal(int sig) {
  switch (sig) {
    case SIGTERM:
      if (upgrade_pid_ != 0 && !policy_.stopping()) {
        // The new master took over: its workers serve; ours drain.
        log::write(log::Level::kInfo, "keel.master", "upgrade_succeeded",
                   {{"new_master", static_cast<std::int64_t>(upgrade_pid_)}});
        g_handed_over = true;
        upgrade_pid_ = 0;
      }
      begin_stop(!policy_.stopping());  // a second TERM escalates
      break;
    case SIGINT:
    case SIGQUIT:
      begin_stop(false);
      break;
    case SIGHUP: {
      if (policy_.stopping()) break;
      sd_notify("RELOADING=1");
      // New workers fork from this process: once the options here are the re-read ones, every
      // replacement starts with them. A rejected configuration keeps the old one; the roll still
      // happens (HUP also means "restart the workers").
      if (reload_config_) {
        if (auto fresh = reload_config_()) {
          config_ = std::move(*fresh);
          policy_.set_config(config_);
        }
      }
      if (config_.workers != policy_.target()) execute(policy_.scale_to(config_.workers, steady_ms()));
      const std::size_t rolling = policy_.start_rolling_restart();
      log::write(log::Level::kInfo, "keel.master", "rolling_restart", {{"workers", rolling}});
      break;
    }
    case SIGUSR1:
      // A log file moved by an external logrotate: every process reopens it. (On stdout, the
      // owner of the stream rotates; nothing to do.)
      log::request_reopen();
      log::write(log::Level::kInfo, "keel.master", "reopen_logs", {{"workers", policy_.workers().size()}});
      signal_all(SIGUSR1);
      break;
    case SIGUSR2:
      start_upgrade();
      break;
    case SIGTTIN:
      if (!policy_.stopping()) execute(policy_.scale_to(policy_.target() + 1, steady_ms()));
      break;
    case SIGTTOU:
      if (!policy_.stopping()) execute(policy_.scale_to(policy_.target() - 1, steady_ms()));
      break;
    default:
      break;
  }
}

void Master::start_upgrade() {
  if (policy_.stopping() || upgrade_pid_ != 0) return;
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
  w.key("workers_target").value(policy_.target());
  w.key("stopping").value(policy_.stopping());
  w.key("upgrading").value(upgrade_pid_ != 0);
  w.key("generation").value(generation_);
  w.key("version").value(config_.service_version);
  w.key("role").value(parked_ ? "parked" : candidate_ ? "candidate" : "primary");
  if (parked_) w.key("parked_for_s").value(static_cast<double>(park_deadline_ms_ - now) / 1000.0);
  w.key("crashes").value(static_cast<std::uint64_t>(policy_.crashes()));
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
  for (const auto& [pid, worker] : policy_.workers()) {
    const WorkerSlot& slot = *slots_.at(pid);
    const int state = static_cast<int>(slot.get_state());
    w.begin_object();
    w.key("id").value(worker.id);
    w.key("pid").value(static_cast<std::int64_t>(pid));
    w.key("state").value(state >= 0 && state <= 4 ? kStates[state] : "unknown");
    w.key("age_s").value(static_cast<double>(now - worker.started_ms) / 1000.0);
    w.key("requests").value(static_cast<std::uint64_t>(slot.requests.load(std::memory_order_relaxed)));
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
    if (control_fd_ < 0 || policy_.stopping()) return;  // the command moved or closed the socket
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
  if (policy_.stopping()) return control_error("the master is stopping");
  if (cmd == "scale") {
    if (!j.contains("workers") || !j["workers"].is_number_integer() || j["workers"].get<std::int64_t>() < 1 ||
        j["workers"].get<std::int64_t>() > 4096)
      return control_error("scale: \"workers\" must be an integer >= 1");
    if (parked_) return control_error("scale: the master is parked (unpark first)");
    execute(policy_.scale_to(j["workers"].get<int>(), steady_ms()));
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
               {{"generation", generation_}, {"version", config_.service_version}, {"workers", policy_.target()}});
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
  if (!parked_) parked_target_ = policy_.target();
  parked_ = true;
  park_deadline_ms_ = steady_ms() + window_ms;
  execute(policy_.park());
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
  execute(policy_.unpark(parked_target_, now));
  log::write(log::Level::kInfo, "keel.master", "generation_unparked",
             {{"generation", generation_}, {"workers", policy_.target()}});
}

std::string Master::stats_json() const {
  int ready = 0;
  for (const auto& [pid, w] : policy_.workers()) {
    const WorkerState state = slots_.at(pid)->get_state();
    if (w.reason == ExitReason::kNone && (state == WorkerState::kReady || state == WorkerState::kRetiring)) ++ready;
  }
  JsonWriter w;
  w.begin_object();
  w.key("generation").value(generation_);
  w.key("version").value(config_.service_version);
  w.key("workers_target").value(policy_.target());
  w.key("workers_ready").value(ready);
  w.key("crashes").value(static_cast<std::uint64_t>(policy_.crashes()));
  w.key("stopping").value(policy_.stopping());
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
  if (reload_at_ms_ != 0 && steady_ms() >= reload_at_ms_ && upgrade_pid_ == 0 && policy_.booted()) {
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
  execute(policy_.start());
  log::write(log::Level::kInfo, "keel.master", "workers_started", {{"workers", policy_.target()}});
  watch_for_reload();

  for (;;) {
    reap();
    if (policy_.stopping() && policy_.workers().empty()) break;
    execute(policy_.stop_overdue(steady_ms()));
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
