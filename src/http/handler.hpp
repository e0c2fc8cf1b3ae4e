// The seam between a protocol and the application. A protocol connection (HTTP/1 today; an HTTP/2
// stream or an upgraded connection later, docs/architecture.md) hands each parsed request to a
// RequestHandler as an Exchange, and frames whatever Response comes back. The handler knows nothing
// of framing, buffers or sockets; the protocol nothing of routes, middleware, tracing or threads.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "http/request_parser.hpp"
#include "keel/request.hpp"
#include "keel/response.hpp"
#include "net/ip.hpp"

namespace keel::http {

// What respond() did with the answer.
struct Delivery {
  bool delivered = false;     // false: the peer went away first, nothing was sent
  std::size_t bytes_in = 0;   // request head + body as received
  std::size_t bytes_out = 0;  // response head + body framed (a streamed body: what was known when it started)
};

// One request and its answer, as the protocol holds them. Every call is on the event-loop thread.
// The handler calls respond() (unless the peer is gone), then finish(), exactly once each and in
// that order — inline from RequestHandler::handle() or later, when a coroutine handler completes.
// The request stays valid until finish(); the exchange must not be touched after it.
class Exchange {
 public:
  Request& request() noexcept { return request_; }
  // The peer closed or reset the connection (or stream): respond() would send nothing. A handler
  // that was suspended then records the request as abandoned (nginx's 499) and calls finish().
  virtual bool peer_gone() const noexcept = 0;
  // Frames the answer (status, headers, body or stream) for sending. May replace an answer the
  // protocol cannot send (an invalid header value) with a 500.
  virtual Delivery respond(Response& response) = 0;
  // The exchange is over: the protocol reuses the request's storage and moves on (the next
  // pipelined request, the next stream, or closing).
  virtual void finish() noexcept = 0;

 protected:
  Exchange() = default;
  ~Exchange() = default;
  Exchange(const Exchange&) = delete;
  Exchange& operator=(const Exchange&) = delete;

  // The peer's address as "ip:port" (or "unix"); the storage is the caller's, for the exchange's life.
  void set_peer_address(std::string_view address) noexcept {
    request_.peer_address_ = address;
    request_.client_address_ = address;
  }
  // The connection's TLS parameters (null: plaintext); the storage is the caller's.
  void set_tls(const TlsInfo* tls) noexcept { request_.tls_ = tls; }
  // request_ now holds a new request (views into `parsed`, valid until finish()).
  void begin_request(const ParsedRequest& parsed) noexcept {
    request_.parsed_ = &parsed;
    request_.route_ = "unmatched";
    request_.params_.clear();
    request_.request_id_.clear();
    request_.path_ = parsed.path;
    request_.root_path_ = {};
    request_.client_address_ = request_.peer_address_;
    request_.host_ = {};
    request_.scheme_ = {};
  }
  // From a peer in --forwarded-allow-ips (with --proxy-headers), after begin_request: the client
  // address, scheme and host the proxy headers name (http/forwarded.hpp).
  void apply_proxy_headers(const net::AddressSet& trusted);
  void end_request() noexcept { request_.parsed_ = nullptr; }
  // The id the answer carries (X-Request-ID), when one was given or made.
  const std::string& request_id_if_any() const noexcept { return request_.request_id_; }

  Request request_;
};

class RequestHandler {
 public:
  virtual ~RequestHandler() = default;
  // Starts handling one exchange; returns when it is finished or suspended (a coroutine handler).
  virtual void handle(Exchange& exchange) noexcept = 0;
};

}  // namespace keel::http
