#include "net/listener.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <stdexcept>
#include <system_error>

namespace keel::net {

BindAddress parse_bind(const std::string& spec) {
  BindAddress out;
  std::string port_part;
  if (!spec.empty() && spec.front() == '[') {
    const auto close = spec.find(']');
    if (close == std::string::npos || close + 1 >= spec.size() || spec[close + 1] != ':')
      throw std::invalid_argument("invalid bind address '" + spec + "': expected [IPv6]:PORT");
    out.host = spec.substr(1, close - 1);
    port_part = spec.substr(close + 2);
  } else {
    const auto colon = spec.rfind(':');
    if (colon == std::string::npos) {
      port_part = spec;  // bare port: all interfaces
      out.host = "0.0.0.0";
    } else {
      if (spec.find(':') != colon)
        throw std::invalid_argument("invalid bind address '" + spec + "': put IPv6 addresses in brackets");
      out.host = colon == 0 ? "0.0.0.0" : spec.substr(0, colon);
      port_part = spec.substr(colon + 1);
    }
  }
  int port = -1;
  const auto [ptr, ec] = std::from_chars(port_part.data(), port_part.data() + port_part.size(), port);
  if (port_part.empty() || ec != std::errc() || ptr != port_part.data() + port_part.size() || port < 0 || port > 65535)
    throw std::invalid_argument("invalid bind address '" + spec + "': port must be 0-65535");
  out.port = port;
  if (out.host.empty()) throw std::invalid_argument("invalid bind address '" + spec + "': empty host");
  return out;
}

Listener open_listener(const BindAddress& addr, int backlog, bool reuse_port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(addr.port);
  const std::string where = addr.host + ":" + port;
  if (const int rc = ::getaddrinfo(addr.host.c_str(), port.c_str(), &hints, &res); rc != 0)
    throw std::runtime_error("cannot resolve bind address " + where + ": " + ::gai_strerror(rc));
  int err = 0;
  Listener l;
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    const int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      err = errno;
      continue;
    }
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuse_port) ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (ai->ai_family == AF_INET6) ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || ::listen(fd, backlog) != 0) {
      err = errno;
      ::close(fd);
      continue;
    }
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
    char host[INET6_ADDRSTRLEN] = {};
    int real_port = 0;
    if (ss.ss_family == AF_INET6) {
      const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
      ::inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
      real_port = ntohs(a->sin6_port);
      l.url = "http://[" + std::string(host) + "]:" + std::to_string(real_port);
    } else {
      const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
      ::inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
      real_port = ntohs(a->sin_port);
      l.url = "http://" + std::string(host) + ":" + std::to_string(real_port);
    }
    l.fd = fd;
    l.bound = BindAddress{addr.host, real_port};
    break;
  }
  ::freeaddrinfo(res);
  if (l.fd < 0) throw std::system_error(err, std::generic_category(), "cannot listen on " + where);
  return l;
}

}  // namespace keel::net
