// keel-testapp: the application the process-level tests drive over real sockets. It exercises
// every handler shape (sync, coroutine, offload, streaming) and every error path.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>

#include "keel/checks.hpp"
#include "keel/keel.hpp"
#include "keel/trace.hpp"

void add_coroutine_pattern_routes(keel::App& app);  // coroutine_patterns.cpp

namespace {
long query_long(const keel::Request& req, std::string_view name, long fallback) {
  const auto v = req.query_param(name);
  return v ? std::stol(*v) : fallback;
}
}  // namespace

// Blocks the worker's event loop (a handler bug keel must survive): the master's --timeout
// aborts the worker, whose stack trace must name this function. External linkage on purpose, so
// the symbol is exported (-rdynamic) and appears in the trace.
keel::Response blocking_handler(keel::Request& req) {
  ::usleep(static_cast<useconds_t>(query_long(req, "ms", 5000) * 1000));
  return keel::Response::text("unblocked");
}

namespace {
// Lifecycle hooks announce themselves as JSON lines (stdout stays one JSON object per line).
// Written at once (the order of lines across processes is what the hook tests check), but never
// blocking: the master runs hooks too, and a stdout nobody reads must not stop it supervising
// (tests/hardening's stuck-pipe test). A line that does not fit is dropped.
void announce(std::string_view hook, long worker = -1) {
  static const int out = [] {
    // A pipe or terminal gets its own non-blocking open file description; a regular file (which
    // never blocks) is written as it is, sharing its offset with the server's log lines.
    struct stat st {};
    if (::fstat(STDOUT_FILENO, &st) != 0 || !(S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode))) return STDOUT_FILENO;
    const int fd = ::open("/proc/self/fd/1", O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    return fd >= 0 ? fd : STDOUT_FILENO;
  }();
  char line[256];
  const int n =
      std::snprintf(line, sizeof line, "{\"event\":\"testapp_hook\",\"hook\":\"%.*s\",\"pid\":%d,\"worker_id\":%ld}\n",
                    static_cast<int>(hook.size()), hook.data(), static_cast<int>(::getpid()), worker);
  if (n > 0) {
    [[maybe_unused]] const ssize_t written = ::write(out, line, static_cast<std::size_t>(std::min(n, 255)));
  }
}
}  // namespace

