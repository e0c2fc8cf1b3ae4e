#include "cache.hpp"

#include <hiredis/hiredis.h>
#include <sys/time.h>

#include <charconv>
#include <stdexcept>

#include "keel/trace.hpp"

namespace demo {
namespace {

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

timeval to_timeval(std::chrono::milliseconds d) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(d.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((d.count() % 1000) * 1000);
  return tv;
}

struct Reply {
  redisReply* r;
  explicit Reply(void* p) : r(static_cast<redisReply*>(p)) {}
  Reply(const Reply&) = delete;
  Reply& operator=(const Reply&) = delete;
  ~Reply() {
    if (r != nullptr) freeReplyObject(r);
  }
};

}  // namespace

struct Cache::Conn {
  redisContext* c = nullptr;
  ~Conn() {
    if (c != nullptr) redisFree(c);
  }
};

Cache::Cache(const std::string& url, std::size_t pool_size, std::chrono::milliseconds timeout) : timeout_(timeout) {
  std::string rest = url;
  if (rest.rfind("redis://", 0) != 0) throw std::invalid_argument("cache_url: expected redis://HOST[:PORT][/DB]");
  rest = rest.substr(8);
  if (const auto at = rest.rfind('@'); at != std::string::npos) {
    std::string userinfo = rest.substr(0, at);
    rest = rest.substr(at + 1);
    const auto colon = userinfo.find(':');
    password_ = colon == std::string::npos ? userinfo : userinfo.substr(colon + 1);
  }
  if (const auto slash = rest.find('/'); slash != std::string::npos) {
    const std::string db = rest.substr(slash + 1);
    rest = rest.substr(0, slash);
    if (!db.empty() && std::from_chars(db.data(), db.data() + db.size(), db_).ec != std::errc())
      throw std::invalid_argument("cache_url: the database must be a number");
  }
  if (const auto colon = rest.rfind(':'); colon != std::string::npos && rest.find(']') == std::string::npos) {
    const std::string port = rest.substr(colon + 1);
    rest = rest.substr(0, colon);
    if (std::from_chars(port.data(), port.data() + port.size(), port_).ec != std::errc())
      throw std::invalid_argument("cache_url: the port must be a number");
  }
  host_ = rest.empty() ? "127.0.0.1" : rest;
  pool_ = std::make_unique<Pool<Conn>>(
      pool_size, [this] { return connect(); }, [](const Conn& c) { return static_cast<int>(c.c->fd); });
}

Cache::~Cache() = default;

std::unique_ptr<Cache::Conn> Cache::connect() {
  auto conn = std::make_unique<Conn>();
  conn->c = redisConnectWithTimeout(host_.c_str(), port_, to_timeval(timeout_));
  if (conn->c == nullptr) throw std::runtime_error("redis: out of memory");
  if (conn->c->err != 0) throw std::runtime_error(std::string("redis: connect: ") + conn->c->errstr);
  redisSetTimeout(conn->c, to_timeval(timeout_));
  if (!password_.empty()) {
    Reply r(redisCommand(conn->c, "AUTH %b", password_.data(), password_.size()));
    if (r.r == nullptr || r.r->type == REDIS_REPLY_ERROR) throw std::runtime_error("redis: AUTH failed");
  }
  if (db_ != 0) {
    Reply r(redisCommand(conn->c, "SELECT %d", db_));
    if (r.r == nullptr || r.r->type == REDIS_REPLY_ERROR) throw std::runtime_error("redis: SELECT failed");
  }
  return conn;
}

bool Cache::available() const noexcept {
  return now_ms() >= skip_until_ms_.load(std::memory_order_relaxed);
}

void Cache::failed(const std::string&) noexcept {
  skip_until_ms_.store(now_ms() + 1000, std::memory_order_relaxed);
}

std::optional<std::string> Cache::get(const std::string& key) noexcept {
  if (!available()) return std::nullopt;
  try {
    keel::Span span("GET cache", keel::SpanKind::kClient);
    span.set_attribute("db.system.name", "redis").set_attribute("db.operation.name", "GET");
    auto lease = pool_->acquire();
    Reply r(redisCommand(lease->c, "GET %b", key.data(), key.size()));
    if (r.r == nullptr) {
      lease.discard();
      failed(lease->c->errstr);
      return std::nullopt;
    }
    if (r.r->type == REDIS_REPLY_STRING) return std::string(r.r->str, r.r->len);
  } catch (const std::exception& e) {
    failed(e.what());
  }
  return std::nullopt;
}

void Cache::set(const std::string& key, const std::string& value, std::chrono::seconds ttl) noexcept {
  if (!available()) return;
  try {
    keel::Span span("SET cache", keel::SpanKind::kClient);
    span.set_attribute("db.system.name", "redis").set_attribute("db.operation.name", "SET");
    auto lease = pool_->acquire();
    Reply r(redisCommand(lease->c, "SET %b %b EX %lld", key.data(), key.size(), value.data(), value.size(),
                         static_cast<long long>(ttl.count())));
    if (r.r == nullptr) {
      lease.discard();
      failed(lease->c->errstr);
    }
  } catch (const std::exception& e) {
    failed(e.what());
  }
}

void Cache::del(const std::string& key) noexcept {
  // Invalidation is attempted even while reads skip the cache: a stale entry must not survive.
  try {
    keel::Span span("DEL cache", keel::SpanKind::kClient);
    span.set_attribute("db.system.name", "redis").set_attribute("db.operation.name", "DEL");
    auto lease = pool_->acquire();
    Reply r(redisCommand(lease->c, "DEL %b", key.data(), key.size()));
    if (r.r == nullptr) {
      lease.discard();
      failed(lease->c->errstr);
    }
  } catch (const std::exception& e) {
    failed(e.what());
  }
}

void Cache::ping() {
  auto lease = pool_->acquire();
  Reply r(redisCommand(lease->c, "PING"));
  if (r.r == nullptr) {
    lease.discard();
    throw std::runtime_error(std::string("redis: ") + lease->c->errstr);
  }
  if (r.r->type == REDIS_REPLY_ERROR) throw std::runtime_error(std::string("redis: ") + r.r->str);
}

}  // namespace demo
