#include "users.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <random>
#include <string>
#include <vector>

namespace demo {
namespace {

constexpr std::int64_t kDefaultLimit = 50;
constexpr std::int64_t kMaxLimit = 100;
constexpr std::size_t kMaxName = 100;
constexpr std::size_t kMaxEmail = 254;  // RFC 5321 path limit
// A 422 names at most this many unknown keys, each cut to kMaxEchoedKey bytes: the answer stays
// small whatever the body holds.
constexpr std::size_t kMaxEchoedUnknown = 5;
constexpr std::size_t kMaxEchoedKey = 64;
// The first retry of a migration that could not reach the database, doubled up to the second.
constexpr std::chrono::milliseconds kRetryFirst{250};
constexpr std::chrono::milliseconds kRetryMax{5000};

const keel::Logger& db_log() {
  static const keel::Logger log("demo.database");
  return log;
}

nlohmann::json to_json(const User& u) {
  return {
      {"id", u.id}, {"name", u.name}, {"email", u.email}, {"created_at", u.created_at}, {"updated_at", u.updated_at}};
}

struct FieldError {
  std::string field;
  std::string message;
};

// A 422 listing the fields (RFC 9457 problem details, with an "errors" member).
keel::HttpError invalid(const std::vector<FieldError>& errors, std::size_t unknown_not_listed = 0) {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& e : errors) list.push_back({{"field", e.field}, {"message", e.message}});
  nlohmann::json extra = {{"errors", list}};
  if (unknown_not_listed > 0) extra["unknown_fields_not_listed"] = unknown_not_listed;
  return {422, "the request has invalid fields", std::move(extra)};
}

// At most `max` bytes of a UTF-8 string, cut at a character boundary, "..." when cut.
std::string shortened(const std::string& s, std::size_t max) {
  if (s.size() <= max) return s;
  std::size_t end = max;
  while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) --end;  // not inside a character
  return s.substr(0, end) + "...";
}

// Unknown keys are errors; the first few are named (shortened), the rest only counted.
std::size_t reject_unknown_keys(const nlohmann::json& body, std::vector<FieldError>& errors) {
  std::size_t unknown = 0;
  for (const auto& [key, _] : body.items()) {
    if (key == "name" || key == "email") continue;
    if (++unknown <= kMaxEchoedUnknown) errors.push_back({shortened(key, kMaxEchoedKey), "is not a field of a user"});
  }
  return unknown > kMaxEchoedUnknown ? unknown - kMaxEchoedUnknown : 0;
}

// C0 controls (NUL, tab, newline, ...), DEL, and the C1 controls U+0080-U+009F (UTF-8 C2 80-9F).
bool has_control_characters(const std::string& s) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f) return true;
    if (c == 0xC2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) >= 0x80 &&
        static_cast<unsigned char>(s[i + 1]) <= 0x9F)
      return true;
  }
  return false;
}

bool valid_utf8(const std::string& s) {
  try {
    (void)nlohmann::json(s).dump();  // throws on invalid UTF-8
    return true;
  } catch (const nlohmann::json::exception&) {
    return false;
  }
}

// A pragmatic shape check, not RFC 5322: one '@', a non-empty local part, a dotted domain of
// letters, digits and hyphens, no spaces or control characters.
bool email_shaped(const std::string& e) {
  const auto at = e.find('@');
  if (at == std::string::npos || at == 0 || e.find('@', at + 1) != std::string::npos) return false;
  for (char c : e)
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f || c == '<' || c == '>' || c == ',') return false;
  const std::string domain = e.substr(at + 1);
  if (domain.size() < 3 || domain.find('.') == std::string::npos || domain.front() == '.' || domain.back() == '.' ||
      domain.find("..") != std::string::npos)
    return false;
  for (char c : domain)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-')) return false;
  return true;
}

// Validates one string field of a JSON body; required: absent is an error.
std::optional<std::string> string_field(const nlohmann::json& body, const char* name, bool required,
                                        std::vector<FieldError>& errors) {
  const auto it = body.find(name);
  if (it == body.end()) {
    if (required) errors.push_back({name, "is required"});
    return std::nullopt;
  }
  if (!it->is_string()) {
    errors.push_back({name, "must be a string"});
    return std::nullopt;
  }
  std::string v = it->get<std::string>();
  const bool is_email = std::string_view(name) == "email";
  const std::size_t max = is_email ? kMaxEmail : kMaxName;
  if (v.empty() || v.find_first_not_of(" \t") == std::string::npos) {
    errors.push_back({name, "must not be empty"});
  } else if (v.size() > max) {
    errors.push_back({name, "must be at most " + std::to_string(max) + " bytes"});
  } else if (!valid_utf8(v)) {
    errors.push_back({name, "must be valid UTF-8"});
  } else if (has_control_characters(v)) {
    errors.push_back({name, "must not contain control characters (NUL, tab, newline, ...)"});
  } else if (is_email && !email_shaped(v)) {
    errors.push_back({name, "must be an email address like name@example.com"});
  } else {
    return v;
  }
  return std::nullopt;
}

