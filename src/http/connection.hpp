// One client connection: reads into a buffer, parses requests in place, runs them through the
// router and middleware (inline for sync handlers, suspended for coroutines), and writes the
// responses in order, with backpressure, deadlines and lingering close.
#pragma once

#include <chrono>

#include <cstddef>
#include <exception>
#include <memory>
#include <optional>
#include <string>

#include "http/request_parser.hpp"
#include "http/server.hpp"
#include "keel/request.hpp"
#include "keel/response.hpp"
#include "log/log.hpp"
#include "net/event_loop.hpp"
#include "trace/tracer.hpp"

namespace keel::http {

class Connection final : public net::IoHandler {
 public:
  // admin: accepted on the admin listener; routed by the server's admin router, no middleware.
  Connection(Server& server, int fd, std::string peer, bool admin = false);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  void start();
  void on_io(std::uint32_t events) override;
  void on_deadline(Deadline kind);
  // Graceful shutdown: close now if idle, else close after the current response.
  void drain();
  // Completion of a coroutine handler (called by the driver coroutine).
  void complete_async(Response response, std::size_t middleware_ran);

 private:
  friend class Server;

  void drive();
  bool read_some();
  bool process_buffered();
  bool pump_stream();
  bool flush();  // true when bytes were written
  void handle_request();
  void finish_request(Response& response, std::size_t middleware_ran);
  void send_response(Response& response);
  void send_error(int status, std::string_view detail);
  Response error_response(std::exception_ptr e);
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
  bool busy() const noexcept { return in_handler_ || streaming_; }

  Server& server_;
  int fd_;
  std::string peer_;
  RequestParser parser_;
  Request request_;

  std::unique_ptr<char[]> rbuf_;
  std::size_t rcap_ = 0, rstart_ = 0, rend_ = 0;
  std::string out_;
  std::size_t out_off_ = 0;
  Response::BodyProducer producer_;

  bool want_read_ = true;
  bool peer_eof_ = false;
  bool peer_hup_ = false;    // epoll reported the peer's FIN (EOF not read yet)
  bool in_handler_ = false;  // a coroutine handler is suspended
  bool inline_dispatch_ = false;
  bool streaming_ = false;
  bool raw_stream_ = false;  // HTTP/1.0 streamed body: no chunk framing, ends with close
  bool closing_ = false;     // close after the output is flushed
  bool lingering_ = false;
  bool dead_ = false;  // fd closed; freed once no handler references it
  bool head_request_ = false;
  bool keep_alive_ = true;
  std::uint64_t requests_on_connection_ = 0;
  bool sent_continue_ = false;
  bool counted_ = false;  // holds an in-flight slot (--limit-concurrency)
  bool admin_ = false;
  log::Context log_context_;                         // current while this connection's request is handled
  trace::RequestTrace trace_;                        // the request's trace context and SERVER span
  std::chrono::steady_clock::time_point started_{};  // this request's head was parsed (observer only)
  net::Clock::time_point body_started_{};            // the head was complete, the body not (--body-deadline)
  std::size_t bytes_out_ = 0;                        // size of the last response written
  std::optional<Response> inline_result_;
  std::size_t inline_ran_ = 0;
  std::size_t lingered_bytes_ = 0;

  // Deadline list links (owned by Server).
  Deadline deadline_kind_ = Deadline::kNone;
  net::Clock::time_point deadline_{};
  Connection* dl_prev_ = nullptr;
  Connection* dl_next_ = nullptr;
  std::size_t all_index_ = 0;
};

}  // namespace keel::http
