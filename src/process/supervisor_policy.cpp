#include "process/supervisor_policy.hpp"

#include <signal.h>
#include <sys/wait.h>

#include <algorithm>

namespace keel::process {

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

SupervisorPolicy::SupervisorPolicy(const Config& config, std::uint64_t seed)
    : config_(config), target_(config.workers), rng_(seed) {}

Action SupervisorPolicy::spawn_action(int id, Action::Cause cause, pid_t replaces) {
  std::uint64_t max_requests = config_.max_requests;
  if (max_requests != 0 && config_.max_requests_jitter != 0)
    max_requests += std::uniform_int_distribution<std::uint64_t>(0, config_.max_requests_jitter)(rng_);
  Action a;
  a.kind = Action::Kind::kSpawn;
  a.cause = cause;
  a.pid = replaces;
  a.worker_id = id;
  a.max_requests = max_requests;
  return a;
}

namespace {
Action signal_action(pid_t pid, int worker_id, int sig, Action::Cause cause, std::int64_t value = 0) {
  Action a;
  a.kind = Action::Kind::kSignal;
  a.cause = cause;
  a.pid = pid;
  a.worker_id = worker_id;
  a.signal = sig;
  a.value = value;
  return a;
}

Action announcement(Action::Kind kind, std::int64_t value = 0) {
  Action a;
  a.kind = kind;
  a.value = value;
  return a;
}
}  // namespace

Actions SupervisorPolicy::start() {
  Actions out{announcement(Action::Kind::kTargetChanged, target_)};
  for (int id = 0; id < target_; ++id) out.push_back(spawn_action(id, Action::Cause::kStart));
  return out;
}

void SupervisorPolicy::spawned(const Action& spawn, pid_t pid, std::int64_t now) {
  SupervisedWorker w;
  w.id = spawn.worker_id;
  w.started_ms = now;
  w.max_requests = spawn.max_requests;
  w.replaces = spawn.pid;
  workers_[pid] = w;
  if (spawn.pid != 0) {
    if (auto old = workers_.find(spawn.pid); old != workers_.end()) {
      old->second.replaced_by = pid;
      old->second.reason = spawn.replacement_reason();
    }
  }
}

std::optional<std::int64_t> SupervisorPolicy::respawn_at(int id) const {
  if (const auto it = respawn_at_.find(id); it != respawn_at_.end()) return it->second;
  return std::nullopt;
}

std::optional<WorkerExit> SupervisorPolicy::exited(pid_t pid, int status, std::int64_t now) {
  const auto it = workers_.find(pid);
  if (it == workers_.end()) return std::nullopt;
  WorkerExit e;
  e.worker = it->second;
  workers_.erase(it);
  const SupervisedWorker& w = e.worker;
  e.age_ms = now - w.started_ms;
  e.boot_failed = !w.was_ready && WIFEXITED(status) && WEXITSTATUS(status) == kBootFailure;
  e.reason = reason_name(w.reason, status, e.boot_failed);
  e.expected = w.reason != ExitReason::kNone && w.reason != ExitReason::kTimeout;
  if (!e.expected) ++crashes_;
  // This was the old worker of a replacement pair: the replacement carries on.
  for (auto& [other_pid, other] : workers_)
    if (other.replaces == pid) other.replaces = 0;
  if (stopping_) return e;
  if (w.replaces != 0) {
    // A replacement died before taking over: keep the old worker serving, stop any roll.
    if (auto old = workers_.find(w.replaces); old != workers_.end()) {
      old->second.replaced_by = 0;
      old->second.reason = ExitReason::kNone;
    }
    e.rolling_aborted = rolling_.size();
    rolling_.clear();
    return e;
  }
  if (e.boot_failed && !booted_) {
    e.exit_code = kBootFailure;
    return e;
  }
  if (w.reason == ExitReason::kScaledDown || w.replaced_by != 0) return e;  // nothing to refill
  // Crash-loop guard: exponential backoff per worker id for workers that die before they are
  // ready (a boot that keeps failing). One that served comes back at once: killed from outside
  // (OOM killer, an operator) it is healthy, and delaying it only removes capacity.
  int& streak = crash_streak_[w.id];
  streak = w.was_ready ? 0 : streak + 1;
  const std::int64_t delay = streak == 0 ? 0 : std::min<std::int64_t>(kMaxBackoffMs, 100LL << std::min(streak - 1, 10));
  respawn_at_[w.id] = now + delay;
  e.respawn_at = now + delay;
  return e;
}

Actions SupervisorPolicy::check_workers(std::int64_t now, const WorkerProbe& probe) {
  Actions out;
  const bool check_memory = config_.max_worker_memory != 0 && now - last_memory_check_ms_ >= kMemoryCheckMs;
  if (check_memory) last_memory_check_ms_ = now;
  bool all_ready = !workers_.empty();
  for (auto& [pid, w] : workers_) {
    const WorkerState state = probe.state(pid);
    if (state == WorkerState::kReady || state == WorkerState::kRetiring) {
      if (!w.was_ready) {
        w.was_ready = true;
        if (w.replaces != 0) {
          // The replacement serves: retire the worker it replaces, gracefully.
          if (auto old = workers_.find(w.replaces); old != workers_.end())
            out.push_back(signal_action(w.replaces, old->second.id, SIGTERM, Action::Cause::kReplacementReady));
        }
      }
    } else if (state == WorkerState::kBooting) {
      all_ready = false;
      if (w.replaces != 0 && now - w.started_ms > kReadyDeadlineMs && !w.kill_sent) {
        out.push_back(signal_action(pid, w.id, SIGKILL, Action::Cause::kNotReady));
        w.kill_sent = true;
      }
    }
    // Liveness: a loop silent for --timeout is stuck (a blocking handler, a deadlock).
    if (config_.timeout.count() > 0 && !stopping_ && state != WorkerState::kDraining) {
      const std::int64_t silent = now - probe.heartbeat_ms(pid);
      if (w.abort_sent_ms == 0 && silent > config_.timeout.count()) {
        w.reason = ExitReason::kTimeout;
        w.abort_sent_ms = now;
        out.push_back(signal_action(pid, w.id, SIGABRT, Action::Cause::kTimeout, silent));
      } else if (w.abort_sent_ms != 0 && !w.kill_sent && now - w.abort_sent_ms > kAbortGraceMs) {
        out.push_back(signal_action(pid, w.id, SIGKILL, Action::Cause::kAbortIgnored));
        w.kill_sent = true;
      }
    }
    if (stopping_ || w.replaced_by != 0 || w.reason != ExitReason::kNone || w.replaces != 0) continue;
    // Recycling: ask for a replacement first; the old worker stops once the new one is ready.
    std::optional<Action> replacement;
    if (state == WorkerState::kRetiring) {
      replacement = spawn_action(w.id, Action::Cause::kRecycleRequested, pid);
    } else if (state == WorkerState::kReady && config_.max_worker_lifetime.count() > 0 &&
               now - w.started_ms > config_.max_worker_lifetime.count()) {
      replacement = spawn_action(w.id, Action::Cause::kRecycleLifetime, pid);
    } else if (check_memory && state == WorkerState::kReady) {
      if (const std::uint64_t rss = probe.rss_bytes(pid); rss > config_.max_worker_memory) {
        replacement = spawn_action(w.id, Action::Cause::kRecycleMemory, pid);
        replacement->value = static_cast<std::int64_t>(rss);
      }
    }
    if (replacement) {
      out.push_back(*replacement);
      all_ready = false;  // the replacement boots
    }
  }
  if (all_ready && !booted_) {
    booted_ = true;
    out.push_back(announcement(Action::Kind::kWorkersReady, static_cast<std::int64_t>(workers_.size())));
  }
  return out;
}

bool SupervisorPolicy::replacement_pending() const {
  return std::any_of(workers_.begin(), workers_.end(), [](const auto& entry) { return entry.second.replaces != 0; });
}

Actions SupervisorPolicy::start_due(std::int64_t now) {
  Actions out;
  if (reloading_ && rolling_.empty() && !replacement_pending()) {
    reloading_ = false;
    out.push_back(announcement(Action::Kind::kRollingRestartDone));
  }
  // HUP rolling restart: one worker at a time, the next once the previous replacement serves.
  if (!rolling_.empty() && !stopping_ && !replacement_pending()) {
    const pid_t next = rolling_.front();
    rolling_.erase(rolling_.begin());
    if (auto it = workers_.find(next); it != workers_.end() && it->second.replaced_by == 0)
      out.push_back(spawn_action(it->second.id, Action::Cause::kRollingRestart, next));
    if (rolling_.empty()) out.push_back(announcement(Action::Kind::kRollingRestartLastWorker));
  }
  // Respawns whose backoff has passed, and scale-ups.
  for (auto it = respawn_at_.begin(); it != respawn_at_.end();) {
    if (stopping_ || it->first >= target_) {
      it = respawn_at_.erase(it);
    } else if (it->second <= now) {
      out.push_back(spawn_action(it->first, Action::Cause::kRespawn));
      it = respawn_at_.erase(it);
    } else {
      ++it;
    }
  }
  return out;
}

int SupervisorPolicy::highest_live_id() const {
  int best = -1;
  for (const auto& [pid, w] : workers_)
    if (w.reason == ExitReason::kNone && w.replaces == 0) best = std::max(best, w.id);
  return best;
}

Actions SupervisorPolicy::scale_to(int workers, std::int64_t now) {
  Actions out;
  workers = std::clamp(workers, 1, kMaxWorkers);
  if (workers != target_) out.push_back(announcement(Action::Kind::kTargetChanged, workers));
  while (target_ < workers) {
    ++target_;
    respawn_at_[target_ - 1] = now;
    out.push_back(announcement(Action::Kind::kScaleUp, target_));
  }
  while (target_ > workers) {
    --target_;
    out.push_back(announcement(Action::Kind::kScaleDown, target_));
    const int id = highest_live_id();
    for (auto& [pid, w] : workers_) {
      if (w.id == id && w.reason == ExitReason::kNone && w.replaces == 0) {
        w.reason = ExitReason::kScaledDown;
        out.push_back(signal_action(pid, w.id, SIGTERM, Action::Cause::kScaleDown));
      }
    }
  }
  return out;
}

std::size_t SupervisorPolicy::start_rolling_restart() {
  rolling_.clear();
  for (const auto& [pid, w] : workers_)
    if (w.reason == ExitReason::kNone && w.replaces == 0) rolling_.push_back(pid);
  reloading_ = true;
  return rolling_.size();
}

Actions SupervisorPolicy::stop(bool graceful, bool whole_service, std::int64_t now) {
  stopping_ = true;
  rolling_.clear();
  respawn_at_.clear();
  Actions out;
  for (auto& [pid, w] : workers_)
    if (w.reason == ExitReason::kNone) w.reason = ExitReason::kShutdown;
  // The whole service stops: the workers are told so (they refuse new connections, serve the
  // backlog, then close the sockets). After a hand-over the new master's workers share the
  // sockets, so ours just retire.
  for (const auto& [pid, w] : workers_) {
    if (graceful && whole_service)
      out.push_back(signal_action(pid, w.id, SIGTERM, Action::Cause::kStopService));
    else
      out.push_back(signal_action(pid, w.id, graceful ? SIGTERM : SIGINT, Action::Cause::kStop));
  }
  const auto grace = graceful ? config_.shutdown_delay + config_.graceful_timeout + std::chrono::seconds(1)
                              : std::chrono::milliseconds(5000);
  stop_deadline_ms_ = std::min(stop_deadline_ms_, now + grace.count());
  return out;
}

Actions SupervisorPolicy::stop_overdue(std::int64_t now) {
  Actions out;
  if (!stopping_ || now < stop_deadline_ms_) return out;
  out.push_back(announcement(Action::Kind::kStopOverdue, static_cast<std::int64_t>(workers_.size())));
  for (const auto& [pid, w] : workers_) out.push_back(signal_action(pid, w.id, SIGKILL, Action::Cause::kStopOverdue));
  stop_deadline_ms_ = INT64_MAX;
  return out;
}

Actions SupervisorPolicy::park() {
  respawn_at_.clear();
  rolling_.clear();
  target_ = 0;
  Actions out;
  for (auto& [pid, w] : workers_) {
    if (w.reason != ExitReason::kNone) continue;
    w.reason = ExitReason::kScaledDown;
    out.push_back(signal_action(pid, w.id, SIGTERM, Action::Cause::kScaleDown));
  }
  return out;
}

Actions SupervisorPolicy::unpark(int workers, std::int64_t now) {
  target_ = workers;
  for (int id = 0; id < target_; ++id) respawn_at_[id] = now;
  return {announcement(Action::Kind::kTargetChanged, target_)};
}

}  // namespace keel::process
