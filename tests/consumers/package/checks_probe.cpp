// Links keel::checks (libpq, hiredis, sqlite3, libcurl through keel's package) and calls each
// kind of built-in check against something that is not there: each must fail with its reason.
#include <keel/checks.hpp>

#include <chrono>
#include <cstdio>
#include <functional>
#include <stdexcept>
#include <string>

int main() {
  using std::chrono::milliseconds;
  const std::function<void()> probes[] = {
      [] { keel::checks::tcp_connect("127.0.0.1", 1, milliseconds(500)); },
      [] { keel::checks::http_get("http://127.0.0.1:1/", milliseconds(500)); },
      [] { keel::checks::sqlite("/nonexistent/keel-probe.db", milliseconds(500)); },
      [] { keel::checks::postgres("postgresql://probe@127.0.0.1:1/probe", milliseconds(500)); },
      [] { keel::checks::redis_ping("redis://127.0.0.1:1", milliseconds(500)); },
  };
  int passed_wrongly = 0;
  for (const auto& probe : probes) {
    try {
      probe();
      ++passed_wrongly;
    } catch (const std::runtime_error& e) {
      std::printf("failed as expected: %s\n", e.what());
    }
  }
  return passed_wrongly == 0 ? 0 : 1;
}
