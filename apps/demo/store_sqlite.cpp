// SQLite users store: WAL mode (readers never block the writer), a busy timeout so workers that
// write at the same moment wait instead of failing, prepared statements per connection.
#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>

#include "pool.hpp"
#include "store.hpp"

namespace demo {
namespace {

class SqliteError : public std::runtime_error {
 public:
  SqliteError(sqlite3* db, const std::string& what)
      : std::runtime_error(what + ": " + (db != nullptr ? sqlite3_errmsg(db) : "out of memory")),
        code_(db != nullptr ? sqlite3_extended_errcode(db) : SQLITE_NOMEM) {}
  [[nodiscard]] int code() const noexcept { return code_; }

 private:
  int code_;
};

struct Statement {
  sqlite3_stmt* s = nullptr;
  Statement(sqlite3* db, const char* sql) {
    if (sqlite3_prepare_v2(db, sql, -1, &s, nullptr) != SQLITE_OK) throw SqliteError(db, "prepare");
  }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement() { sqlite3_finalize(s); }
  void bind(int i, std::int64_t v) { sqlite3_bind_int64(s, i, v); }
  void bind(int i, const std::string& v) {
    sqlite3_bind_text(s, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  std::string text(int col) {
    const auto* p = sqlite3_column_text(s, col);
    return p != nullptr
               ? std::string(reinterpret_cast<const char*>(p), static_cast<std::size_t>(sqlite3_column_bytes(s, col)))
               : std::string();
  }
  User user() { return User{sqlite3_column_int64(s, 0), text(1), text(2), text(3), text(4)}; }
};

// SQLite creates a database 0644 (less the umask), and its -wal and -shm files copy that mode:
// user data readable by every local user. A new database file is created 0600 here first, never
// through a symbolic link; SQLite takes an empty file as a new database.
void create_private(const std::string& path) {
  if (path.empty() || path == ":memory:" || path.rfind("file:", 0) == 0) return;
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd >= 0) {
    ::close(fd);
  } else if (errno != EEXIST) {
    throw std::runtime_error("create " + path + ": " + std::strerror(errno));
  }
}

struct Connection {
  sqlite3* db = nullptr;
  explicit Connection(const std::string& path) {
    create_private(path);
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr) !=
        SQLITE_OK) {
      SqliteError e(db, "open " + path);
      sqlite3_close(db);
      throw e;
    }
    sqlite3_busy_timeout(db, 5000);
    // Switching a new database to WAL needs an exclusive lock and SQLite answers SQLITE_BUSY at
    // once, without the busy handler, when another worker holds the file at that moment (every
    // worker opens it at startup): retry for a while instead of failing the boot.
    for (int attempt = 0;; ++attempt) {
      char* err = nullptr;
      const int rc = sqlite3_exec(db, "PRAGMA journal_mode=WAL", nullptr, nullptr, &err);
      sqlite3_free(err);
      if (rc == SQLITE_OK) break;
      if ((rc != SQLITE_BUSY && rc != SQLITE_LOCKED) || attempt >= 250) {
        SqliteError e(db, "PRAGMA journal_mode=WAL on " + path);
        sqlite3_close(db);
        throw e;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    exec("PRAGMA synchronous=NORMAL");
    exec("PRAGMA foreign_keys=ON");
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection() { sqlite3_close(db); }
  void exec(const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = err != nullptr ? err : "error";
      sqlite3_free(err);
      throw std::runtime_error(std::string("sqlite: ") + sql + ": " + msg);
    }
  }
};

constexpr const char* kColumns = "id, name, email, created_at, updated_at";
constexpr const char* kNow = "strftime('%Y-%m-%dT%H:%M:%fZ','now')";

class SqliteStore final : public UserStore {
 public:
  SqliteStore(std::string path, std::size_t pool_size)
      : path_(std::move(path)), pool_(pool_size, [this] { return std::make_unique<Connection>(path_); }) {}

