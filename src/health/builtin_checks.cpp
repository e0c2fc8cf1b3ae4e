// Built-in health checks: TCP connect, HTTP GET (libcurl), SQLite, PostgreSQL (libpq) and Redis
// (hiredis). Every check is blocking and bounded by one deadline computed from its timeout.
#include "keel/checks.hpp"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "base/strings.hpp"
#include "client/curl_easy.hpp"

namespace keel::checks {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

[[noreturn]] void fail(const std::string& reason) {
  throw std::runtime_error(reason);
}

// ---------------------------------------------------------------------------------------------
// Deadline
// ---------------------------------------------------------------------------------------------

class Deadline {
 public:
  explicit Deadline(milliseconds timeout) : total_(timeout), at_(Clock::now() + timeout) {
    if (timeout.count() <= 0) fail("timeout must be positive (got " + std::to_string(timeout.count()) + "ms)");
  }

  Clock::time_point at() const { return at_; }
  bool expired() const { return Clock::now() >= at_; }

  // Milliseconds left, rounded up, clamped to [0, INT_MAX]: the argument poll() wants.
  int remaining_ms() const {
    const auto left = std::chrono::ceil<milliseconds>(at_ - Clock::now()).count();
    if (left <= 0) return 0;
    return left > INT_MAX ? INT_MAX : static_cast<int>(left);
  }

  std::string timed_out() const { return "timed out after " + std::to_string(total_.count()) + "ms"; }

