#include "http/connection.hpp"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/strings.hpp"
#include "http/response_writer.hpp"
#include "http/transport.hpp"
#include "log/log.hpp"
#include "net/proxy_protocol.hpp"

namespace keel::http {
namespace {

constexpr std::size_t kInitialBuffer = Server::kReadBufferSize;
constexpr std::size_t kMinRead = 1024;  // a recv() gets at least this much room
constexpr std::size_t kMaxLingerBytes = 1024 * 1024;

}  // namespace

Connection::Connection(Server& server, RequestHandler& handler, int fd, std::string peer, bool admin,
                       std::unique_ptr<tls::Session> tls)
    : ServerConnection(admin),
      server_(server),
      handler_(handler),
      fd_(fd),
      peer_(std::move(peer)),
      parser_(server.parser_limits()),
      tls_(std::move(tls)) {
  set_peer_address(peer_);
  if (tls_) accepted_at_ = runtime::Clock::now();
  proxy_pending_ = server.config().proxy_protocol && !admin;
  if (!proxy_pending_) decide_proxy_trust();
}

Connection::~Connection() {
  if (fd_ >= 0) ::close(fd_);
  server_.buffered_request_bytes() -= rcap_;
}

void Connection::start() {
  server_.loop().add(fd_, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, this);
  // The PROXY header is bounded like a request head (--header-timeout), from accept.
  server_.set_deadline(*this, proxy_pending_ ? Deadline::kHeader : tls_ ? Deadline::kHandshake : Deadline::kKeepAlive);
  // Data may already be waiting (accept after the client wrote): try at once.
  drive();
}

void Connection::on_io(std::uint32_t events) {
  if (dead_) return;
  if ((events & EPOLLERR) != 0) {
    close_now();
    return;
  }
  if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) != 0) want_read_ = true;
  if ((events & EPOLLOUT) != 0 && tls_read_wants_write_) want_read_ = true;
  // The peer's FIN may have arrived together with its last bytes: then a short read does not
  // mean the socket is drained, the EOF is still to be read.
  if ((events & (EPOLLRDHUP | EPOLLHUP)) != 0) peer_hup_ = true;
  drive();
}

// The connection's state machine: read, parse and handle, stream, write, until no step makes
// progress. Every event and every async completion ends up here, so there is no re-entrancy.
void Connection::drive() {
  if (proxy_pending_ && !read_proxy_header()) {
    if (!dead_) update_deadline();
    return;
  }
  if (tls_ && !tls_->established() && !handshake()) {
    if (!dead_) update_deadline();
    return;
  }
  while (!dead_) {
    bool progress = false;
    if (lingering_) {
      if (!read_some()) break;
      continue;
    }
    if (!busy() && !closing_) progress |= process_buffered();
    if (streaming_ && out_pending() < server_.config().output_buffer_limit) progress |= pump_stream();
    if (dead_) return;
    // Drained output may let buffered pipelined requests proceed: that is progress too.
    if (out_pending() > 0) progress |= flush();
    if (dead_) return;
    if (out_pending() == 0 && !busy()) {
      if (closing_) {
        start_linger();
        if (dead_) return;
        continue;
      }
      if (peer_eof_) {
        // The client finished sending and every complete request has been answered; what is
        // left in the buffer can never become a request.
        close_now();
        return;
      }
    }
    const bool can_read = !busy() && !closing_ && !peer_eof_ && out_pending() < server_.config().output_buffer_limit;
    if (can_read && want_read_) progress |= read_some();
    if (!progress) break;
  }
  if (!dead_) update_deadline();
}

