#include "http/transport.hpp"

#include <sys/socket.h>

#include <cerrno>

namespace keel::http {

ssize_t transport_receive(int fd, tls::Session* tls, char* buf, std::size_t size, bool& wants_write) {
  if (tls == nullptr) return ::recv(fd, buf, size, 0);
  wants_write = false;
  const tls::IoResult r = tls->read(buf, size);
  switch (r.status) {
    case tls::Io::kDone:
      return static_cast<ssize_t>(r.bytes);
    case tls::Io::kClosed:
      return 0;
    case tls::Io::kWantWrite:
      wants_write = true;
      [[fallthrough]];
    case tls::Io::kWantRead:
      errno = EAGAIN;
      return -1;
    case tls::Io::kError:
      break;
  }
  errno = ECONNRESET;
  return -1;
}

ssize_t transport_transmit(int fd, tls::Session* tls, const char* data, std::size_t size) {
  if (tls == nullptr) return ::send(fd, data, size, MSG_NOSIGNAL);
  const tls::IoResult r = tls->write(data, size);
  switch (r.status) {
    case tls::Io::kDone:
      return static_cast<ssize_t>(r.bytes);
    case tls::Io::kWantRead:  // a TLS 1.3 key update in flight; the next readable event retries
    case tls::Io::kWantWrite:
      errno = EAGAIN;
      return -1;
    case tls::Io::kClosed:
    case tls::Io::kError:
      break;
  }
  errno = EPIPE;
  return -1;
}

void transport_half_close(int fd, tls::Session* tls) noexcept {
  if (tls != nullptr) tls->close_notify();
  ::shutdown(fd, SHUT_WR);
}

void transport_reset_on_close(int fd) noexcept {
  const linger abort_on_close{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof abort_on_close);
}

}  // namespace keel::http