 private:
  milliseconds total_;
  Clock::time_point at_;
};

// Waits until fd reports one of events (or an error/hang-up). Returns false when the deadline
// passes first.
bool wait_fd(int fd, short events, const Deadline& deadline) {
  for (;;) {
    pollfd pfd{};
    pfd.fd = fd;
    pfd.events = events;
    const int n = ::poll(&pfd, 1, deadline.remaining_ms());
    if (n > 0) return true;
    if (n == 0) {
      if (deadline.expired()) return false;
      continue;  // woke a little early (rounding): wait for the rest
    }
    if (errno != EINTR) fail(std::string("poll: ") + std::strerror(errno));
  }
}

std::string errno_text(int err) {
  return std::strerror(err);
}

// ---------------------------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------------------------

// Replaces every occurrence of each (non-empty) secret in text with "****".
std::string scrub(std::string text, const std::vector<std::string>& secrets) {
  for (const auto& secret : secrets) {
    if (secret.empty()) continue;
    for (std::size_t pos = text.find(secret); pos != std::string::npos; pos = text.find(secret, pos + 4)) {
      text.replace(pos, secret.size(), "****");
    }
  }
  return text;
}

// The password of a "scheme://user:password@host..." URL, as written (still percent-encoded),
// or empty. Conservative: the userinfo ends at the LAST '@' before the path, so a password
// containing '@' or ':' is taken whole.
std::string url_password(std::string_view url) {
  const auto scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return {};
  std::string_view rest = url.substr(scheme_end + 3);
  rest = rest.substr(0, rest.find_first_of("/?#"));
  const auto at = rest.rfind('@');
  if (at == std::string_view::npos) return {};
  const std::string_view userinfo = rest.substr(0, at);
  const auto colon = userinfo.find(':');
  if (colon == std::string_view::npos) return {};
  return std::string(userinfo.substr(colon + 1));
}

// url with the password of its userinfo replaced by "****".
std::string redact_url(const std::string& url) {
  const std::string password = url_password(url);
  if (password.empty()) return url;
  const auto scheme_end = url.find("://");
  const auto colon = url.find(':', scheme_end + 3);
  std::string out = url;
  out.replace(colon + 1, password.size(), "****");
  return out;
}

// Every value given to a "password" key in a conninfo-like text: "password=x", "password = 'x y'"
// (key=value form) and "?password=x&..." (URL query).
std::vector<std::string> password_values(std::string_view text) {
  std::vector<std::string> values;
  constexpr std::string_view key = "password";
  for (std::size_t pos = text.find(key); pos != std::string_view::npos; pos = text.find(key, pos + 1)) {
    std::size_t i = pos + key.size();
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    if (i >= text.size() || text[i] != '=') continue;
    ++i;
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    std::string value;
    if (i < text.size() && text[i] == '\'') {
      for (++i; i < text.size() && text[i] != '\''; ++i) {
        if (text[i] == '\\' && i + 1 < text.size()) ++i;
        value += text[i];
      }
    } else {
      while (i < text.size() && !std::isspace(static_cast<unsigned char>(text[i])) && text[i] != '&' &&
             text[i] != '#') {
        value += text[i++];
      }
    }
    if (!value.empty()) {
      values.push_back(keel::percent_decode(value));
      values.push_back(std::move(value));
    }
  }
  return values;
}

// Secrets that may appear in an error message about target (a URL or conninfo string).
std::vector<std::string> secrets_of(const std::string& target) {
  std::vector<std::string> secrets = password_values(target);
  const std::string password = url_password(target);
  if (!password.empty()) {
    secrets.push_back(password);
    secrets.push_back(keel::percent_decode(password));
  }
  // Longest first, so a secret that contains another is replaced whole.
  std::sort(secrets.begin(), secrets.end(), [](const auto& a, const auto& b) { return a.size() > b.size(); });
  return secrets;
}

// A library's multi-line message as one line: hint lines (indented) dropped, lines joined with
// "; ", trailing whitespace removed.
std::string one_line(const std::string& message) {
  std::string out;
  std::size_t start = 0;
  while (start < message.size()) {
    auto end = message.find('\n', start);
    if (end == std::string::npos) end = message.size();
    std::string line = message.substr(start, end - start);
    start = end + 1;
    const bool hint = !line.empty() && (line[0] == '\t' || line[0] == ' ');
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
    if (hint || line.empty()) continue;
    if (!out.empty()) out += "; ";
    out += line;
  }
  return out.empty() ? std::string("unknown error") : out;
}

// ---------------------------------------------------------------------------------------------
// TCP
// ---------------------------------------------------------------------------------------------

struct Address {
  sockaddr_storage storage{};
  socklen_t length = 0;
  int family = 0;
};

struct Resolution {
  std::vector<Address> addresses;
  std::string error;  // set when addresses is empty
};

Resolution resolve_now(const std::string& host, std::uint16_t port, int flags) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_protocol = IPPROTO_TCP;
  hints.ai_flags = flags | AI_NUMERICSERV;
  addrinfo* list = nullptr;
  const std::string service = std::to_string(port);
  Resolution result;
  const int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &list);
  if (rc != 0) {
    result.error = rc == EAI_SYSTEM ? errno_text(errno) : std::string(::gai_strerror(rc));
    return result;
  }
  for (const addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
    if (ai->ai_addrlen > sizeof(sockaddr_storage)) continue;
    Address a;
    std::memcpy(&a.storage, ai->ai_addr, ai->ai_addrlen);
    a.length = ai->ai_addrlen;
    a.family = ai->ai_family;
    result.addresses.push_back(a);
  }
  ::freeaddrinfo(list);
  if (result.addresses.empty()) result.error = "no usable address";
  return result;
}

// Numeric hosts are parsed directly. Names are looked up on a detached thread so the deadline
// holds even when DNS hangs (the thread finishes on its own, its result is then dropped).
Resolution resolve(const std::string& host, std::uint16_t port, const Deadline& deadline) {
  Resolution numeric = resolve_now(host, port, AI_NUMERICHOST);
  if (!numeric.addresses.empty()) return numeric;

  struct State {
    std::mutex mutex;
    std::condition_variable done_cv;
    bool done = false;
    Resolution result;
  };
  auto state = std::make_shared<State>();
  std::thread([state, host, port] {
    Resolution r = resolve_now(host, port, 0);
    std::lock_guard lock(state->mutex);
    state->result = std::move(r);
    state->done = true;
    state->done_cv.notify_all();
  }).detach();
  std::unique_lock lock(state->mutex);
  if (!state->done_cv.wait_until(lock, deadline.at(), [&] { return state->done; })) {
    fail("resolve " + host + ": " + deadline.timed_out());
  }
  return std::move(state->result);
}

