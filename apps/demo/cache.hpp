// The optional Redis cache of GET /api/users/{id} (CACHE_URL=redis://...). A cache that is down
// makes requests slower, never broken: every call is bounded by a short timeout, failures are
// swallowed, and after one the cache is skipped for a second instead of adding a timeout to every
// request.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "pool.hpp"

struct redisContext;

namespace demo {

class Cache {
 public:
  // url: redis://[:password@]host[:port][/db]. Throws std::invalid_argument when malformed.
  Cache(const std::string& url, std::size_t pool_size, std::chrono::milliseconds timeout);
  ~Cache();

  std::optional<std::string> get(const std::string& key) noexcept;
  void set(const std::string& key, const std::string& value, std::chrono::seconds ttl) noexcept;
  void del(const std::string& key) noexcept;
  // PING that throws with the reason (the readiness check).
  void ping();

 private:
  struct Conn;
  bool available() const noexcept;
  void failed(const std::string& why) noexcept;
  std::unique_ptr<Conn> connect();

  std::string host_;
  int port_ = 6379;
  std::string password_;
  int db_ = 0;
  std::chrono::milliseconds timeout_;
  std::unique_ptr<Pool<Conn>> pool_;
  std::atomic<std::int64_t> skip_until_ms_{0};
  std::atomic<bool> logged_down_{false};
};

}  // namespace demo
