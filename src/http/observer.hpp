// What the HTTP core reports to observability (metrics, access logs) without depending on it: a
// server has at most one observer, called on its event-loop thread. The core pays nothing but a
// null check when there is none.
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace keel {
class Request;
}
namespace keel::tls {
class Contexts;
}

namespace keel::http {

// Why a request or connection was refused before a handler produced its answer.
enum class Rejection {
  kParseError,        // malformed request (400, 501)
  kTooLarge,          // a size limit (413, 414, 431)
  kTimeout,           // header or body timeout (408)
  kConcurrencyLimit,  // --limit-concurrency (503)
  kConnectionLimit,   // --worker-connections (503)
  kThreadPoolFull,    // offload queue full (503)
  kBufferBudget,      // the worker's request buffer budget is spent (503)
  kProxyProtocol,     // --proxy-protocol: a missing, malformed or too slow PROXY header (closed, no answer)
};

// The protocol a request came over: the bounded set of values of the network_protocol_version
// metric label (Request::http_version(): "1.0", "1.1", "2"), as an index observers can use
// without comparing strings per request.
enum class Protocol : std::uint8_t { kHttp10, kHttp11, kHttp2 };
inline constexpr std::size_t kProtocols = 3;
inline constexpr std::array<std::string_view, kProtocols> kProtocolVersions{"1.0", "1.1", "2"};
inline constexpr std::array<std::string_view, kProtocols> kProtocolNames{"HTTP/1.0", "HTTP/1.1", "HTTP/2"};
constexpr Protocol protocol_of(std::string_view http_version) noexcept {
  return http_version == "2" ? Protocol::kHttp2 : http_version == "1.0" ? Protocol::kHttp10 : Protocol::kHttp11;
}
constexpr std::string_view version_of(Protocol p) noexcept {
  return kProtocolVersions[static_cast<std::size_t>(p)];
}
constexpr std::string_view name_of(Protocol p) noexcept {
  return kProtocolNames[static_cast<std::size_t>(p)];
}

// Why an HTTP/2 connection was ended by a defence or a fatal protocol error (http2_error): a
// bounded set, so metrics can declare every value up front.
inline constexpr std::array<std::string_view, 6> kHttp2ErrorReasons{"rapid_reset", "control_flood", "header_flood",
                                                                    "slow_reader", "bad_preface",   "protocol_error"};

struct RequestRecord {
  const Request* request = nullptr;  // path, headers, client address, request id, stream id
  Protocol protocol = Protocol::kHttp11;
  std::string_view method;
  std::string_view route;  // the matched template, "unmatched" otherwise
  int status = 0;
  double seconds = 0;                      // head parsed -> response written to the output buffer
  std::size_t bytes_in = 0;                // request head + body as received
  std::size_t bytes_out = 0;               // response head + body (a streamed body: what was known when it started)
  const std::uint8_t* trace_id = nullptr;  // 16 bytes when the request's trace is sampled (exemplars)
};

class Observer {
 public:
  virtual ~Observer() = default;
  // A request reached the application; request_finished follows with the same protocol.
  virtual void request_started(Protocol protocol) noexcept = 0;
  // Every request that reached routing, whatever answered it (handler, middleware, 404, 503).
  virtual void request_finished(const RequestRecord& record) noexcept = 0;
  virtual void rejected(Rejection why) noexcept = 0;
  virtual void connection_opened() noexcept = 0;
  virtual void connection_closed() noexcept = 0;
  // Once per event-loop iteration; returns when it next needs to run (periodic sampling).
  virtual std::chrono::steady_clock::time_point tick(std::chrono::steady_clock::time_point now) noexcept = 0;
  // A TLS handshake ended: failure is empty on success, else its reason ("timeout",
  // "plain_http", "protocol_version", "no_shared_cipher", "client_certificate", "alpn",
  // "peer_alert", "peer_closed", "other"); seconds from accept.
  virtual void tls_handshake(std::string_view failure, double seconds, bool resumed) noexcept {
    (void)failure, (void)seconds, (void)resumed;
  }
  // HTTP/2: a connection began (+1) or ended (-1) speaking it; a stream opened or closed.
  virtual void http2_connection(int delta) noexcept { (void)delta; }
  virtual void http2_streams(int delta) noexcept { (void)delta; }
  // A connection ended by a defence or a fatal protocol error: one of kHttp2ErrorReasons
  // ("rapid_reset", "control_flood", "header_flood", "slow_reader", "bad_preface",
  // "protocol_error").
  virtual void http2_error(std::string_view reason) noexcept { (void)reason; }
  // The server (re)loaded its certificates: at start and after every rotation.
  virtual void tls_contexts_loaded(const tls::Contexts& contexts) noexcept { (void)contexts; }
};

// Several observers behind one (metrics and the access log).
class ObserverList final : public Observer {
 public:
  void add(Observer* o) { list_.push_back(o); }
  [[nodiscard]] bool empty() const noexcept { return list_.empty(); }
  void request_started(Protocol protocol) noexcept override {
    for (auto* o : list_) o->request_started(protocol);
  }
  void request_finished(const RequestRecord& r) noexcept override {
    for (auto* o : list_) o->request_finished(r);
  }
  void rejected(Rejection why) noexcept override {
    for (auto* o : list_) o->rejected(why);
  }
  void connection_opened() noexcept override {
    for (auto* o : list_) o->connection_opened();
  }
  void connection_closed() noexcept override {
    for (auto* o : list_) o->connection_closed();
  }
  std::chrono::steady_clock::time_point tick(std::chrono::steady_clock::time_point now) noexcept override {
    auto next = std::chrono::steady_clock::time_point::max();
    for (auto* o : list_) next = std::min(next, o->tick(now));
    return next;
  }
  void tls_handshake(std::string_view failure, double seconds, bool resumed) noexcept override {
    for (auto* o : list_) o->tls_handshake(failure, seconds, resumed);
  }
  void http2_connection(int delta) noexcept override {
    for (auto* o : list_) o->http2_connection(delta);
  }
  void http2_streams(int delta) noexcept override {
    for (auto* o : list_) o->http2_streams(delta);
  }
  void http2_error(std::string_view reason) noexcept override {
    for (auto* o : list_) o->http2_error(reason);
  }
  void tls_contexts_loaded(const tls::Contexts& contexts) noexcept override {
    for (auto* o : list_) o->tls_contexts_loaded(contexts);
  }

 private:
  std::vector<Observer*> list_;
};

}  // namespace keel::http
