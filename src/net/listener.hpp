// Listening sockets. They are created before any event loop exists (by the master in pre-fork
// mode) and inherited by workers, which only accept on them.
#pragma once

#include <string>
#include <vector>

namespace keel::net {

struct BindAddress {
  std::string host;  // IPv4 or IPv6 literal, or a resolvable name ("localhost")
  int port = 0;
};

// Parses "HOST:PORT", "[V6]:PORT" or ":PORT"/"PORT" (all interfaces). Throws std::invalid_argument
// with a message that quotes the input.
BindAddress parse_bind(const std::string& spec);

struct Listener {
  int fd = -1;
  std::string url;    // "http://127.0.0.1:8000" with the real port after bind
  BindAddress bound;  // host as given, real port (so workers can open SO_REUSEPORT siblings)
};

// Creates, binds and listens (non-blocking, close-on-exec, SO_REUSEADDR; SO_REUSEPORT when asked).
// Throws std::system_error naming the address on failure.
Listener open_listener(const BindAddress& addr, int backlog, bool reuse_port);

}  // namespace keel::net