int main(int argc, char** argv) {
  keel::App app;
  // Application settings, resolved with keel's own (tests drive them through every source).
  app.settings()
      .add({.name = "fail_startup",  // every worker's startup hook throws (boot failure)
            .type = keel::SettingType::kBool,
            .default_value = "false",
            .env = "KEEL_TESTAPP_FAIL_STARTUP"})
      .add({.name = "version",  // which build answers: upgrade tests start the new binary with another
            .default_value = "1",
            .env = "KEEL_TESTAPP_VERSION"})
      .add({.name = "message", .default_value = "hello", .help = "what /settings/message answers"})
      .add({.name = "api_token",
            .optional = true,
            .help = "a secret; /settings/api_token tells if set",
            .secret = true});
  // Readiness checks the health tests switch on: real dependencies and misbehaving checks.
  using keel::SettingType;
  app.settings()
      .add({.name = "check_postgres", .type = SettingType::kUrl, .optional = true})
      .add({.name = "check_redis", .type = SettingType::kUrl, .optional = true, .help = "non-critical"})
      .add({.name = "check_sqlite", .optional = true})
      .add({.name = "check_tcp_port", .type = SettingType::kInt, .optional = true, .min = 1, .max = 65535})
      .add({.name = "check_hang",
            .type = SettingType::kDuration,
            .optional = true,
            .help = "blocking check sleeping this long"})
      .add({.name = "check_async_hang", .type = SettingType::kDuration, .optional = true})
      .add({.name = "check_timeout", .type = SettingType::kDuration, .default_value = "1s", .min = 1});
  static std::atomic<long> check_runs{0};
  app.on_startup([&app] {
    announce("startup");
    auto& s = app.settings();
    if (s.boolean("fail_startup"))
      throw std::runtime_error("database unreachable (injected by KEEL_TESTAPP_FAIL_STARTUP)");
    const auto timeout = s.duration("check_timeout");
    const keel::CheckOptions critical{.timeout = timeout};
    // Built-in checks bound themselves a little below the check's timeout.
    const auto inner = std::max(std::chrono::milliseconds{1}, timeout - timeout / 5);
    app.health().add(
        "counter", [] { ++check_runs; }, critical);
    if (s.has("check_postgres"))
      app.health().add(
          "postgres", [url = s.string("check_postgres"), inner] { keel::checks::postgres(url, inner); }, critical);
    if (s.has("check_redis"))
      app.health().add("redis", [url = s.string("check_redis"), inner] { keel::checks::redis_ping(url, inner); },
                       {.timeout = timeout, .critical = false});
    if (s.has("check_sqlite"))
      app.health().add(
          "sqlite", [path = s.string("check_sqlite"), inner] { keel::checks::sqlite(path, inner); }, critical);
    if (s.has("check_tcp_port"))
      app.health().add(
          "tcp",
          [port = static_cast<std::uint16_t>(s.integer("check_tcp_port")), inner] {
            keel::checks::tcp_connect("127.0.0.1", port, inner);
          },
          critical);
    if (s.has("check_hang"))
      app.health().add(
          "hang", [d = s.duration("check_hang")] { std::this_thread::sleep_for(d); }, critical);
    if (s.has("check_async_hang"))
      app.health().add(
          "async_hang", [d = s.duration("check_async_hang")]() -> keel::Task<void> { co_await keel::sleep(d); },
          critical);
  });
  // Logs from every place a handler runs: before and after a co_await, and on the thread pool.
  app.get("/log-everywhere", [](keel::Request&) -> keel::Task<keel::Response> {
    static const keel::Logger log("testapp");
    keel::bind_log_field("tenant", "acme");
    log.info("before_sleep", {{"step", 1}});
    co_await keel::sleep(std::chrono::milliseconds(5));
    log.info("after_sleep", {{"step", 2}});
    co_await keel::offload([] { log.warning("in_offload", {{"step", 3}}); });
    co_return keel::Response::text("logged");
  });
  // A child span across a co_await and into offloaded work, with attributes and an event.
  app.get("/span-demo", [](keel::Request&) -> keel::Task<keel::Response> {
    static const keel::Logger log("testapp");
    keel::Span span("work");
    span.set_attribute("work.items", 3).set_attribute("work.kind", "demo");
    co_await keel::sleep(std::chrono::milliseconds(2));
    co_await keel::offload([] {
      keel::Span inner("offloaded");
      log.info("inside_inner_span");
    });
    span.add_event("halfway");
    log.info("inside_span");
    co_return keel::Response::text("spanned");
  });
  app.get("/fail", [](keel::Request&) -> keel::Response { throw std::runtime_error("handler failure"); });
  app.get("/check-runs", [](keel::Request&) { return std::to_string(check_runs.load()); });
  app.on_shutdown([] { announce("shutdown"); });
  auto& hooks = app.hooks();
  hooks.on_starting = [] { announce("on_starting"); };
  hooks.when_ready = [] { announce("when_ready"); };
  hooks.pre_fork = [](int id) { announce("pre_fork", id); };
  hooks.post_fork = [](int id) { announce("post_fork", id); };
  hooks.worker_exit = [](int id, int, std::string_view) { announce("worker_exit", id); };
  hooks.on_exit = [] { announce("on_exit"); };
  app.get("/plaintext", [](keel::Request&) { return keel::Response::text("Hello, World!"); });
  app.get("/json", [](keel::Request&) { return keel::Response::json({{"message", "Hello, World!"}}); });
  app.post("/echo", [](keel::Request& req) {
    keel::Response r = keel::Response::text(std::string(req.body()));
    r.set_content_type(std::string(req.header("Content-Type").value_or("application/octet-stream")));
    r.add_header("X-Body-Length", std::to_string(req.body().size()));
    r.add_header("X-Trailer-Count", std::to_string(req.trailers().size()));
    return r;
  });
  app.get("/sleep", [](keel::Request& req) -> keel::Task<keel::Response> {
    co_await keel::sleep(std::chrono::milliseconds(query_long(req, "ms", 100)));
    co_return keel::Response::text("slept");
  });
  app.get("/offload", [](keel::Request& req) -> keel::Task<keel::Response> {
    const long ms = query_long(req, "ms", 50);
    const long slept = co_await keel::offload([ms] {
      ::usleep(static_cast<useconds_t>(ms * 1000));
      return ms;
    });
    co_return keel::Response::text("offloaded " + std::to_string(slept));
  });
  add_coroutine_pattern_routes(app);
  // A route template keel cannot read: run() must name it and exit 78, not std::terminate.
  if (std::getenv("TESTAPP_BAD_ROUTE") != nullptr)
    app.get("/x/{id:integer}", [](keel::Request&) { return keel::Response::text("unreachable"); });
  app.get("/boom", [](keel::Request&) -> keel::Response { throw std::runtime_error("handler exploded"); });
  app.get("/http-error", [](keel::Request&) -> keel::Response { throw keel::HttpError(418, "short and stout"); });
  app.get("/big", [](keel::Request& req) {
    return keel::Response::text(std::string(static_cast<std::size_t>(query_long(req, "bytes", 1 << 20)), 'x'));
  });
  app.get("/stream", [](keel::Request& req) {
    const long chunks = query_long(req, "chunks", 3);
    const long size = query_long(req, "size", 5);
    auto sent = std::make_shared<long>(0);
    keel::Response r = keel::Response::stream(
        [=](std::string& out) {
          out.append(static_cast<std::size_t>(size), static_cast<char>('a' + (*sent % 26)));
          return ++*sent < chunks;
        },
        "text/plain");
    // ?trailer=1: the body's length as a trailer field (HTTP/2, and HTTP/1.1 chunked).
    if (query_long(req, "trailer", 0) != 0) r.add_trailer("X-Body-Length", std::to_string(chunks * size));
    return r;
  });
  app.get("/bad-header", [](keel::Request&) {
    return keel::Response::text("nope").add_header("X-Injected", "a\r\nSet-Cookie: evil=1");
  });
  // A handler answering with a status of its choosing (?code=N), valid or not.
  app.get("/status", [](keel::Request& req) {
    return keel::Response::text("status", static_cast<int>(query_long(req, "code", 200)));
  });
  app.get("/users/{id:int}", [](keel::Request& req) {
    return nlohmann::json{{"id", req.param_int("id")}, {"route", req.route()}};
  });
  app.get("/files/{rest:path}", [](keel::Request& req) {
    return nlohmann::json{{"rest", req.param("rest")}, {"route", req.route()}};
  });
  app.get("/block", blocking_handler);
  // A minimal readiness endpoint (the real one comes with the health module).
  app.get("/ready", [](keel::Request&) {
    return keel::shutting_down() ? keel::Response::text("shutting down", 503) : keel::Response::text("ready");
  });
  app.get("/pid", [](keel::Request&) { return std::to_string(::getpid()); });
  // Which build answers: binary-upgrade tests start the new binary with another value.
  app.get("/version", [&app](keel::Request&) { return app.settings().string("version"); });
  app.get("/settings/message", [&app](keel::Request&) { return app.settings().string("message"); });
  app.get("/settings/api_token", [&app](keel::Request&) {
    // Never the value: only its length, so tests can tell which source won.
    return app.settings().has("api_token") ? std::to_string(app.settings().string("api_token").size()) : "unset";
  });
  app.get("/options", [&app](keel::Request&) {
    const auto& o = app.options();
    return nlohmann::json{{"keep_alive_ms", o.keep_alive.count()},
                          {"limit_request_body", o.limit_request_body},
                          {"workers", o.workers},
                          {"bind", o.bind}};
  });
  // How the parser read the request line and Host (conformance tests: absolute-form, Host).
  app.get("/inspect", [](keel::Request& req) {
    return nlohmann::json{{"method", req.method()},
                          {"path", req.path()},
                          {"query", req.query()},
                          {"host", req.host()},
                          {"target", req.target()},
                          {"version_minor", req.version_minor()},
                          {"http_version", req.http_version()},
                          {"stream_id", req.stream_id()},
                          {"cookie", req.header("cookie").value_or("")},
                          {"client", req.client_address()},
                          {"scheme", req.scheme()}};
  });
  app.get("/request-id", [](keel::Request& req) { return std::string(req.request_id()); });
  // What a handler learns of the TLS connection (test_tls).
  app.get("/tls", [](keel::Request& req) {
    nlohmann::json j{{"scheme", req.scheme()}, {"pid", ::getpid()}};
    if (const keel::TlsInfo* t = req.tls())
      j["tls"] = {{"version", t->version},
                  {"cipher", t->cipher},
                  {"server_name", t->server_name},
                  {"alpn", t->alpn},
                  {"resumed", t->resumed},
                  {"client_subject", t->client_subject},
                  {"client_issuer", t->client_issuer},
                  {"client_certificate_pem", t->client_certificate_pem}};
    return j;
  });
  // What a handler learns of proxies in front (test_proxy): the client, the peer, scheme, host and
  // the --root-path split.
  app.get("/proxy-info", [](keel::Request& req) {
    return nlohmann::json{{"client_address", req.client_address()},
                          {"peer_address", req.peer_address()},
                          {"scheme", req.scheme()},
                          {"host", req.host()},
                          {"path", req.path()},
                          {"root_path", req.root_path()}};
  });
  // Request::json(): the parsed body's top-level type (its nesting limit is limit_json_depth).
  app.post("/json-type", [](keel::Request& req) { return std::string(req.json().type_name()); });
  // keel::fetch of ?url= (GET, 2 s): what came back, without the body.
  app.get("/fetch", [](keel::Request& req) -> keel::Task<keel::Response> {
    keel::ClientRequest call;  // named, and passed as an lvalue: see keel/client.hpp
    call.url = req.query_param("url").value_or("");
    call.timeout = std::chrono::seconds(2);
    const keel::ClientResponse r = co_await keel::fetch(call);
    co_return keel::Response::json({{"status", r.status}, {"error", r.error}, {"body_bytes", r.body.size()}});
  });
  return app.run(argc, argv);
}
