// Users storage for keel-demo: one interface, SQLite (default, no server needed) and PostgreSQL
// (libpq) behind it. Every call blocks: handlers run them through keel::offload, on the worker's
// thread pool, never on the event loop.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace demo {

struct User {
  std::int64_t id = 0;
  std::string name;
  std::string email;
  std::string created_at;  // RFC 3339, UTC
  std::string updated_at;
};

// The email is already used by another user (unique constraint): 409.
class Conflict : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A failed database call that the database explained: `code` is its error code (PostgreSQL's
// SQLSTATE, e.g. "57P01"), recorded as the span's error.type and db.response.status_code.
class DatabaseError : public std::runtime_error {
 public:
  DatabaseError(const std::string& what, std::string code) : std::runtime_error(what), code_(std::move(code)) {}
  [[nodiscard]] const std::string& code() const noexcept { return code_; }

 private:
  std::string code_;
};

struct UserChanges {  // PATCH: absent fields stay as they are
  std::optional<std::string> name;
  std::optional<std::string> email;
};

class UserStore {
 public:
  virtual ~UserStore() = default;
  // Creates the schema when missing (the startup hook's migration).
  virtual void migrate() = 0;
  virtual std::vector<User> list(std::int64_t limit, std::int64_t offset) = 0;
  virtual std::int64_t count() = 0;
  virtual std::optional<User> get(std::int64_t id) = 0;
  virtual User create(const std::string& name, const std::string& email) = 0;           // throws Conflict
  virtual std::optional<User> update(std::int64_t id, const UserChanges& changes) = 0;  // throws Conflict
  virtual bool remove(std::int64_t id) = 0;
  // SELECT 1 through a pooled connection (readiness).
  virtual void ping() = 0;
};

// "sqlite:PATH", "sqlite://PATH" (a relative or absolute path), or "postgresql://..." /
// "postgres://...". pool_size bounds the open connections of this process.
std::unique_ptr<UserStore> open_store(const std::string& url, std::size_t pool_size);

}  // namespace demo
