// keel-demo: a users API on SQLite (default) or PostgreSQL, with an optional Redis cache — built on
// keel the way a service would be — plus the TechEmpower /plaintext and /json routes.
//
//   SECRET_KEY=dev keel-demo --bind 127.0.0.1:8000 --workers 2
//   DATABASE_URL=postgresql://app@127.0.0.1/app CACHE_URL=redis://127.0.0.1:6379 SECRET_KEY_FILE=/run/secrets/key
//   keel-demo
#include <atomic>
#include <memory>
#include <random>

#include "cache.hpp"
#include "keel/checks.hpp"
#include "keel/client.hpp"
#include "keel/keel.hpp"
#include "store.hpp"
#include "users.hpp"

int main(int argc, char** argv) {
  keel::App app;
  app.name("keel-demo").description("keel's demo service: a users API on SQLite or PostgreSQL with a Redis cache");
  using keel::SettingType;
  // The deployment files (deploy/) name the demo's settings APP_*: keep that prefix rather than
  // the one derived from the name (KEEL_DEMO_).
  app.settings().env_prefix("APP_");
  app.settings()
      .add({.name = "database_url",
            .type = SettingType::kUrl,
            .default_value = "sqlite:./keel-demo.db",
            .help = "sqlite:PATH, or postgresql://USER[:PASSWORD]@HOST[:PORT]/DB",
            .schemes = {"sqlite", "postgresql", "postgres"},
            .env = "DATABASE_URL"})
      .add({.name = "secret_key",
            .help = "signing key; required, no default (SECRET_KEY, or SECRET_KEY_FILE for a mounted secret)",
            .secret = true,
            .env = "SECRET_KEY",
            .validate =
                [](std::string_view v) {
                  return v.size() < 8 ? std::string("must be at least 8 characters") : std::string();
                }})
      .add({.name = "cache_url",
            .type = SettingType::kUrl,
            .optional = true,
            .help = "redis://[:PASSWORD@]HOST[:PORT][/DB] caches GET /api/users/{id}",
            .schemes = {"redis"},
            .env = "CACHE_URL"})
      .add({.name = "cache_ttl", .type = SettingType::kDuration, .default_value = "60s", .min = 1000})
      .add({.name = "fault_error_ratio",
            .type = SettingType::kFloat,
            .default_value = "0",
            .help = "testing deploys: answer this share of /api requests with 500",
            .min = 0,
            .max = 1})
      .add({.name = "fault_latency",
            .type = SettingType::kDuration,
            .default_value = "0s",
            .help = "testing deploys: added to each /api request",
            .max = 60000})
      .add({.name = "fault_fail_startup",
            .type = SettingType::kBool,
            .default_value = "false",
            .help = "testing deploys: the startup hook fails"})
      .add({.name = "test_routes",
            .type = SettingType::kBool,
            .default_value = "false",
            .help = "serve POST /test/tracecontext (the W3C Trace Context test harness); it calls caller-given URLs",
            .env = "TEST_ROUTES"})
      .add({.name = "fault_never_ready",
            .type = SettingType::kBool,
            .default_value = "false",
            .help = "testing deploys: readiness never passes"});

  // Per worker (after the fork): connection pools, the migration, the readiness checks.
  auto state = std::make_shared<demo::State>();
  app.on_startup([&app, state] {
    const keel::Settings& s = app.settings();
    if (s.boolean("fault_fail_startup")) throw std::runtime_error("fault_fail_startup is set");
    const auto pool = static_cast<std::size_t>(app.options().threads);
    state->store = demo::open_store(s.string("database_url"), pool);
    // A database that is not reachable yet is not a boot failure: the worker serves (liveness 200,
    // readiness 503 naming the database) and the migration retries in the background.
    state->migrate_or_retry();
    if (s.has("cache_url"))
      state->cache = std::make_unique<demo::Cache>(s.string("cache_url"), pool, std::chrono::milliseconds(100));
    state->cache_ttl = std::chrono::duration_cast<std::chrono::seconds>(s.duration("cache_ttl"));
    state->fault_error_ratio = s.number("fault_error_ratio");
    state->fault_latency = s.duration("fault_latency");
    app.health().add("database",
                     [state] {
                       if (!state->database_ready.load(std::memory_order_acquire))
                         throw std::runtime_error("not migrated yet: " + state->database_error());
                       state->store->ping();
                     },
                     {.timeout = std::chrono::milliseconds(1000)});
    if (state->cache)
      app.health().add("cache", [state] { state->cache->ping(); },
                       {.timeout = std::chrono::milliseconds(500), .critical = false});
    if (s.boolean("fault_never_ready"))
      app.health().add("fault_never_ready", [] { throw std::runtime_error("fault_never_ready is set"); });
  });
  app.on_shutdown([state] {
    state->stop_migrating();
    state->cache.reset();
    state->store.reset();
  });

  demo::add_user_routes(app, state);
  // The W3C Trace Context conformance harness: for each {"url", "arguments"}, POST the arguments
  // to the url with the propagated context, in order, then answer. Off unless test_routes is set,
  // since it makes requests to URLs a caller chooses; bounded in steps (and, by keel, in nesting).
  app.post("/test/tracecontext", [&app](keel::Request& req) -> keel::Task<keel::Response> {
    constexpr std::size_t kMaxSteps = 32;
    if (!app.settings().boolean("test_routes")) co_return keel::Response::text("not found", 404);
    const nlohmann::json steps = req.json();
    if (!steps.is_array()) co_return keel::Response::text("expected a JSON array", 400);
    if (steps.size() > kMaxSteps)
      throw keel::HttpError(
          422, "at most " + std::to_string(kMaxSteps) + " steps per request, got " + std::to_string(steps.size()));
    for (const auto& step : steps) {
      if (!step.is_object() || !step.contains("url") || !step["url"].is_string())
        co_return keel::Response::text("each element needs a url", 400);
      const auto url = step["url"].get<std::string>();
      if (url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0)
        co_return keel::Response::text("url must be http(s)", 400);
      // A named request: GCC 12 miscompiles braced temporaries inside co_await (keel/client.hpp).
      keel::ClientRequest call;
      call.method = "POST";
      call.url = url;
      call.headers = {{"Content-Type", "application/json"}};
      call.body = step.value("arguments", nlohmann::json::array()).dump();
      call.timeout = std::chrono::seconds(5);
      (void)co_await keel::fetch(call);
    }
    co_return keel::Response::text("");
  });
  app.get("/plaintext", [](keel::Request&) { return keel::Response::text("Hello, World!"); });
  app.get("/json", [](keel::Request&) {
    keel::JsonWriter w;  // serialised per request (TechEmpower rule), without a DOM
    w.begin_object().key("message").value("Hello, World!").end_object();
    return keel::Response::json(std::move(w));
  });
  return app.run(argc, argv);
}
