// The pre-fork master's decisions, apart from fork, kill and waitpid: which worker ids start (now
// or after a crash-loop backoff), which worker gets which signal and why (--timeout: SIGABRT then
// SIGKILL; recycling; scale-down; shutdown, then SIGKILL past the graceful timeout), when a
// replacement takes over from the worker it replaces, and when the service gives up (a worker
// that cannot boot: exit code 3). The master (prefork.cpp) tells it what it observes — workers it
// forked and reaped, their state, heartbeat and RSS, the operator's signals, the time — and
// carries out the actions it returns, in order. No system call and no clock here: the unit tests
// (tests/process/supervisor_policy_test.cpp) drive it with made-up pids and times.
#pragma once

#include <sys/types.h>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <vector>

#include "process/worker_table.hpp"

namespace keel::process {

inline constexpr int kBootFailure = 3;                    // a worker that cannot start: do not respawn forever
inline constexpr std::int64_t kAbortGraceMs = 2000;       // SIGABRT -> SIGKILL
inline constexpr std::int64_t kReadyDeadlineMs = 30'000;  // a replacement must be ready by then
inline constexpr std::int64_t kMaxBackoffMs = 10'000;     // the crash-loop backoff's cap
inline constexpr std::int64_t kMemoryCheckMs = 1000;      // --max-worker-memory: RSS read this often

// Why the master ended (or is ending) a worker; kNone: it was not asked to go.
enum class ExitReason { kNone, kTimeout, kRecycled, kScaledDown, kReplaced, kShutdown };

// The reason a reaped worker is logged, counted (keel_worker_restarts_total) and reported to the
// worker_exit hook with. `status` is waitpid's; boot_failed: exit code 3 before it was ready.
const char* reason_name(ExitReason r, int status, bool boot_failed);

// The policy's record of one worker process.
struct SupervisedWorker {
  int id = 0;
  std::int64_t started_ms = 0;
  std::uint64_t max_requests = 0;  // its --max-requests with the jitter drawn (0: never)
  ExitReason reason = ExitReason::kNone;
  std::int64_t abort_sent_ms = 0;  // SIGABRT sent (timeout)
  bool kill_sent = false;
  bool was_ready = false;
  pid_t replaced_by = 0;  // a replacement is booting for this worker
  pid_t replaces = 0;     // this worker is the replacement of that one
};

// One thing for the master to do. Spawn and Signal act on processes; the other kinds are
// announcements (a log line, sd_notify, a hook, an observer) with the number in `value`.
struct Action {
  enum class Kind {
    kSpawn,          // fork worker `worker_id` with `max_requests`; when `pid` != 0, as the replacement of that worker
    kSignal,         // send `signal` to `pid` (worker `worker_id`)
    kTargetChanged,  // the worker target is now `value` (metrics)
    kScaleUp,        // one more worker wanted: the target is now `value`
    kScaleDown,      // one worker fewer wanted: the target is now `value`
    kWorkersReady,   // every worker served for the first time (`value` workers)
    kRollingRestartLastWorker,  // the HUP roll started its last replacement
    kRollingRestartDone,        // ... and that replacement took over
    kStopOverdue,               // the stop's deadline passed with `value` workers left: they get SIGKILL
  };
  // Why a spawn or a signal (the master's log line depends on it).
  enum class Cause {
    kNone,
    kStart,             // spawn: the first workers
    kRespawn,           // spawn: a refill (after a backoff), a scale-up, an unpark
    kRecycleRequested,  // spawn: replacing a worker that asks for it (--max-requests)
    kRecycleLifetime,   // spawn: replacing a worker older than --max-worker-lifetime
    kRecycleMemory,     // spawn: replacing a worker whose RSS (`value`) passed --max-worker-memory
    kRollingRestart,    // spawn: replacing a worker on HUP
    kTimeout,           // SIGABRT: the worker's loop was silent for `value` ms
    kAbortIgnored,      // SIGKILL: still there kAbortGraceMs after the SIGABRT
    kNotReady,          // SIGKILL: a replacement not ready after kReadyDeadlineMs
    kReplacementReady,  // SIGTERM: the worker's replacement serves
    kScaleDown,         // SIGTERM: scale-down or park
    kStopService,       // SIGTERM with kStopServiceSignalValue: the whole service stops
    kStop,              // SIGTERM/SIGINT: this master's workers stop (fast, or after a hand-over)
    kStopOverdue,       // SIGKILL: past the stop's deadline
  };

  Kind kind = Kind::kSpawn;
  Cause cause = Cause::kNone;
  pid_t pid = 0;
  int worker_id = -1;
  int signal = 0;
  std::uint64_t max_requests = 0;
  std::int64_t value = 0;