  void migrate() override {
    auto c = pool_.acquire();
    c->exec(
        "CREATE TABLE IF NOT EXISTS users ("
        " id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " name TEXT NOT NULL,"
        " email TEXT NOT NULL UNIQUE,"
        " created_at TEXT NOT NULL,"
        " updated_at TEXT NOT NULL)");
  }

  std::vector<User> list(std::int64_t limit, std::int64_t offset) override {
    auto c = pool_.acquire();
    Statement st(c->db, (std::string("SELECT ") + kColumns + " FROM users ORDER BY id LIMIT ? OFFSET ?").c_str());
    st.bind(1, limit);
    st.bind(2, offset);
    std::vector<User> out;
    int rc;
    while ((rc = sqlite3_step(st.s)) == SQLITE_ROW) out.push_back(st.user());
    if (rc != SQLITE_DONE) throw SqliteError(c->db, "list users");
    return out;
  }

  std::int64_t count() override {
    auto c = pool_.acquire();
    Statement st(c->db, "SELECT count(*) FROM users");
    if (sqlite3_step(st.s) != SQLITE_ROW) throw SqliteError(c->db, "count users");
    return sqlite3_column_int64(st.s, 0);
  }

  std::optional<User> get(std::int64_t id) override {
    auto c = pool_.acquire();
    Statement st(c->db, (std::string("SELECT ") + kColumns + " FROM users WHERE id = ?").c_str());
    st.bind(1, id);
    const int rc = sqlite3_step(st.s);
    if (rc == SQLITE_ROW) return st.user();
    if (rc != SQLITE_DONE) throw SqliteError(c->db, "get user");
    return std::nullopt;
  }

  User create(const std::string& name, const std::string& email) override {
    auto c = pool_.acquire();
    Statement st(c->db, (std::string("INSERT INTO users (name, email, created_at, updated_at) VALUES (?, ?, ") + kNow +
                         ", " + kNow + ") RETURNING " + kColumns)
                            .c_str());
    st.bind(1, name);
    st.bind(2, email);
    const int rc = sqlite3_step(st.s);
    if (rc == SQLITE_ROW) return st.user();
    if (sqlite3_extended_errcode(c->db) == SQLITE_CONSTRAINT_UNIQUE) throw Conflict("email is already registered");
    throw SqliteError(c->db, "create user");
  }

  std::optional<User> update(std::int64_t id, const UserChanges& ch) override {
    auto c = pool_.acquire();
    Statement st(c->db, (std::string("UPDATE users SET name = coalesce(?, name), email = coalesce(?, email), "
                                     "updated_at = ") +
                         kNow + " WHERE id = ? RETURNING " + kColumns)
                            .c_str());
    if (ch.name) st.bind(1, *ch.name);
    if (ch.email) st.bind(2, *ch.email);
    st.bind(3, id);
    const int rc = sqlite3_step(st.s);
    if (rc == SQLITE_ROW) return st.user();
    if (rc == SQLITE_DONE) return std::nullopt;
    if (sqlite3_extended_errcode(c->db) == SQLITE_CONSTRAINT_UNIQUE) throw Conflict("email is already registered");
    throw SqliteError(c->db, "update user");
  }

  bool remove(std::int64_t id) override {
    auto c = pool_.acquire();
    Statement st(c->db, "DELETE FROM users WHERE id = ?");
    st.bind(1, id);
    if (sqlite3_step(st.s) != SQLITE_DONE) throw SqliteError(c->db, "delete user");
    return sqlite3_changes(c->db) > 0;
  }

  void ping() override {
    auto c = pool_.acquire();
    Statement st(c->db, "SELECT count(*) FROM sqlite_master");  // reads the file: a broken one fails
    if (sqlite3_step(st.s) != SQLITE_ROW) throw SqliteError(c->db, "ping");
  }

 private:
  std::string path_;
  Pool<Connection> pool_;
};

}  // namespace

std::unique_ptr<UserStore> open_sqlite_store(const std::string& path, std::size_t pool_size) {
  return std::make_unique<SqliteStore>(path, pool_size);
}

}  // namespace demo
