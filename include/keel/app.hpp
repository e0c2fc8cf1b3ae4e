// keel::App: routes, middleware and the server that runs them.
//
//   keel::App app;
//   app.get("/hello/{name}", [](keel::Request& req) {
//     return keel::Response::text("Hello, " + std::string(req.param("name")));
//   });
//   return app.run(argc, argv);  // --bind, --workers, --keep-alive, ... like gunicorn/uvicorn
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "keel/errors.hpp"
#include "keel/health.hpp"
#include "keel/lifecycle.hpp"
#include "keel/request.hpp"
#include "keel/response.hpp"
#include "keel/settings.hpp"
#include "keel/task.hpp"

namespace keel {

// Server settings. Each field is a setting with a flag, a config file key and a KEEL_* variable
// (see docs/configuration.md); values set here before App::run() become the defaults.
struct ServerOptions {
  std::vector<std::string> bind{"127.0.0.1:8000"};  // --bind HOST:PORT, [::]:PORT (repeatable)
  int workers = 0;                                  // --workers; 0: $WEB_CONCURRENCY, else the number of CPUs
  int backlog = 2048;                               // --backlog
  unsigned unix_socket_mode = 0660;                 // --unix-socket-mode: permissions of unix: sockets
  bool reuse_port = false;                          // --reuse-port: one SO_REUSEPORT socket per worker
  // TLS on the --bind listeners (the admin listener stays plaintext), as in gunicorn/uvicorn.
  std::string certfile;                                        // --certfile: PEM certificate chain
  std::string keyfile;                                         // --keyfile: PEM private key
  std::string keyfile_password_file;                           // --keyfile-password-file: decrypts the key
  std::vector<std::string> tls_certificates;                   // --tls-certificate CERT:KEY, more pairs chosen by SNI
  std::string ca_certs;                                        // --ca-certs: CA bundle for client certificates
  std::string cert_reqs = "none";                              // --cert-reqs none|optional|required (mTLS)
  std::string ciphers;                                         // --ciphers: TLS 1.2 list (empty: Mozilla intermediate)
  std::string tls_ciphersuites;                                // --tls-ciphersuites: TLS 1.3 suites
  std::string tls_min_version = "1.2";                         // --tls-min-version 1.2|1.3
  std::chrono::milliseconds tls_handshake_timeout{10000};      // --tls-handshake-timeout
  std::chrono::milliseconds tls_ticket_key_rotation{3600000};  // --tls-ticket-key-rotation
  // HTTP/2 (docs/http2.md): h2c by prior knowledge on plaintext binds, h2 by ALPN on TLS binds.
  bool http2 = true;                                  // --http2 / --no-http2
  std::uint32_t http2_max_concurrent_streams = 100;   // --http2-max-concurrent-streams
  std::uint32_t http2_max_header_list_size = 65536;   // --http2-max-header-list-size (431)
  std::uint32_t http2_header_table_size = 4096;       // --http2-header-table-size: HPACK dynamic table
  std::uint32_t http2_max_frame_size = 16384;         // --http2-max-frame-size
  std::uint32_t http2_initial_window_size = 65535;    // --http2-initial-window-size: per stream
  std::uint32_t http2_max_reset_streams = 1000;       // --http2-max-reset-streams: per connection and 10 s
  std::uint32_t http2_max_control_frames = 1000;      // --http2-max-control-frames: per connection and 10 s
  std::chrono::milliseconds keep_alive{5000};         // --keep-alive: idle keep-alive connection timeout
  std::uint64_t keep_alive_requests = 1000;           // then the connection closes (0: never), like nginx
  std::chrono::milliseconds header_timeout{10000};    // --header-timeout: whole request head (408)
  std::chrono::milliseconds body_timeout{30000};      // --body-timeout: body read idle (408)
  std::chrono::milliseconds body_deadline{60000};     // --body-deadline: whole body, however it trickles (408)
  std::chrono::milliseconds write_timeout{30000};     // --write-timeout: no write progress -> close
  std::chrono::milliseconds graceful_timeout{30000};  // --graceful-timeout: drain on SIGTERM
  std::chrono::milliseconds shutdown_delay{0};        // --shutdown-delay: keep serving after SIGTERM
  std::size_t limit_concurrency = 0;                  // --limit-concurrency: in-flight requests, 0 = none
  std::size_t worker_connections = 10000;             // --worker-connections: per-worker connection cap
  std::size_t limit_request_line = 8 * 1024;          // --limit-request-line (414)
  std::size_t limit_request_fields = 100;             // --limit-request-fields (431)
  std::size_t limit_request_field_size = 8 * 1024;    // --limit-request-field_size (431)
  std::size_t limit_request_header_size = 64 * 1024;  // --limit-request-header-size (431)
  std::size_t limit_request_body = 1024 * 1024;       // --limit-request-body (413)
  std::size_t limit_json_depth = 64;                  // --limit-json-depth: Request::json() nesting (400)
  std::uint64_t limit_fetch_response = 8u << 20;      // --limit-fetch-response: keel::fetch response body
  std::size_t output_buffer_limit = 256 * 1024;       // pause reading a connection above this
  std::size_t request_buffer_budget = 64u << 20;     // --request-buffer-budget: buffered request bytes per worker (503)
  std::string server_header = "keel";                // --server-header NAME / --no-server-header
  std::chrono::milliseconds timeout{30000};          // --timeout: silent worker -> SIGABRT (0: off)
  std::uint64_t max_requests = 0;                    // --max-requests: recycle a worker after this many
  std::uint64_t max_requests_jitter = 0;             // --max-requests-jitter: + random [0, jitter]
  std::chrono::milliseconds max_worker_lifetime{0};  // --max-worker-lifetime: recycle when older (0: off)
  std::uint64_t max_worker_memory = 0;               // --max-worker-memory: recycle above this RSS (0: off)
  std::string pid_file;                              // --pid FILE: the master's pid
  std::string control_socket;                        // --control-socket PATH: `status`, `upgrade`
  std::string service_version;                       // the `version` label of metrics, `status`
  bool reload = false;                               // --reload: re-exec when the binary changes (dev)
  std::vector<std::string> reload_extra_files;       // --reload-extra-file: more files to watch
  bool strict_env = false;                           // --strict-env: unknown prefixed variables are errors
  int threads = 4;                                   // --threads: blocking-call pool per worker
  std::size_t thread_queue = 1024;                   // --thread-queue: pending blocking calls
  std::string health_path = "/health";               // liveness ("" : not served)
  std::string readiness_path = "/health/ready";      // readiness: checks, draining
  std::string startup_path = "/health/startup";      // startup probe
  std::chrono::milliseconds health_cache_ttl{1000};  // how long a round of check results is reused
  std::string metrics_path = "/metrics";             // Prometheus/OpenMetrics ("" : no built-in metrics)
  std::string metrics_bind;                          // admin listener: metrics (and health) only there
  std::string log_level = "info";                    // debug, info, warning, error, critical
  std::vector<std::string> log_levels;               // per logger: "keel.http=debug"
  std::string log_format = "auto";                   // auto (console on a TTY), json, console
  std::string log_file;                              // empty: stdout
  std::uint64_t log_max_size = 0;                    // rotate above this size (0: never)
  std::chrono::milliseconds log_rotate_interval{0};  // rotate this often (0: never)
  int log_max_files = 0;                             // keep this many rotated files (0: all)
  std::chrono::milliseconds log_max_age{0};          // delete rotated files older than this (0: never)
  std::uint64_t log_buffer = 4u << 20;               // in-memory log buffer; beyond it lines are dropped
  bool access_log = true;                            // one request_handled line per request
  bool access_log_health = false;                    // also for health and metrics requests
  bool operational_middleware = false;               // run the app's middleware on health and metrics too
  std::string request_id_header = "X-Request-ID";    // read and echoed
  // Behind proxies (docs/proxies.md).
  bool proxy_headers = true;                                         // --proxy-headers: from trusted peers only
  std::vector<std::string> forwarded_allow_ips{"127.0.0.1", "::1"};  // --forwarded-allow-ips: IPs, CIDRs, *
  bool proxy_protocol = false;  // --proxy-protocol: PROXY v1/v2 header first (--bind listeners)
  std::string root_path;        // --root-path: the prefix a proxy mounts the app under ("/api")
  // Tracing (OpenTelemetry's standard variables: OTEL_SDK_DISABLED, OTEL_SERVICE_NAME, ...).
  bool otel_sdk_disabled = false;
  bool trace_health = false;                          // also record spans for health and metrics requests
  std::string otel_service_name;                      // empty: the program's name
  std::vector<std::string> otel_resource_attributes;  // key=value
  std::string otel_traces_sampler = "parentbased_always_on";
  double otel_traces_sampler_arg = 1.0;
  std::string otel_exporter_otlp_endpoint;         // base URL; /v1/traces is appended (empty: no export)
  std::string otel_exporter_otlp_traces_endpoint;  // full URL, used as is
  std::string otel_exporter_otlp_headers;          // key=value,... (secret: may hold API keys)
  int otel_exporter_otlp_timeout = 10000;          // ms
  int otel_bsp_schedule_delay = 5000;              // ms
  int otel_bsp_max_queue_size = 2048;
  int otel_bsp_max_export_batch_size = 512;
  int otel_bsp_export_timeout = 30000;    // ms
  std::vector<std::string> config_files;  // set by run(): the config and .env files it read
};

// A route handler. Accepts callables taking Request& and returning Response, std::string
// (text/plain; charset=utf-8), nlohmann::json (application/json), or a coroutine's
// Task<Response>, Task<nlohmann::json> or Task<std::string>.
class Handler {
 public:
  using Sync = std::function<Response(Request&)>;
  using Async = std::function<Task<Response>(Request&)>;

