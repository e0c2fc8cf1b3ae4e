#include "keel/app.hpp"

#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>
#include <stdexcept>

#include "app/access_log.hpp"
#include "app/cli.hpp"
#include "app/configuration.hpp"
#include "app/dispatcher.hpp"
#include "app/fetch.hpp"
#include "app/healthcheck.hpp"
#include "app/router.hpp"
#include "app/server_settings.hpp"
#include "base/gzip.hpp"
#include "http/server.hpp"
#include "http2/connection.hpp"
#include "keel/async.hpp"
#include "log/log.hpp"
#include "metrics/generation_stats.hpp"
#include "metrics/http_metrics.hpp"
#include "metrics/registry.hpp"
#include "net/ip.hpp"
#include "net/listener.hpp"
#include "process/prefork.hpp"
#include "process/upgrade.hpp"
#include "runtime/detached.hpp"
#include "runtime/thread_pool.hpp"
#include "tls/context.hpp"
#include "tls/tickets.hpp"
#include "trace/tracer.hpp"

namespace keel {
namespace {

// Once the event loop has stopped, pool threads that finish within this are joined; the others
// are abandoned (the drain before already gave offloaded work --graceful-timeout).
constexpr std::chrono::milliseconds kPoolStopGrace{100};

// A worker of a generation started by `upgrade` accepts connections only once its readiness
// checks pass (a canary that cannot serve must never take a request); until then it retries.
runtime::Detached open_when_ready(Health& health, http::Server& server, std::vector<net::Listener> reuse_port,
                                  int backlog) {
  for (;;) {
    if (server.shutting_down()) co_return;
    const HealthReport report = co_await health.readiness();
    if (report.status == HealthReport::Status::kOk || report.status == HealthReport::Status::kDegraded) {
      log::write(log::Level::kInfo, "keel.worker", "readiness_gate_open", {{"generation", process::generation()}});
      std::vector<net::Listener> own;
      try {
        for (const auto& l : reuse_port) {
          own.push_back(net::open_listener(l.bound, backlog, true));
          own.back().exclusive = true;
          own.back().tls = l.tls;
        }
      } catch (const std::exception& e) {  // the shared sockets still work
        log::write(log::Level::kError, "keel.worker", "reuse_port_socket_failed", {{"error", e.what()}});
      }
      server.start_accepting(std::move(own));
      co_return;
    }
    co_await keel::sleep(std::chrono::milliseconds(250));
  }
}

const std::vector<Middleware> kNoMiddleware;

// The HTTP core's part of the configuration.
http::ServerConfig http_config(const ServerOptions& o) {
  http::ServerConfig c;
  c.limit_request_line = o.limit_request_line;
  c.limit_request_fields = o.limit_request_fields;
  c.limit_request_field_size = o.limit_request_field_size;
  c.limit_request_header_size = o.limit_request_header_size;
  c.limit_request_body = o.limit_request_body;
  c.keep_alive = o.keep_alive;
  c.header_timeout = o.header_timeout;
  c.body_timeout = o.body_timeout;
  c.body_deadline = o.body_deadline;
  c.write_timeout = o.write_timeout;
  c.tls_handshake_timeout = o.tls_handshake_timeout;
  c.keep_alive_requests = o.keep_alive_requests;
  c.output_buffer_limit = o.output_buffer_limit;
  c.request_buffer_budget = o.request_buffer_budget;
  c.worker_connections = o.worker_connections;
  c.reuse_port = o.reuse_port;
  c.server_header = o.server_header;
  c.proxy_headers = o.proxy_headers;
  c.forwarded_allow_ips = net::AddressSet::parse(o.forwarded_allow_ips);  // validated with the settings
  c.proxy_protocol = o.proxy_protocol;
  c.shutdown_delay = o.shutdown_delay;
  c.graceful_timeout = o.graceful_timeout;
  return c;
}

// TLS for the --bind listeners; nullopt when none is configured. Throws naming the setting when
// the configuration is incomplete.
std::optional<tls::Config> tls_config(const ServerOptions& o) {
  if (o.certfile.empty() && o.keyfile.empty() && o.tls_certificates.empty()) return std::nullopt;
  if (o.certfile.empty() || o.keyfile.empty())
    throw std::runtime_error(o.certfile.empty() ? "keyfile is set but certfile is not: TLS needs both"
                                                : "certfile is set but keyfile is not: TLS needs both");
  tls::Config c;
  c.certificates.push_back({o.certfile, o.keyfile});
  for (const std::string& pair : o.tls_certificates) {
    const auto colon = pair.find(':');
    c.certificates.push_back({pair.substr(0, colon), pair.substr(colon + 1)});
  }
  c.keyfile_password_file = o.keyfile_password_file;
  c.ca_certs = o.ca_certs;
  c.cert_reqs = o.cert_reqs == "required" || o.cert_reqs == "2"   ? tls::ClientCerts::kRequired
                : o.cert_reqs == "optional" || o.cert_reqs == "1" ? tls::ClientCerts::kOptional
                                                                  : tls::ClientCerts::kNone;
  c.ciphers = o.ciphers;
  c.ciphersuites = o.tls_ciphersuites;
  c.min_version = o.tls_min_version;
  c.ticket_key_rotation = std::chrono::duration_cast<std::chrono::seconds>(o.tls_ticket_key_rotation);
  if (o.http2) c.alpn.insert(c.alpn.begin(), "h2");  // preferred when the client offers it
  return c;
}

// The HTTP/2 connections' part of the configuration.
http2::Config http2_config(const ServerOptions& o) {
  http2::Config c;
  c.max_concurrent_streams = o.http2_max_concurrent_streams;
  c.max_header_list_size = o.http2_max_header_list_size;
  c.header_table_size = o.http2_header_table_size;
  c.max_frame_size = o.http2_max_frame_size;
  c.initial_window_size = o.http2_initial_window_size;
  c.max_reset_streams = o.http2_max_reset_streams;
  c.max_control_frames = o.http2_max_control_frames;
  c.max_pending_output = std::max<std::size_t>(4 * o.output_buffer_limit, 1024 * 1024);
  return c;
}

// The scheme a listener's --bind entry gives it: its own (opened from the entry), or the entry's
// with the same address (a socket inherited across an upgrade or from systemd carries none).
net::BindAddress::Scheme configured_scheme(const net::Listener& l, const std::vector<net::BindAddress>& binds) {
  if (l.bound.scheme != net::BindAddress::Scheme::kDefault) return l.bound.scheme;
  for (const net::BindAddress& b : binds) {
    if (b.kind == net::BindAddress::Kind::kUnix && l.bound.kind == net::BindAddress::Kind::kUnix &&
        b.path == l.bound.path)
      return b.scheme;
    const std::string port = std::to_string(b.port);
    if (b.kind == net::BindAddress::Kind::kTcp && b.port != 0 &&
        (l.url == "http://" + b.host + ":" + port || l.url == "http://[" + b.host + "]:" + port))
      return b.scheme;
  }
  return net::BindAddress::Scheme::kDefault;
}

// The process model's part of the configuration.
process::SupervisorConfig supervisor_config(const ServerOptions& o) {
  process::SupervisorConfig c;
  c.workers = o.workers;
  c.timeout = o.timeout;
  c.graceful_timeout = o.graceful_timeout;
  c.shutdown_delay = o.shutdown_delay;
  c.max_requests = o.max_requests;
  c.max_requests_jitter = o.max_requests_jitter;
  c.max_worker_lifetime = o.max_worker_lifetime;
  c.max_worker_memory = o.max_worker_memory;
  c.pid_file = o.pid_file;
  c.control_socket = o.control_socket;
  c.service_version = o.service_version;
  c.reload = o.reload;
  c.reload_extra_files = o.reload_extra_files;
  c.config_files = o.config_files;
  return c;
}

}  // namespace

bool shutting_down() noexcept {
  const http::Server* server = http::Server::current();
  return server != nullptr && server->shutting_down();
}

App::App() : router_(std::make_unique<Router>()) {}
App::~App() = default;

App& App::route(std::string_view method, std::string_view pattern, Handler handler) {
  // Routes are declared in main(), before run(): an exception here would end the program in
  // std::terminate. The error is kept and reported by run() like a configuration error.
  try {
    router_->add(method, pattern, std::move(handler));
  } catch (const std::invalid_argument& e) {
    route_errors_.emplace_back(e.what());
  }
  return *this;
}

App& App::use(Middleware m) {
  middleware_.push_back(std::move(m));
  return *this;
}

int App::run(int argc, char** argv) {
  const ServerOptions defaults = options_;  // what the application set: the defaults
  if (name_.empty()) name_ = program_invocation_short_name;
  if (settings_.env_prefix().empty()) settings_.env_prefix(Settings::prefix_for(name_));
  std::optional<app::Configuration> configuration;
  try {
    configuration.emplace(defaults, settings_);
  } catch (const std::invalid_argument& e) {  // a programming error in the application's settings
    std::cerr << argv[0] << ": error: " << e.what() << "\n";
    return 78;
  }
  const cli::Command cmd =
      cli::parse(argc, argv, configuration->flags(),
                 {.name = name_, .description = description_, .service_version = defaults.service_version});
  if (cmd.kind == cli::Command::Kind::kExit) return cmd.exit_code;
  if (cmd.kind == cli::Command::Kind::kStatus) return process::print_status(cmd.control_socket, cmd.json);
  if (cmd.kind == cli::Command::Kind::kUpgrade) return process::run_upgrade(cmd.upgrade);
  const config::Loaded loaded = configuration->load(cmd.sources);
  if (!loaded.problems.empty()) {
    // `config` still shows every setting it could resolve, the faulty ones marked.
    if (cmd.kind == cli::Command::Kind::kConfig && !cmd.check)
      std::cout << (cmd.json ? config::report_json(configuration->registry(), loaded)
                             : config::report_text(configuration->registry(), loaded));
    std::cerr << config::format_problems(argv[0], loaded.problems);
    return 78;  // EX_CONFIG: nothing started
  }
  if (!route_errors_.empty()) {
    for (const auto& error : route_errors_) std::cerr << argv[0] << ": invalid " << error << "\n";
    return 78;  // EX_CONFIG: a programming error in the application's routes
  }
  configuration->apply(options_, settings_);
  if (cmd.kind == cli::Command::Kind::kHealthcheck) return app::healthcheck(options_, cmd.url);
  if (cmd.kind == cli::Command::Kind::kConfig) {
    for (const auto& p : loaded.ignored) std::cerr << argv[0] << ": warning: " << p.to_string() << "\n";
    for (const auto& v : loaded.unknown_env)
      std::cerr << argv[0] << ": warning: (" << v.origin << ") " << v.message() << "; ignored\n";
    if (cmd.check) {
      std::cout << "configuration ok (" << configuration->registry().specs().size()
                << " settings; config file: " << (loaded.config_file.empty() ? "none" : loaded.config_file)
                << "; env file: " << (loaded.env_file.empty() ? "none" : loaded.env_file) << ")\n";
    } else {
      std::cout << (cmd.json ? config::report_json(configuration->registry(), loaded)
                             : config::report_text(configuration->registry(), loaded));
    }
    return 0;
  }
  try {
    app::apply_logging(options_);
  } catch (const std::exception& e) {
    std::cerr << argv[0] << ": invalid configuration: log_file: " << e.what() << "\n";
    return 78;
  }
  app::log_config_warnings(loaded);
  config::export_dotenv(loaded);
  for (const auto* f : {&loaded.config_file, &loaded.env_file})
    if (!f->empty()) options_.config_files.push_back(*f);  // --reload watches them too
  reload_config_ = [this, defaults, sources = cmd.sources] {
    return app::reload(defaults, sources, options_, settings_);
  };
  process::set_command_line(argc, argv);
  return serve();
}

void App::add_health_routes(Router& router, bool admin) {
  health_.cache_ttl(options_.health_cache_ttl);
  // An application that serves one of these paths itself keeps its own handler.
  auto free = [&router](const std::string& path) {
    if (path.empty()) return false;
    for (const auto& r : router.routes())
      if (r.pattern == path && (r.method == "GET" || r.method == "*")) return false;
    return true;
  };
  if (free(options_.health_path))
    router
        .add("GET", options_.health_path,
             [](Request&) {
               Response r = Response::json({{"status", "ok"}});
               r.add_header("Cache-Control", "no-store");
               return r;
             })
        .operational = true;
  if (free(options_.startup_path))
    router
        .add("GET", options_.startup_path,
             [this](Request&) {
               Response r = Response::json({{"status", started_ ? "started" : "starting"}}, started_ ? 200 : 503);
               r.add_header("Cache-Control", "no-store");
               return r;
             })
        .operational = true;
  if (free(options_.readiness_path))
    router
        .add("GET", options_.readiness_path,
             [this, admin](Request&) -> Task<Response> {
               HealthReport report;
               if (!started_) {
                 report.status = HealthReport::Status::kFailing;
               } else if (!shutting_down()) {
                 report = co_await health_.readiness();
               }
               // Draining wins: load balancers must stop sending before the listeners close.
               if (shutting_down()) report.status = HealthReport::Status::kDraining;
               co_return Health::to_response(report, admin);
             })
        .operational = true;
}

void App::add_metrics_route(Router& router) {
  const std::string& path = options_.metrics_path;
  if (path.empty()) return;
  for (const auto& r : router.routes())
    if (r.pattern == path && (r.method == "GET" || r.method == "*")) return;  // the application's own
  Router::Route& route = router.add("GET", path, [](Request& req) {
    const auto format = metrics_detail::negotiate(req.header("Accept").value_or(""));
    std::string body = metrics_detail::Registry::instance().render(format);
    Response r(200);
    r.set_content_type(metrics_detail::content_type(format));
    r.add_header("Cache-Control", "no-store");
    r.add_header("Vary", "Accept, Accept-Encoding");
    if (base::accepts_gzip(req.header("Accept-Encoding").value_or(""))) {
      body = base::gzip(body);
      r.add_header("Content-Encoding", "gzip");
    }
    r.set_body(std::move(body));
    return r;
  });
  route.operational = true;
}

int App::serve() {
  if (!route_errors_.empty()) {  // serve() called without run()
    for (const auto& error : route_errors_)
      log::write(log::Level::kCritical, "keel.server", "invalid_route", {{"error", error}});
    log::flush();
    return 78;
  }
  // Until a worker (or the single process) starts serving, this process may fork: no logging thread.
  log::set_synchronous(true);
  // TLS is checked here, once, so a bad file stops the service with its name instead of every
  // worker failing to boot. The ticket secret is made now, before any fork: all workers share it.
  // Workers inherit this store (fork): one whose files fail to load at its start (a HUP, a
  // respawn) still has the last good certificates to serve with.
  std::optional<tls::CertificateStore> certificates;
  std::vector<net::BindAddress> binds;
  try {
    for (const auto& spec : options_.bind) {
      binds.push_back(net::parse_bind(spec));
      if (binds.back().scheme == net::BindAddress::Scheme::kHttps && options_.certfile.empty())
        throw std::runtime_error("bind " + spec + " is https: it needs certfile and keyfile");
    }
    if (auto settings = tls_config(options_)) {
      tls::init_ticket_secret();
      certificates.emplace(std::move(*settings));
      tls::log_outcome(*certificates, tls::CertificateStore::Reload::kReloaded);
    }
  } catch (const std::exception& e) {
    log::write(log::Level::kCritical, "keel.tls", "tls_config_invalid", {{"error", e.what()}});
    if (log::plain_stderr_ok()) std::cerr << "error: " << e.what() << "\n";
    log::flush();
    return 78;
  }
  // serve() without run(): the options were never validated as settings.
  if (const std::string error = net::AddressSet::check(options_.forwarded_allow_ips); !error.empty()) {
    log::write(log::Level::kCritical, "keel.server", "invalid_option", {{"forwarded_allow_ips", error}});
    if (log::plain_stderr_ok()) std::cerr << "error: forwarded_allow_ips: " << error << "\n";
    log::flush();
    return 78;
  }
  if (options_.workers <= 0) options_.workers = app::cpu_count();
  add_health_routes(*router_, false);
  if (options_.metrics_bind.empty()) {
    add_metrics_route(*router_);
  } else {  // metrics only on the admin listener; health on both
    admin_router_ = std::make_unique<Router>();
    add_health_routes(*admin_router_, true);
    add_metrics_route(*admin_router_);
  }
  const bool metrics_on = !options_.metrics_path.empty();
  auto& registry = metrics_detail::Registry::instance();
  if (metrics_on) metrics_detail::register_builtin_metrics();
  // Before any fork: every process gets its region of the shared arena.
  if (!registry.has_arena())
    registry.create_arena(process::WorkerTable::kSlots, std::size_t{1} << 20,
                          metrics_detail::inherited_arena_link(process::generation()));
  if (metrics_on) metrics_detail::set_build_info(process::generation(), options_.service_version);
  std::optional<metrics_detail::ProcessSampler> master_sampler;
  if (metrics_on) master_sampler.emplace();
  std::int64_t next_sample_ms = 0;
  process::SupervisionObserver supervision;
  supervision.worker_forked = [&registry](std::size_t region, int worker_id) {
    registry.attach(region, worker_id, ::getpid());
  };
  supervision.worker_reaped = [&registry, metrics_on](std::size_t region, std::string_view reason) {
    registry.retire(region);
    if (metrics_on && reason != "shutdown") metrics_detail::count_worker_restart(reason);
  };
  supervision.handover_fds = [&registry, metrics_on] {
    std::vector<std::pair<std::string, int>> fds;
    if (metrics_on) {
      // The next generation's arena may be the one an ended generation used: keep its counts first.
      registry.absorb_ended_generations();
      fds = registry.handover_fds();
    }
    // The next master decrypts the session tickets this one's workers issued.
    if (tls::ticket_secret_fd() >= 0) fds.emplace_back(tls::kTicketSecretEnv, tls::ticket_secret_fd());
    return fds;
  };
  if (metrics_on) {
    supervision.generation_stats = [this, &registry] {
      return metrics_detail::http_summary_json(registry.render(metrics_detail::Format::kPrometheus, true),
                                               app::operational_paths(options_));
    };

    supervision.target_changed = [](int workers) { metrics_detail::set_worker_count(workers); };
    supervision.tick = [&master_sampler, &next_sample_ms] {
      const auto now =
          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
              .count();
      if (now < next_sample_ms) return;
      master_sampler->sample();
      next_sample_ms = now + 1000;
    };
    // An upgrade's other generation ended: keep its counts.
    supervision.generation_ended = [&registry] { registry.absorb_ended_generations(); };
  }
  ::signal(SIGPIPE, SIG_IGN);
  // The common soft descriptor limit (1024) is far below --worker-connections: raise it to the
  // hard limit, as nginx's worker_rlimit_nofile and Go's runtime do, so connections, not a
  // default, decide when a worker runs out.
  if (rlimit rl{}; ::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    const rlim_t was = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &rl) == 0)
      log::write(log::Level::kInfo, "keel.server", "fd_limit_raised",
                 {{"from", static_cast<std::int64_t>(was)}, {"to", static_cast<std::int64_t>(rl.rlim_max)}});
  }
  // Block the control signals from the start: until the master (or the single worker) reads
  // them, a signal arriving early must wait, not kill the process with its default action.
  sigset_t control;
  sigemptyset(&control);
  for (int sig : {SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGTTIN, SIGTTOU, SIGCHLD})
    sigaddset(&control, sig);
  ::sigprocmask(SIG_BLOCK, &control, nullptr);
  std::vector<net::Listener> listeners;
  try {
    listeners = net::inherited_listeners(process::kListenFdsEnv);
    if (!listeners.empty()) {
      log::write(log::Level::kInfo, "keel.server", "listeners_inherited", {{"sockets", listeners.size()}});
    } else if (listeners = net::systemd_listeners(); !listeners.empty()) {
      log::write(log::Level::kInfo, "keel.server", "socket_activation", {{"sockets", listeners.size()}});
    } else {
      for (const auto& bind : binds)
        listeners.push_back(net::open_listener(bind, options_.backlog, options_.reuse_port, options_.unix_socket_mode));
    }
    if (!options_.metrics_bind.empty()) {
      // The admin listener: inherited across an upgrade (found by its address), else opened now.
      const net::BindAddress want = net::parse_bind(options_.metrics_bind);
      bool found = false;
      const std::string port = std::to_string(want.port);
      for (auto& l : listeners) {
        const bool same = want.kind == net::BindAddress::Kind::kUnix
                              ? l.bound.kind == net::BindAddress::Kind::kUnix && l.bound.path == want.path
                              : want.port != 0 && (l.url == "http://" + want.host + ":" + port ||
                                                   l.url == "http://[" + want.host + "]:" + port);
        if (same) l.admin = found = true;
      }
      if (!found) {
        listeners.push_back(net::open_listener(want, options_.backlog, false, options_.unix_socket_mode));
        listeners.back().admin = true;
      }
    }
  } catch (const std::exception& e) {
    log::write(log::Level::kCritical, "keel.server", "bind_failed", {{"error", e.what()}});
    if (log::plain_stderr_ok()) std::cerr << "error: " << e.what() << "\n";  // else the line above says it
    return 3;
  }
  // TLS per listener: its --bind entry's scheme (https://, http://), else TLS when certfile is
  // set. Sockets inherited across an upgrade or from systemd carry no scheme: found by address.
  for (auto& l : listeners) {
    const net::BindAddress::Scheme scheme = configured_scheme(l, binds);
    l.tls = !l.admin && (scheme == net::BindAddress::Scheme::kHttps ||
                         (scheme == net::BindAddress::Scheme::kDefault && certificates.has_value()));
  }
  std::vector<std::string> unix_paths;
  for (const auto& l : listeners) {
    log::write(log::Level::kInfo, "keel.server", "listening",
               {{"address", l.tls ? "https" + l.url.substr(l.url.find(':')) : l.url},
                {"workers", options_.workers},
                {"admin", l.admin},
                {"tls", l.tls}});
    if (l.bound.kind == net::BindAddress::Kind::kUnix) unix_paths.push_back(l.bound.path);
  }
  const process::WorkerMain worker_main = [this, &certificates](std::vector<net::Listener> ls, int worker_id,
                                                                process::WorkerSlot* slot, std::uint64_t max_requests) {
    // Each worker adds its own SO_REUSEPORT socket: the kernel spreads new connections over the
    // workers' queues. The inherited shared socket stays in the set, so connections the kernel
    // hashes to it are still accepted. A gated worker (new generation) opens its own only when it
    // starts accepting: a socket nobody accepts from would hold (and at exit reset) connections.
    const bool gated = process::is_candidate_generation();
    std::vector<net::Listener> own;
    if (options_.reuse_port && (options_.workers > 1 || gated))
      for (const auto& l : ls)
        if (l.bound.kind == net::BindAddress::Kind::kTcp && !l.admin) own.push_back(l);
    if (!gated)
      for (const auto& l : own) {
        ls.push_back(net::open_listener(l.bound, options_.backlog, true));
        ls.back().exclusive = true;
        ls.back().tls = l.tls;
      }
    Request::json_max_depth() = options_.limit_json_depth;  // before the pool threads start
    detail::fetch_response_limit() = options_.limit_fetch_response;
    // Owned here, but left undestroyed (the process ends with _exit) when a pool thread is still
    // running application code at shutdown: that code may still use the request's state.
    // The pool serves keel::offload from this thread (the event loop's).
    auto pool_owner = std::make_unique<runtime::ThreadPool>(options_.threads, options_.thread_queue);
    runtime::ThreadPool& pool = *pool_owner;
    runtime::ThreadPool::set_current(&pool);
    std::optional<http2::Factory> http2;  // before the server: its connections use it until the end
    if (options_.http2) http2.emplace(http2_config(options_));
    auto server_owner = std::make_unique<http::Server>(http_config(options_), std::move(ls), slot, max_requests);
    http::Server& server = *server_owner;
    if (http2) server.set_http2(&*http2);
    if (certificates) {
      // The files may have changed since the master last looked: take the newest before serving.
      tls::log_outcome(*certificates, certificates->check());
      server.set_tls(&*certificates);
    }
    // The application behind the request seam: the traffic listeners' routes and middleware, and
    // the admin listener's operational routes (no middleware, no concurrency limit).
    app::Dispatcher traffic(*router_, middleware_, options_.limit_concurrency, options_.operational_middleware,
                            options_.root_path);
    std::optional<app::Dispatcher> admin;
    server.set_handler(&traffic);
    if (admin_router_) {
      admin.emplace(*admin_router_, kNoMiddleware, 0);
      server.set_admin_handler(&*admin);
    }
    // One process rotates the log file: worker 0 (replacements keep the id), or the single process.
    log::set_rotator(slot == nullptr || worker_id == 0);
    log::set_synchronous(false);  // this process serves and never forks: log from a thread
    http::ObserverList observers;
    std::optional<metrics_detail::HttpMetrics> metrics;
    if (!options_.metrics_path.empty()) {
      metrics.emplace([&pool] { return pool.queued(); },
                      [] { return trace::tracer() != nullptr ? trace::tracer()->dropped() : std::uint64_t{0}; });
      observers.add(&*metrics);
    }
    std::optional<app::AccessLog> access_log;
    if (options_.access_log) {
      access_log.emplace(options_.access_log_health ? std::vector<std::string>{} : app::operational_paths(options_));
      observers.add(&*access_log);
    }
    if (!observers.empty()) {
      if (certificates) observers.tls_contexts_loaded(*certificates->current());
      server.set_observer(&observers);
      traffic.set_observer(&observers);
      if (admin) admin->set_observer(&observers);
    }
    // Tracing lives per worker: the exporter owns a thread, which a fork would not carry over.
    if (!options_.otel_sdk_disabled) trace::set_tracer(app::make_tracer(options_));
    for (const auto& hook : hooks_.startup) {
      try {
        hook();
      } catch (const std::exception& e) {
        log::write(log::Level::kCritical, "keel.worker", "startup_failed", {{"error", e.what()}});
        // Said on stderr too unless that would put a plain line among JSON ones.
        if (log::plain_stderr_ok()) std::cerr << "error: a startup hook failed: " << e.what() << "\n";
        return 3;  // boot failure: the master stops instead of respawning forever
      }
    }
    started_ = true;
    if (slot == nullptr && hooks_.when_ready) hooks_.when_ready();  // single process: no master to say it
    if (gated) {
      server.gate_accepting();
      server.loop().post([this, &server, own = std::move(own)]() mutable {
        open_when_ready(health_, server, std::move(own), options_.backlog);
      });
    }
    const int code = server.run();
    // Offloaded work is bounded too: the drain waited for it up to --graceful-timeout (a SIGINT
    // waits for nothing); a pool thread still blocked now is left behind, not joined.
    const std::size_t abandoned = pool.stop(std::chrono::steady_clock::now() + kPoolStopGrace);
    runtime::ThreadPool::set_current(nullptr);
    if (abandoned != 0) {
      log::write(log::Level::kWarning, "keel.worker", "threads_abandoned",
                 {{"threads", abandoned},
                  {"detail", "offloaded calls still running at shutdown; the process exits without them"}});
      (void)server_owner.release();
      (void)pool_owner.release();
    }
    if (trace::Tracer* t = trace::tracer()) {  // send what is queued, within the graceful time
      const std::chrono::milliseconds budget =
          server.stopped_fast()
              ? kPoolStopGrace
              : std::min<std::chrono::milliseconds>(options_.graceful_timeout, std::chrono::seconds(10));
      t->shutdown(std::chrono::steady_clock::now() + budget);
      trace::set_tracer(nullptr);
    }
    for (const auto& hook : hooks_.shutdown) {
      try {
        hook();
      } catch (const std::exception& e) {
        log::write(log::Level::kError, "keel.worker", "shutdown_hook_failed", {{"error", e.what()}});
      }
    }
    return code;
  };
  // HUP: the whole configuration is re-read into options_ (the workers forked next read it); the
  // master takes its part.
  const process::ReloadConfig reload = [this, &certificates]() -> std::optional<process::SupervisorConfig> {
    // HUP reloads the certificates for the workers about to fork; a pair that fails keeps the
    // old ones serving (named in the log line).
    if (certificates) tls::log_outcome(*certificates, certificates->reload());
    if (!reload_config_ || !reload_config_()) return std::nullopt;
    return supervisor_config(options_);
  };
  const int code =
      process::run(supervisor_config(options_), std::move(listeners), worker_main, hooks_, reload, supervision);
  registry.close_arena();  // another generation's scrapes stop merging ours
  if (!process::listeners_handed_over())
    for (const auto& path : unix_paths) ::unlink(path.c_str());  // ours, not yet passed on
  log::flush();
  if (runtime::ThreadPool::any_abandoned()) {
    // A thread still runs application code: exit() would destroy statics under it.
    std::fflush(nullptr);
    std::_Exit(code);
  }
  return code;
}

}  // namespace keel
