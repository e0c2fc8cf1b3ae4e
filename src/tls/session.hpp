// The TLS side of one accepted connection: handshake, then reads and writes of application data
// on a non-blocking socket. A protocol connection (HTTP/1 today, HTTP/2 later) owns one and calls
// it where it would call recv()/send(); which protocol to speak is the ALPN result.
#pragma once

#include <openssl/ssl.h>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "keel/tls_info.hpp"
#include "tls/context.hpp"

namespace keel::tls {

enum class Io {
  kDone,       // handshake complete / bytes moved (IoResult::bytes)
  kWantRead,   // wait for the socket to be readable
  kWantWrite,  // wait for the socket to be writable
  kClosed,     // the peer closed (close_notify or EOF)
  kError,      // a protocol or socket error: the connection is over
};

struct IoResult {
  Io status = Io::kDone;
  std::size_t bytes = 0;
};

class Session {
 public:
  // Takes a server SSL for fd from contexts (which it keeps alive); valid() is false when
  // OpenSSL could not make one.
  Session(std::shared_ptr<const Contexts> contexts, int fd);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  [[nodiscard]] bool valid() const noexcept { return ssl_ != nullptr; }
  [[nodiscard]] bool established() const noexcept { return established_; }
  // One step of the handshake. kDone fills info(); kError sets failure_reason().
  Io handshake();
  IoResult read(char* buf, std::size_t size);
  IoResult write(const char* data, std::size_t size);
  // Sends close_notify if it can without waiting (a closing connection tells the client the
  // response is complete and untruncated).
  void close_notify() noexcept;

  const TlsInfo& info() const noexcept { return info_; }
  // Why the handshake failed, as a metric label: "timeout" is the caller's; here "plain_http",
  // "protocol_version", "no_shared_cipher", "client_certificate", "alpn", "peer_alert",
  // "peer_closed", "other".
  std::string_view failure_reason() const noexcept { return failure_reason_; }
  // OpenSSL's own words for the failure (for a debug log line).
  const std::string& failure_detail() const noexcept { return failure_detail_; }

 private:
  IoResult result(int ret, bool handshaking);
  void classify_failure(int ssl_error);
  void fill_info();

  std::shared_ptr<const Contexts> contexts_;
  SSL* ssl_ = nullptr;
  bool established_ = false;
  TlsInfo info_;
  std::string_view failure_reason_;
  std::string failure_detail_;
};

}  // namespace keel::tls
