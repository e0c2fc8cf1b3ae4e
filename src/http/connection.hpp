// One HTTP/1 client connection: reads into a buffer, parses requests in place, hands each to the
// server's RequestHandler as an Exchange (one at a time: a pipelined request waits until the one
// before is finished), and writes the responses in order, with backpressure, deadlines and
// lingering close.
#pragma once

#include <chrono>

#include <cstddef>
#include <memory>
#include <string>

#include "http/handler.hpp"
#include "http/request_parser.hpp"
#include "http/server.hpp"
#include "keel/response.hpp"
#include "runtime/event_loop.hpp"
#include "tls/session.hpp"

namespace keel::http {

class Connection final : public ServerConnection, public Exchange {
 public:
  // admin: accepted on the admin listener (counted apart from traffic). tls: the connection's
  // TLS session (null: plaintext); the handshake comes before any request.
  Connection(Server& server, RequestHandler& handler, int fd, std::string peer, bool admin = false,
             std::unique_ptr<tls::Session> tls = nullptr);
  ~Connection() override;

  void start();
  void on_io(std::uint32_t events) override;
  void on_deadline(Deadline kind) override;
  // Graceful shutdown: close now if idle, else close after the current response.
  void drain() override;

  // Exchange
  bool peer_gone() const noexcept override { return dead_; }
  Delivery respond(Response& response) override;
  void finish() noexcept override;

 private:
  friend class Server;

  void drive();
  // --proxy-protocol: reads the PROXY header off the socket (peeked, then exactly its length
  // taken, so a TLS ClientHello or a request after it stays unread); false while it waits or
  // failed (then the connection is closed).
  bool read_proxy_header();
  // The client speaks HTTP/2 (the preface instead of a request line, or ALPN "h2"): the http2
  // module's connection takes the socket, the TLS session and what was read.
  void switch_to_http2();
  // Whether the buffer holds (the start of) the HTTP/2 connection preface.
  enum class Preface { kNo, kPartial, kYes, kBroken };
  Preface http2_preface() const noexcept;
  void proxy_header_failed(std::string_view reason);
  // Whether this peer's proxy headers are read (--proxy-headers, --forwarded-allow-ips).
  void decide_proxy_trust();
  // One step of the TLS handshake; false while it waits (the socket, or this loop iteration's
  // handshake budget) or failed.
  bool handshake();
  void handshake_failed(std::string_view reason);
  // recv()/send() through TLS when there is a session: >0 bytes, 0 EOF, -1 with errno (EAGAIN).
  ssize_t receive(char* buf, std::size_t size);
  ssize_t transmit(const char* data, std::size_t size);
  bool read_some();
  bool process_buffered();
  bool pump_stream();
  bool flush();  // true when bytes were written
  void handle_request();
  void send_response(Response& response);
  void send_error(int status, std::string_view detail);
  void start_linger();
  void close_now();
  void update_deadline();
  enum class Grow { kOk, kTooLarge, kOverBudget };
  // Room for `needed` bytes from rstart_, growing by doubling but never past `limit` (when the
  // request's total size is known; 0: unknown).
  Grow ensure_capacity(std::size_t needed, std::size_t limit = 0);
  void release_read_buffer();
  std::string& output();  // out_, with a recycled buffer when it has none
  std::size_t out_pending() const noexcept { return out_.size() - out_off_; }
  bool busy() const noexcept { return in_exchange_ || streaming_; }

  Server& server_;
  RequestHandler& handler_;
  int fd_;
  std::string peer_;
  RequestParser parser_;
  std::unique_ptr<tls::Session> tls_;
  runtime::Clock::time_point accepted_at_{};  // the TLS handshake's duration
  bool tls_read_wants_write_ = false;         // SSL_read waits for the socket to be writable
  bool handshake_deferred_ = false;           // queued for the next loop iteration's budget
  bool proxy_pending_ = false;                // --proxy-protocol: the PROXY header is still to come
  std::size_t proxy_skip_ = 0;                // bytes of a parsed PROXY header still to take off the socket
  std::string proxy_source_;                  // its source address, the peer once the header is taken
  bool proxy_headers_trusted_ = false;        // the peer's X-Forwarded-* / Forwarded are read

  std::unique_ptr<char[]> rbuf_;
  std::size_t rcap_ = 0, rstart_ = 0, rend_ = 0;
  std::string out_;
  std::size_t out_off_ = 0;
  Response::BodyProducer producer_;
  std::vector<std::pair<std::string, std::string>> trailers_;  // of the streamed response

  bool want_read_ = true;
  bool peer_eof_ = false;
  bool peer_hup_ = false;     // epoll reported the peer's FIN (EOF not read yet)
  bool in_exchange_ = false;  // a request was handed to the handler and is not finished
  bool dispatching_ = false;  // inside handler_.handle(): finish() must not re-enter drive()
  bool streaming_ = false;
  bool raw_stream_ = false;  // HTTP/1.0 streamed body: no chunk framing, ends with close
  bool closing_ = false;     // close after the output is flushed
  bool lingering_ = false;
  bool dead_ = false;  // fd closed; freed once no handler references it
  bool head_request_ = false;
  bool keep_alive_ = true;
  std::uint64_t requests_on_connection_ = 0;
  bool sent_continue_ = false;
  runtime::Clock::time_point body_started_{};  // the head was complete, the body not (--body-deadline)
  std::size_t bytes_out_ = 0;                  // size of the last response written
  std::size_t lingered_bytes_ = 0;
};

}  // namespace keel::http