std::string numeric_address(const Address& a) {
  char host[NI_MAXHOST] = {};
  char serv[NI_MAXSERV] = {};
  if (::getnameinfo(reinterpret_cast<const sockaddr*>(&a.storage), a.length, host, sizeof host, serv, sizeof serv,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    return "?";
  }
  return a.family == AF_INET6 ? "[" + std::string(host) + "]:" + serv : std::string(host) + ":" + serv;
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

// Connects to one address within the deadline; returns an empty string on success, else the
// reason.
std::string connect_one(const Address& a, const Deadline& deadline) {
  Fd fd(::socket(a.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP));
  if (fd.get() < 0) return "socket: " + errno_text(errno);
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&a.storage), a.length) == 0) return {};
  if (errno != EINPROGRESS && errno != EINTR) return errno_text(errno);
  if (!wait_fd(fd.get(), POLLOUT, deadline)) return deadline.timed_out();
  int err = 0;
  socklen_t len = sizeof err;
  if (::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) return "getsockopt: " + errno_text(errno);
  return err == 0 ? std::string() : errno_text(err);
}

// ---------------------------------------------------------------------------------------------
// libcurl
// ---------------------------------------------------------------------------------------------

struct UrlDeleter {
  void operator()(CURLU* u) const { curl_url_cleanup(u); }
};

// "host:port" of url as libcurl parses it (IPv6 in brackets, default port filled in), or empty.
std::string host_port(const std::string& url) {
  std::unique_ptr<CURLU, UrlDeleter> u(curl_url());
  if (!u || curl_url_set(u.get(), CURLUPART_URL, url.c_str(), 0) != CURLUE_OK) return {};
  char* host = nullptr;
  char* port = nullptr;
  std::string out;
  if (curl_url_get(u.get(), CURLUPART_HOST, &host, 0) == CURLUE_OK &&
      curl_url_get(u.get(), CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK) {
    out = std::string(host) + ":" + port;
  }
  curl_free(host);
  curl_free(port);
  return out;
}

// ---------------------------------------------------------------------------------------------
// SQLite
// ---------------------------------------------------------------------------------------------

extern "C" int sqlite_past_deadline(void* deadline) {
  return static_cast<const Deadline*>(deadline)->expired() ? 1 : 0;
}

struct SqliteCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};

struct StatementFinalizer {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};

// ---------------------------------------------------------------------------------------------
// libpq
// ---------------------------------------------------------------------------------------------

struct PgFinisher {
  void operator()(PGconn* c) const { PQfinish(c); }
};

struct PgResultClearer {
  void operator()(PGresult* r) const { PQclear(r); }
};

// Waits for the libpq socket; throws "<stage>: timed out after ...".
void pg_wait(PGconn* conn, short events, const Deadline& deadline, const char* stage) {
  const int fd = PQsocket(conn);
  if (fd < 0) fail(std::string(stage) + ": no connection socket");
  if (!wait_fd(fd, events, deadline)) fail(std::string(stage) + ": " + deadline.timed_out());
}

// ---------------------------------------------------------------------------------------------
// hiredis
// ---------------------------------------------------------------------------------------------

struct RedisTarget {
  std::string host = "127.0.0.1";
  int port = 6379;
  std::string user;
  std::string password;
  std::string db;  // digits, or empty
};

int parse_port(std::string_view text, const std::string& what) {
  if (text.empty() || text.size() > 5 ||
      !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    fail("invalid port in " + what);
  }
  const int port = std::stoi(std::string(text));
  if (port < 1 || port > 65535) fail("invalid port in " + what);
  return port;
}