  // For a replacement spawn: the reason the replaced worker goes.
  [[nodiscard]] ExitReason replacement_reason() const noexcept {
    return cause == Cause::kRollingRestart ? ExitReason::kReplaced : ExitReason::kRecycled;
  }
  friend bool operator==(const Action&, const Action&) = default;
};
using Actions = std::vector<Action>;

// What the master reads about a live worker during a round (its shared-memory slot, /proc).
class WorkerProbe {
 public:
  virtual ~WorkerProbe() = default;
  [[nodiscard]] virtual WorkerState state(pid_t pid) const = 0;
  [[nodiscard]] virtual std::int64_t heartbeat_ms(pid_t pid) const = 0;
  [[nodiscard]] virtual std::uint64_t rss_bytes(pid_t pid) const = 0;  // only with --max-worker-memory
};

// A reaped worker: what to log, and what follows.
struct WorkerExit {
  SupervisedWorker worker;  // its record
  std::int64_t age_ms = 0;
  bool boot_failed = false;                // exit code 3 before it was ready
  const char* reason = "";                 // reason_name()
  bool expected = false;                   // asked for: logged at info, not counted as a crash
  std::size_t rolling_aborted = 0;         // a replacement died before serving: the HUP roll stops, this many left
  std::optional<int> exit_code;            // a worker could not boot before the service ever served: stop with it
  std::optional<std::int64_t> respawn_at;  // when its id starts again (nullopt: not refilled)
};

class SupervisorPolicy {
 public:
  // The supervisor's part of SupervisorConfig.
  struct Config {
    int workers = 1;
    std::chrono::milliseconds timeout{30000};           // a worker's loop silent this long: SIGABRT (0: off)
    std::chrono::milliseconds graceful_timeout{30000};  // drain bound of a worker
    std::chrono::milliseconds shutdown_delay{0};        // serving after SIGTERM, before the drain
    std::uint64_t max_requests = 0;                     // recycle a worker after this many (0: never)
    std::uint64_t max_requests_jitter = 0;              // + random [0, jitter]
    std::chrono::milliseconds max_worker_lifetime{0};   // recycle when older (0: never)
    std::uint64_t max_worker_memory = 0;                // recycle above this RSS (0: never)
  };
  // The most workers scaling allows (half the shared-memory slots: room for the replacements).
  static constexpr int kMaxWorkers = static_cast<int>(WorkerTable::kSlots) / 2;

  // seed: the --max-requests-jitter draws.
  SupervisorPolicy(const Config& config, std::uint64_t seed);

  // HUP: a re-read configuration, for what is decided from now on.
  void set_config(const Config& config) { config_ = config; }

  // The first workers: ids 0 .. workers-1.
  Actions start();
  // The master forked `spawn` (a kSpawn action) as `pid` at `now`. Not called when the fork
  // failed: a replaced worker then stays as it was, a respawned id is not tried again.
  void spawned(const Action& spawn, pid_t pid, std::int64_t now);
  // waitpid reported `pid` with `status` at `now`; nullopt when it is not one of the workers.
  std::optional<WorkerExit> exited(pid_t pid, int status, std::int64_t now);

  // A supervision round, in two parts. The workers: replacements that became ready (the worker
  // they replace goes), replacements never ready, --timeout, recycling; the first time all are
  // ready. Then, after the master's own checks, the starts that are due: the HUP roll's next
  // replacement, one at a time, and the respawns and scale-ups whose time has come.
  Actions check_workers(std::int64_t now, const WorkerProbe& probe);
  Actions start_due(std::int64_t now);

  // TTIN/TTOU, the control socket's scale, HUP with another worker count. Up: the next ids
  // start at once; down: the highest live id gets SIGTERM and is not refilled.
  Actions scale_to(int workers, std::int64_t now);
  // HUP: replace every serving worker, one at a time. Returns how many.
  std::size_t start_rolling_restart();

  // Stops the service (graceful: SIGTERM and a drain bounded by the graceful timeout; fast:
  // SIGINT, 5 s). whole_service: the listening sockets close for good (not after a hand-over),
  // which a graceful stop tells the workers with kStopServiceSignalValue. Again while stopping
  // (a second TERM, INT) it escalates and only moves the deadline earlier.
  Actions stop(bool graceful, bool whole_service, std::int64_t now);
  // Past the stop's deadline: SIGKILL to every worker left (once).
  Actions stop_overdue(std::int64_t now);

  // Blue-green: no workers (each gets SIGTERM, none refilled) until unpark brings `workers` back.
  Actions park();
  Actions unpark(int workers, std::int64_t now);

  [[nodiscard]] const std::map<pid_t, SupervisedWorker>& workers() const noexcept { return workers_; }
  [[nodiscard]] int target() const noexcept { return target_; }
  [[nodiscard]] bool stopping() const noexcept { return stopping_; }
  [[nodiscard]] bool booted() const noexcept { return booted_; }             // every initial worker was ready once
  [[nodiscard]] std::uint64_t crashes() const noexcept { return crashes_; }  // exits nobody asked for
  [[nodiscard]] std::size_t rolling_left() const noexcept { return rolling_.size(); }
  [[nodiscard]] std::optional<std::int64_t> respawn_at(int id) const;
  [[nodiscard]] std::int64_t stop_deadline_ms() const noexcept { return stop_deadline_ms_; }

 private:
  Action spawn_action(int id, Action::Cause cause, pid_t replaces = 0);
  int highest_live_id() const;
  bool replacement_pending() const;

  Config config_;
  std::map<pid_t, SupervisedWorker> workers_;
  std::map<int, int> crash_streak_;         // id -> consecutive failures
  std::map<int, std::int64_t> respawn_at_;  // id -> when to start it again
  std::vector<pid_t> rolling_;              // HUP: workers still to replace, in order
  int target_;
  bool stopping_ = false;
  bool booted_ = false;
  bool reloading_ = false;  // a HUP roll is under way
  std::int64_t stop_deadline_ms_ = INT64_MAX;
  std::int64_t last_memory_check_ms_ = 0;
  std::uint64_t crashes_ = 0;
  std::mt19937_64 rng_;
};

}  // namespace keel::process