bool is_json_media_type(std::string_view content_type) {
  std::string_view media = content_type.substr(0, content_type.find(';'));
  while (!media.empty() && (media.back() == ' ' || media.back() == '\t')) media.remove_suffix(1);
  std::string lower(media);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return lower == "application/json";
}

// The body as a JSON object; throws the problem to answer.
nlohmann::json parse_object(keel::Request& req) {
  // Required, not just checked when present: a cross-site form or a no-cors fetch can send a body
  // without a preflight only as text/plain, a form type, or with no Content-Type at all.
  if (!is_json_media_type(req.header("Content-Type").value_or("")))
    throw keel::HttpError(415, "the body must be sent as Content-Type: application/json");
  nlohmann::json out = req.json();  // 400 from keel when malformed or nested too deep
  if (!out.is_object()) throw keel::HttpError(422, "the body must be a JSON object");
  return out;
}

std::optional<std::int64_t> query_int(keel::Request& req, const char* name, std::int64_t fallback, std::int64_t min,
                                      std::int64_t max, std::vector<FieldError>& errors) {
  const auto v = req.query_param(name);
  if (!v) return fallback;
  std::int64_t n = 0;
  const auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), n);
  if (v->empty() || ec != std::errc() || p != v->data() + v->size() || n < min || n > max) {
    errors.push_back({name, "must be an integer from " + std::to_string(min) + " to " + std::to_string(max)});
    return std::nullopt;
  }
  return n;
}

std::string cache_key(std::int64_t id) {
  return "keel-demo:user:" + std::to_string(id);
}

keel::HttpError not_found(std::int64_t id) {
  return {404, "no user with id " + std::to_string(id)};
}

}  // namespace

void State::migrate_or_retry() {
  try {
    store->migrate();
    database_ready.store(true, std::memory_order_release);
    return;
  } catch (const std::exception& e) {
    std::lock_guard lock(mutex_);
    database_error_ = e.what();
    db_log().warning("database_unavailable",
                     {{"error", e.what()}, {"attempt", 1}, {"retry_in", std::chrono::nanoseconds(kRetryFirst)}});
  }
  migrator_ = std::thread([this] { retry_migration(); });
}

void State::retry_migration() {
  auto delay = kRetryFirst;
  for (int attempt = 2;; ++attempt) {
    {
      std::unique_lock lock(mutex_);
      if (wake_.wait_for(lock, delay, [this] { return stopping_; })) return;
    }
    try {
      store->migrate();
      {
        std::lock_guard lock(mutex_);
        database_error_.clear();
      }
      database_ready.store(true, std::memory_order_release);
      db_log().info("database_ready", {{"attempts", attempt}});
      return;
    } catch (const std::exception& e) {
      delay = std::min(delay * 2, kRetryMax);
      std::lock_guard lock(mutex_);
      database_error_ = e.what();
      db_log().warning("database_unavailable",
                       {{"error", e.what()}, {"attempt", attempt}, {"retry_in", std::chrono::nanoseconds(delay)}});
    }
  }
}

std::string State::database_error() const {
  std::lock_guard lock(mutex_);
  return database_error_;
}

void State::stop_migrating() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (migrator_.joinable()) migrator_.join();
}

