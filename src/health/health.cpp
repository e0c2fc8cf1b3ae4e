#include "keel/health.hpp"

#include <coroutine>
#include <exception>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "keel/async.hpp"
#include "log/log.hpp"
#include "runtime/detached.hpp"

namespace keel {
namespace {

using Clock = std::chrono::steady_clock;

using runtime::Detached;  // the runners and timeout timers of a round, which nobody awaits

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

}  // namespace

const char* HealthReport::name(Status s) noexcept {
  switch (s) {
    case Status::kOk:
      return "ok";
    case Status::kDegraded:
      return "degraded";
    case Status::kFailing:
      return "failing";
    case Status::kDraining:
      return "draining";
  }
  return "failing";
}

struct Health::State {
  struct Check {
    std::string name;
    Sync sync;
    Async async;
    CheckOptions options;
    bool running = false;  // a runner is still inside the check (it may outlive its timeout)
    Clock::time_point started{};
    bool logged_failing = false;  // the last logged state: the log shows each change once
  };

  // One round of checks; every probe that arrives while it runs waits for the same round.
  struct Round {
    std::vector<CheckResult> results;
    std::vector<bool> done;
    std::size_t pending = 0;
    std::vector<std::coroutine_handle<>> waiters;
    Clock::time_point finished{};

    void finish(std::size_t i, bool ok, std::string error, double duration_ms) {
      if (done[i]) return;  // the check answered after its timeout, or the timeout after the answer
      done[i] = true;
      results[i].ok = ok;
      results[i].error = std::move(error);
      results[i].duration_ms = duration_ms;
      if (--pending == 0) {
        finished = Clock::now();
        auto ready = std::move(waiters);
        for (auto h : ready) h.resume();
      }
    }
  };

  // Holds a plain pointer: the awaiting coroutine keeps the round alive (and GCC 12 may destroy an
  // awaiter temporary twice, which must not touch a reference count).
  struct RoundAwaiter {
    Round* round;
    bool await_ready() const noexcept { return round->pending == 0; }
    void await_suspend(std::coroutine_handle<> h) { round->waiters.push_back(h); }
    void await_resume() const noexcept {}
  };

  std::vector<Check> checks;
  std::chrono::milliseconds ttl{1000};
  std::shared_ptr<Round> current;  // running or cached

  static Detached run_check(std::shared_ptr<State> self, std::shared_ptr<Round> round, std::size_t i) {
    Check& c = self->checks[i];
    const auto t0 = Clock::now();
    c.running = true;
    c.started = t0;
    std::string error;
    try {
      if (c.sync) {
        co_await offload([&c] { c.sync(); });
      } else {
        co_await c.async();
      }
    } catch (const PoolSaturated&) {
      error = "not run: the worker's thread pool is saturated";
    } catch (const std::exception& e) {
      error = e.what()[0] != '\0' ? e.what() : "check failed";
    } catch (...) {
      error = "check failed with a non-standard exception";
    }
    c.running = false;
    const bool ok = error.empty();  // before the move below: argument order is unspecified
    round->finish(i, ok, std::move(error), ms_since(t0));
  }

