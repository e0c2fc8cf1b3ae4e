#include "net/listener.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <string_view>
#include <utility>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <system_error>

namespace keel::net {

BindAddress parse_bind(const std::string& full) {
  BindAddress out;
  std::string spec = full;
  for (const auto& [prefix, scheme] :
       {std::pair{"http://", BindAddress::Scheme::kHttp}, std::pair{"https://", BindAddress::Scheme::kHttps}}) {
    if (spec.rfind(prefix, 0) == 0) {
      out.scheme = scheme;
      spec = spec.substr(std::string_view(prefix).size());
      if (spec.rfind("fd://", 0) == 0 || (spec.find('/') != std::string::npos && spec.rfind("unix:", 0) != 0))
        throw std::invalid_argument("invalid bind address '" + full + "': expected " + prefix + "HOST:PORT or " +
                                    prefix + "unix:PATH");
      break;
    }
  }
  if (spec.rfind("unix:", 0) == 0) {
    out.kind = BindAddress::Kind::kUnix;
    out.path = spec.substr(5);
    if (out.path.empty()) throw std::invalid_argument("invalid bind address '" + full + "': empty socket path");
    if (out.path.size() >= sizeof(sockaddr_un::sun_path))
      throw std::invalid_argument("invalid bind address '" + full + "': socket path longer than " +
                                  std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " bytes");
    return out;
  }
  if (spec.rfind("fd://", 0) == 0) {
    out.kind = BindAddress::Kind::kFd;
    const std::string n = spec.substr(5);
    const auto [ptr, ec] = std::from_chars(n.data(), n.data() + n.size(), out.fd);
    if (n.empty() || ec != std::errc() || ptr != n.data() + n.size() || out.fd < 0)
      throw std::invalid_argument("invalid bind address '" + full + "': expected fd://N with N a descriptor number");
    return out;
  }
  std::string port_part;
  if (!spec.empty() && spec.front() == '[') {
    const auto close = spec.find(']');
    if (close == std::string::npos || close + 1 >= spec.size() || spec[close + 1] != ':')
      throw std::invalid_argument("invalid bind address '" + full + "': expected [IPv6]:PORT");
    out.host = spec.substr(1, close - 1);
    port_part = spec.substr(close + 2);
  } else {
    const auto colon = spec.rfind(':');
    if (colon == std::string::npos) {
      port_part = spec;  // bare port: all interfaces
      out.host = "0.0.0.0";
    } else {
      if (spec.find(':') != colon)
        throw std::invalid_argument("invalid bind address '" + full + "': put IPv6 addresses in brackets");
      out.host = colon == 0 ? "0.0.0.0" : spec.substr(0, colon);
      port_part = spec.substr(colon + 1);
    }
  }
  int port = -1;
  const auto [ptr, ec] = std::from_chars(port_part.data(), port_part.data() + port_part.size(), port);
  if (port_part.empty() || ec != std::errc() || ptr != port_part.data() + port_part.size() || port < 0 || port > 65535)
    throw std::invalid_argument("invalid bind address '" + full + "': port must be 0-65535");
  out.port = port;
  if (out.host.empty()) throw std::invalid_argument("invalid bind address '" + full + "': empty host");
  return out;
}

std::string format_address(const sockaddr_storage& ss, int* port) {
  char host[INET6_ADDRSTRLEN] = {};
  if (port != nullptr) *port = 0;
  if (ss.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    ::inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    if (port != nullptr) *port = ntohs(a->sin_port);
    return std::string(host) + ":" + std::to_string(ntohs(a->sin_port));
  }
  if (ss.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    ::inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    if (port != nullptr) *port = ntohs(a->sin6_port);
    return "[" + std::string(host) + "]:" + std::to_string(ntohs(a->sin6_port));
  }
  if (ss.ss_family == AF_UNIX) {
    const char* path = reinterpret_cast<const sockaddr_un*>(&ss)->sun_path;
    return path[0] != '\0' ? "unix:" + std::string(path) : "unix";
  }
  return "unknown";
}

namespace {

// Adopts an inherited descriptor as a listener: it must be a listening stream socket.
Listener adopt(int fd, const std::string& what) {
  int type = 0, listening = 0;
  socklen_t len = sizeof type;
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0)
    throw std::system_error(errno, std::generic_category(), what + " is not a socket");
  len = sizeof listening;
  if (type != SOCK_STREAM || ::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening)
    throw std::runtime_error(what + " is not a listening stream socket");
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  Listener l;
  l.fd = fd;
  l.bound.kind = BindAddress::Kind::kFd;
  l.bound.fd = fd;
  sockaddr_storage ss{};
  socklen_t sl = sizeof ss;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &sl);
  const std::string address = format_address(ss);
  l.url = (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) ? "http://" + address : address;
  if (ss.ss_family == AF_UNIX && address.rfind("unix:", 0) == 0) {  // a named unix socket: ours to clean up
    l.bound.kind = BindAddress::Kind::kUnix;
    l.bound.path = address.substr(5);
  }
  int reuse_port = 0;
  len = sizeof reuse_port;
  if ((ss.ss_family == AF_INET || ss.ss_family == AF_INET6) &&
      ::getsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &reuse_port, &len) == 0 && reuse_port != 0) {
    // Bound with SO_REUSEPORT (by a keel master before an upgrade): its address is known, so the
    // workers of this process can add their own sockets to the same group (--reuse-port).
    char host[INET6_ADDRSTRLEN] = {};
    if (ss.ss_family == AF_INET) {
      const auto* in = reinterpret_cast<const sockaddr_in*>(&ss);
      ::inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
      l.bound.port = ntohs(in->sin_port);
    } else {
      const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&ss);
      ::inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
      l.bound.port = ntohs(in6->sin6_port);
    }
    l.bound.kind = BindAddress::Kind::kTcp;
    l.bound.host = host;
  }
  return l;
}