void add_user_routes(keel::App& app, const std::shared_ptr<State>& state) {
  // Until the schema is in place (the database may come up after the service), the API answers
  // 503; liveness stays 200 and readiness names the database.
  app.use({.before = [state](keel::Request& req) -> std::optional<keel::Response> {
             if (state->database_ready.load(std::memory_order_acquire) || req.route().rfind("/api/", 0) != 0)
               return std::nullopt;
             throw keel::HttpError(503, "the database is not available yet").with_header("Retry-After", "1");
           },
           .after = {}});
  // Fault injection for deploy tests: only the API is affected, never health or metrics.
  app.use({.before = [state](keel::Request& req) -> std::optional<keel::Response> {
             if (state->fault_error_ratio <= 0 || req.route().rfind("/api/", 0) != 0) return std::nullopt;
             thread_local std::mt19937_64 rng{std::random_device{}()};
             if (std::uniform_real_distribution<double>(0, 1)(rng) < state->fault_error_ratio)
               throw keel::HttpError(500, "injected by fault_error_ratio");
             return std::nullopt;
           },
           .after = {}});

  app.get("/api/users", [state](keel::Request& req) -> keel::Task<keel::Response> {
    co_await keel::sleep(state->fault_latency);
    std::vector<FieldError> errors;
    const auto limit = query_int(req, "limit", kDefaultLimit, 1, kMaxLimit, errors);
    const auto offset = query_int(req, "offset", 0, 0, INT64_MAX / 2, errors);
    if (!errors.empty()) throw invalid(errors);
    auto [users, total] = co_await keel::offload([&] {
      return std::pair{state->store->list(*limit, *offset), state->store->count()};
    });
    nlohmann::json items = nlohmann::json::array();
    for (const auto& u : users) items.push_back(to_json(u));
    co_return keel::Response::json({{"items", items}, {"total", total}, {"limit", *limit}, {"offset", *offset}});
  });

  app.post("/api/users", [state](keel::Request& req) -> keel::Task<keel::Response> {
    co_await keel::sleep(state->fault_latency);
    const nlohmann::json body = parse_object(req);
    std::vector<FieldError> errors;
    const auto name = string_field(body, "name", true, errors);
    const auto email = string_field(body, "email", true, errors);
    const std::size_t not_listed = reject_unknown_keys(body, errors);
    if (!errors.empty()) throw invalid(errors, not_listed);
    try {
      const User u = co_await keel::offload([&] { return state->store->create(*name, *email); });
      keel::Response r = keel::Response::json(to_json(u), 201);
      r.add_header("Location", "/api/users/" + std::to_string(u.id));
      co_return r;
    } catch (const Conflict& e) {
      throw keel::HttpError(409, e.what());
    }
  });

  app.get("/api/users/{id:int}", [state](keel::Request& req) -> keel::Task<keel::Response> {
    co_await keel::sleep(state->fault_latency);
    const std::int64_t id = req.param_int("id");
    auto body = co_await keel::offload([&]() -> std::optional<std::string> {
      if (state->cache)
        if (auto hit = state->cache->get(cache_key(id))) return hit;
      auto u = state->store->get(id);
      if (!u) return std::nullopt;
      std::string json = to_json(*u).dump();
      if (state->cache) state->cache->set(cache_key(id), json, state->cache_ttl);
      return json;
    });
    if (!body) throw not_found(id);
    keel::Response r = keel::Response::text(std::move(*body));
    r.set_content_type("application/json");
    co_return r;
  });

  auto update = [state](bool partial) {
    return [state, partial](keel::Request& req) -> keel::Task<keel::Response> {
      co_await keel::sleep(state->fault_latency);
      const std::int64_t id = req.param_int("id");
      const nlohmann::json body = parse_object(req);
      std::vector<FieldError> errors;
      UserChanges changes;
      changes.name = string_field(body, "name", !partial, errors);
      changes.email = string_field(body, "email", !partial, errors);
      const std::size_t not_listed = reject_unknown_keys(body, errors);
      if (!errors.empty()) throw invalid(errors, not_listed);
      try {
        auto u = co_await keel::offload([&] {
          auto updated = state->store->update(id, changes);
          if (state->cache) state->cache->del(cache_key(id));
          return updated;
        });
        if (!u) throw not_found(id);
        co_return keel::Response::json(to_json(*u));
      } catch (const Conflict& e) {
        throw keel::HttpError(409, e.what());
      }
    };
  };
  app.put("/api/users/{id:int}", update(false));
  app.patch("/api/users/{id:int}", update(true));

  app.del("/api/users/{id:int}", [state](keel::Request& req) -> keel::Task<keel::Response> {
    co_await keel::sleep(state->fault_latency);
    const std::int64_t id = req.param_int("id");
    const bool removed = co_await keel::offload([&] {
      const bool gone = state->store->remove(id);
      if (state->cache) state->cache->del(cache_key(id));
      return gone;
    });
    if (!removed) throw not_found(id);
    co_return keel::Response(204);
  });
}

}  // namespace demo