  Handler() = default;
  template <class F, class R = std::invoke_result_t<F&, Request&>>
  Handler(F fn) {  // NOLINT(google-explicit-constructor): handlers are written as lambdas
    if constexpr (std::is_same_v<R, Task<Response>>) {
      async_ = std::move(fn);
    } else if constexpr (std::is_same_v<R, Task<nlohmann::json>>) {
      // The closure lives in the router for the program's life: the coroutine may refer to it.
      async_ = [f = std::move(fn)](Request& r) -> Task<Response> { co_return Response::json(co_await f(r)); };
    } else if constexpr (std::is_same_v<R, Task<std::string>>) {
      async_ = [f = std::move(fn)](Request& r) -> Task<Response> { co_return Response::text(co_await f(r)); };
    } else if constexpr (std::is_same_v<R, Response>) {
      sync_ = std::move(fn);
    } else if constexpr (std::is_same_v<std::decay_t<R>, nlohmann::json>) {  // before string: json converts to it
      sync_ = [f = std::move(fn)](Request& r) { return Response::json(f(r)); };
    } else if constexpr (std::is_convertible_v<R, std::string>) {
      sync_ = [f = std::move(fn)](Request& r) { return Response::text(std::string(f(r))); };
    } else {
      static_assert(sizeof(F) == 0,
                    "handler must return Response, std::string, nlohmann::json, or Task<> of one of them");
    }
  }
  [[nodiscard]] const Sync& sync() const noexcept { return sync_; }
  [[nodiscard]] const Async& async() const noexcept { return async_; }
  explicit operator bool() const noexcept { return sync_ || async_; }