  static Detached time_out(std::shared_ptr<Round> round, std::size_t i, std::chrono::milliseconds timeout) {
    co_await sleep(timeout);
    round->finish(i, false, "timed out after " + std::to_string(timeout.count()) + "ms",
                  static_cast<double>(timeout.count()));
  }
};

Health::Health() : state_(std::make_shared<State>()) {}
Health::~Health() = default;

Health& Health::add_sync(std::string name, Sync check, CheckOptions options) {
  if (!check) throw std::invalid_argument("health check '" + name + "': empty function");
  for (const auto& c : state_->checks)
    if (c.name == name) throw std::invalid_argument("health check '" + name + "' is registered twice");
  if (options.timeout.count() <= 0) throw std::invalid_argument("health check '" + name + "': timeout must be > 0");
  state_->checks.push_back({std::move(name), std::move(check), {}, options});
  return *this;
}

Health& Health::add_async(std::string name, Async check, CheckOptions options) {
  if (!check) throw std::invalid_argument("health check '" + name + "': empty function");
  for (const auto& c : state_->checks)
    if (c.name == name) throw std::invalid_argument("health check '" + name + "' is registered twice");
  if (options.timeout.count() <= 0) throw std::invalid_argument("health check '" + name + "': timeout must be > 0");
  state_->checks.push_back({std::move(name), {}, std::move(check), options});
  return *this;
}

Health& Health::cache_ttl(std::chrono::milliseconds ttl) {
  state_->ttl = ttl;
  return *this;
}

std::size_t Health::size() const noexcept {
  return state_->checks.size();
}

Task<HealthReport> Health::readiness() {
  std::shared_ptr<State> s = state_;
  const bool fresh = s->current && s->current->pending == 0 && Clock::now() - s->current->finished < s->ttl;
  if (!s->current || (s->current->pending == 0 && !fresh)) {
    auto round = std::make_shared<State::Round>();
    const std::size_t n = s->checks.size();
    round->results.resize(n);
    round->done.assign(n, false);
    round->pending = n;
    s->current = round;
    for (std::size_t i = 0; i < n; ++i) {
      State::Check& c = s->checks[i];
      round->results[i].name = c.name;
      round->results[i].critical = c.options.critical;
    }
    for (std::size_t i = 0; i < n; ++i) {
      State::Check& c = s->checks[i];
      if (c.running) {
        // A blocking check from an earlier round has not returned: starting it again would pile
        // up stuck threads.
        round->finish(i, false,
                      "still running after " + std::to_string(static_cast<long long>(ms_since(c.started))) +
                          "ms (timed out earlier)",
                      0);
        continue;
      }
      State::time_out(round, i, c.options.timeout);
      State::run_check(s, round, i);
    }
  }
  std::shared_ptr<State::Round> round = s->current;
  co_await State::RoundAwaiter{round.get()};
  // The error texts (hosts, ports, users) go to the log and the admin listener, never to the
  // public readiness answer: log each check's change of state once.
  for (std::size_t i = 0; i < round->results.size() && i < s->checks.size(); ++i) {
    const CheckResult& r = round->results[i];
    State::Check& c = s->checks[i];
    if (r.ok == !c.logged_failing) continue;
    c.logged_failing = !r.ok;
    if (r.ok) {
      log::write(log::Level::kInfo, "keel.health", "health_check_recovered", {{"check", r.name}});
    } else {
      log::write(log::Level::kWarning, "keel.health", "health_check_failed",
                 {{"check", r.name}, {"critical", r.critical}, {"error", r.error}});
    }
  }
  HealthReport report;
  report.checks = round->results;
  for (const auto& r : report.checks) {
    if (r.ok) continue;
    if (r.critical) {
      report.status = HealthReport::Status::kFailing;
    } else if (report.status == HealthReport::Status::kOk) {
      report.status = HealthReport::Status::kDegraded;
    }
  }
  co_return report;
}

Response Health::to_response(const HealthReport& report, bool details) {
  nlohmann::json checks = nlohmann::json::object();
  for (const auto& c : report.checks) {
    if (!details) {
      checks[c.name] = {{"status", c.ok ? "ok" : "failing"}};
      continue;
    }
    checks[c.name] = {{"status", c.ok ? "ok" : "failing"},
                      {"critical", c.critical},
                      {"duration_ms", static_cast<double>(static_cast<std::int64_t>(c.duration_ms * 1000)) / 1000},
                      {"error", c.ok ? nlohmann::json(nullptr) : nlohmann::json(c.error)}};
  }
  Response r = Response::json({{"status", HealthReport::name(report.status)}, {"checks", std::move(checks)}},
                              report.http_status());
  r.add_header("Cache-Control", "no-store");
  return r;
}

}  // namespace keel