RedisTarget parse_redis_url(const std::string& url) {
  const std::string shown = redact_url(url);
  RedisTarget t;
  std::string_view rest = url;
  const auto scheme_end = rest.find("://");
  if (scheme_end != std::string_view::npos) {
    const std::string scheme = base::to_lower(rest.substr(0, scheme_end));
    if (scheme != "redis") fail("unsupported scheme \"" + scheme + "\" in redis URL (only redis://)");
    rest = rest.substr(scheme_end + 3);
  }
  std::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
  std::string_view path = rest.substr(authority.size());
  if (const auto at = authority.rfind('@'); at != std::string_view::npos) {
    const std::string_view userinfo = authority.substr(0, at);
    authority = authority.substr(at + 1);
    if (const auto colon = userinfo.find(':'); colon != std::string_view::npos) {
      t.user = keel::percent_decode(userinfo.substr(0, colon));
      t.password = keel::percent_decode(userinfo.substr(colon + 1));
    } else {
      t.user = keel::percent_decode(userinfo);
    }
  }
  std::string_view host = authority;
  std::string_view port;
  if (!authority.empty() && authority[0] == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) fail("invalid redis URL " + shown + ": unterminated [");
    host = authority.substr(1, close - 1);
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') fail("invalid redis URL " + shown);
      port = after.substr(1);
    }
  } else if (const auto colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  if (!host.empty()) t.host = std::string(host);
  if (!port.empty() || authority.find(':') != std::string_view::npos) t.port = parse_port(port, "redis URL " + shown);
  if (!path.empty() && path[0] == '/') {
    std::string_view db = path.substr(1);
    db = db.substr(0, db.find_first_of("?#"));
    if (!db.empty()) {
      if (db.size() > 9 || !std::all_of(db.begin(), db.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        fail("invalid database number in redis URL " + shown);
      }
      t.db = std::string(db);
    }
  }
  return t;
}

struct RedisFreer {
  void operator()(redisContext* c) const { redisFree(c); }
};

struct ReplyFreer {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};

timeval to_timeval(int ms) {
  timeval tv{};
  tv.tv_sec = static_cast<decltype(tv.tv_sec)>(ms / 1000);
  tv.tv_usec = static_cast<decltype(tv.tv_usec)>((ms % 1000) * 1000);
  return tv;
}

bool is_timeout_errno(int err) {
  return err == EAGAIN || err == EWOULDBLOCK || err == ETIMEDOUT || err == EINPROGRESS;
}

std::string reply_text(const redisReply* r) {
  if (r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_ERROR || r->type == REDIS_REPLY_STRING) {
    return std::string(r->str, r->len);
  }
  if (r->type == REDIS_REPLY_INTEGER) return std::to_string(r->integer);
  if (r->type == REDIS_REPLY_NIL) return "(nil)";
  if (r->type == REDIS_REPLY_ARRAY) return "(array)";
  return "(reply type " + std::to_string(r->type) + ")";
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Public checks
// ---------------------------------------------------------------------------------------------

void tcp_connect(const std::string& host_arg, std::uint16_t port, std::chrono::milliseconds timeout) {
  const Deadline deadline(timeout);
  // "[::1]" as in URLs is accepted for "::1".
  const std::string host = host_arg.size() > 2 && host_arg.front() == '[' && host_arg.back() == ']'
                               ? host_arg.substr(1, host_arg.size() - 2)
                               : host_arg;
  const Resolution r = resolve(host, port, deadline);
  if (r.addresses.empty()) fail("resolve " + host + ": " + r.error);
  std::string reasons;
  for (const Address& a : r.addresses) {
    const std::string error = connect_one(a, deadline);
    if (error.empty()) return;
    const std::string addr = numeric_address(a);
    const bool numeric = addr == host + ":" + std::to_string(port) || addr == "[" + host + "]:" + std::to_string(port);
    if (!reasons.empty()) reasons += "; ";
    reasons += "connect " + (numeric ? addr : host + " (" + addr + ")") + ": " + error;
    if (deadline.expired()) break;
  }
  fail(reasons);
}

void http_get(const std::string& url, std::chrono::milliseconds timeout) {
  const Deadline deadline(timeout);
  const std::vector<std::string> secrets = secrets_of(url);
  client::Easy easy;  // the body is discarded
  easy.setopt(CURLOPT_URL, url.c_str());
  easy.setopt(CURLOPT_TIMEOUT_MS, static_cast<long>(deadline.remaining_ms()));
  easy.setopt(CURLOPT_HTTPGET, 1L);
  easy.setopt(CURLOPT_FOLLOWLOCATION, 0L);
  easy.setopt(CURLOPT_USERAGENT, "keel-health-check");
#if LIBCURL_VERSION_NUM >= 0x075500  // 7.85.0
  easy.setopt(CURLOPT_PROTOCOLS_STR, "http,https");
#endif
  const client::Response& r = easy.perform();
  if (r.result == CURLE_OPERATION_TIMEDOUT) fail(deadline.timed_out());
  if (r.result == CURLE_COULDNT_CONNECT) {
    // curl's own text ("Failed to connect to ... Couldn't connect to server") hides the errno.
    const std::string where = host_port(url);
    if (r.os_errno != 0 && !where.empty()) fail("connect " + where + ": " + errno_text(static_cast<int>(r.os_errno)));
  }
  if (r.result != CURLE_OK) fail(scrub(one_line(r.error), secrets));
  if (r.status < 200 || r.status > 399) fail("HTTP " + std::to_string(r.status));
}

void sqlite(const std::string& path, std::chrono::milliseconds timeout) {
  const Deadline deadline(timeout);
  std::string file = path;
  if (file.rfind("sqlite://", 0) == 0) {
    file.erase(0, 9);
  } else if (file.rfind("sqlite:", 0) == 0) {
    file.erase(0, 7);
  }
  if (file.empty()) fail("sqlite: empty path");
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(file.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
  std::unique_ptr<sqlite3, SqliteCloser> db(raw);
  if (rc != SQLITE_OK) {
    fail("open " + file + ": " + (db ? std::string(sqlite3_errmsg(db.get())) : std::string(sqlite3_errstr(rc))));
  }
  sqlite3_busy_timeout(db.get(), deadline.remaining_ms());
  sqlite3_progress_handler(db.get(), 100, &sqlite_past_deadline, const_cast<Deadline*>(&deadline));
  // SELECT 1 alone never reads the file, so a file that is not a database would pass: read the
  // schema cookie first (page 1, the header SQLite validates).
  for (const char* sql : {"PRAGMA schema_version", "SELECT 1"}) {
    sqlite3_stmt* raw_stmt = nullptr;
    int step = sqlite3_prepare_v2(db.get(), sql, -1, &raw_stmt, nullptr);
    const std::unique_ptr<sqlite3_stmt, StatementFinalizer> stmt(raw_stmt);
    if (step == SQLITE_OK) step = sqlite3_step(stmt.get());
    if (step == SQLITE_ROW) continue;
    const std::string stage = std::string(sql) + " on " + file + ": ";
    if (step == SQLITE_INTERRUPT || ((step & 0xff) == SQLITE_BUSY && deadline.expired())) {
      fail(stage + deadline.timed_out());
    }
    fail(stage + sqlite3_errmsg(db.get()));
  }
}

void postgres(const std::string& conninfo, std::chrono::milliseconds timeout) {
  const Deadline deadline(timeout);
  std::vector<std::string> secrets = secrets_of(conninfo);
  if (const char* env = std::getenv("PGPASSWORD"); env != nullptr && *env != '\0') secrets.emplace_back(env);
  {
    // Parse first, for a clear error and to learn the (decoded) password to scrub.
    char* parse_error = nullptr;
    PQconninfoOption* options = PQconninfoParse(conninfo.c_str(), &parse_error);
    if (options == nullptr) {
      std::string message = parse_error != nullptr ? one_line(parse_error) : std::string("out of memory");
      if (parse_error != nullptr) PQfreemem(parse_error);
      fail("invalid connection string: " + scrub(message, secrets));
    }
    for (const PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
      if (std::strcmp(o->keyword, "password") == 0 && o->val != nullptr && *o->val != '\0')
        secrets.emplace_back(o->val);
    }
    PQconninfoFree(options);
    std::sort(secrets.begin(), secrets.end(), [](const auto& a, const auto& b) { return a.size() > b.size(); });
  }
  const auto error = [&](const std::string& stage, const char* message) {
    fail(stage + ": " + scrub(one_line(message != nullptr ? message : ""), secrets));
  };

  std::unique_ptr<PGconn, PgFinisher> conn(PQconnectStart(conninfo.c_str()));
  if (!conn) fail("connect: out of memory");
  PGconn* c = conn.get();
  if (PQstatus(c) == CONNECTION_BAD) error("connect", PQerrorMessage(c));
  PostgresPollingStatusType poll_status = PGRES_POLLING_WRITING;
  while (poll_status != PGRES_POLLING_OK) {
    if (poll_status == PGRES_POLLING_FAILED) error("connect", PQerrorMessage(c));
    if (poll_status == PGRES_POLLING_READING) {
      pg_wait(c, POLLIN, deadline, "connect");
    } else {
      pg_wait(c, POLLOUT, deadline, "connect");
    }
    poll_status = PQconnectPoll(c);
  }

  if (PQsetnonblocking(c, 1) != 0) error("SELECT 1", PQerrorMessage(c));
  if (PQsendQuery(c, "SELECT 1") == 0) error("SELECT 1", PQerrorMessage(c));
  for (;;) {
    const int flushed = PQflush(c);
    if (flushed == 0) break;
    if (flushed < 0) error("SELECT 1", PQerrorMessage(c));
    pg_wait(c, POLLIN | POLLOUT, deadline, "SELECT 1");
    if (PQconsumeInput(c) == 0) error("SELECT 1", PQerrorMessage(c));
  }
  bool answered = false;
  std::string query_error;
  for (;;) {
    while (PQisBusy(c) != 0) {
      pg_wait(c, POLLIN, deadline, "SELECT 1");
      if (PQconsumeInput(c) == 0) error("SELECT 1", PQerrorMessage(c));
    }
    std::unique_ptr<PGresult, PgResultClearer> result(PQgetResult(c));
    if (!result) break;
    if (PQresultStatus(result.get()) == PGRES_TUPLES_OK) {
      answered = true;
    } else if (query_error.empty()) {
      const char* message = PQresultErrorMessage(result.get());
      query_error = message != nullptr && *message != '\0' ? message : PQresStatus(PQresultStatus(result.get()));
    }
  }
  if (!query_error.empty()) error("SELECT 1", query_error.c_str());
  if (!answered) fail("SELECT 1: no result");
}

void redis_ping(const std::string& url, std::chrono::milliseconds timeout) {
  const Deadline deadline(timeout);
  const RedisTarget target = parse_redis_url(url);
  const std::vector<std::string> secrets = {target.password};
  const std::string where = (target.host.find(':') != std::string::npos ? "[" + target.host + "]" : target.host) + ":" +
                            std::to_string(target.port);

  std::unique_ptr<redisContext, RedisFreer> ctx(
      redisConnectWithTimeout(target.host.c_str(), target.port, to_timeval(deadline.remaining_ms())));
  if (!ctx) fail("connect " + where + ": out of memory");
  if (ctx->err != 0) {
    const int saved_errno = errno;
    if (ctx->err == REDIS_ERR_IO && (saved_errno == ETIMEDOUT || deadline.expired())) {
      fail("connect " + where + ": " + deadline.timed_out());
    }
    fail("connect " + where + ": " + scrub(ctx->errstr, secrets));
  }

  // Runs one command with the socket timeouts set to what is left of the deadline.
  const auto command = [&](const char* stage, auto... args) {
    const int left = deadline.remaining_ms();
    if (left <= 0) fail(std::string(stage) + ": " + deadline.timed_out());
    if (redisSetTimeout(ctx.get(), to_timeval(left)) != REDIS_OK) {
      fail(std::string(stage) + ": " + scrub(ctx->errstr, secrets));
    }
    std::unique_ptr<redisReply, ReplyFreer> reply(static_cast<redisReply*>(redisCommand(ctx.get(), args...)));
    const int saved_errno = errno;
    if (!reply) {
      if (ctx->err == REDIS_ERR_IO && (is_timeout_errno(saved_errno) || deadline.expired())) {
        fail(std::string(stage) + ": " + deadline.timed_out());
      }
      fail(std::string(stage) + ": " + (ctx->err != 0 ? scrub(ctx->errstr, secrets) : std::string("no reply")));
    }
    return reply;
  };

  if (!target.password.empty()) {
    auto reply = target.user.empty() ? command("AUTH", "AUTH %s", target.password.c_str())
                                     : command("AUTH", "AUTH %s %s", target.user.c_str(), target.password.c_str());
    if (reply->type == REDIS_REPLY_ERROR) fail("AUTH failed: " + scrub(reply_text(reply.get()), secrets));
  }
  if (!target.db.empty()) {
    auto reply = command("SELECT", "SELECT %s", target.db.c_str());
    if (reply->type == REDIS_REPLY_ERROR) fail("SELECT " + target.db + " failed: " + reply_text(reply.get()));
  }
  auto reply = command("PING", "PING");
  const std::string text = reply_text(reply.get());
  if ((reply->type == REDIS_REPLY_STATUS || reply->type == REDIS_REPLY_STRING) && text == "PONG") return;
  fail("PING answered: " + scrub(text, secrets));
}

}  // namespace keel::checks
