// The users API of keel-demo: GET/POST /api/users, GET/PUT/PATCH/DELETE /api/users/{id}.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "cache.hpp"
#include "keel/keel.hpp"
#include "store.hpp"

namespace demo {

// What a worker's handlers share (set up by its startup hook).
struct State {
  State() = default;
  State(const State&) = delete;
  State& operator=(const State&) = delete;
  ~State() { stop_migrating(); }

  std::unique_ptr<UserStore> store;
  std::unique_ptr<Cache> cache;
  std::chrono::seconds cache_ttl{60};
  double fault_error_ratio = 0;
  std::chrono::milliseconds fault_latency{0};

  // The schema is in place: until then /api answers 503 and readiness fails naming the database.
  std::atomic<bool> database_ready{false};

  // Migrates, or when the database cannot be reached (it often starts after the service: Compose,
  // Kubernetes), keeps retrying in the background with backoff until it can. Never throws for an
  // unreachable database.
  void migrate_or_retry();
  // Why the database is not ready yet ("" once it is).
  std::string database_error() const;
  // Stops a retrying migration (before the store goes away).
  void stop_migrating();

 private:
  void retry_migration();
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::string database_error_;
  std::thread migrator_;
};

void add_user_routes(keel::App& app, const std::shared_ptr<State>& state);

}  // namespace demo