// The buffer grows with the bytes that arrive, never ahead of them from a Content-Length: a
// client that announces a large body and sends nothing costs one small buffer. Growth beyond
// the standard size is charged to the worker's --request-buffer-budget.
Connection::Grow Connection::ensure_capacity(std::size_t needed, std::size_t limit) {
  // needed: bytes from rstart_ the buffer must be able to hold.
  const ParserLimits& lim = server_.parser_limits();
  // Chunked framing may take more room than the decoded body; twice the body limit bounds it.
  const std::size_t max_size = lim.max_header_block + 2 * lim.max_body + 64 * 1024;
  if (needed > max_size) return Grow::kTooLarge;
  if (rbuf_ && rstart_ + needed <= rcap_) return Grow::kOk;
  if (rbuf_ && needed <= rcap_) {  // room once the consumed prefix is dropped
    std::memmove(rbuf_.get(), rbuf_.get() + rstart_, rend_ - rstart_);
    rend_ -= rstart_;
    rstart_ = 0;
    return Grow::kOk;
  }
  std::size_t cap = rcap_ == 0 ? kInitialBuffer : rcap_;
  while (cap < needed) cap *= 2;
  if (limit != 0) cap = std::max(std::min(cap, limit), needed);
  cap = std::max(std::min(cap, max_size), kInitialBuffer);
  std::unique_ptr<char[]> fresh;
  if (cap == kInitialBuffer) {
    fresh = server_.take_read_buffer();
  } else {
    std::size_t& held = server_.buffered_request_bytes();
    if (held - rcap_ + cap > server_.config().request_buffer_budget) return Grow::kOverBudget;
    fresh = std::make_unique_for_overwrite<char[]>(cap);  // no zero-fill: pages are touched as bytes arrive
  }
  if (rend_ > rstart_) std::memcpy(fresh.get(), rbuf_.get() + rstart_, rend_ - rstart_);
  rend_ -= rstart_;
  rstart_ = 0;
  release_read_buffer();
  rbuf_ = std::move(fresh);
  rcap_ = cap;
  server_.buffered_request_bytes() += cap;
  return Grow::kOk;
}

void Connection::release_read_buffer() {
  if (!rbuf_) return;
  server_.buffered_request_bytes() -= rcap_;
  if (rcap_ == kInitialBuffer) server_.give_read_buffer(std::move(rbuf_));
  rbuf_.reset();
  rcap_ = 0;
}

std::string& Connection::output() {
  if (out_.empty() && out_.capacity() < 256) server_.take_output(out_);
  return out_;
}

void Connection::decide_proxy_trust() {
  const ServerConfig& config = server_.config();
  proxy_headers_trusted_ = false;
  if (!config.proxy_headers) return;
  if (peer_.rfind("unix", 0) == 0) {  // a unix socket's peer is on this machine: trusted, as in uvicorn
    proxy_headers_trusted_ = true;
  } else if (!config.forwarded_allow_ips.empty()) {
    const auto ip = net::peer_ip(peer_);
    proxy_headers_trusted_ = ip && config.forwarded_allow_ips.contains(*ip);
  }
}

bool Connection::read_proxy_header() {
  if (proxy_skip_ == 0) {
    char head[net::kProxyHeaderPeek];
    ssize_t n = 0;
    do {
      n = ::recv(fd_, head, sizeof head, MSG_PEEK);
    } while (n < 0 && errno == EINTR);
    if (n == 0) {
      close_now();  // closed without a byte (a balancer's TCP check): nothing to count
      return false;
    }
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK) close_now();
      return false;
    }
    const net::ProxyHeader h = net::parse_proxy_header(std::string_view(head, static_cast<std::size_t>(n)));
    switch (h.status) {
      case net::ProxyHeader::Status::kIncomplete:
        // The rest comes with the next readable event, unless the peer already finished sending.
        if (peer_hup_ || static_cast<std::size_t>(n) == sizeof head) proxy_header_failed("truncated header");
        return false;
      case net::ProxyHeader::Status::kInvalid:
        proxy_header_failed(h.error);
        return false;
      case net::ProxyHeader::Status::kDone:
        break;
    }
    proxy_source_ = h.source;
    proxy_skip_ = h.length;
  }
  // Take exactly the header (version 2's TLVs unread), nothing of what follows.
  char sink[4096];
  while (proxy_skip_ > 0) {
    const ssize_t n = ::recv(fd_, sink, std::min(proxy_skip_, sizeof sink), 0);
    if (n > 0) {
      proxy_skip_ -= static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (peer_hup_) proxy_header_failed("truncated header");
      return false;
    }
    proxy_header_failed("truncated header");
    return false;
  }
  proxy_pending_ = false;
  if (!proxy_source_.empty()) {  // the balancer's client is this connection's peer from now on
    peer_ = std::move(proxy_source_);
    set_peer_address(peer_);
  }
  decide_proxy_trust();
  server_.set_deadline(*this, tls_ ? Deadline::kHandshake : Deadline::kKeepAlive);
  want_read_ = true;
  return true;
}

