#include "process/prefork.hpp"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <thread>

#include "log/log.hpp"

namespace keel::process {
namespace {

constexpr int kBootFailure = 3;  // a worker that cannot start: do not respawn forever

pid_t spawn(const std::vector<net::Listener>& listeners, int id,
            const std::function<int(std::vector<net::Listener>, int)>& worker_main) {
  const pid_t pid = ::fork();
  if (pid != 0) return pid;
  // Child: die with the master, unblock signals the master blocked, run the worker.
  ::prctl(PR_SET_PDEATHSIG, SIGTERM);
  sigset_t all;
  sigfillset(&all);
  ::sigprocmask(SIG_UNBLOCK, &all, nullptr);
  log::set_worker_id(id);
  int code = 0;
  try {
    code = worker_main(listeners, id);
  } catch (const std::exception& e) {
    log::write(log::Level::kCritical, "keel.worker", "worker_failed", {{"error", e.what()}});
    code = kBootFailure;
  }
  std::_Exit(code);
}

}  // namespace

int run(const ServerOptions& options, std::vector<net::Listener> listeners,
        const std::function<int(std::vector<net::Listener>, int)>& worker_main) {
  if (options.workers <= 1) return worker_main(std::move(listeners), 0);

  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGQUIT, SIGHUP}) sigaddset(&set, s);
  ::sigprocmask(SIG_BLOCK, &set, nullptr);

  std::map<pid_t, int> workers;  // pid -> worker id
  for (int id = 0; id < options.workers; ++id) workers[spawn(listeners, id, worker_main)] = id;
  log::write(log::Level::kInfo, "keel.master", "workers_started", {{"workers", options.workers}});

  bool stopping = false;
  int exit_code = 0;
  auto stop_deadline = std::chrono::steady_clock::time_point::max();
  auto signal_all = [&](int sig) {
    for (const auto& [pid, id] : workers) ::kill(pid, sig);
  };
  for (;;) {
    // Reap everything that exited.
    for (;;) {
      int status = 0;
      const pid_t pid = ::waitpid(-1, &status, WNOHANG);
      if (pid <= 0) break;
      const auto it = workers.find(pid);
      if (it == workers.end()) continue;
      const int id = it->second;
      workers.erase(it);
      const bool crashed = WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) != 0);
      if (stopping) continue;
      if (WIFEXITED(status) && WEXITSTATUS(status) == kBootFailure) {
        log::write(log::Level::kCritical, "keel.master", "worker_boot_failed",
                   {{"worker_pid", static_cast<std::int64_t>(pid)}, {"worker_id", id}});
        stopping = true;
        exit_code = kBootFailure;
        signal_all(SIGTERM);
        stop_deadline = std::chrono::steady_clock::now() + options.graceful_timeout;
        continue;
      }
      log::write(log::Level::kWarning, "keel.master", "worker_exited",
                 {{"worker_pid", static_cast<std::int64_t>(pid)},
                  {"worker_id", id},
                  {"exit_code", WIFEXITED(status) ? WEXITSTATUS(status) : -1},
                  {"signal", WIFSIGNALED(status) ? WTERMSIG(status) : 0},
                  {"reason", crashed ? "crashed" : "exited"}});
      // Brief pause so a crash loop does not spin the CPU.
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      workers[spawn(listeners, id, worker_main)] = id;
    }
    if (stopping && workers.empty()) break;
    if (stopping && std::chrono::steady_clock::now() >= stop_deadline) {
      log::write(log::Level::kWarning, "keel.master", "workers_killed", {{"remaining", workers.size()}});
      signal_all(SIGKILL);
      stop_deadline = std::chrono::steady_clock::time_point::max();
    }
    timespec timeout{0, 200 * 1000 * 1000};
    siginfo_t info{};
    const int sig = ::sigtimedwait(&set, &info, &timeout);
    if (sig == SIGTERM || sig == SIGINT || sig == SIGQUIT) {
      const bool graceful = sig == SIGTERM && !stopping;
      log::write(log::Level::kInfo, "keel.master", graceful ? "graceful_shutdown" : "fast_shutdown", {{"signal", sig}});
      stopping = true;
      signal_all(graceful ? SIGTERM : SIGINT);
      for (auto& l : listeners) {
        if (l.fd >= 0) ::close(l.fd);
        l.fd = -1;
      }
      const auto grace = graceful ? options.graceful_timeout + std::chrono::seconds(1) : std::chrono::seconds(5);
      stop_deadline = std::chrono::steady_clock::now() + grace;
    }
  }
  log::write(log::Level::kInfo, "keel.master", "stopped", {{"exit_code", exit_code}});
  return exit_code;
}

}  // namespace keel::process
