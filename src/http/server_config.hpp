// What the HTTP core reads from the configuration: filled from ServerOptions by the composition
// root (app/), so the protocol layer does not depend on the application's settings.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

#include "net/ip.hpp"

namespace keel::http {

struct ServerConfig {
  // Request size limits (the parser's: 414, 431, 413).
  std::size_t limit_request_line = 8 * 1024;
  std::size_t limit_request_fields = 100;
  std::size_t limit_request_field_size = 8 * 1024;
  std::size_t limit_request_header_size = 64 * 1024;
  std::size_t limit_request_body = 1024 * 1024;
  // Timers of a connection.
  std::chrono::milliseconds keep_alive{5000};              // idle between requests
  std::chrono::milliseconds header_timeout{10000};         // the whole head (408)
  std::chrono::milliseconds body_timeout{30000};           // body read idle (408)
  std::chrono::milliseconds body_deadline{60000};          // the whole body (408)
  std::chrono::milliseconds write_timeout{30000};          // no write progress: reset
  std::chrono::milliseconds tls_handshake_timeout{10000};  // accept -> TLS handshake done
  std::uint64_t keep_alive_requests = 1000;                // then Connection: close (0: never)
  std::size_t output_buffer_limit = 256 * 1024;            // reading pauses above this much unsent output
  std::size_t request_buffer_budget = 64u << 20;           // read buffers beyond the standard size, per worker (503)
  std::size_t worker_connections = 10000;                  // traffic connections per worker (503 beyond)
  bool reuse_port = false;                                 // each worker accepts from its own socket too
  std::string server_header = "keel";                      // empty: no Server header
  // Behind proxies (docs/proxies.md).
  bool proxy_headers = true;            // read X-Forwarded-* / Forwarded from trusted peers
  net::AddressSet forwarded_allow_ips;  // the trusted peers (unix socket peers always are)
  bool proxy_protocol = false;          // traffic connections start with a PROXY protocol header
  // Shutdown.
  std::chrono::milliseconds shutdown_delay{0};        // keep serving after SIGTERM
  std::chrono::milliseconds graceful_timeout{30000};  // then the drain is cut short
};

}  // namespace keel::http
