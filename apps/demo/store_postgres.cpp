// PostgreSQL users store through libpq: parameterised statements, a bounded pool per worker, a
// connection that fails is dropped from the pool (the next call reconnects).
#include <libpq-fe.h>

#include <array>
#include <string>
#include <utility>

#include "pool.hpp"
#include "store.hpp"

namespace demo {
namespace {

struct Connection {
  PGconn* conn = nullptr;
  explicit Connection(const std::string& url) : conn(PQconnectdb(url.c_str())) {
    if (PQstatus(conn) != CONNECTION_OK) {
      std::string msg = PQerrorMessage(conn);
      PQfinish(conn);
      while (!msg.empty() && msg.back() == '\n') msg.pop_back();
      throw std::runtime_error("postgres: connect: " + msg);
    }
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection() { PQfinish(conn); }
};

struct Result {
  PGresult* r;
  explicit Result(PGresult* res) : r(res) {}
  Result(Result&& o) noexcept : r(std::exchange(o.r, nullptr)) {}
  Result(const Result&) = delete;
  Result& operator=(const Result&) = delete;
  ~Result() { PQclear(r); }
  [[nodiscard]] int rows() const { return PQntuples(r); }
  [[nodiscard]] std::string at(int row, int col) const { return PQgetvalue(r, row, col); }
  [[nodiscard]] User user(int row) const {
    return User{std::stoll(at(row, 0)), at(row, 1), at(row, 2), at(row, 3), at(row, 4)};
  }
};

constexpr const char* kColumns =
    "id, name, email, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), "
    "to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')";

class PostgresStore final : public UserStore {
 public:
  PostgresStore(std::string url, std::size_t pool_size)
      : url_(std::move(url)),
        pool_(
            pool_size, [this] { return std::make_unique<Connection>(url_); },
            [](const Connection& c) { return PQsocket(c.conn); }) {}

  void migrate() override {
    // Every worker runs this at startup, at the same moment: CREATE TABLE IF NOT EXISTS alone
    // races in PostgreSQL ("relation already exists", or a unique violation in pg_type), so the
    // migration holds a transaction-scoped advisory lock.
    auto lease = pool_.acquire();
    Result r(PQexec(lease->conn,
                    "BEGIN;"
                    "SELECT pg_advisory_xact_lock(7203451);"
                    "CREATE TABLE IF NOT EXISTS users ("
                    " id BIGSERIAL PRIMARY KEY,"
                    " name TEXT NOT NULL,"
                    " email TEXT NOT NULL UNIQUE,"
                    " created_at TIMESTAMPTZ NOT NULL DEFAULT now(),"
                    " updated_at TIMESTAMPTZ NOT NULL DEFAULT now());"
                    "COMMIT;"));
    if (PQresultStatus(r.r) != PGRES_COMMAND_OK) {
      std::string msg = PQerrorMessage(lease->conn);
      Result rollback(PQexec(lease->conn, "ROLLBACK"));
      while (!msg.empty() && msg.back() == '\n') msg.pop_back();
      throw std::runtime_error("postgres: migration: " + msg);
    }
  }

  std::vector<User> list(std::int64_t limit, std::int64_t offset) override {
    const std::string l = std::to_string(limit), o = std::to_string(offset);
    Result r =
        query(std::string("SELECT ") + kColumns + " FROM users ORDER BY id LIMIT $1 OFFSET $2", {l.c_str(), o.c_str()});
    std::vector<User> out;
    for (int i = 0; i < r.rows(); ++i) out.push_back(r.user(i));
    return out;
  }

  std::int64_t count() override { return std::stoll(query("SELECT count(*) FROM users", {}).at(0, 0)); }

  std::optional<User> get(std::int64_t id) override {
    const std::string i = std::to_string(id);
    Result r = query(std::string("SELECT ") + kColumns + " FROM users WHERE id = $1", {i.c_str()});
    if (r.rows() == 0) return std::nullopt;
    return r.user(0);
  }

  User create(const std::string& name, const std::string& email) override {
    Result r = query(std::string("INSERT INTO users (name, email) VALUES ($1, $2) RETURNING ") + kColumns,
                     {name.c_str(), email.c_str()});
    return r.user(0);
  }

  std::optional<User> update(std::int64_t id, const UserChanges& ch) override {
    const std::string i = std::to_string(id);
    Result r = query(std::string("UPDATE users SET name = coalesce($1, name), email = coalesce($2, email), "
                                 "updated_at = now() WHERE id = $3 RETURNING ") +
                         kColumns,
                     {ch.name ? ch.name->c_str() : nullptr, ch.email ? ch.email->c_str() : nullptr, i.c_str()});
    if (r.rows() == 0) return std::nullopt;
    return r.user(0);
  }

  bool remove(std::int64_t id) override {
    const std::string i = std::to_string(id);
    Result r = query("DELETE FROM users WHERE id = $1", {i.c_str()});
    return std::string(PQcmdTuples(r.r)) != "0";
  }

  void ping() override { (void)query("SELECT 1", {}); }

 private:
  Result query(const std::string& sql, std::initializer_list<const char*> params) {
    auto lease = pool_.acquire();
    std::vector<const char*> values(params);
    Result r(PQexecParams(lease->conn, sql.c_str(), static_cast<int>(values.size()), nullptr, values.data(), nullptr,
                          nullptr, 0));
    const ExecStatusType st = PQresultStatus(r.r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return r;
    if (PQstatus(lease->conn) != CONNECTION_OK) lease.discard();  // reconnect next time
    const char* state = PQresultErrorField(r.r, PG_DIAG_SQLSTATE);
    if (state != nullptr && std::string(state) == "23505") throw Conflict("email is already registered");
    std::string msg = PQresultErrorMessage(r.r);
    while (!msg.empty() && msg.back() == '\n') msg.pop_back();
    throw std::runtime_error("postgres: " + msg);
  }

  std::string url_;
  Pool<Connection> pool_;
};

}  // namespace

std::unique_ptr<UserStore> open_postgres_store(const std::string& url, std::size_t pool_size) {
  return std::make_unique<PostgresStore>(url, pool_size);
}

std::unique_ptr<UserStore> open_sqlite_store(const std::string& path, std::size_t pool_size);

std::unique_ptr<UserStore> traced_store(std::unique_ptr<UserStore> inner, std::string system);

std::unique_ptr<UserStore> open_store(const std::string& url, std::size_t pool_size) {
  if (url.rfind("postgresql://", 0) == 0 || url.rfind("postgres://", 0) == 0)
    return traced_store(open_postgres_store(url, pool_size), "postgresql");
  for (const char* prefix : {"sqlite://", "sqlite:"})
    if (url.rfind(prefix, 0) == 0)
      return traced_store(open_sqlite_store(url.substr(std::string(prefix).size()), pool_size), "sqlite");
  throw std::invalid_argument("database_url: expected sqlite:PATH or postgresql://..., got '" + url + "'");
}

}  // namespace demo
