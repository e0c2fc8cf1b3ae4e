// PostgreSQL users store through libpq: parameterised statements, a bounded pool per worker, a
// connection that fails is dropped from the pool (the next call reconnects).
#include <libpq-fe.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "keel/url.hpp"
#include "pool.hpp"
#include "store.hpp"
#include "traced_store.hpp"

namespace demo {
namespace {

// ---- keeping the password out of error messages ----------------------------------------------
// libpq repeats parts of the connection string in some errors: a malformed or forbidden percent
// escape ("invalid percent-encoded token", "forbidden value %00 in percent-encoded value") echoes
// the whole component, the password included. Every message that leaves this file (exceptions,
// hence logs, health output, span status) goes through scrub().

// The password of a postgresql:// URL, from its userinfo and from a password= parameter, as
// written and percent-decoded (libpq may show either).
std::vector<std::string> passwords_in(std::string_view url) {
  std::vector<std::string> raw;
  if (const auto scheme = url.find("://"); scheme != std::string_view::npos) {
    const std::string_view rest = url.substr(scheme + 3);
    // libpq's own rule: the userinfo ends at the first '@' before any '/'.
    const auto end = rest.find_first_of("@/");
    if (end != std::string_view::npos && rest[end] == '@') {
      const std::string_view userinfo = rest.substr(0, end);
      if (const auto colon = userinfo.find(':'); colon != std::string_view::npos)
        raw.emplace_back(userinfo.substr(colon + 1));
    }
  }
  if (const auto q = url.find('?'); q != std::string_view::npos) {
    std::string_view query = url.substr(q + 1);
    while (!query.empty()) {
      const auto amp = query.find('&');
      const std::string_view pair = query.substr(0, amp);
      if (pair.rfind("password=", 0) == 0) raw.emplace_back(pair.substr(9));
      if (amp == std::string_view::npos) break;
      query.remove_prefix(amp + 1);
    }
  }
  std::vector<std::string> out;
  for (const std::string& p : raw) {
    if (p.empty()) continue;
    out.push_back(p);
    if (std::string decoded = keel::percent_decode(p); decoded != p && !decoded.empty())
      out.push_back(std::move(decoded));
  }
  return out;
}

// The message with every password of `passwords` (and the password of any URL in it) masked.
std::string scrub(std::string msg, const std::vector<std::string>& passwords) {
  for (const std::string& p : passwords) {
    for (std::size_t at = msg.find(p); at != std::string::npos; at = msg.find(p, at + 3))
      msg.replace(at, p.size(), "***");
  }
  for (std::size_t scheme = msg.find("://"); scheme != std::string::npos; scheme = msg.find("://", scheme + 3)) {
    const std::size_t start = scheme + 3;
    const std::size_t end = std::min(msg.find_first_of("/?# \t\n\"'", start), msg.size());
    const std::size_t at = msg.rfind('@', end);
    if (at == std::string::npos || at < start) continue;
    const std::size_t colon = msg.find(':', start);
    if (colon < at) msg.replace(colon + 1, at - colon - 1, "***");
  }
  return msg;
}

std::string trimmed(std::string msg) {
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  return msg;
}

struct Connection {
  PGconn* conn = nullptr;
  Connection(const std::string& url, const std::vector<std::string>& passwords) : conn(PQconnectdb(url.c_str())) {
    if (PQstatus(conn) != CONNECTION_OK) {
      std::string msg = trimmed(PQerrorMessage(conn));
      PQfinish(conn);
      // SQLSTATE 08001, sqlclient_unable_to_establish_sqlconnection: libpq gives none itself.
      throw DatabaseError(scrub("postgres: connect: " + msg, passwords), "08001");
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
        passwords_(passwords_in(url_)),
        pool_(
            pool_size, [this] { return std::make_unique<Connection>(url_, passwords_); },
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
      std::string msg = trimmed(PQerrorMessage(lease->conn));
      const char* state = PQresultErrorField(r.r, PG_DIAG_SQLSTATE);
      Result rollback(PQexec(lease->conn, "ROLLBACK"));
      throw DatabaseError(scrub("postgres: migration: " + msg, passwords_), state != nullptr ? state : "");
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
    const bool broken = PQstatus(lease->conn) != CONNECTION_OK;
    if (broken) lease.discard();  // reconnect next time
    const char* state = PQresultErrorField(r.r, PG_DIAG_SQLSTATE);
    if (state != nullptr && std::string(state) == "23505") throw Conflict("email is already registered");
    const std::string msg = trimmed(PQresultErrorMessage(r.r));
    // A connection lost on the way has no SQLSTATE from the server: 08006, connection_failure.
    throw DatabaseError(scrub("postgres: " + msg, passwords_), state != nullptr ? state : broken ? "08006" : "");
  }

  std::string url_;
  std::vector<std::string> passwords_;
  Pool<Connection> pool_;
};

}  // namespace

std::unique_ptr<UserStore> open_postgres_store(const std::string& url, std::size_t pool_size) {
  return std::make_unique<PostgresStore>(url, pool_size);
}

namespace {

// What the database spans say about a PostgreSQL server: libpq's own reading of the URL (no
// connection is made). A URL libpq cannot read fails here, with the password scrubbed.
DbInfo postgres_info(const std::string& url) {
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(url.c_str(), &error);
  if (options == nullptr) {
    std::string msg = trimmed(error != nullptr ? error : "out of memory");
    PQfreemem(error);
    throw DatabaseError(scrub("postgres: database_url: " + msg, passwords_in(url)), "");
  }
  DbInfo info{.system = "postgresql", .network = true};
  std::string user;
  for (const PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
    if (o->val == nullptr || *o->val == '\0') continue;
    const std::string_view key = o->keyword;
    const std::string value = o->val;
    if (key == "dbname") info.name = value;
    if (key == "user") user = value;
    if (key == "host") info.server_address = value.substr(0, value.find(','));  // the first of several
    if (key == "port") info.server_port = std::atoll(value.substr(0, value.find(',')).c_str());
  }
  PQconninfoFree(options);
  if (info.name.empty()) info.name = user;  // libpq's default database: the user's name
  if (info.server_address.empty() || info.server_address.front() == '/') {
    info.server_address.clear();  // a unix socket directory
  } else if (info.server_port == 0) {
    info.server_port = 5432;
  }
  return info;
}

}  // namespace

std::unique_ptr<UserStore> open_sqlite_store(const std::string& path, std::size_t pool_size);

std::unique_ptr<UserStore> open_store(const std::string& url, std::size_t pool_size) {
  if (url.rfind("postgresql://", 0) == 0 || url.rfind("postgres://", 0) == 0)
    return traced_store(open_postgres_store(url, pool_size), postgres_info(url));
  for (const char* prefix : {"sqlite://", "sqlite:"})
    if (url.rfind(prefix, 0) == 0)
      return traced_store(open_sqlite_store(url.substr(std::string(prefix).size()), pool_size),
                          DbInfo{.system = "sqlite", .network = false});
  throw std::invalid_argument("database_url: expected sqlite:PATH or postgresql://..., got '" +
                              scrub(url, passwords_in(url)) + "'");
}

}  // namespace demo