Connection::Preface Connection::http2_preface() const noexcept {
  static constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  const std::string_view have(rbuf_.get() + rstart_, rend_ - rstart_);
  const std::size_t n = std::min(have.size(), kPreface.size());
  if (have.substr(0, n) == kPreface.substr(0, n)) return n == kPreface.size() ? Preface::kYes : Preface::kPartial;
  // "PRI * HTTP/2.0" and its blank line, then not the rest: an HTTP/2 client with a broken preface.
  constexpr std::size_t kRequestLine = 18;
  return n > kRequestLine && have.substr(0, kRequestLine) == kPreface.substr(0, kRequestLine) ? Preface::kBroken
                                                                                              : Preface::kNo;
}

void Connection::switch_to_http2() {
  Handover h;
  h.handler = &handler_;
  h.fd = fd_;
  h.admin = admin();
  h.peer = peer_;
  h.proxy_headers_trusted = proxy_headers_trusted_;
  h.tls = std::move(tls_);
  if (rbuf_) h.received = std::string_view(rbuf_.get() + rstart_, rend_ - rstart_);
  std::unique_ptr<ServerConnection> next = server_.http2()->adopt(server_, std::move(h));
  rstart_ = rend_ = 0;
  release_read_buffer();
  fd_ = -1;  // the socket is the new connection's now
  dead_ = true;
  server_.hand_over(*this, std::move(next));
}

void Connection::proxy_header_failed(std::string_view reason) {
  if (Observer* o = server_.observer()) o->rejected(Rejection::kProxyProtocol);
  // A balancer that does not send the header is a configuration mistake worth seeing: one line per
  // 5 s at most (a scanner must not flood the log), the metric counts every one.
  static runtime::Clock::time_point last_warning{};
  if (const auto now = runtime::Clock::now(); now - last_warning > std::chrono::seconds(5)) {
    last_warning = now;
    log::write(log::Level::kWarning, "keel.http", "proxy_protocol_rejected",
               {{"client_ip", std::string(base::client_ip(peer_))}, {"reason", reason}});
  }
  close_now();
}

bool Connection::handshake() {
  if (handshake_deferred_) return false;
  // A flood of new TLS connections must not starve the established ones: each loop iteration
  // runs a bounded number of handshake steps, the rest wait for the next iteration.
  if (!server_.take_handshake_budget()) {
    handshake_deferred_ = true;
    server_.defer_handshake(this);
    return false;
  }
  switch (tls_->handshake()) {
    case tls::Io::kDone:
      set_tls(&tls_->info());
      if (Observer* o = server_.observer())
        o->tls_handshake({}, std::chrono::duration<double>(runtime::Clock::now() - accepted_at_).count(),
                         tls_->info().resumed);
      if (tls_->info().alpn == "h2" && server_.http2() != nullptr) {
        switch_to_http2();
        return false;
      }
      server_.set_deadline(*this, Deadline::kKeepAlive);
      want_read_ = true;  // the first request may have come with the handshake's last flight
      return true;
    case tls::Io::kWantRead:
    case tls::Io::kWantWrite:
      return false;
    case tls::Io::kClosed:
    case tls::Io::kError:
      handshake_failed(tls_->failure_reason());
      return false;
  }
  return false;
}

