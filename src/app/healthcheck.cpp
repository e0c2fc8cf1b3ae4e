// `<binary> healthcheck`: a container HEALTHCHECK with no curl in the image. Connects to the
// service's own listener (the first --bind address; 0.0.0.0 / [::] mean loopback) or --url, asks
// the liveness path, and exits 0 on a 2xx answer, 1 otherwise, within a timeout.
#include "app/healthcheck.hpp"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

#include "net/listener.hpp"

namespace keel::app {
namespace {

int connect_to(const net::BindAddress& a, std::chrono::milliseconds timeout) {
  if (a.kind == net::BindAddress::Kind::kUnix) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::strncpy(sa.sun_path, a.path.c_str(), sizeof sa.sun_path - 1);
    if (fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0) return fd;
    if (fd >= 0) ::close(fd);
    return -1;
  }
  std::string host = a.host;
  if (host.empty() || host == "0.0.0.0") host = "127.0.0.1";
  if (host == "::") host = "::1";
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (::getaddrinfo(host.c_str(), std::to_string(a.port).c_str(), &hints, &res) != 0) return -1;
  int fd = -1;
  for (addrinfo* r = res; r != nullptr && fd < 0; r = r->ai_next) {
    fd = ::socket(r->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) continue;
    if (::connect(fd, r->ai_addr, r->ai_addrlen) != 0 && errno != EINPROGRESS) {
      ::close(fd);
      fd = -1;
      continue;
    }
    pollfd p{fd, POLLOUT, 0};
    int err = 0;
    socklen_t len = sizeof err;
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1 ||
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
      ::close(fd);
      fd = -1;
      errno = err != 0 ? err : ETIMEDOUT;
    }
  }
  ::freeaddrinfo(res);
  return fd;
}

}  // namespace

int healthcheck(const ServerOptions& options, const std::string& url) {
  constexpr std::chrono::milliseconds kTimeout{2000};
  net::BindAddress target;
  std::string path = options.health_path.empty() ? "/" : options.health_path;
  try {
    if (!url.empty()) {
      // http://HOST:PORT/PATH (or unix:/path/to.sock — then the liveness path)
      std::string rest = url;
      if (rest.rfind("http://", 0) == 0) {
        rest = rest.substr(7);
        const auto slash = rest.find('/');
        if (slash != std::string::npos) {
          path = rest.substr(slash);
          rest = rest.substr(0, slash);
        }
      }
      target = net::parse_bind(rest);
    } else {
      if (options.bind.empty()) throw std::invalid_argument("no --bind address");
      target = net::parse_bind(options.bind.front());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "healthcheck: %s\n", e.what());
    return 1;
  }
  const int fd = connect_to(target, kTimeout);
  if (fd < 0) {
    std::fprintf(stderr, "healthcheck: cannot connect: %s\n", std::strerror(errno));
    return 1;
  }
  const std::string req = "GET " + path + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
  std::string got;
  const auto deadline = std::chrono::steady_clock::now() + kTimeout;
  std::size_t sent = 0;
  while (sent < req.size()) {
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, 100) < 0) break;
    const ssize_t n = ::send(fd, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
    if (n > 0) sent += static_cast<std::size_t>(n);
    if (std::chrono::steady_clock::now() > deadline) break;
  }
  while (got.find("\r\n") == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char buf[512];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    got.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  // "HTTP/1.1 200 OK"
  if (got.size() >= 12 && got.rfind("HTTP/1.", 0) == 0 && got[9] == '2') return 0;
  std::fprintf(stderr, "healthcheck: %s answered '%s'\n", path.c_str(), got.substr(0, got.find("\r\n")).c_str());
  return 1;
}

}  // namespace keel::app
