#include "app/access_log.hpp"

#include "keel/request.hpp"
#include "log/log.hpp"

namespace keel::app {

void AccessLog::request_finished(const http::RequestRecord& r) noexcept {
  if (r.request == nullptr) return;
  const std::string_view path = r.request->path();
  for (const auto& p : excluded_)
    if (path == p) return;
  try {
    log::write(log::Level::kInfo, "keel.access", "request_handled",
               {{"method", r.method},
                {"path", path},
                {"status", r.status},
                {"duration_ms", r.seconds * 1000.0},
                {"bytes_in", r.bytes_in},
                {"bytes_out", r.bytes_out},
                {"user_agent", r.request->header("User-Agent").value_or("")}});
  } catch (...) {
    // Logging must never fail a request (allocation failure while formatting).
  }
}

}  // namespace keel::app