void Connection::handshake_failed(std::string_view reason) {
  if (Observer* o = server_.observer())
    o->tls_handshake(reason, std::chrono::duration<double>(runtime::Clock::now() - accepted_at_).count(), false);
  if (reason == "plain_http") {
    // An http:// URL pointed at this TLS port: say so in plain HTTP, as nginx does, instead of
    // a handshake error the client shows as garbage.
    ResponseContext ctx;
    ctx.version_minor = 1;
    ctx.close = true;
    ctx.server = server_.config().server_header;
    ctx.date = server_.date().get();
    std::string out;
    write_response(out, problem_response(400, "this port speaks HTTPS; the request was plain HTTP", {}), ctx);
    [[maybe_unused]] const ssize_t n = ::send(fd_, out.data(), out.size(), MSG_NOSIGNAL);
    ::shutdown(fd_, SHUT_WR);
  } else if (reason != "peer_closed" && reason != "timeout") {
    log::write(
        log::Level::kDebug, "keel.tls", "handshake_failed",
        {{"client_ip", std::string(base::client_ip(peer_))}, {"reason", reason}, {"detail", tls_->failure_detail()}});
  }
  close_now();
}

ssize_t Connection::receive(char* buf, std::size_t size) {
  return transport_receive(fd_, tls_.get(), buf, size, tls_read_wants_write_);
}

ssize_t Connection::transmit(const char* data, std::size_t size) {
  return transport_transmit(fd_, tls_.get(), data, size);
}

