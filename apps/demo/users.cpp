#include "users.hpp"

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

nlohmann::json to_json(const User& u) {
  return {
      {"id", u.id}, {"name", u.name}, {"email", u.email}, {"created_at", u.created_at}, {"updated_at", u.updated_at}};
}

// RFC 9457 problem details.
keel::Response problem(int status, const std::string& title, const std::string& detail, nlohmann::json extra = {}) {
  nlohmann::json body = {{"type", "about:blank"}, {"title", title}, {"status", status}, {"detail", detail}};
  if (extra.is_object())
    for (auto& [k, v] : extra.items()) body[k] = v;
  keel::Response r = keel::Response::json(body, status);
  r.set_content_type("application/problem+json");
  return r;
}

struct FieldError {
  std::string field;
  std::string message;
};

keel::Response invalid(const std::vector<FieldError>& errors) {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& e : errors) list.push_back({{"field", e.field}, {"message", e.message}});
  return problem(422, "Unprocessable Content", "the request has invalid fields", {{"errors", list}});
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
  } else if (is_email && !email_shaped(v)) {
    errors.push_back({name, "must be an email address like name@example.com"});
  } else {
    return v;
  }
  return std::nullopt;
}

// The body as a JSON object, or the problem to answer.
std::optional<keel::Response> parse_object(keel::Request& req, nlohmann::json& out) {
  out = req.json();  // 400 / 415 from keel when malformed or not JSON
  if (!out.is_object()) return problem(422, "Unprocessable Content", "the body must be a JSON object");
  return std::nullopt;
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

keel::Response not_found(std::int64_t id) {
  return problem(404, "Not Found", "no user with id " + std::to_string(id));
}

}  // namespace

void add_user_routes(keel::App& app, const std::shared_ptr<State>& state) {
  // Fault injection for deploy tests: only the API is affected, never health or metrics.
  app.use({.before = [state](keel::Request& req) -> std::optional<keel::Response> {
             if (state->fault_error_ratio <= 0 || req.route().rfind("/api/", 0) != 0) return std::nullopt;
             thread_local std::mt19937_64 rng{std::random_device{}()};
             if (std::uniform_real_distribution<double>(0, 1)(rng) < state->fault_error_ratio)
               return problem(500, "Internal Server Error", "injected by fault_error_ratio");
             return std::nullopt;
           },
           .after = {}});

  app.get("/api/users", [state](keel::Request& req) -> keel::Task<keel::Response> {
    co_await keel::sleep(state->fault_latency);
    std::vector<FieldError> errors;
    const auto limit = query_int(req, "limit", kDefaultLimit, 1, kMaxLimit, errors);
    const auto offset = query_int(req, "offset", 0, 0, INT64_MAX / 2, errors);
    if (!errors.empty()) co_return invalid(errors);
    auto [users, total] = co_await keel::offload([&] {
      return std::pair{state->store->list(*limit, *offset), state->store->count()};
    });
    nlohmann::json items = nlohmann::json::array();
    for (const auto& u : users) items.push_back(to_json(u));
    co_return keel::Response::json({{"items", items}, {"total", total}, {"limit", *limit}, {"offset", *offset}});
  });

  app.post("/api/users", [state](keel::Request& req) -> keel::Task<keel::Response> {
    co_await keel::sleep(state->fault_latency);
    nlohmann::json body;
    if (auto p = parse_object(req, body)) co_return std::move(*p);
    std::vector<FieldError> errors;
    const auto name = string_field(body, "name", true, errors);
    const auto email = string_field(body, "email", true, errors);
    for (const auto& [key, _] : body.items())
      if (key != "name" && key != "email") errors.push_back({key, "is not a field of a user"});
    if (!errors.empty()) co_return invalid(errors);
    try {
      const User u = co_await keel::offload([&] { return state->store->create(*name, *email); });
      keel::Response r = keel::Response::json(to_json(u), 201);
      r.add_header("Location", "/api/users/" + std::to_string(u.id));
      co_return r;
    } catch (const Conflict& e) {
      co_return problem(409, "Conflict", e.what());
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
    if (!body) co_return not_found(id);
    keel::Response r = keel::Response::text(std::move(*body));
    r.set_content_type("application/json");
    co_return r;
  });

  auto update = [state](bool partial) {
    return [state, partial](keel::Request& req) -> keel::Task<keel::Response> {
      co_await keel::sleep(state->fault_latency);
      const std::int64_t id = req.param_int("id");
      nlohmann::json body;
      if (auto p = parse_object(req, body)) co_return std::move(*p);
      std::vector<FieldError> errors;
      UserChanges changes;
      changes.name = string_field(body, "name", !partial, errors);
      changes.email = string_field(body, "email", !partial, errors);
      for (const auto& [key, _] : body.items())
        if (key != "name" && key != "email") errors.push_back({key, "is not a field of a user"});
      if (!errors.empty()) co_return invalid(errors);
      try {
        auto u = co_await keel::offload([&] {
          auto updated = state->store->update(id, changes);
          if (state->cache) state->cache->del(cache_key(id));
          return updated;
        });
        if (!u) co_return not_found(id);
        co_return keel::Response::json(to_json(*u));
      } catch (const Conflict& e) {
        co_return problem(409, "Conflict", e.what());
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
    if (!removed) co_return not_found(id);
    co_return keel::Response(204);
  });
}

}  // namespace demo
