// Listening sockets. They are created before any event loop exists (by the master in pre-fork
// mode) and inherited by workers, which only accept on them.
#pragma once

#include <sys/socket.h>

#include <string>
#include <vector>

#include "base/strings.hpp"

namespace keel::net {

struct BindAddress {
  enum class Kind { kTcp, kUnix, kFd };
  // "http://" or "https://" in front of the address: plaintext or TLS on this listener whatever
  // the others are; none: TLS when a certificate is configured.
  enum class Scheme { kDefault, kHttp, kHttps };
  Kind kind = Kind::kTcp;
  Scheme scheme = Scheme::kDefault;
  std::string host;  // kTcp: IPv4 or IPv6 literal, or a resolvable name ("localhost")
  int port = 0;      // kTcp
  std::string path;  // kUnix: socket file
  int fd = -1;       // kFd: an inherited listening socket
};

// Parses "HOST:PORT", "[V6]:PORT", ":PORT"/"PORT" (all interfaces), "unix:/path" or "fd://N",
// each optionally after "http://" or "https://". Throws std::invalid_argument with a message that
// quotes the input.
BindAddress parse_bind(const std::string& spec);

// "127.0.0.1:8000", "[::1]:8000", "unix:/path" (or "unix" for an unnamed peer); port is set to
// the TCP port (0 otherwise) when given.
std::string format_address(const sockaddr_storage& ss, int* port = nullptr);

struct Listener {
  int fd = -1;
  std::string url;     // "http://127.0.0.1:8000" with the real port after bind
  BindAddress bound;   // host as given, real port (so workers can open SO_REUSEPORT siblings)
  bool admin = false;  // the admin listener (--metrics-bind): metrics and health only
  bool tls = false;    // connections start with a TLS handshake (certfile/keyfile set)
  // Only this process listens on it (a worker's own SO_REUSEPORT socket): closing it resets the
  // connections waiting in its queue, so it must stop taking new ones first.
  bool exclusive = false;
};

// Creates, binds and listens (non-blocking, close-on-exec, SO_REUSEADDR; SO_REUSEPORT when asked).
// A unix socket file left behind by a dead server is replaced; any other existing file is an
// error (never deleted). unix_mode sets the socket file's permissions. fd:// sockets are adopted
// after checking they are listening stream sockets. Throws naming the address on failure.
Listener open_listener(const BindAddress& addr, int backlog, bool reuse_port, unsigned unix_mode = 0660);

// Listening sockets passed by systemd socket activation (LISTEN_PID = this process, LISTEN_FDS,
// LISTEN_FDNAMES), adopted from fd 3 on; empty when not socket-activated. The variables are
// removed from the environment so that child processes do not take them as theirs.
std::vector<Listener> systemd_listeners();

// Listening sockets handed over by a previous master (binary upgrade): the comma-separated
// descriptor numbers in the environment variable env_var, which is then removed.
std::vector<Listener> inherited_listeners(const char* env_var);

}  // namespace keel::net
