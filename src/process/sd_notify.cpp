#include "process/sd_notify.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

namespace keel::process {

void sd_notify(std::string_view state) {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (path == nullptr || path[0] == '\0') return;
  const std::size_t len = std::strlen(path);
  sockaddr_un sa{};
  if (len >= sizeof sa.sun_path) return;
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, path, len);
  if (sa.sun_path[0] == '@') sa.sun_path[0] = '\0';  // abstract namespace
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  const auto addr_len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len);
  [[maybe_unused]] const ssize_t n =
      ::sendto(fd, state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&sa), addr_len);
  ::close(fd);
}

std::optional<std::chrono::milliseconds> sd_watchdog_interval() {
  const char* usec = std::getenv("WATCHDOG_USEC");
  if (usec == nullptr) return std::nullopt;
  if (const char* pid = std::getenv("WATCHDOG_PID"); pid != nullptr && std::to_string(::getpid()) != pid)
    return std::nullopt;
  const long long us = std::atoll(usec);
  if (us <= 0) return std::nullopt;
  return std::chrono::milliseconds(us / 1000);
}

}  // namespace keel::process
