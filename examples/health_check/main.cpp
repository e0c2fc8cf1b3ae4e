// health_check: readiness checks of the service's own behind /health/ready.
//   spool     blocking (file system calls): run on the worker's thread pool; critical, so a spool
//             directory that cannot be written makes readiness fail (503) and the load balancer
//             stops sending traffic here
//   upstream  a coroutine (keel::fetch) run on the event loop; not critical, so an upstream that
//             does not answer makes readiness "degraded" (200): this service still serves
// /health (liveness) never runs checks: a dependency that is down must not get the pod restarted.
//
//   ./health_check --spool-dir /var/spool/app --upstream-url http://inventory:8000/health
//   curl -i http://127.0.0.1:8000/health/ready
#include <keel/keel.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string>

namespace {

// Passes by returning, fails by throwing: the message is the reason (shown on the admin listener,
// --metrics-bind, and in the log; public endpoints show only the status).
void check_spool(const std::string& dir) {
  const std::string probe = dir + "/.health-probe";
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error("cannot write in " + dir + ": " + std::strerror(errno));
  ::close(fd);
  ::unlink(probe.c_str());
}

// A coroutine check. The URL is a parameter (copied into the coroutine frame), not a lambda
// capture: a capture would live in the lambda, which need not outlive the coroutine.
keel::Task<void> check_upstream(std::string url) {
  keel::ClientRequest call;  // named, not a braced temporary inside co_await (GCC 12: docs/api.md)
  call.url = std::move(url);
  call.timeout = std::chrono::milliseconds(400);
  const keel::ClientResponse res = co_await keel::fetch(call);
  if (res.status == 0) throw std::runtime_error(res.error);
  if (res.status >= 400) throw std::runtime_error("HTTP " + std::to_string(res.status));
}

}  // namespace

int main(int argc, char** argv) {
  keel::App app;
  app.name("health-check").description("readiness checks of its own (keel example)");
  app.settings()
      .add({.name = "spool_dir", .default_value = "/tmp", .help = "directory the service writes to"})
      .add({.name = "upstream_url",
            .type = keel::SettingType::kUrl,
            .optional = true,
            .help = "a service this one calls; readiness is degraded while it does not answer",
            .schemes = {"http", "https"}});

  // Checks that read settings are added in a startup hook (each worker, settings resolved).
  app.on_startup([&app] {
    const keel::Settings& settings = app.settings();
    app.health().add("spool", [dir = settings.string("spool_dir")] { check_spool(dir); },
                     {.timeout = std::chrono::milliseconds(500)});
    if (settings.has("upstream_url")) {
      app.health().add("upstream", [url = settings.string("upstream_url")] { return check_upstream(url); },
                       {.timeout = std::chrono::milliseconds(500), .critical = false});
    }
  });
  app.get("/", [](keel::Request&) { return keel::Response::text("serving\n"); });
  return app.run(argc, argv);
}
