#include "app/server_settings.hpp"

#include <sched.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <stdexcept>
#include <thread>
#include <tuple>

#include "config/values.hpp"
#include "net/ip.hpp"
#include "net/listener.hpp"

namespace keel::app {
namespace {

using config::format_duration;
using config::format_size;

// Builders for the common field shapes. The text they receive was validated by the registry, so
// the parsers cannot fail here.
ServerSetting duration(std::string name, std::chrono::milliseconds ServerOptions::*field, std::string help,
                       std::vector<std::string> aliases = {}) {
  ServerSetting s;
  s.spec = {.name = std::move(name), .type = SettingType::kDuration, .help = std::move(help), .min = 0};
  s.cli_aliases = std::move(aliases);
  s.get = [field](const ServerOptions& o) { return format_duration(o.*field); };
  s.set = [field](ServerOptions& o, std::string_view t) { o.*field = *config::parse_duration(t).value; };
  return s;
}

template <class T>
ServerSetting size(std::string name, T ServerOptions::*field, std::string help, double min, double max,
                   std::vector<std::string> aliases = {}) {
  ServerSetting s;
  s.spec = {.name = std::move(name), .type = SettingType::kSize, .help = std::move(help), .min = min, .max = max};
  s.cli_aliases = std::move(aliases);
  s.get = [field](const ServerOptions& o) { return format_size(o.*field); };
  s.set = [field](ServerOptions& o, std::string_view t) { o.*field = static_cast<T>(*config::parse_size(t).value); };
  return s;
}

template <class T>
ServerSetting integer(std::string name, T ServerOptions::*field, std::string help, double min, double max,
                      std::vector<std::string> aliases = {}) {
  ServerSetting s;
  s.spec = {.name = std::move(name), .type = SettingType::kInt, .help = std::move(help), .min = min, .max = max};
  s.cli_aliases = std::move(aliases);
  s.get = [field](const ServerOptions& o) { return std::to_string(o.*field); };
  s.set = [field](ServerOptions& o, std::string_view t) { o.*field = static_cast<T>(*config::parse_int(t).value); };
  return s;
}

ServerSetting boolean(std::string name, bool ServerOptions::*field, std::string help) {
  ServerSetting s;
  s.spec = {.name = std::move(name), .type = SettingType::kBool, .help = std::move(help)};
  s.get = [field](const ServerOptions& o) { return std::string(o.*field ? "true" : "false"); };
  s.set = [field](ServerOptions& o, std::string_view t) { o.*field = *config::parse_bool(t).value; };
  return s;
}

ServerSetting text(std::string name, std::string ServerOptions::*field, std::string help,
                   std::vector<std::string> aliases = {}) {
  ServerSetting s;
  s.spec = {.name = std::move(name), .type = SettingType::kString, .help = std::move(help)};
  s.cli_aliases = std::move(aliases);
  s.get = [field](const ServerOptions& o) { return o.*field; };
  s.set = [field](ServerOptions& o, std::string_view t) { o.*field = std::string(t); };
  return s;
}

ServerSetting list(std::string name, std::vector<std::string> ServerOptions::*field, std::string help,
                   std::vector<std::string> aliases = {}) {
  ServerSetting s;
  s.spec = {.name = std::move(name), .type = SettingType::kList, .help = std::move(help)};
  s.cli_aliases = std::move(aliases);
  s.get = [field](const ServerOptions& o) {
    std::string out;
    for (const auto& item : o.*field) out += (out.empty() ? "" : ",") + item;
    return out;
  };
  s.set = [field](ServerOptions& o, std::string_view t) { o.*field = *config::parse_list(t).value; };
  return s;
}

ServerSetting restart_only(ServerSetting s) {
  s.restart_only = true;
  return s;
}

std::vector<ServerSetting> build() {
  std::vector<ServerSetting> all;
  {
    ServerSetting bind = restart_only(list(
        "bind", &ServerOptions::bind,
        "HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N to listen on; repeatable (systemd socket activation replaces it; "
        "$PORT means 0.0.0.0:$PORT)",
        {"-b"}));
    bind.spec.validate = [](std::string_view t) -> std::string {
      const auto items = config::parse_list(t);
      if (!items || items.value->empty()) return "expected at least one address";
      for (const auto& item : *items.value) {
        try {
          (void)net::parse_bind(item);
        } catch (const std::invalid_argument& e) {
          return e.what();
        }
      }
      return {};
    };
    bind.env_aliases = {{"PORT", "0.0.0.0:"}};  // Heroku / Cloud Run convention
    all.push_back(std::move(bind));
  }
  {
    ServerSetting workers =
        integer("workers", &ServerOptions::workers,
                "worker processes (default $WEB_CONCURRENCY, else the number of CPUs)", 1, 1024, {"-w"});
    workers.get = [](const ServerOptions& o) { return std::to_string(o.workers > 0 ? o.workers : cpu_count()); };
    workers.env_aliases = {{"WEB_CONCURRENCY", ""}};
    all.push_back(std::move(workers));
  }
  all.push_back(restart_only(integer("backlog", &ServerOptions::backlog, "listen backlog", 1, 65535)));
  all.push_back(restart_only(boolean("reuse_port", &ServerOptions::reuse_port,
                                     "one SO_REUSEPORT listening socket per worker instead of one shared socket")));
  all.push_back(restart_only(text("certfile", &ServerOptions::certfile,
                                  "PEM certificate (and chain): the --bind listeners speak TLS (with keyfile)",
                                  {"--ssl-certfile"})));
  all.push_back(
      restart_only(text("keyfile", &ServerOptions::keyfile, "PEM private key of certfile", {"--ssl-keyfile"})));
  all.push_back(restart_only(text("keyfile_password_file", &ServerOptions::keyfile_password_file,
                                  "file holding the password of an encrypted keyfile")));
  {
    ServerSetting pairs = restart_only(list("tls_certificates", &ServerOptions::tls_certificates,
                                            "more CERTFILE:KEYFILE pairs, chosen by the SNI name their certificate "
                                            "names (repeatable; certfile/keyfile is the default)",
                                            {"--tls-certificate"}));
    pairs.spec.validate = [](std::string_view t) -> std::string {
      const auto items = config::parse_list(t);
      if (!items) return "expected CERTFILE:KEYFILE pairs";
      for (const auto& item : *items.value) {
        const auto colon = item.find(':');
        if (colon == std::string::npos || colon == 0 || colon + 1 == item.size() ||
            item.find(':', colon + 1) != std::string::npos)
          return "expected CERTFILE:KEYFILE, got '" + item + "'";
      }
      return {};
    };
    all.push_back(std::move(pairs));
  }
  all.push_back(restart_only(text("ca_certs", &ServerOptions::ca_certs,
                                  "PEM CA bundle that client certificates are verified against", {"--ssl-ca-certs"})));
  {
    ServerSetting reqs = restart_only(text("cert_reqs", &ServerOptions::cert_reqs,
                                           "client certificates: none, optional (verified when sent) or required "
                                           "(mutual TLS); 0/1/2 as in gunicorn",
                                           {"--ssl-cert-reqs"}));
    reqs.spec.validate = [](std::string_view t) -> std::string {
      for (const char* ok : {"none", "optional", "required", "0", "1", "2"})
        if (t == ok) return {};
      return "expected none, optional or required";
    };
    all.push_back(std::move(reqs));
  }
  all.push_back(
      restart_only(text("ciphers", &ServerOptions::ciphers,
                        "TLS 1.2 cipher list, OpenSSL syntax (empty: Mozilla intermediate)", {"--ssl-ciphers"})));
  all.push_back(restart_only(
      text("tls_ciphersuites", &ServerOptions::tls_ciphersuites, "TLS 1.3 cipher suites, OpenSSL syntax")));
  {
    ServerSetting min = restart_only(
        text("tls_min_version", &ServerOptions::tls_min_version, "oldest TLS version accepted: 1.2 or 1.3"));
    min.spec.validate = [](std::string_view t) -> std::string {
      return t == "1.2" || t == "1.3" ? std::string() : std::string("expected 1.2 or 1.3");
    };
    all.push_back(std::move(min));
  }
  all.push_back(duration("tls_handshake_timeout", &ServerOptions::tls_handshake_timeout,
                         "from accept to a completed TLS handshake; then the connection closes"));
  {
    ServerSetting rotation =
        restart_only(duration("tls_ticket_key_rotation", &ServerOptions::tls_ticket_key_rotation,
                              "how often session ticket keys change, and how long a ticket is valid"));
    rotation.spec.min = 1000;
    all.push_back(std::move(rotation));
  }
  {
    ServerSetting mode;
    mode.spec = {.name = "unix_socket_mode",
                 .type = SettingType::kString,
                 .help = "permissions of unix: socket files, octal",
                 .pattern = "0?[0-7]{3}"};
    mode.restart_only = true;
    mode.get = [](const ServerOptions& o) {
      char buf[8];
      const auto r = std::to_chars(buf + 1, buf + sizeof buf, o.unix_socket_mode, 8);
      buf[0] = '0';
      return std::string(buf, r.ptr);
    };
    mode.set = [](ServerOptions& o, std::string_view t) {
      std::from_chars(t.data(), t.data() + t.size(), o.unix_socket_mode, 8);
    };
    all.push_back(std::move(mode));
  }
  all.push_back(boolean("http2", &ServerOptions::http2,
                        "speak HTTP/2: h2c with prior knowledge on plaintext binds, h2 by ALPN on TLS binds"));
  all.push_back(integer("http2_max_concurrent_streams", &ServerOptions::http2_max_concurrent_streams,
                        "HTTP/2 streams one connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS)", 1,
                        65536));
  all.push_back(integer("http2_max_header_list_size", &ServerOptions::http2_max_header_list_size,
                        "largest decoded HTTP/2 request head, in bytes (SETTINGS_MAX_HEADER_LIST_SIZE; 431 beyond)",
                        1024, 16777216));
  all.push_back(integer("http2_header_table_size", &ServerOptions::http2_header_table_size,
                        "HPACK dynamic table the client may use for its headers, in bytes", 0, 65536));
  all.push_back(integer("http2_max_frame_size", &ServerOptions::http2_max_frame_size,
                        "largest HTTP/2 frame payload keel accepts (SETTINGS_MAX_FRAME_SIZE)", 16384, 16777215));
  all.push_back(integer("http2_initial_window_size", &ServerOptions::http2_initial_window_size,
                        "request body bytes a client may send on one HTTP/2 stream before keel reads them "
                        "(SETTINGS_INITIAL_WINDOW_SIZE)",
                        1, 2147483647));
  all.push_back(integer("http2_max_reset_streams", &ServerOptions::http2_max_reset_streams,
                        "streams a client may reset per HTTP/2 connection in 10 s, then GOAWAY (rapid reset, "
                        "CVE-2023-44487)",
                        1, 1e9));
  all.push_back(integer("http2_max_control_frames", &ServerOptions::http2_max_control_frames,
                        "PING, SETTINGS, PRIORITY, surplus WINDOW_UPDATE and empty frames a client may send per "
                        "HTTP/2 connection in 10 s, then GOAWAY",
                        1, 1e9));
  all.push_back(duration("keep_alive", &ServerOptions::keep_alive,
                         "close idle keep-alive connections after this; keep it above your load balancer's idle "
                         "timeout"));
  all.push_back(integer("keep_alive_requests", &ServerOptions::keep_alive_requests,
                        "requests one keep-alive connection may carry, then it closes so clients spread over new "
                        "workers (0: unlimited; nginx's keepalive_requests)",
                        0, 1e12));
  all.push_back(
      duration("header_timeout", &ServerOptions::header_timeout, "time allowed to receive a request head (then 408)"));
  all.push_back(
      duration("body_timeout", &ServerOptions::body_timeout, "longest pause while receiving a body (then 408)"));
  all.push_back(duration("body_deadline", &ServerOptions::body_deadline,
                         "time allowed to receive a whole body, however it trickles in (then 408)"));
  all.push_back(duration("write_timeout", &ServerOptions::write_timeout,
                         "longest stall while the client does not read (then the connection is closed)"));
  all.push_back(duration("graceful_timeout", &ServerOptions::graceful_timeout, "drain time after SIGTERM"));
  all.push_back(duration("shutdown_delay", &ServerOptions::shutdown_delay,
                         "after SIGTERM, keep serving this long (readiness already failing) before draining; ~5s "
                         "on Kubernetes"));
  all.push_back(duration("timeout", &ServerOptions::timeout,
                         "a worker whose event loop is silent this long is aborted with a stack trace (0: never)",
                         {"-t"}));
  all.push_back(integer("max_requests", &ServerOptions::max_requests,
                        "recycle a worker after this many requests (0: never)", 0, 1e15));
  all.push_back(integer("max_requests_jitter", &ServerOptions::max_requests_jitter,
                        "add a random 0..N to max_requests per worker", 0, 1e15));
  all.push_back(duration("max_worker_lifetime", &ServerOptions::max_worker_lifetime,
                         "recycle a worker older than this (0: never)"));
  all.push_back(size("max_worker_memory", &ServerOptions::max_worker_memory,
                     "recycle a worker whose resident memory exceeds this (0: never)", 0, 1e15));
  all.push_back(integer("limit_concurrency", &ServerOptions::limit_concurrency,
                        "in-flight requests per worker before answering 503 (0: no limit)", 0, 1e9));
  all.push_back(integer("worker_connections", &ServerOptions::worker_connections,
                        "open connections per worker before answering 503", 1, 1 << 24));
  all.push_back(
      size("limit_request_line", &ServerOptions::limit_request_line, "request line bytes (414 beyond)", 16, 1 << 20));
  all.push_back(
      integer("limit_request_fields", &ServerOptions::limit_request_fields, "header fields (431 beyond)", 1, 10000));
  all.push_back(size("limit_request_field_size", &ServerOptions::limit_request_field_size,
                     "bytes of one header field (431 beyond)", 16, 1 << 20, {"--limit-request-field_size"}));
  all.push_back(size("limit_request_header_size", &ServerOptions::limit_request_header_size,
                     "bytes of the whole request head (431 beyond)", 64, 1 << 24));
  all.push_back(size("limit_request_body", &ServerOptions::limit_request_body, "body bytes (413 beyond)", 0,
                     static_cast<double>(1ULL << 32)));
  all.push_back(size("request_buffer_budget", &ServerOptions::request_buffer_budget,
                     "bytes of request buffers one worker may hold for requests still arriving; a request that "
                     "needs more gets 503 and its connection closes",
                     64 * 1024, 1e12));
  all.push_back(integer("limit_json_depth", &ServerOptions::limit_json_depth,
                        "nesting of arrays and objects Request::json() accepts (400 beyond)", 1, 10000));
  all.push_back(size("limit_fetch_response", &ServerOptions::limit_fetch_response,
                     "bytes of a keel::fetch response body (larger: an error, the body is not kept)", 1,
                     static_cast<double>(1ULL << 32)));
  {
    ServerSetting header = text("server_header", &ServerOptions::server_header,
                                "value of the Server response header (empty or --no-server-header: none)");
    header.spec.pattern = "[\\x20-\\x7e]*";  // a header value: no control characters
    all.push_back(std::move(header));
  }
  // Behind proxies (docs/proxies.md).
  all.push_back(boolean("proxy_headers", &ServerOptions::proxy_headers,
                        "read X-Forwarded-For/-Proto/-Host/-Port and Forwarded from the peers in "
                        "forwarded_allow_ips: client address, scheme and host"));
  {
    ServerSetting allow = list("forwarded_allow_ips", &ServerOptions::forwarded_allow_ips,
                               "peers whose proxy headers are believed: IPs and CIDR blocks (IPv4, IPv6), or * "
                               "for any; unix socket peers always are");
    allow.spec.validate = [](std::string_view t) -> std::string {
      const auto items = config::parse_list(t);
      if (!items) return "expected a list of IP addresses and CIDR blocks";
      return net::AddressSet::check(*items.value);
    };
    allow.env_aliases = {{"FORWARDED_ALLOW_IPS", ""}};  // uvicorn's and gunicorn's variable
    all.push_back(std::move(allow));
  }
  all.push_back(boolean("proxy_protocol", &ServerOptions::proxy_protocol,
                        "connections on the --bind listeners start with a PROXY protocol v1/v2 header (from a "
                        "load balancer) whose source address becomes the peer; without one they are closed"));
  {
    ServerSetting root = text("root_path", &ServerOptions::root_path,
                              "the path prefix a proxy mounts the application under (\"/api\"): routes match the "
                              "path after it, Request::root_path() gives it for building URLs");
    root.spec.validate = [](std::string_view t) -> std::string {
      if (t.empty()) return {};
      if (t.front() != '/') return "expected a path starting with '/'";
      for (const char c : t)
        if (c <= 0x20 || c >= 0x7f || c == '?' || c == '#') return "expected a path without spaces, '?' or '#'";
      return {};
    };
    all.push_back(std::move(root));
  }
  all.push_back(
      integer("threads", &ServerOptions::threads, "threads per worker for offloaded blocking calls", 1, 1024));
  all.push_back(
      integer("thread_queue", &ServerOptions::thread_queue, "queued blocking calls per worker before 503", 1, 1 << 24));
  for (auto [name, field, help] :
       {std::tuple{"health_path", &ServerOptions::health_path, "liveness endpoint (empty: none)"},
        std::tuple{"readiness_path", &ServerOptions::readiness_path,
                   "readiness endpoint: 503 while a critical check fails or the worker drains (empty: none)"},
        std::tuple{"startup_path", &ServerOptions::startup_path,
                   "startup endpoint: 200 once startup hooks finished (empty: none)"},
        std::tuple{"metrics_path", &ServerOptions::metrics_path,
                   "Prometheus/OpenMetrics endpoint (empty: no built-in metrics at all)"}}) {
    ServerSetting path = restart_only(text(name, field, help));  // routes are set up once
    path.spec.pattern = "(/[!-~]*)?";  // a path without spaces or control characters, or nothing
    all.push_back(std::move(path));
  }
  {
    ServerSetting admin = restart_only(
        text("metrics_bind", &ServerOptions::metrics_bind,
             "an admin listener (HOST:PORT or unix:PATH) serving metrics and health; metrics are then not on --bind"));
    admin.spec.validate = [](std::string_view t) -> std::string {
      if (t.empty()) return {};
      try {
        (void)net::parse_bind(std::string(t));
      } catch (const std::invalid_argument& e) {
        return e.what();
      }
      return {};
    };
    all.push_back(std::move(admin));
  }
  {
    ServerSetting level;
    level.spec = {.name = "log_level",
                  .type = SettingType::kEnum,
                  .help = "lowest level written",
                  .choices = {"debug", "info", "warning", "error", "critical"}};
    level.get = [](const ServerOptions& o) { return o.log_level; };
    level.set = [](ServerOptions& o, std::string_view t) { o.log_level = std::string(t); };
    all.push_back(std::move(level));
    ServerSetting levels = list("log_levels", &ServerOptions::log_levels,
                                "per-logger levels, LOGGER=LEVEL (keel.access=warning: no access log lines)");
    levels.spec.validate = [](std::string_view t) -> std::string {
      const auto items = config::parse_list(t);  // a named result: the loop must not outlive it
      for (const auto& item : *items.value) {
        const auto eq = item.find('=');
        const std::string lv = eq == std::string::npos ? "" : item.substr(eq + 1);
        if (eq == std::string::npos || eq == 0 ||
            (lv != "debug" && lv != "info" && lv != "warning" && lv != "error" && lv != "critical"))
          return "expected LOGGER=LEVEL items (levels: debug, info, warning, error, critical), got '" + item + "'";
      }
      return {};
    };
    all.push_back(std::move(levels));
    ServerSetting format;
    format.spec = {.name = "log_format",
                   .type = SettingType::kEnum,
                   .help = "auto: console on a terminal, else json",
                   .choices = {"auto", "json", "console"}};
    format.get = [](const ServerOptions& o) { return o.log_format; };
    format.set = [](ServerOptions& o, std::string_view t) { o.log_format = std::string(t); };
    all.push_back(std::move(format));
  }
  all.push_back(restart_only(text("log_file", &ServerOptions::log_file, "write logs to this file instead of stdout")));
  all.push_back(
      size("log_max_size", &ServerOptions::log_max_size, "rotate log_file above this size (0: never)", 0, 1e15));
  all.push_back(
      duration("log_rotate_interval", &ServerOptions::log_rotate_interval, "rotate log_file this often (0: never)"));
  all.push_back(integer("log_max_files", &ServerOptions::log_max_files, "rotated log files kept (0: all)", 0, 100000));
  all.push_back(
      duration("log_max_age", &ServerOptions::log_max_age, "rotated log files older than this are deleted (0: never)"));
  all.push_back(size("log_buffer", &ServerOptions::log_buffer,
                     "in-memory log buffer per process; when full, lines are dropped and counted", 4096, 1 << 30));
  all.push_back(boolean("access_log", &ServerOptions::access_log, "one request_handled line per request"));
  all.push_back(boolean("access_log_health", &ServerOptions::access_log_health,
                        "also log requests to the health and metrics endpoints"));
  all.push_back(boolean("operational_middleware", &ServerOptions::operational_middleware,
                        "run the application's middleware on the health and metrics endpoints too"));
  {
    ServerSetting header = text("request_id_header", &ServerOptions::request_id_header,
                                "header carrying request ids (accepted when 1-128 visible ASCII, else generated)");
    header.spec.pattern = "[!#$%&'*+.^_`|~0-9A-Za-z-]+";  // an HTTP field name
    all.push_back(std::move(header));
  }
  {
    // OpenTelemetry: the standard variable names, also file keys and flags.
    auto otel = [&all](ServerSetting s, const char* env) {
      s.spec.env = env;
      all.push_back(std::move(s));
    };
    otel(boolean("otel_sdk_disabled", &ServerOptions::otel_sdk_disabled, "turn tracing off entirely"),
         "OTEL_SDK_DISABLED");
    all.push_back(boolean("trace_health", &ServerOptions::trace_health,
                          "also record spans for the health and metrics endpoints"));
    otel(text("otel_service_name", &ServerOptions::otel_service_name, "service.name of the spans (empty: the program)"),
         "OTEL_SERVICE_NAME");
    otel(list("otel_resource_attributes", &ServerOptions::otel_resource_attributes,
              "resource attributes, key=value (deployment.environment=prod,...)"),
         "OTEL_RESOURCE_ATTRIBUTES");
    ServerSetting sampler;
    sampler.spec = {.name = "otel_traces_sampler",
                    .type = SettingType::kEnum,
                    .help = "which traces are recorded",
                    .choices = {"always_on", "always_off", "traceidratio", "parentbased_always_on",
                                "parentbased_always_off", "parentbased_traceidratio"}};
    sampler.get = [](const ServerOptions& o) { return o.otel_traces_sampler; };
    sampler.set = [](ServerOptions& o, std::string_view t) { o.otel_traces_sampler = std::string(t); };
    otel(std::move(sampler), "OTEL_TRACES_SAMPLER");
    ServerSetting arg;
    arg.spec = {.name = "otel_traces_sampler_arg",
                .type = SettingType::kFloat,
                .help = "the ratio of the traceidratio samplers",
                .min = 0,
                .max = 1};
    arg.get = [](const ServerOptions& o) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%g", o.otel_traces_sampler_arg);
      return std::string(buf);
    };
    arg.set = [](ServerOptions& o, std::string_view t) { o.otel_traces_sampler_arg = *config::parse_float(t).value; };
    otel(std::move(arg), "OTEL_TRACES_SAMPLER_ARG");
    auto url = [](ServerSetting s) {
      s.spec.validate = [](std::string_view t) -> std::string {
        if (t.empty()) return {};
        const auto u = config::parse_url(t, {"http", "https"});
        return u ? std::string() : u.message();
      };
      return s;
    };
    otel(url(text("otel_exporter_otlp_endpoint", &ServerOptions::otel_exporter_otlp_endpoint,
                  "OTLP/HTTP collector base URL (/v1/traces is appended); empty: spans are not exported")),
         "OTEL_EXPORTER_OTLP_ENDPOINT");
    otel(url(text("otel_exporter_otlp_traces_endpoint", &ServerOptions::otel_exporter_otlp_traces_endpoint,
                  "OTLP/HTTP traces URL, used as is")),
         "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    ServerSetting headers = text("otel_exporter_otlp_headers", &ServerOptions::otel_exporter_otlp_headers,
                                 "headers for the collector, key=value,... (often an API key)");
    headers.spec.secret = true;
    otel(std::move(headers), "OTEL_EXPORTER_OTLP_HEADERS");
    otel(integer("otel_exporter_otlp_timeout", &ServerOptions::otel_exporter_otlp_timeout,
                 "per export request, milliseconds", 1, 600000),
         "OTEL_EXPORTER_OTLP_TIMEOUT");
    otel(integer("otel_bsp_schedule_delay", &ServerOptions::otel_bsp_schedule_delay, "milliseconds between exports", 1,
                 3600000),
         "OTEL_BSP_SCHEDULE_DELAY");
    otel(integer("otel_bsp_max_queue_size", &ServerOptions::otel_bsp_max_queue_size,
                 "spans queued per worker; beyond, dropped and counted", 1, 1 << 22),
         "OTEL_BSP_MAX_QUEUE_SIZE");
    otel(integer("otel_bsp_max_export_batch_size", &ServerOptions::otel_bsp_max_export_batch_size,
                 "spans per export request", 1, 1 << 20),
         "OTEL_BSP_MAX_EXPORT_BATCH_SIZE");
    otel(integer("otel_bsp_export_timeout", &ServerOptions::otel_bsp_export_timeout,
                 "milliseconds for one batch, retries included", 1, 3600000),
         "OTEL_BSP_EXPORT_TIMEOUT");
  }
  all.push_back(duration("health_cache_ttl", &ServerOptions::health_cache_ttl,
                         "how long one round of readiness check results answers later probes"));
  all.push_back(
      restart_only(text("pid_file", &ServerOptions::pid_file, "write the master's pid to this file", {"-p", "--pid"})));
  all.push_back(restart_only(text("control_socket", &ServerOptions::control_socket,
                                  "unix socket where the master answers `status` and `upgrade`")));
  all.push_back(text("service_version", &ServerOptions::service_version,
                     "version of this build: the `version` label of the HTTP metrics, `status`, upgrade verdicts"));
  all.push_back(
      restart_only(boolean("reload", &ServerOptions::reload,
                           "development: restart (re-exec) when the binary or a reload_extra_files changes")));
  all.push_back(restart_only(list("reload_extra_files", &ServerOptions::reload_extra_files,
                                  "more files whose change triggers reload (repeatable)", {"--reload-extra-file"})));
  all.push_back(boolean("strict_env", &ServerOptions::strict_env,
                        "an unknown KEEL_* or app-prefixed variable is an error (exit 78), not a warning"));
  return all;
}

}  // namespace

int cpu_count() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return static_cast<int>(std::max(1U, std::thread::hardware_concurrency()));
}

const std::vector<ServerSetting>& server_settings() {
  static const std::vector<ServerSetting> all = build();
  return all;
}

void add_server_settings(config::Registry& registry, const ServerOptions& defaults) {
  for (const auto& s : server_settings()) {
    Setting spec = s.spec;
    spec.default_value = s.get(defaults);
    registry.add(std::move(spec), {.env_prefix = "KEEL_", .env_aliases = s.env_aliases});
  }
}

void apply_server_settings(const config::Registry& registry, ServerOptions& options) {
  for (const auto& s : server_settings())
    if (const auto* r = registry.find(s.spec.name)) s.set(options, r->text);
}

}  // namespace keel::app