 private:
  Sync sync_;
  Async async_;
};

namespace app {
class Dispatcher;
}

// The rest of the chain, as an "around" middleware sees it: the later middleware, then the
// route's handler (or keel's 404/405 answer). Call it with the request you were given, at most
// once. It never throws: an exception from further in arrives as its problem+json response, as
// `after` middleware see it.
class Next {
 public:
  Task<Response> operator()(Request& request) const { return call_(*this, request); }

 private:
  friend class app::Dispatcher;
  using Call = Task<Response> (*)(const Next&, Request&);
  Call call_ = nullptr;
  void* owner_ = nullptr;
  void* state_ = nullptr;
  std::size_t index_ = 0;
};

// Middleware, run in the order of registration around every route's handler (and around keel's
// 404/405 answers). Each sets one or more of:
//   before: runs ahead of the handler and may answer instead of it (short-circuit);
//   after:  runs on every response the request produces (handler, error, 404, short-circuit by a
//           later middleware), in reverse order of registration;
//   around: a coroutine that decides what happens: `co_await next(req)` runs the rest, and it may
//           answer without calling it, look at or change the answer, or co_await something first
//           (an API key checked against a cache):
//             app.use({.around = [](keel::Request& req, keel::Next next) -> keel::Task<keel::Response> {
//               if (!co_await valid_key(req.header("X-API-Key"))) co_return keel::Response(401);
//               co_return co_await next(req);
//             }});
// The health and metrics endpoints skip the application's middleware unless the
// operational_middleware setting is on: a liveness probe must not need an API key.
struct Middleware {
  // The {} initializers let `{.before = ...}` leave the others out without a -Wextra warning.
  std::function<std::optional<Response>(Request&)> before{};
  std::function<void(Request&, Response&)> after{};
  std::function<Task<Response>(Request&, Next)> around{};
};

class Router;

// True from the moment this worker was asked to stop (SIGTERM, including the --shutdown-delay
// during which it still serves normally): a readiness endpoint answers 503 from then on, so load
// balancers stop routing here before the listeners close. False outside a running worker.
bool shutting_down() noexcept;

class App {
 public:
  App();
  ~App();
  App(const App&) = delete;
  App& operator=(const App&) = delete;

