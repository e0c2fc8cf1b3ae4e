// Health endpoints and dependency checks.
//
//   /health          liveness: 200 from the worker's event loop, touching no dependency
//   /health/ready    readiness: 200 when every critical check passes and the worker is not
//                    draining; 503 otherwise. A failing non-critical check gives 200 "degraded".
//   /health/startup  200 once the worker's startup hooks finished (Kubernetes startupProbe)
//
//   app.health().add("database", [&] { db.ping(); });                         // blocking: thread pool
//   app.health().add("cache", [&]() -> keel::Task<void> { co_await ...; },    // coroutine: event loop
//                    {.timeout = 500ms, .critical = false});
//
// A check passes by returning and fails by throwing (the exception's message is the reason). All
// checks run concurrently, each bounded by its timeout (default 1 s), and their results are cached
// for a TTL (default 1 s) so a storm of probes does not become a storm of database queries. A
// blocking check still running from an earlier round is not started twice.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "keel/response.hpp"
#include "keel/task.hpp"

namespace keel {

struct CheckOptions {
  std::chrono::milliseconds timeout{1000};
  bool critical = true;  // false: a failure makes readiness "degraded" (200), not failing (503)
};

struct CheckResult {
  std::string name;
  bool ok = false;
  bool critical = true;
  double duration_ms = 0;
  std::string error;  // empty when ok
};

struct HealthReport {
  enum class Status { kOk, kDegraded, kFailing, kDraining };
  Status status = Status::kOk;
  std::vector<CheckResult> checks;
  [[nodiscard]] int http_status() const noexcept {
    return status == Status::kOk || status == Status::kDegraded ? 200 : 503;
  }
  [[nodiscard]] static const char* name(Status s) noexcept;
};

class Health {
 public:
  using Sync = std::function<void()>;
  using Async = std::function<Task<void>()>;

  Health();
  ~Health();
  Health(const Health&) = delete;
  Health& operator=(const Health&) = delete;

  // Registers a check (before App::run()). Names must be unique; throws std::invalid_argument.
  template <class F>
  Health& add(std::string name, F check, CheckOptions options = {}) {
    if constexpr (std::is_same_v<std::invoke_result_t<F&>, Task<void>>) {
      return add_async(std::move(name), Async(std::move(check)), options);
    } else {
      return add_sync(std::move(name), Sync(std::move(check)), options);
    }
  }
  Health& add_sync(std::string name, Sync check, CheckOptions options = {});
  Health& add_async(std::string name, Async check, CheckOptions options = {});

  // How long a round of results answers later probes.
  Health& cache_ttl(std::chrono::milliseconds ttl);

  // Runs the checks (or reuses the cached round) on the current worker's event loop.
  Task<HealthReport> readiness();

  // The JSON body of a report. Without details (public endpoints): each check's name and status
  // only, {"status":"failing","checks":{"db":{"status":"failing"}}} — error texts name hosts,
  // ports and users. With details (the admin listener): also "critical", "duration_ms" and "error".
  static Response to_response(const HealthReport& report, bool details = false);

  [[nodiscard]] std::size_t size() const noexcept;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace keel
