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
namespace app {
class Dispatcher;
}  // namespace app

struct HeaderField {
  std::string_view name;
  std::string_view value;  // leading and trailing whitespace removed
};

class Request {
 public:
  [[nodiscard]] std::string_view method() const noexcept;
  [[nodiscard]] std::string_view target() const noexcept;  // as sent
  // Raw path (percent-encoded), no query; under --root-path, the part after the root path when
  // the request carried it ("/api/users/1" -> "/users/1"): the path the routes match.
  [[nodiscard]] std::string_view path() const noexcept { return path_; }
  [[nodiscard]] std::string_view query() const noexcept;  // raw query string, without '?'
  // The Host header (or an absolute-form target's authority); from a trusted proxy, the host it
  // names (X-Forwarded-Host / -Port, Forwarded host=): docs/proxies.md.
  [[nodiscard]] std::string_view host() const noexcept;
  // --root-path: the prefix the application is mounted under behind a proxy ("/api"; empty when
  // none). Public URLs are root_path() + a path the routes know.
  [[nodiscard]] std::string_view root_path() const noexcept { return root_path_; }
  [[nodiscard]] int version_minor() const noexcept;  // 0 or 1 (0 over HTTP/2)
  // "1.0", "1.1" or "2": the protocol the request came over.
  [[nodiscard]] std::string_view http_version() const noexcept;
  // The HTTP/2 stream the request came on; 0 over HTTP/1.
  [[nodiscard]] std::uint32_t stream_id() const noexcept;
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
  // The client: peer_address(), unless a trusted proxy named another (X-Forwarded-For, Forwarded
  // for=; docs/proxies.md): then "ip" or "ip:port" ("[v6]", "[v6]:port") as the proxy gave it.
  [[nodiscard]] std::string_view client_address() const noexcept { return client_address_; }
  // The connection's peer as "ip:port" ("[v6]:port", or "unix"): the PROXY protocol's source
  // address under --proxy-protocol, whatever the request's headers say.
  [[nodiscard]] std::string_view peer_address() const noexcept { return peer_address_; }
  // The TLS connection the request came on (version, cipher, SNI, ALPN, client certificate);
  // null over plaintext.
  [[nodiscard]] const TlsInfo* tls() const noexcept { return tls_; }
  // "https" over TLS, else "http"; from a trusted proxy, the scheme it names (X-Forwarded-Proto,
  // Forwarded proto=).
  [[nodiscard]] std::string_view scheme() const noexcept {
    return !scheme_.empty() ? scheme_ : tls_ != nullptr ? "https" : "http";
  }

 private:
  friend class http::Exchange;   // the protocol side: a new request's head, body and peer
  friend class Router;           // route template and parameters
  friend class app::Dispatcher;  // --root-path
  const http::ParsedRequest* parsed_ = nullptr;
  std::string_view route_ = "unmatched";
  std::vector<std::pair<std::string_view, std::string>> params_;
  std::string_view path_;
  std::string_view root_path_;
  std::string_view peer_address_;
  std::string_view client_address_;  // peer_address_, or forwarded_client_
  std::string_view host_;            // empty: the parsed Host; else a forwarded host
  std::string_view scheme_;          // empty: from tls_; else a forwarded scheme
  std::string forwarded_client_;     // storage for what proxies said, reused request after request
  std::string forwarded_host_;
  const TlsInfo* tls_ = nullptr;
  mutable std::string request_id_;
};

}  // namespace keel
