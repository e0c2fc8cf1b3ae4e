// The users API of keel-demo: GET/POST /api/users, GET/PUT/PATCH/DELETE /api/users/{id}.
#pragma once

#include <chrono>
#include <memory>

#include "cache.hpp"
#include "keel/keel.hpp"
#include "store.hpp"

namespace demo {

// What a worker's handlers share (set up by its startup hook).
struct State {
  std::unique_ptr<UserStore> store;
  std::unique_ptr<Cache> cache;
  std::chrono::seconds cache_ttl{60};
  double fault_error_ratio = 0;
  std::chrono::milliseconds fault_latency{0};
};

void add_user_routes(keel::App& app, const std::shared_ptr<State>& state);

}  // namespace demo
