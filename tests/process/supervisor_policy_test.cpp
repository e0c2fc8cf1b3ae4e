// The pre-fork master's decisions without fork: made-up pids and times go in, the actions the
// master would carry out come out (which worker id to fork and when, which pid gets which
// signal, when the service gives up). tests/process/test_supervisor.py checks the same behaviour
// with real processes and real time.
#include "process/supervisor_policy.hpp"

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>

#include <map>
#include <ostream>
#include <set>
#include <vector>

namespace keel::process {

// gtest names an action in a failure message with this.
void PrintTo(const Action& a, std::ostream* os) {
  static constexpr const char* kKinds[] = {"spawn",        "signal",       "target_changed",
                                           "scale_up",     "scale_down",   "workers_ready",
                                           "rolling_last", "rolling_done", "stop_overdue"};
  *os << "{" << kKinds[static_cast<int>(a.kind)] << " cause=" << static_cast<int>(a.cause) << " pid=" << a.pid
      << " id=" << a.worker_id << " signal=" << a.signal << " max_requests=" << a.max_requests << " value=" << a.value
      << "}";
}

namespace {

using Kind = Action::Kind;
using Cause = Action::Cause;

constexpr std::int64_t kT0 = 1'000'000;  // ms on the made-up steady clock

// waitpid statuses.
int exited_with(int code) {
  return (code & 0xff) << 8;
}
int killed_by(int sig) {
  return sig;
}

Action spawn(int id, Cause cause, pid_t replaces = 0, std::uint64_t max_requests = 0, std::int64_t value = 0) {
  Action a;
  a.kind = Kind::kSpawn;
  a.cause = cause;
  a.pid = replaces;
  a.worker_id = id;
  a.max_requests = max_requests;
  a.value = value;
  return a;
}

Action signal(pid_t pid, int id, int sig, Cause cause, std::int64_t value = 0) {
  Action a;
  a.kind = Kind::kSignal;
  a.cause = cause;
  a.pid = pid;
  a.worker_id = id;
  a.signal = sig;
  a.value = value;
  return a;
}

Action note(Kind kind, std::int64_t value = 0) {
  Action a;
  a.kind = kind;
  a.value = value;
  return a;
}

class FakeProbe final : public WorkerProbe {
 public:
  [[nodiscard]] WorkerState state(pid_t pid) const override { return states.at(pid); }
  [[nodiscard]] std::int64_t heartbeat_ms(pid_t pid) const override { return heartbeats.at(pid); }
  [[nodiscard]] std::uint64_t rss_bytes(pid_t pid) const override {
    rss_reads.push_back(pid);
    const auto it = rss.find(pid);
    return it == rss.end() ? 0 : it->second;
  }