  // Path templates: literal segments, {name} (any segment), {name:int}, {name:uuid},
  // {name:str}, and a final {name:path} that matches the rest of the path. A template keel cannot
  // read (an unknown type, a duplicate) is a configuration error: run() names it and exits 78
  // before serving.
  App& route(std::string_view method, std::string_view pattern, Handler handler);
  App& get(std::string_view pattern, Handler h) { return route("GET", pattern, std::move(h)); }
  App& post(std::string_view pattern, Handler h) { return route("POST", pattern, std::move(h)); }
  App& put(std::string_view pattern, Handler h) { return route("PUT", pattern, std::move(h)); }
  App& patch(std::string_view pattern, Handler h) { return route("PATCH", pattern, std::move(h)); }
  App& del(std::string_view pattern, Handler h) { return route("DELETE", pattern, std::move(h)); }
  App& use(Middleware m);
  App& on_startup(std::function<void()> hook) {
    hooks_.startup.push_back(std::move(hook));
    return *this;
  }
  App& on_shutdown(std::function<void()> hook) {
    hooks_.shutdown.push_back(std::move(hook));
    return *this;
  }
  LifecycleHooks& hooks() noexcept { return hooks_; }

  // The application's name and one-line description, shown by --help and --version. The name
  // (default: the program's file name, e.g. "keel-demo") also gives the application settings'
  // environment prefix unless settings().env_prefix() was set: "users-api" -> USERS_API_.
  App& name(std::string name) {
    name_ = std::move(name);
    return *this;
  }
  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  App& description(std::string text) {
    description_ = std::move(text);
    return *this;
  }
  [[nodiscard]] const std::string& description() const noexcept { return description_; }

  ServerOptions& options() noexcept { return options_; }
  // The application's own settings: declare before run(), read after (startup hooks, handlers).
  Settings& settings() noexcept { return settings_; }
  // Readiness checks (dependencies) behind the health endpoints; register before run().
  Health& health() noexcept { return health_; }

  // Resolves the configuration (defaults < config file < .env < environment < flags) into
  // options() and settings() — every problem reported at once, exit code 78 — then serves until
  // SIGTERM/SIGINT. Also runs the subcommands `config [--json|--check]` and `status`. Returns the
  // process exit code.
  int run(int argc, char** argv);
  // Serves with options() as they are.
  int serve();

  [[nodiscard]] const Router& router() const noexcept { return *router_; }
  [[nodiscard]] const std::vector<Middleware>& middleware() const noexcept { return middleware_; }

 private:
  ServerOptions options_;
  std::string name_;
  std::string description_;
  Settings settings_;
  Health health_;
  bool started_ = false;                 // this worker's startup hooks finished
  std::function<bool()> reload_config_;  // set by run(): HUP re-reads the configuration
  std::unique_ptr<Router> router_;
  std::vector<Middleware> middleware_;
  LifecycleHooks hooks_;
  std::vector<std::string> route_errors_;  // routes that could not be added; run() reports them

  // admin: the --metrics-bind listener, whose readiness answer includes the checks' error texts.
  void add_health_routes(Router& router, bool admin);
  void add_metrics_route(Router& router);
  std::unique_ptr<Router> admin_router_;  // --metrics-bind
};

}  // namespace keel
