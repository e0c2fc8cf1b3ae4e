#include "app/cli.hpp"

#include <sched.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <thread>

#include "config/values.hpp"
#include "net/listener.hpp"
#include "process/prefork.hpp"

namespace keel::cli {

namespace {

// A CLI11 option taking a byte size, with the flag named on error.
void add_size(CLI::App& app, const std::string& flag, std::uint64_t& target, const std::string& help) {
  app.add_option_function<std::string>(
         flag,
         [&target, flag](const std::string& v) {
           const auto n = config::parse_size(v);
           if (!n) throw CLI::ValidationError(flag, n.message());
           target = *n.value;
         },
         help)
      ->type_name("SIZE");
}

// A CLI11 option taking a duration into a milliseconds field, with the flag named on error.
void add_duration(CLI::App& app, const std::string& flags, std::chrono::milliseconds& target, const std::string& help) {
  const std::string flag = flags.substr(flags.rfind(',') + 1);  // "-t,--timeout" -> "--timeout"
  app.add_option_function<std::string>(
         flags,
         [&target, flag](const std::string& v) {
           const auto d = config::parse_duration(v);
           if (!d) throw CLI::ValidationError(flag, d.message());
           target = *d.value;
         },
         help + " (default " + std::to_string(target.count()) + "ms)")
      ->type_name("DURATION");
}

// CPUs this process may run on (affinity, as taskset/cpusets restrict it), at least 1.
int cpu_count() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return static_cast<int>(std::max(1U, std::thread::hardware_concurrency()));
}

}  // namespace

int parse(int argc, char** argv, ServerOptions& o) {
  CLI::App app{"keel HTTP application server"};
  app.option_defaults()->always_capture_default();
  std::vector<std::string> binds;
  app.add_option("-b,--bind", binds,
                 "HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N to listen on; repeatable (default 127.0.0.1:8000; "
                 "systemd socket activation replaces it)");
  auto* workers_opt =
      app.add_option("-w,--workers", o.workers, "worker processes (default $WEB_CONCURRENCY, else the number of CPUs)")
          ->check(CLI::Range(1, 1024));
  app.add_option("--backlog", o.backlog, "listen backlog")->check(CLI::Range(1, 65535));
  app.add_flag("--reuse-port", o.reuse_port, "one SO_REUSEPORT listening socket per worker");
  app.add_option_function<std::string>(
         "--unix-socket-mode",
         [&o](const std::string& v) {
           unsigned mode = 0;
           const auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), mode, 8);
           if (v.empty() || ec != std::errc() || p != v.data() + v.size() || mode > 0777)
             throw CLI::ValidationError("--unix-socket-mode", "expected octal permissions like 0660, got '" + v + "'");
           o.unix_socket_mode = mode;
         },
         "permissions of unix: socket files (default 0660)")
      ->type_name("MODE");
  add_duration(app, "--keep-alive", o.keep_alive,
               "close idle keep-alive connections after this; keep it above your load balancer's idle timeout");
  add_duration(app, "--header-timeout", o.header_timeout, "time allowed to receive a request head (then 408)");
  add_duration(app, "--body-timeout", o.body_timeout, "longest pause while receiving a body (then 408)");
  add_duration(app, "--write-timeout", o.write_timeout, "longest stall while the client does not read (then close)");
  add_duration(app, "--graceful-timeout", o.graceful_timeout, "drain time after SIGTERM");
  add_duration(app, "--shutdown-delay", o.shutdown_delay,
               "after SIGTERM, keep serving this long (readiness already failing) before draining; ~5s on Kubernetes");
  add_duration(app, "-t,--timeout", o.timeout, "a worker whose event loop is silent this long is aborted (0: never)");
  app.add_option("--max-requests", o.max_requests, "recycle a worker after this many requests (0: never)");
  app.add_option("--max-requests-jitter", o.max_requests_jitter, "add a random 0..N to --max-requests per worker");
  add_duration(app, "--max-worker-lifetime", o.max_worker_lifetime, "recycle a worker older than this (0: never)");
  add_size(app, "--max-worker-memory", o.max_worker_memory, "recycle a worker whose RSS exceeds this (0: never)");
  app.add_option("-p,--pid", o.pid_file, "write the master's pid to this file");
  app.add_option("--control-socket", o.control_socket,
                 "unix socket where the master answers `status` (workers, pids, ages, requests)");
  app.add_flag("--reload", o.reload, "development: restart (re-exec) when the binary or a --reload-extra-file changes");
  app.add_option("--reload-extra-file", o.reload_extra_files,
                 "another file whose change triggers --reload (repeatable)");
  auto* status = app.add_subcommand("status", "show the workers of a running master and exit");
  std::string status_socket;
  bool status_json = false;
  status->add_option("--control-socket", status_socket, "the master's --control-socket")->required();
  status->add_flag("--json", status_json, "print the raw JSON");
  app.add_option("--limit-concurrency", o.limit_concurrency,
                 "in-flight requests per worker before answering 503 (0: no limit)");
  app.add_option("--worker-connections", o.worker_connections, "open connections per worker before answering 503")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 24));
  app.add_option("--limit-request-line", o.limit_request_line, "request line bytes (414 beyond)")
      ->check(CLI::Range(std::size_t{16}, std::size_t{1} << 20));
  app.add_option("--limit-request-fields", o.limit_request_fields, "header fields (431 beyond)")
      ->check(CLI::Range(std::size_t{1}, std::size_t{10000}));
  app.add_option("--limit-request-field_size,--limit-request-field-size", o.limit_request_field_size,
                 "bytes of one header field (431 beyond)")
      ->check(CLI::Range(std::size_t{16}, std::size_t{1} << 20));
  app.add_option("--limit-request-header-size", o.limit_request_header_size, "bytes of the whole head (431 beyond)")
      ->check(CLI::Range(std::size_t{64}, std::size_t{1} << 24));
  app.add_option("--limit-request-body", o.limit_request_body, "body bytes (413 beyond)")
      ->check(CLI::Range(std::size_t{0}, std::size_t{1} << 32));
  app.add_option("--server-header", o.server_header, "value of the Server response header");
  bool no_server_header = false;
  app.add_flag("--no-server-header", no_server_header, "send no Server header");
  app.add_option("--threads", o.threads, "threads per worker for offloaded blocking calls")->check(CLI::Range(1, 1024));
  app.add_option("--thread-queue", o.thread_queue, "queued blocking calls per worker before 503")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 24));
  try {
    app.parse(argc, argv);
    if (status->parsed()) return process::print_status(status_socket, status_json);
    if (workers_opt->count() == 0) {  // like gunicorn: $WEB_CONCURRENCY, else one worker per CPU
      if (const char* wc = std::getenv("WEB_CONCURRENCY")) {
        const auto n = config::parse_int(wc, 1, 1024);
        if (!n) throw CLI::ValidationError("WEB_CONCURRENCY", n.message());
        o.workers = static_cast<int>(*n.value);
      } else {
        o.workers = cpu_count();
      }
    }
    if (!binds.empty()) o.bind = binds;
    for (const auto& b : o.bind) {
      try {
        (void)net::parse_bind(b);
      } catch (const std::invalid_argument& e) {
        throw CLI::ValidationError("--bind", e.what());
      }
    }
    for (char c : o.server_header)
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
        throw CLI::ValidationError("--server-header", "must not contain control characters");
    if (no_server_header) o.server_header.clear();
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << argv[0] << ": error: " << e.what() << "\n";
    return 78;  // EX_CONFIG: distinct from runtime failures
  }
  return -1;
}

}  // namespace keel::cli