Listener open_unix(const BindAddress& addr, int backlog, unsigned mode) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, addr.path.c_str(), addr.path.size() + 1);
  const std::string where = "unix:" + addr.path;
  struct stat st {};
  if (::lstat(addr.path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      throw std::runtime_error("cannot listen on " + where + ": the path exists and is not a socket");
    // A socket file: in use if something accepts on it, else left behind by a dead server.
    const int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const bool in_use = probe >= 0 && ::connect(probe, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
    if (probe >= 0) ::close(probe);
    if (in_use) throw std::runtime_error("cannot listen on " + where + ": another server is listening on it");
    ::unlink(addr.path.c_str());
  }
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "cannot listen on " + where);
  // The socket file is created with `mode` (umask around bind): a chmod after bind would leave a
  // moment in which the file has the process umask's wider mode and anyone allowed could connect.
  const mode_t old_umask = ::umask(static_cast<mode_t>(~mode & 0777));
  const bool bound = ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
  const int bind_err = errno;
  ::umask(old_umask);
  if (!bound || ::listen(fd, backlog) != 0) {
    const int err = bound ? errno : bind_err;
    ::close(fd);
    throw std::system_error(err, std::generic_category(), "cannot listen on " + where);
  }
  Listener l;
  l.fd = fd;
  l.url = where;
  l.bound = addr;
  return l;
}

}  // namespace

std::vector<Listener> systemd_listeners() {
  std::vector<Listener> out;
  const char* pid = std::getenv("LISTEN_PID");
  const char* fds = std::getenv("LISTEN_FDS");
  if (pid == nullptr || fds == nullptr || std::to_string(::getpid()) != pid) return out;
  const int n = std::atoi(fds);
  std::vector<std::string> names;
  if (const char* nm = std::getenv("LISTEN_FDNAMES")) {
    std::string all(nm);
    for (std::size_t start = 0;;) {
      const auto colon = all.find(':', start);
      names.push_back(all.substr(start, colon - start));
      if (colon == std::string::npos) break;
      start = colon + 1;
    }
  }
  constexpr int kFirst = 3;  // SD_LISTEN_FDS_START
  for (int i = 0; i < n; ++i) {
    const std::string what = "systemd socket fd " + std::to_string(kFirst + i) +
                             (i < static_cast<int>(names.size()) ? " (" + names[i] + ")" : "");
    out.push_back(adopt(kFirst + i, what));
  }
  ::unsetenv("LISTEN_PID");
  ::unsetenv("LISTEN_FDS");
  ::unsetenv("LISTEN_FDNAMES");
  return out;
}

std::vector<Listener> inherited_listeners(const char* env_var) {
  std::vector<Listener> out;
  const char* list = std::getenv(env_var);
  if (list == nullptr) return out;
  const std::string all(list);
  ::unsetenv(env_var);
  for (std::size_t start = 0; start < all.size();) {
    const auto comma = all.find(',', start);
    const std::string n = all.substr(start, comma - start);
    int fd = -1;
    const auto [p, ec] = std::from_chars(n.data(), n.data() + n.size(), fd);
    if (ec != std::errc() || p != n.data() + n.size() || fd < 0)
      throw std::invalid_argument(std::string(env_var) + ": not a descriptor number: '" + n + "'");
    out.push_back(adopt(fd, std::string(env_var) + " fd " + n));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

Listener open_listener(const BindAddress& addr, int backlog, bool reuse_port, unsigned unix_mode) {
  if (addr.kind == BindAddress::Kind::kUnix) return open_unix(addr, backlog, unix_mode);
  if (addr.kind == BindAddress::Kind::kFd) return adopt(addr.fd, "fd://" + std::to_string(addr.fd));
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
    int real_port = 0;
    l.url = "http://" + format_address(ss, &real_port);
    l.fd = fd;
    l.bound = addr;
    l.bound.port = real_port;
    break;
  }
  ::freeaddrinfo(res);
  if (l.fd < 0) throw std::system_error(err, std::generic_category(), "cannot listen on " + where);
  return l;
}

}  // namespace keel::net