// One recv(). Returns true when it changed something (bytes, EOF).
bool Connection::read_some() {
  if (lingering_) {
    char sink[16 * 1024];
    for (;;) {
      const ssize_t n = ::recv(fd_, sink, sizeof sink, 0);  // raw: TLS records are discarded unread
      if (n > 0) {
        lingered_bytes_ += static_cast<std::size_t>(n);
        if (lingered_bytes_ > kMaxLingerBytes) {
          close_now();
          return false;
        }
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return false;
      close_now();  // EOF or error: the client has our response
      return false;
    }
  }
  // With the head parsed and a Content-Length, the request's size is known: the buffer grows
  // towards it (doubling with the bytes received), never past it.
  const std::size_t buffered = rend_ - rstart_;
  const std::size_t total = parser_.head_complete() ? parser_.expected_size() : 0;
  std::size_t needed = buffered + kMinRead;
  if (total > buffered) needed = std::min(needed, total);
  switch (ensure_capacity(needed, total)) {
    case Grow::kOk:
      break;
    case Grow::kTooLarge:
      if (Observer* o = server_.observer()) o->rejected(Rejection::kTooLarge);
      send_error(413, "request too large");
      return true;
    case Grow::kOverBudget: {
      if (Observer* o = server_.observer()) o->rejected(Rejection::kBufferBudget);
      // One line per 5 s at most: under a flood the metric counts, the log says it is happening.
      static runtime::Clock::time_point last_warning{};
      if (const auto now = runtime::Clock::now(); now - last_warning > std::chrono::seconds(5)) {
        last_warning = now;
        log::write(
            log::Level::kWarning, "keel.http", "request_buffer_budget_exhausted",
            {{"buffered_bytes", server_.buffered_request_bytes()}, {"budget", server_.config().request_buffer_budget}});
      }
      send_error(503, "the server is short of memory for request bodies; retry later");
      return true;
    }
  }
  const std::size_t space = rcap_ - rend_;
  const ssize_t n = receive(rbuf_.get() + rend_, space);
  if (n > 0) {
    rend_ += static_cast<std::size_t>(n);
    // A short read drained the socket: with edge-triggered epoll, new data raises a new event.
    // Not so through TLS: one record was read, more may wait in the socket (EAGAIN says when not).
    if (static_cast<std::size_t>(n) < space && !peer_hup_ && !tls_) want_read_ = false;
    if (parser_.head_complete()) {
      // The idle timer restarts with every byte; the whole body also has a deadline, so a byte
      // now and then cannot hold the connection (and its buffer) for ever.
      if (body_started_ != runtime::Clock::time_point{} &&
          runtime::Clock::now() - body_started_ > server_.config().body_deadline) {
        if (Observer* o = server_.observer()) o->rejected(Rejection::kTimeout);
        send_error(408, "timed out reading the body");
        return true;
      }
      server_.set_deadline(*this, Deadline::kBody);
    }
    return true;
  }
  if (n == 0) {
    peer_eof_ = true;
    want_read_ = false;
    if (rend_ == rstart_) release_read_buffer();
    return true;
  }
  if (errno == EAGAIN || errno == EWOULDBLOCK) {
    want_read_ = false;
    if (rend_ == rstart_) release_read_buffer();  // woken with nothing to read: stay bufferless
    return false;
  }
  if (errno == EINTR) return true;
  close_now();  // ECONNRESET and friends
  return false;
}

// Parses and handles every complete request in the buffer, as long as output stays under the
// backpressure bound and no handler is suspended.
bool Connection::process_buffered() {
  bool progress = false;
  while (!dead_ && !busy() && !closing_ && rend_ > rstart_ && out_pending() < server_.config().output_buffer_limit) {
    // HTTP/2 with prior knowledge (plaintext only: over TLS, ALPN says it): the client's first
    // bytes are the connection preface instead of a request line.
    if (requests_on_connection_ == 0 && !tls_ && server_.http2() != nullptr && !parser_.head_complete()) {
      const Preface preface = http2_preface();
      if (preface == Preface::kPartial) break;  // wait for the rest before deciding
      if (preface == Preface::kYes) {
        switch_to_http2();
        return true;
      }
      if (preface == Preface::kBroken) {  // an invalid preface is a connection error: close
        if (Observer* o = server_.observer()) o->rejected(Rejection::kParseError);
        close_now();
        return true;
      }
    }
    const ParseStatus st = parser_.parse(rbuf_.get() + rstart_, rend_ - rstart_);
    if (st == ParseStatus::kIncomplete) {
      if (parser_.head_complete()) {
        if (body_started_ == runtime::Clock::time_point{}) body_started_ = runtime::Clock::now();
        if (parser_.request().expect_continue && !sent_continue_) {
          output() += "HTTP/1.1 100 Continue\r\n\r\n";
          sent_continue_ = true;
          progress = true;
        }
      }
      break;
    }
    progress = true;
    if (st == ParseStatus::kError) {
      if (Observer* o = server_.observer()) {
        const int status = parser_.error_status();
        o->rejected(status == 413 || status == 414 || status == 431 ? Rejection::kTooLarge : Rejection::kParseError);
      }
      if (requests_on_connection_ == 0 && !tls_ && server_.http2() != nullptr && parser_.not_http1()) {
        // Where HTTP/2 is spoken by prior knowledge, a first line that is not HTTP/1 may be a
        // broken HTTP/2 preface: an HTTP/1 answer would be garbage to that client, and the
        // connection error HTTP/2 prescribes is to close (RFC 9113 section 3.4).
        close_now();
        return true;
      }
      send_error(parser_.error_status(), parser_.error_reason());
      break;
    }
    handle_request();
  }
  if (rstart_ == rend_ && !busy()) {
    rstart_ = rend_ = 0;
    release_read_buffer();  // an idle connection holds no buffer
  }
  return progress;
}

void Connection::handle_request() {
  const ParsedRequest& p = parser_.request();
  begin_request(p);
  if (proxy_headers_trusted_) apply_proxy_headers(server_.config().forwarded_allow_ips);
  head_request_ = p.method == "HEAD";
  // keep_alive_requests (nginx's keepalive_requests): a long-lived connection is closed now and
  // then, so clients spread over new workers (scale-up, a canary generation) instead of staying
  // pinned to the workers they first reached.
  ++requests_on_connection_;
  const std::uint64_t max_on_connection = server_.config().keep_alive_requests;
  keep_alive_ =
      p.keep_alive && !server_.draining() && (max_on_connection == 0 || requests_on_connection_ < max_on_connection);
  // Whatever the target form and the answer, the connection closes after any CONNECT: a client or
  // a proxy in front may treat what follows the head as tunnel bytes, none of which may be read
  // here as a body or as another request.
  if (p.method == "CONNECT") keep_alive_ = false;
  // Reading pauses until finish(): a handler that suspends keeps its request's views valid.
  in_exchange_ = true;
  dispatching_ = true;
  handler_.handle(*this);
  dispatching_ = false;
}

Delivery Connection::respond(Response& response) {
  Delivery d;
  d.bytes_in = parser_.consumed();
  if (dead_) return d;  // the client went away while the handler ran
  send_response(response);
  server_.request_done();
  d.delivered = true;
  d.bytes_out = bytes_out_;
  return d;
}

// Consumes the request from the buffer and moves on: the next pipelined request, more reading,
// or the close a dead connection waited for.
void Connection::finish() noexcept {
  in_exchange_ = false;
  end_request();
  if (dead_) {
    parser_.reset();
    server_.release(this);
    return;
  }
  rstart_ += parser_.consumed();
  parser_.reset();
  sent_continue_ = false;
  body_started_ = {};
  // Every timer restarts after a request: update_deadline arms the one that fits.
  server_.set_deadline(*this, Deadline::kNone);
  if (!dispatching_) drive();
}

void Connection::send_response(Response& response) {
  if (!headers_are_safe(response)) {
    log::write(log::Level::kError, "keel.http", "invalid_response_header",
               {{"route", request_.route()}, {"request_id", request_.request_id()}});
    response = problem_response(500, "the handler produced an invalid response header", request_.request_id());
  }
  ResponseContext ctx;
  ctx.version_minor = parser_.request().version_minor;
  ctx.head_request = head_request_;
  const int status = response.status();
  const bool stream = response.producer() && !head_request_ && status >= 200 && status != 204 && status != 304;
  // HTTP/1.0 has no chunked coding: a streamed body is delimited by closing the connection.
  raw_stream_ = stream && parser_.request().version_minor == 0;
  ctx.close = !keep_alive_ || response.closes_connection() || server_.draining() || raw_stream_;
  ctx.keep_alive_10 = !ctx.close && ctx.version_minor == 0;
  ctx.server = server_.config().server_header;
  ctx.date = server_.date().get();
  ctx.request_id = request_id_if_any();
  std::string& out = output();
  const std::size_t before = out.size();
  write_response(out, response, ctx);
  bytes_out_ = out.size() - before;
  if (stream) {
    producer_ = response.producer();
    trailers_ = response.trailers();
    streaming_ = true;
  }
  if (ctx.close) closing_ = true;
}

bool Connection::pump_stream() {
  bool more = true;
  std::string piece;
  const std::size_t limit = server_.config().output_buffer_limit;
  while (more && out_pending() < limit) {
    piece.clear();
    try {
      more = producer_(piece);
    } catch (const std::exception& e) {
      // Headers are gone already: the only honest signal left is an aborted body.
      log::write(log::Level::kError, "keel.http", "stream_failed", {{"error", e.what()}});
      close_now();
      return false;
    }
    if (raw_stream_)
      output() += piece;
    else
      append_chunk(output(), piece);
  }
  if (!more) {
    if (!raw_stream_) append_last_chunk(output(), trailers_);
    streaming_ = false;
    producer_ = nullptr;
    trailers_.clear();
  }
  return true;
}

bool Connection::flush() {
  const std::size_t before = out_off_;
  while (out_off_ < out_.size()) {
    const ssize_t n = transmit(out_.data() + out_off_, out_.size() - out_off_);
    if (n > 0) {
      out_off_ += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (out_off_ != before || deadline_kind() != Deadline::kWrite) server_.set_deadline(*this, Deadline::kWrite);
      return out_off_ != before;
    }
    close_now();  // EPIPE, ECONNRESET: the client is gone
    return false;
  }
  out_off_ = 0;
  server_.give_output(out_);  // all sent: the connection keeps no output buffer
  return true;
}

void Connection::send_error(int status, std::string_view detail) {
  Response r = problem_response(status, detail, {});
  keep_alive_ = false;
  head_request_ = false;
  ResponseContext ctx;
  ctx.version_minor = 1;
  ctx.close = true;
  ctx.server = server_.config().server_header;
  ctx.date = server_.date().get();
  write_response(output(), r, ctx);
  closing_ = true;
  rstart_ = rend_ = 0;  // the framing can no longer be trusted: drop what was buffered
  release_read_buffer();
}

// After a final response on a closing connection: stop sending, then read and discard until the
// client closes (or a bound is hit), so unread request bytes never turn our close into an RST
// that destroys the response in flight.
void Connection::start_linger() {
  closing_ = false;
  if (peer_eof_) {
    close_now();
    return;
  }
  transport_half_close(fd_, tls_.get());
  lingering_ = true;
  want_read_ = true;
  server_.set_deadline(*this, Deadline::kLinger);
}

void Connection::close_now() {
  if (dead_) return;
  dead_ = true;
  server_.loop().remove(fd_);
  ::close(fd_);
  fd_ = -1;
  server_.set_deadline(*this, Deadline::kNone);
  if (!in_exchange_) server_.release(this);
}

void Connection::update_deadline() {
  if (lingering_) return;
  if (proxy_pending_) {
    if (deadline_kind() != Deadline::kHeader) server_.set_deadline(*this, Deadline::kHeader);
    return;
  }
  if (tls_ && !tls_->established()) {
    if (deadline_kind() != Deadline::kHandshake) server_.set_deadline(*this, Deadline::kHandshake);
    return;
  }
  if (out_pending() > 0) {
    if (deadline_kind() != Deadline::kWrite) server_.set_deadline(*this, Deadline::kWrite);
  } else if (busy()) {
    server_.set_deadline(*this, Deadline::kNone);
  } else if (rend_ == rstart_) {
    const Deadline idle = server_.draining() ? Deadline::kDrainIdle : Deadline::kKeepAlive;
    if (deadline_kind() != idle) server_.set_deadline(*this, idle);
  } else if (parser_.head_complete()) {
    if (deadline_kind() != Deadline::kBody) server_.set_deadline(*this, Deadline::kBody);
  } else if (deadline_kind() != Deadline::kHeader) {
    server_.set_deadline(*this, Deadline::kHeader);  // from the first byte of the head, never extended
  }
}

void Connection::on_deadline(Deadline kind) {
  switch (kind) {
    case Deadline::kHandshake:
      handshake_failed("timeout");
      break;
    case Deadline::kHeader:
      if (proxy_pending_) {
        proxy_header_failed("timeout");
        break;
      }
      [[fallthrough]];
    case Deadline::kBody:
      if (Observer* o = server_.observer()) o->rejected(Rejection::kTimeout);
      send_error(408, kind == Deadline::kHeader ? "timed out reading the request head" : "timed out reading the body");
      drive();
      break;
    case Deadline::kWrite: {
      // The client stopped reading: reset instead of a graceful close.
      transport_reset_on_close(fd_);
      close_now();
      break;
    }
    case Deadline::kKeepAlive:
    case Deadline::kLinger:
    case Deadline::kDrainIdle:
    case Deadline::kNone:
    case Deadline::kCount:
      close_now();
      break;
  }
}

void Connection::drain() {
  if (dead_) return;
  keep_alive_ = false;  // a response in progress will carry Connection: close
  // A handshake under way completes (bounded by its deadline); its request is answered with
  // Connection: close like any other during the drain. So does a PROXY header (--header-timeout).
  if (proxy_pending_ || (tls_ && !tls_->established())) return;
  if (!busy() && rend_ == rstart_ && out_pending() == 0 && !lingering_)
    server_.set_deadline(*this, Deadline::kDrainIdle);
}

}  // namespace keel::http
