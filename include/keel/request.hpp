// The request as a handler sees it. Views stay valid for the whole handling of the request,
// across co_await in coroutine handlers (the connection does not read further while a request
// is being handled).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "keel/tls_info.hpp"

namespace keel {

namespace http {
struct ParsedRequest;
class Exchange;
}  // namespace http

struct HeaderField {
  std::string_view name;
  std::string_view value;  // leading and trailing whitespace removed
};

class Request {
 public:
  [[nodiscard]] std::string_view method() const noexcept;
  [[nodiscard]] std::string_view target() const noexcept;  // as sent
  [[nodiscard]] std::string_view path() const noexcept;    // raw path (percent-encoded), no query
  [[nodiscard]] std::string_view query() const noexcept;   // raw query string, without '?'
  [[nodiscard]] std::string_view host() const noexcept;
  [[nodiscard]] int version_minor() const noexcept;  // 0 or 1
  [[nodiscard]] bool keep_alive() const noexcept;

  // First header with this name (case-insensitive).
  [[nodiscard]] std::optional<std::string_view> header(std::string_view name) const noexcept;
  [[nodiscard]] const std::vector<HeaderField>& headers() const noexcept;
  [[nodiscard]] const std::vector<HeaderField>& trailers() const noexcept;
  [[nodiscard]] std::string_view body() const noexcept;
  // Body parsed as JSON; throws HttpError 400 (malformed, or arrays and objects nested deeper
  // than json_max_depth()) or 415 (Content-Type not JSON).
  [[nodiscard]] nlohmann::json json() const;
  // The deepest nesting json() accepts (the limit_json_depth setting, set from the configuration
  // at startup; default 64). A deeper document is refused before it is parsed.
  static std::size_t& json_max_depth();

  // Decoded value of a query parameter ("a=1&b=x%20y"); nullopt when absent.
  [[nodiscard]] std::optional<std::string> query_param(std::string_view name) const;

  // Route parameters, percent-decoded ("/api/users/{id}" -> param("id")).
  [[nodiscard]] std::string_view param(std::string_view name) const;
  [[nodiscard]] std::int64_t param_int(std::string_view name) const;
  // The matched route template ("/api/users/{id:int}"), or "unmatched". Never the raw path.
  [[nodiscard]] std::string_view route() const noexcept { return route_; }

  // X-Request-ID (the request_id_header setting) from the client when valid (1-128 visible
  // ASCII), else generated: 32 hex digits.
  [[nodiscard]] std::string_view request_id() const;
  // The header carrying request ids, in and out (set from the configuration at startup).
  static std::string& id_header();
  // Peer address as "ip:port" (or "unix").
  [[nodiscard]] std::string_view client_address() const noexcept { return client_address_; }
  // The TLS connection the request came on (version, cipher, SNI, ALPN, client certificate);
  // null over plaintext.
  [[nodiscard]] const TlsInfo* tls() const noexcept { return tls_; }
  // "https" over TLS, else "http".
  [[nodiscard]] std::string_view scheme() const noexcept { return tls_ != nullptr ? "https" : "http"; }

 private:
  friend class http::Exchange;  // the protocol side: a new request's head, body and peer
  friend class Router;          // route template and parameters
  const http::ParsedRequest* parsed_ = nullptr;
  std::string_view route_ = "unmatched";
  std::vector<std::pair<std::string_view, std::string>> params_;
  std::string_view client_address_;
  const TlsInfo* tls_ = nullptr;
  mutable std::string request_id_;
};

}  // namespace keel
