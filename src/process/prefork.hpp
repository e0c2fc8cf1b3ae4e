// Pre-fork supervision: the master (which never serves requests) forks the workers onto the
// listeners it bound, watches their heartbeats in shared memory (--timeout: SIGABRT, stack trace,
// SIGKILL), replaces workers that die (exponential backoff on crash loops, exit 3 when a worker
// cannot boot), recycles them (--max-requests[-jitter], --max-worker-lifetime,
// --max-worker-memory) with the replacement ready before the old one stops, rolls all workers on
// SIGHUP, scales on SIGTTIN/SIGTTOU, and forwards shutdown signals.
#pragma once

#include <chrono>

#include <sys/types.h>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "keel/lifecycle.hpp"
#include "net/listener.hpp"
#include "process/supervisor_policy.hpp"
#include "process/worker_table.hpp"

namespace keel::process {

// The command line to re-execute on SIGUSR2 (binary upgrade). argv[0] is kept as given (made
// absolute against the current directory when relative), not resolved, so that a deploy that
// swaps a symlink or replaces the file is picked up.
void set_command_line(int argc, char** argv);

// Environment variables of the upgrade hand-over: the listening descriptors passed to the new
// master ("3,4") and the pid of the old master, which the new one stops once its workers serve.
inline constexpr const char* kListenFdsEnv = "KEEL_LISTEN_FDS";
inline constexpr const char* kUpgradeFromEnv = "KEEL_UPGRADE_FROM";
// A new generation started by `upgrade` (canary, blue-green, rolling) beside the running one: its
// number (the first master is generation 1). Such a master's workers accept only once their
// readiness checks pass, and it writes the pid file only when promoted.
inline constexpr const char* kGenerationEnv = "KEEL_GENERATION";
// --reload: the write end of the foreground supervisor's pipe; every master under it announces
// its pid there, so the supervisor knows whom to pass signals to after a re-execution.
inline constexpr const char* kSupervisorFdEnv = "KEEL_SUPERVISOR_FD";

// This process's generation (1 unless started by `upgrade`); read once from the environment.
int generation();
// True for the workers and master of a generation that `upgrade` started and has not promoted:
// workers gate accepting on readiness.
bool is_candidate_generation();

// One request over a master's control socket: sends `request` (a JSON object, one line) and
// returns the answer, or nullopt with `error` set when no master answers. The listening peer
// (SO_PEERCRED) must be our user or root, and expected_pid when it is > 0 (a generation's master
// whose pid we were told); else nothing is sent and *refused (when given) is set.
std::optional<std::string> control_request(const std::string& control_socket, const std::string& request,
                                           std::string& error, int timeout_ms = 3000, pid_t expected_pid = 0,
                                           bool* refused = nullptr);

// True when this process handed its listeners to a new master (its unix socket files are the new
// master's now and must stay).
bool listeners_handed_over();

// `<binary> status`: asks the master at control_socket for its workers and prints them (a table,
// or the JSON with as_json). Returns 0, or 1 with a message when no master answers.
int print_status(const std::string& control_socket, bool as_json);

// worker_main(listeners, worker_id, slot, max_requests) runs one worker's server; slot is null
// and max_requests 0 when there is no master.
using WorkerMain = std::function<int(std::vector<net::Listener>, int, WorkerSlot*, std::uint64_t)>;

// What the supervisor reads from the configuration: filled from ServerOptions by the composition
// root (app/), so the process model does not depend on the application's settings. The policy's
// part (workers, timeouts, recycling) is its base: the master hands it to SupervisorPolicy as is.
struct SupervisorConfig : SupervisorPolicy::Config {
  std::string pid_file;
  std::string control_socket;
  std::string service_version;
  bool reload = false;                          // --reload: re-exec when the binary or a file changes
  std::vector<std::string> reload_extra_files;  // more files --reload watches
  std::vector<std::string> config_files;        // the configuration files read (--reload watches them)
};

// Re-reads the configuration (HUP): the supervisor's part of the new one, or nullopt when it was
// rejected (the old one stays). The workers forked afterwards see the whole new configuration.
using ReloadConfig = std::function<std::optional<SupervisorConfig>()>;

// What observability learns from supervision (per-worker metric regions, restart counts). The
// slot index identifies a worker's shared-memory slot; it is reused after the worker is reaped.
struct SupervisionObserver {
  std::function<void(std::size_t slot_index, int worker_id)> worker_forked;            // in the new worker
  std::function<void(std::size_t slot_index, std::string_view reason)> worker_reaped;  // in the master
  std::function<void(int workers)> target_changed;                                     // in the master
  std::function<void()> tick;  // in the master, every supervision round (~100 ms)
  // In the master: this generation's request counts and latency histogram as a JSON object
  // (`upgrade` compares generations with it); empty when there are no metrics.
  std::function<std::string()> generation_stats;
  // In the master, before it starts another master (USR2, `upgrade`): descriptors the new master
  // inherits, each announced in the named environment variable (the metrics arenas).
  std::function<std::vector<std::pair<std::string, int>>()> handover_fds;
  // In the master: another generation's master ended — one this master started (reaped here) or
  // the one that started this master (it was our parent).
  std::function<void()> generation_ended;
};

// Runs the workers under a master, or serves in this process when there is a single worker and
// nothing to recycle. Returns the exit code for the whole service.
int run(const SupervisorConfig& config, std::vector<net::Listener> listeners, const WorkerMain& worker_main,
        const LifecycleHooks& hooks, const ReloadConfig& reload_config = {}, const SupervisionObserver& observer = {});

}  // namespace keel::process