  std::map<pid_t, WorkerState> states;
  std::map<pid_t, std::int64_t> heartbeats;
  std::map<pid_t, std::uint64_t> rss;
  mutable std::vector<pid_t> rss_reads;
};

SupervisorPolicy::Config config(int workers) {
  SupervisorPolicy::Config c;
  c.workers = workers;
  c.timeout = std::chrono::milliseconds(0);  // off unless a test turns it on
  c.graceful_timeout = std::chrono::milliseconds(30'000);
  return c;
}

// Drives the policy as the master does: every spawn it asks for is forked at once as pid 101,
// 102, ... (booting, heartbeat at the fork), and a round is check_workers then start_due.
class Supervision {
 public:
  explicit Supervision(const SupervisorPolicy::Config& c, std::uint64_t seed = 1) : policy(c, seed) {}

  Actions carry_out(Actions actions, std::int64_t now) {
    for (const Action& a : actions) {
      if (a.kind != Kind::kSpawn) continue;
      const pid_t pid = next_pid++;
      policy.spawned(a, pid, now);
      probe.states[pid] = WorkerState::kBooting;
      probe.heartbeats[pid] = now;
      forked.push_back(pid);
    }
    return actions;
  }
  Actions start(std::int64_t now) { return carry_out(policy.start(), now); }
  Actions round(std::int64_t now) {
    Actions out = carry_out(policy.check_workers(now, probe), now);
    const Actions due = carry_out(policy.start_due(now), now);
    out.insert(out.end(), due.begin(), due.end());
    return out;
  }
  // Every worker reports `state` and beats at `now`.
  void all(WorkerState state, std::int64_t now) {
    for (const auto& [pid, w] : policy.workers()) {
      probe.states[pid] = state;
      probe.heartbeats[pid] = now;
    }
  }
  // Starts `workers` and brings them all to ready (booted).
  void boot(std::int64_t now) {
    start(now);
    all(WorkerState::kReady, now);
    round(now);
    ASSERT_TRUE(policy.booted());
  }
  WorkerExit exit(pid_t pid, int status, std::int64_t now) {
    auto e = policy.exited(pid, status, now);
    EXPECT_TRUE(e.has_value()) << "pid " << pid << " is not a worker";
    probe.states.erase(pid);
    return e.value_or(WorkerExit{});
  }
  // The serving worker with this id (not a replacement being started for it).
  pid_t pid_of(int id) const {
    for (const auto& [pid, w] : policy.workers())
      if (w.id == id && w.replaces == 0) return pid;
    ADD_FAILURE() << "no worker " << id;
    return 0;
  }

  SupervisorPolicy policy;
  FakeProbe probe;
  pid_t next_pid = 101;
  std::vector<pid_t> forked;
};

// --- start ---------------------------------------------------------------------------------

TEST(SupervisorPolicy, StartAnnouncesTheTargetAndSpawnsIdsZeroToN) {
  SupervisorPolicy p(config(3), 1);
  EXPECT_EQ(p.start(), (Actions{note(Kind::kTargetChanged, 3), spawn(0, Cause::kStart), spawn(1, Cause::kStart),
                                spawn(2, Cause::kStart)}));
  EXPECT_EQ(p.target(), 3);
  EXPECT_FALSE(p.booted());
}

TEST(SupervisorPolicy, MaxRequestsJitterIsDrawnPerWorkerWithinItsBounds) {
  auto c = config(1);
  c.max_requests = 1000;
  c.max_requests_jitter = 50;
  Supervision s(c);
  s.boot(kT0);
  s.policy.scale_to(200, kT0);
  const Actions spawns = s.round(kT0);
  ASSERT_EQ(spawns.size(), 199u);
  std::set<std::uint64_t> seen;
  for (const Action& a : spawns) {
    ASSERT_EQ(a.kind, Kind::kSpawn);
    EXPECT_GE(a.max_requests, 1000u);
    EXPECT_LE(a.max_requests, 1050u);
    seen.insert(a.max_requests);
    EXPECT_EQ(s.policy.workers().at(s.pid_of(a.worker_id)).max_requests, a.max_requests);
  }
  EXPECT_GT(seen.size(), 10u);  // drawn, not one value for all

  c.max_requests_jitter = 0;
  EXPECT_EQ(SupervisorPolicy(c, 1).start().at(1).max_requests, 1000u);
  c.max_requests = 0;  // no recycling: the jitter adds nothing
  c.max_requests_jitter = 50;
  EXPECT_EQ(SupervisorPolicy(c, 1).start().at(1).max_requests, 0u);
}

TEST(SupervisorPolicy, WorkersReadyOnceWhenEveryWorkerServes) {
  Supervision s(config(2));
  s.start(kT0);
  EXPECT_EQ(s.round(kT0 + 100), Actions{});
  s.probe.states[101] = WorkerState::kReady;
  EXPECT_EQ(s.round(kT0 + 200), Actions{});  // 102 still boots
  s.probe.states[102] = WorkerState::kReady;
  EXPECT_EQ(s.round(kT0 + 300), (Actions{note(Kind::kWorkersReady, 2)}));
  EXPECT_TRUE(s.policy.booted());
  s.all(WorkerState::kReady, kT0 + 400);
  EXPECT_EQ(s.round(kT0 + 400), Actions{});  // once
}

// --- --timeout ------------------------------------------------------------------------------

TEST(SupervisorPolicy, SilentWorkerGetsSigabrtThenSigkillAfterTheGrace) {
  auto c = config(2);
  c.timeout = std::chrono::milliseconds(1000);
  Supervision s(c);
  s.boot(kT0);
  s.probe.heartbeats[102] = kT0 + 100'000;  // 102 keeps beating
  EXPECT_EQ(s.round(kT0 + 1000), Actions{}) << "silent for exactly --timeout: not yet";
  EXPECT_EQ(s.round(kT0 + 1001), (Actions{signal(101, 0, SIGABRT, Cause::kTimeout, 1001)}));
  EXPECT_EQ(s.policy.workers().at(101).reason, ExitReason::kTimeout);
  EXPECT_EQ(s.round(kT0 + 1001 + kAbortGraceMs), Actions{}) << "SIGABRT once, SIGKILL only after the grace";
  EXPECT_EQ(s.round(kT0 + 1002 + kAbortGraceMs), (Actions{signal(101, 0, SIGKILL, Cause::kAbortIgnored)}));
  EXPECT_EQ(s.round(kT0 + 9000), Actions{}) << "SIGKILL once";

  const WorkerExit e = s.exit(101, killed_by(SIGKILL), kT0 + 9100);
  EXPECT_STREQ(e.reason, "timeout");
  EXPECT_FALSE(e.expected);
  EXPECT_EQ(s.policy.crashes(), 1u);
  EXPECT_EQ(e.respawn_at, kT0 + 9100) << "it had served: back at once";
  EXPECT_EQ(s.round(kT0 + 9100), (Actions{spawn(0, Cause::kRespawn)}));
}

TEST(SupervisorPolicy, SilentWorkerDiesOfItsSigabrtWithoutTheSigkill) {
  auto c = config(1);
  c.timeout = std::chrono::milliseconds(500);
  Supervision s(c);
  s.boot(kT0);
  EXPECT_EQ(s.round(kT0 + 600), (Actions{signal(101, 0, SIGABRT, Cause::kTimeout, 600)}));
  const WorkerExit e = s.exit(101, killed_by(SIGABRT), kT0 + 700);
  EXPECT_STREQ(e.reason, "timeout");
  EXPECT_EQ(s.round(kT0 + 700), (Actions{spawn(0, Cause::kRespawn)}));
  s.probe.heartbeats[102] = kT0 + 5000;
  EXPECT_EQ(s.round(kT0 + 5000), Actions{}) << "the SIGKILL was the reaped worker's, not its id's";
}

TEST(SupervisorPolicy, NoTimeoutWhenOffForDrainingWorkersOrWhileStopping) {
  auto c = config(2);
  c.timeout = std::chrono::milliseconds(0);
  Supervision off(c);
  off.boot(kT0);
  EXPECT_EQ(off.round(kT0 + 3'600'000), Actions{});

  c.timeout = std::chrono::milliseconds(1000);
  Supervision s(c);
  s.boot(kT0);
  s.probe.states[101] = WorkerState::kDraining;  // finishing its requests: its loop may block on them
  s.probe.heartbeats[102] = kT0 + 10'000;
  EXPECT_EQ(s.round(kT0 + 5000), Actions{});
  s.policy.stop(true, true, kT0 + 5000);
  s.probe.states[101] = WorkerState::kReady;
  EXPECT_EQ(s.round(kT0 + 20'000), Actions{});
}

TEST(SupervisorPolicy, ABootLongerThanTheTimeoutWithoutHeartbeatIsAborted) {
  auto c = config(1);
  c.timeout = std::chrono::milliseconds(1000);
  Supervision s(c);
  s.start(kT0);  // heartbeat set when forked; booting
  EXPECT_EQ(s.round(kT0 + 1001), (Actions{signal(101, 0, SIGABRT, Cause::kTimeout, 1001)}));
}

// --- crash loops ----------------------------------------------------------------------------

TEST(SupervisorPolicy, CrashLoopBackoffDoublesFromHundredMsAndIsCapped) {
  Supervision s(config(1));
  s.start(kT0);
  std::int64_t now = kT0;
  const std::vector<std::int64_t> delays{100, 200, 400, 800, 1600, 3200, 6400, 10'000, 10'000, 10'000};
  for (std::size_t i = 0; i < delays.size(); ++i) {
    const pid_t pid = s.forked.back();
    now += 50;
    const WorkerExit e = s.exit(pid, exited_with(1), now);  // dies while booting
    EXPECT_STREQ(e.reason, "crashed");
    ASSERT_EQ(e.respawn_at, now + delays[i]) << "crash " << i + 1;
    EXPECT_EQ(s.policy.respawn_at(0), now + delays[i]);
    EXPECT_EQ(s.round(now + delays[i] - 1), Actions{}) << "not before the backoff";
    now += delays[i];
    EXPECT_EQ(s.round(now), (Actions{spawn(0, Cause::kRespawn)}));
  }
  EXPECT_EQ(s.policy.crashes(), delays.size());
}

TEST(SupervisorPolicy, CrashLoopBackoffResetsOnceAWorkerServed) {
  Supervision s(config(1));
  s.start(kT0);
  std::int64_t now = kT0;
  for (const std::int64_t delay : {100, 200, 400}) {
    s.exit(s.forked.back(), exited_with(1), now);
    now += delay;
    s.round(now);
  }
  // The fourth comes up and serves, then is killed from outside (OOM killer, an operator).
  s.probe.states[s.forked.back()] = WorkerState::kReady;
  s.round(now);
  now += 10;
  const WorkerExit killed = s.exit(s.forked.back(), killed_by(SIGKILL), now);
  EXPECT_STREQ(killed.reason, "killed_oom_suspected");
  EXPECT_EQ(killed.respawn_at, now) << "a worker that served comes back at once";
  s.round(now);
  const WorkerExit again = s.exit(s.forked.back(), exited_with(1), now + 10);
  EXPECT_EQ(again.respawn_at, now + 10 + 100) << "the streak starts over";
}

TEST(SupervisorPolicy, CrashLoopBackoffIsPerWorkerId) {
  Supervision s(config(2));
  s.start(kT0);
  for (int i = 0; i < 5; ++i) {  // id 0 crash-loops: 1.6 s by now
    s.exit(s.pid_of(0), exited_with(1), kT0 + 100'000 * i);
    s.round(kT0 + 100'000 * i + 20'000);
  }
  EXPECT_EQ(s.exit(102, exited_with(1), kT0 + 600'000).respawn_at, kT0 + 600'000 + 100) << "id 1's first crash";
  EXPECT_EQ(s.exit(s.pid_of(0), exited_with(1), kT0 + 600'000).respawn_at, kT0 + 600'000 + 3200);
}

// --- boot failures --------------------------------------------------------------------------

TEST(SupervisorPolicy, BootFailureBeforeTheServiceServedGivesUpWithExitCode3) {
  Supervision s(config(3));
  s.start(kT0);
  s.probe.states[101] = WorkerState::kReady;
  s.round(kT0 + 100);
  const WorkerExit e = s.exit(102, exited_with(kBootFailure), kT0 + 200);
  EXPECT_TRUE(e.boot_failed);
  EXPECT_STREQ(e.reason, "boot_failed");
  EXPECT_FALSE(e.expected);
  EXPECT_EQ(e.exit_code, kBootFailure);
  EXPECT_EQ(e.respawn_at, std::nullopt);
  EXPECT_EQ(s.policy.respawn_at(1), std::nullopt);
  // The master then stops the service gracefully; nothing starts again.
  EXPECT_EQ(s.policy.stop(true, true, kT0 + 200),
            (Actions{signal(101, 0, SIGTERM, Cause::kStopService), signal(103, 2, SIGTERM, Cause::kStopService)}));
  EXPECT_FALSE(s.exit(103, exited_with(kBootFailure), kT0 + 300).exit_code) << "given up once";
  s.probe.states[101] = WorkerState::kDraining;
  for (const Action& a : s.round(kT0 + 60'000)) EXPECT_NE(a.kind, Kind::kSpawn);
  EXPECT_EQ(s.policy.respawn_at(2), std::nullopt);
}

TEST(SupervisorPolicy, BootFailureAfterTheServiceServedBacksOffLikeACrash) {
  Supervision s(config(2));
  s.boot(kT0);
  s.exit(101, killed_by(SIGKILL), kT0 + 1000);
  s.round(kT0 + 1000);  // id 0 again, as 103
  const WorkerExit e = s.exit(103, exited_with(kBootFailure), kT0 + 1500);
  EXPECT_STREQ(e.reason, "boot_failed");
  EXPECT_FALSE(e.exit_code);
  EXPECT_EQ(e.respawn_at, kT0 + 1500 + 100);
}

TEST(SupervisorPolicy, ExitCode3AfterServingIsACrashNotABootFailure) {
  Supervision s(config(1));
  s.boot(kT0);
  const WorkerExit e = s.exit(101, exited_with(kBootFailure), kT0 + 1000);
  EXPECT_FALSE(e.boot_failed);
  EXPECT_STREQ(e.reason, "crashed");
  EXPECT_FALSE(e.exit_code);
  EXPECT_EQ(e.respawn_at, kT0 + 1000);
}

// --- exit reasons ---------------------------------------------------------------------------

TEST(SupervisorPolicy, ReasonNames) {
  EXPECT_STREQ(reason_name(ExitReason::kNone, exited_with(0), false), "exited");
  EXPECT_STREQ(reason_name(ExitReason::kNone, exited_with(1), false), "crashed");
  EXPECT_STREQ(reason_name(ExitReason::kNone, killed_by(SIGSEGV), false), "crashed");
  EXPECT_STREQ(reason_name(ExitReason::kNone, killed_by(SIGKILL), false), "killed_oom_suspected");
  EXPECT_STREQ(reason_name(ExitReason::kNone, exited_with(3), true), "boot_failed");
  // A reason the master gave wins over how the worker ended.
  EXPECT_STREQ(reason_name(ExitReason::kTimeout, killed_by(SIGKILL), false), "timeout");
  EXPECT_STREQ(reason_name(ExitReason::kRecycled, exited_with(1), false), "recycled");
  EXPECT_STREQ(reason_name(ExitReason::kScaledDown, exited_with(0), false), "scaled_down");
  EXPECT_STREQ(reason_name(ExitReason::kReplaced, exited_with(0), false), "rolling_restart");
  EXPECT_STREQ(reason_name(ExitReason::kShutdown, killed_by(SIGKILL), true), "shutdown");
}

TEST(SupervisorPolicy, UnaskedExitsCountAsCrashes) {
  Supervision s(config(3));
  s.boot(kT0);
  EXPECT_FALSE(s.exit(101, exited_with(0), kT0 + 1).expected);
  EXPECT_FALSE(s.exit(102, killed_by(SIGSEGV), kT0 + 2).expected);
  EXPECT_EQ(s.policy.crashes(), 2u);
  s.policy.scale_to(2, kT0 + 3);
  const WorkerExit scaled = s.exit(103, exited_with(0), kT0 + 4);
  EXPECT_STREQ(scaled.reason, "scaled_down");
  EXPECT_TRUE(scaled.expected);
  EXPECT_EQ(s.policy.crashes(), 2u);
  EXPECT_EQ(s.policy.exited(999, exited_with(0), kT0), std::nullopt) << "not a worker (another generation)";
}

// --- recycling ------------------------------------------------------------------------------

TEST(SupervisorPolicy, RetiringWorkerIsReplacedAndStopsOnlyOnceTheReplacementServes) {
  auto c = config(2);
  c.max_requests = 500;
  Supervision s(c);
  s.boot(kT0);
  s.probe.states[101] = WorkerState::kRetiring;  // reached its --max-requests
  EXPECT_EQ(s.round(kT0 + 100), (Actions{spawn(0, Cause::kRecycleRequested, 101, 500)}));
  EXPECT_EQ(s.policy.workers().at(101).replaced_by, 103);
  EXPECT_EQ(s.policy.workers().at(101).reason, ExitReason::kRecycled);
  EXPECT_EQ(s.policy.workers().at(103).replaces, 101);
  EXPECT_EQ(s.round(kT0 + 200), Actions{}) << "one replacement, and the old worker keeps serving meanwhile";
  s.probe.states[103] = WorkerState::kReady;
  EXPECT_EQ(s.round(kT0 + 300), (Actions{signal(101, 0, SIGTERM, Cause::kReplacementReady)}));
  EXPECT_EQ(s.round(kT0 + 400), Actions{});

  const WorkerExit e = s.exit(101, exited_with(0), kT0 + 500);
  EXPECT_STREQ(e.reason, "recycled");
  EXPECT_TRUE(e.expected);
  EXPECT_EQ(e.respawn_at, std::nullopt) << "its replacement is id 0 now";
  EXPECT_EQ(s.policy.workers().at(103).replaces, 0);
  EXPECT_EQ(s.policy.crashes(), 0u);
  EXPECT_EQ(s.round(kT0 + 600), Actions{});
}

TEST(SupervisorPolicy, RetiringWorkersAreEachReplacedInTheSameRound) {
  Supervision s(config(3));
  s.boot(kT0);
  s.all(WorkerState::kRetiring, kT0);
  EXPECT_EQ(s.round(kT0 + 100),
            (Actions{spawn(0, Cause::kRecycleRequested, 101), spawn(1, Cause::kRecycleRequested, 102),
                     spawn(2, Cause::kRecycleRequested, 103)}));
}

TEST(SupervisorPolicy, WorkerOlderThanMaxLifetimeIsReplaced) {
  auto c = config(1);
  c.max_worker_lifetime = std::chrono::milliseconds(60'000);
  Supervision s(c);
  s.start(kT0);
  EXPECT_EQ(s.round(kT0 + 70'000), Actions{}) << "booting: not recycled";
  s.all(WorkerState::kReady, kT0 + 70'000);
  EXPECT_EQ(s.round(kT0 + 70'000), (Actions{spawn(0, Cause::kRecycleLifetime, 101)})) << "ready and too old";
  Supervision t(c);
  t.boot(kT0);
  EXPECT_EQ(t.round(kT0 + 60'000), Actions{});
  EXPECT_EQ(t.round(kT0 + 60'001), (Actions{spawn(0, Cause::kRecycleLifetime, 101)}));
  EXPECT_EQ(t.round(kT0 + 60'002), Actions{});
}

TEST(SupervisorPolicy, WorkerAboveMaxMemoryIsReplacedCheckedOncePerSecond) {
  auto c = config(2);
  c.max_worker_memory = 100 << 20;
  Supervision s(c);
  s.start(kT0);
  s.probe.states[101] = WorkerState::kReady;
  s.probe.rss = {{101, 50 << 20}, {102, 500 << 20}};
  EXPECT_EQ(s.round(kT0), Actions{});
  EXPECT_EQ(s.probe.rss_reads, (std::vector<pid_t>{101})) << "a booting worker's RSS is not read";
  s.probe.states[102] = WorkerState::kReady;
  s.probe.rss[101] = 101 << 20;
  EXPECT_EQ(s.round(kT0 + 999), (Actions{note(Kind::kWorkersReady, 2)})) << "read once a second";
  EXPECT_EQ(s.probe.rss_reads.size(), 1u);
  EXPECT_EQ(s.round(kT0 + 1000), (Actions{spawn(0, Cause::kRecycleMemory, 101, 0, 101 << 20),
                                          spawn(1, Cause::kRecycleMemory, 102, 0, 500 << 20)}));
  s.probe.rss_reads.clear();
  EXPECT_EQ(s.round(kT0 + 2000), Actions{});
  EXPECT_EQ(s.probe.rss_reads, (std::vector<pid_t>{})) << "no RSS read for a worker already being replaced";
}

TEST(SupervisorPolicy, ReplacementNeverReadyIsKilledAndTheOldWorkerServesOn) {
  Supervision s(config(1));
  s.boot(kT0);
  s.probe.states[101] = WorkerState::kRetiring;
  s.round(kT0 + 100);  // replacement 102 boots
  EXPECT_EQ(s.round(kT0 + 100 + kReadyDeadlineMs), Actions{});
  EXPECT_EQ(s.round(kT0 + 101 + kReadyDeadlineMs), (Actions{signal(102, 0, SIGKILL, Cause::kNotReady)}));
  EXPECT_EQ(s.round(kT0 + 200 + kReadyDeadlineMs), Actions{}) << "SIGKILL once";
  const WorkerExit e = s.exit(102, killed_by(SIGKILL), kT0 + 300 + kReadyDeadlineMs);
  EXPECT_STREQ(e.reason, "killed_oom_suspected");
  EXPECT_EQ(e.respawn_at, std::nullopt) << "nothing to refill: the old worker still serves";
  EXPECT_EQ(e.rolling_aborted, 0u);
  EXPECT_EQ(s.policy.workers().at(101).reason, ExitReason::kNone);
  EXPECT_EQ(s.policy.workers().at(101).replaced_by, 0);
  // Still asking to be recycled: another replacement.
  EXPECT_EQ(s.round(kT0 + 400 + kReadyDeadlineMs), (Actions{spawn(0, Cause::kRecycleRequested, 101)}));
}

// --- HUP: rolling restart -------------------------------------------------------------------

TEST(SupervisorPolicy, RollingRestartReplacesOneWorkerAtATime) {
  Supervision s(config(3));
  s.boot(kT0);
  EXPECT_EQ(s.policy.start_rolling_restart(), 3u);
  std::int64_t now = kT0;
  const std::vector<pid_t> old{101, 102, 103};
  for (std::size_t i = 0; i < old.size(); ++i) {
    Actions expected{spawn(static_cast<int>(i), Cause::kRollingRestart, old[i])};
    if (i + 1 == old.size()) expected.push_back(note(Kind::kRollingRestartLastWorker));
    EXPECT_EQ(s.round(now += 100), expected) << "worker " << i;
    const pid_t fresh = s.forked.back();
    EXPECT_EQ(s.round(now += 100), Actions{}) << "the next waits while this replacement boots";
    s.probe.states[fresh] = WorkerState::kReady;
    EXPECT_EQ(s.round(now += 100), (Actions{signal(old[i], static_cast<int>(i), SIGTERM, Cause::kReplacementReady)}));
    EXPECT_EQ(s.round(now += 100), Actions{}) << "... and until the old one is gone";
    const WorkerExit e = s.exit(old[i], exited_with(0), now += 100);
    EXPECT_STREQ(e.reason, "rolling_restart");
    EXPECT_TRUE(e.expected);
  }
  EXPECT_EQ(s.round(now += 100), (Actions{note(Kind::kRollingRestartDone)}));
  EXPECT_EQ(s.round(now += 100), Actions{});
  EXPECT_EQ(s.policy.workers().size(), 3u);
}

TEST(SupervisorPolicy, RollingRestartLeavesOutWorkersAlreadyGoing) {
  Supervision s(config(3));
  s.boot(kT0);
  s.probe.states[102] = WorkerState::kRetiring;
  s.round(kT0 + 100);               // 104 replaces 102
  s.policy.scale_to(2, kT0 + 100);  // 103 (id 2) goes
  EXPECT_EQ(s.policy.start_rolling_restart(), 1u) << "only 101: 102 is being recycled, 103 scaled down, 104 new";
}

TEST(SupervisorPolicy, ReplacementDyingBeforeReadyAbortsTheRollingRestart) {
  Supervision s(config(3));
  s.boot(kT0);
  s.policy.start_rolling_restart();
  s.round(kT0 + 100);  // 104 replaces 101
  const WorkerExit e = s.exit(104, exited_with(1), kT0 + 200);
  EXPECT_STREQ(e.reason, "crashed");
  EXPECT_EQ(e.rolling_aborted, 2u);
  EXPECT_EQ(e.respawn_at, std::nullopt);
  EXPECT_EQ(s.policy.rolling_left(), 0u);
  EXPECT_EQ(s.policy.workers().at(101).reason, ExitReason::kNone);
  EXPECT_EQ(s.round(kT0 + 300), (Actions{note(Kind::kRollingRestartDone)})) << "nothing more is replaced";
}

// --- scaling --------------------------------------------------------------------------------

TEST(SupervisorPolicy, ScaleUpStartsTheNextIdsAtOnce) {
  Supervision s(config(2));
  s.boot(kT0);
  EXPECT_EQ(s.policy.scale_to(4, kT0 + 100),
            (Actions{note(Kind::kTargetChanged, 4), note(Kind::kScaleUp, 3), note(Kind::kScaleUp, 4)}));
  EXPECT_EQ(s.round(kT0 + 100), (Actions{spawn(2, Cause::kRespawn), spawn(3, Cause::kRespawn)}));
}

TEST(SupervisorPolicy, ScaleDownStopsTheHighestIdsForGood) {
  Supervision s(config(3));
  s.boot(kT0);
  EXPECT_EQ(
      s.policy.scale_to(1, kT0 + 100),
      (Actions{note(Kind::kTargetChanged, 1), note(Kind::kScaleDown, 2), signal(103, 2, SIGTERM, Cause::kScaleDown),
               note(Kind::kScaleDown, 1), signal(102, 1, SIGTERM, Cause::kScaleDown)}));
  EXPECT_STREQ(s.exit(103, exited_with(0), kT0 + 200).reason, "scaled_down");
  const WorkerExit e = s.exit(102, exited_with(0), kT0 + 200);
  EXPECT_EQ(e.respawn_at, std::nullopt);
  EXPECT_EQ(s.round(kT0 + 10'000), Actions{});
}

TEST(SupervisorPolicy, ScaleDownStopsTheServingWorkerNotItsReplacement) {
  Supervision s(config(2));
  s.boot(kT0);
  s.probe.states[102] = WorkerState::kRetiring;
  s.round(kT0 + 100);  // 103 replaces 102 (id 1)
  EXPECT_EQ(s.policy.scale_to(1, kT0 + 200), (Actions{note(Kind::kTargetChanged, 1), note(Kind::kScaleDown, 1),
                                                      signal(101, 0, SIGTERM, Cause::kScaleDown)}))
      << "102 is already going and 103 is a replacement: the highest live id is 0";
}

TEST(SupervisorPolicy, ScaleIsClampedAndNoChangeDoesNothing) {
  SupervisorPolicy p(config(2), 1);
  EXPECT_EQ(p.scale_to(2, kT0), Actions{});
  EXPECT_EQ(p.scale_to(0, kT0), (Actions{note(Kind::kTargetChanged, 1), note(Kind::kScaleDown, 1)}));
  EXPECT_EQ(p.scale_to(-5, kT0), Actions{});
  p.scale_to(100'000, kT0);
  EXPECT_EQ(p.target(), SupervisorPolicy::kMaxWorkers);
  EXPECT_EQ(SupervisorPolicy::kMaxWorkers, 512);
}

TEST(SupervisorPolicy, ScaleDownDropsAPendingRespawnAboveTheTarget) {
  Supervision s(config(3));
  s.start(kT0);
  s.exit(103, exited_with(1), kT0 + 10);  // id 2 crash-loops: back in 100 ms
  s.policy.scale_to(2, kT0 + 20);
  EXPECT_EQ(s.round(kT0 + 1000), Actions{}) << "id 2 is above the target now";
  EXPECT_EQ(s.policy.respawn_at(2), std::nullopt);
}

// --- stopping -------------------------------------------------------------------------------

TEST(SupervisorPolicy, GracefulStopThenSigkillPastTheGracefulTimeout) {
  auto c = config(2);
  c.shutdown_delay = std::chrono::milliseconds(5000);
  c.graceful_timeout = std::chrono::milliseconds(20'000);
  Supervision s(c);
  s.boot(kT0);
  EXPECT_EQ(s.policy.stop(true, true, kT0 + 100),
            (Actions{signal(101, 0, SIGTERM, Cause::kStopService), signal(102, 1, SIGTERM, Cause::kStopService)}));
  EXPECT_TRUE(s.policy.stopping());
  const std::int64_t deadline = kT0 + 100 + 5000 + 20'000 + 1000;  // delay + drain + 1 s
  EXPECT_EQ(s.policy.stop_deadline_ms(), deadline);
  const WorkerExit e = s.exit(101, exited_with(0), kT0 + 3000);
  EXPECT_STREQ(e.reason, "shutdown");
  EXPECT_TRUE(e.expected);
  EXPECT_EQ(e.respawn_at, std::nullopt);
  EXPECT_EQ(s.policy.stop_overdue(deadline - 1), Actions{});
  EXPECT_EQ(s.policy.stop_overdue(deadline),
            (Actions{note(Kind::kStopOverdue, 1), signal(102, 1, SIGKILL, Cause::kStopOverdue)}));
  EXPECT_EQ(s.policy.stop_overdue(deadline + 10'000), Actions{}) << "once";
}

TEST(SupervisorPolicy, StopAfterAHandOverFastStopAndEscalation) {
  Supervision s(config(2));
  s.boot(kT0);
  // Our listeners went to a new master: the workers retire with a plain SIGTERM.
  EXPECT_EQ(s.policy.stop(true, false, kT0),
            (Actions{signal(101, 0, SIGTERM, Cause::kStop), signal(102, 1, SIGTERM, Cause::kStop)}));
  EXPECT_EQ(s.policy.stop_deadline_ms(), kT0 + 30'000 + 1000);
  // A second TERM or an INT: SIGINT, and at most 5 s more.
  EXPECT_EQ(s.policy.stop(false, true, kT0 + 1000),
            (Actions{signal(101, 0, SIGINT, Cause::kStop), signal(102, 1, SIGINT, Cause::kStop)}));
  EXPECT_EQ(s.policy.stop_deadline_ms(), kT0 + 6000);
  s.policy.stop(false, true, kT0 + 20'000);
  EXPECT_EQ(s.policy.stop_deadline_ms(), kT0 + 6000) << "a later stop never moves the deadline back";
  EXPECT_EQ(s.policy.stop_overdue(kT0 + 6000).size(), 3u);
}

TEST(SupervisorPolicy, NothingStartsOrIsRecycledWhileStopping) {
  auto c = config(3);
  c.max_worker_lifetime = std::chrono::milliseconds(1000);
  Supervision s(c);
  s.boot(kT0);
  s.exit(101, killed_by(SIGKILL), kT0 + 10);  // due for a respawn at once
  s.policy.stop(true, true, kT0 + 20);
  EXPECT_EQ(s.policy.respawn_at(0), std::nullopt);
  s.probe.states[102] = WorkerState::kRetiring;
  EXPECT_EQ(s.round(kT0 + 5000), Actions{});
  EXPECT_EQ(s.exit(103, exited_with(1), kT0 + 6000).respawn_at, std::nullopt);
}

// --- blue-green parking ---------------------------------------------------------------------

TEST(SupervisorPolicy, ParkStopsEveryWorkerAndUnparkBringsThemBack) {
  Supervision s(config(2));
  s.boot(kT0);
  s.exit(102, killed_by(SIGKILL), kT0 + 10);  // id 1 due for a respawn
  EXPECT_EQ(s.policy.park(), (Actions{signal(101, 0, SIGTERM, Cause::kScaleDown)}));
  EXPECT_EQ(s.policy.target(), 0);
  EXPECT_EQ(s.round(kT0 + 100), Actions{}) << "no respawn while parked";
  EXPECT_STREQ(s.exit(101, exited_with(0), kT0 + 200).reason, "scaled_down");
  EXPECT_EQ(s.policy.unpark(2, kT0 + 5000), (Actions{note(Kind::kTargetChanged, 2)}));
  EXPECT_EQ(s.round(kT0 + 5000), (Actions{spawn(0, Cause::kRespawn), spawn(1, Cause::kRespawn)}));
}

}  // namespace
}  // namespace keel::process
