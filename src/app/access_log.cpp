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
    // Under --root-path, the path the client asked for (the prefix and the routed path).
    std::string full_path;
    if (!r.request->root_path().empty()) {
      full_path.reserve(r.request->root_path().size() + path.size());
      full_path.append(r.request->root_path()).append(path);
    }
    log::Field fields[] = {{"method", r.method},
                           {"path", full_path.empty() ? path : std::string_view(full_path)},
                           {"protocol", http::name_of(r.protocol)},
                           {"status", r.status},
                           {"duration_ms", r.seconds * 1000.0},
                           {"bytes_in", r.bytes_in},
                           {"bytes_out", r.bytes_out},
                           {"user_agent", r.request->header("User-Agent").value_or("")},
                           // Over HTTP/2 and over TLS only (the span below is cut to what applies).
                           {"stream_id", std::string_view()},
                           {"tls_version", std::string_view()},
                           {"tls_cipher", std::string_view()},
                           {"tls_client_subject", std::string_view()}};
    std::size_t count = 8;
    if (r.protocol == http::Protocol::kHttp2) fields[count++] = {"stream_id", r.request->stream_id()};
    if (const TlsInfo* tls = r.request->tls()) {
      fields[count++] = {"tls_version", tls->version};
      fields[count++] = {"tls_cipher", tls->cipher};
      if (!tls->client_subject.empty()) fields[count++] = {"tls_client_subject", tls->client_subject};
    }
    log::write(log::Level::kInfo, "keel.access", "request_handled", std::span<const log::Field>(fields, count));
  } catch (...) {
    // Logging must never fail a request (allocation failure while formatting).
  }
}

}  // namespace keel::app
