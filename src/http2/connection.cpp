#include "http2/connection.hpp"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <stdexcept>

#include "base/strings.hpp"
#include "http/observer.hpp"
#include "http/request_parser.hpp"
#include "http/response_writer.hpp"
#include "http/transport.hpp"
#include "http2/allocator.hpp"
#include "keel/request.hpp"
#include "log/log.hpp"

namespace keel::http2 {
namespace {

constexpr std::size_t kMaxLingerBytes = 1024 * 1024;
// The opaque data of the drain's PING: its ACK says the client has seen the GOAWAY notice.
constexpr std::uint8_t kDrainPing[8] = {'k', 'e', 'e', 'l', 'd', 'r', 'a', 'n'};
constexpr auto kDrainPingWait = std::chrono::seconds(1);
// After the PING's ACK, how long requests the client queued before it saw the notice may still
// take to arrive: a client library sends its PING ACK ahead of HEADERS it had already queued.
constexpr auto kDrainGrace = std::chrono::milliseconds(100);

std::string_view view(nghttp2_rcbuf* b) noexcept {
  const nghttp2_vec v = nghttp2_rcbuf_get_buf(b);
  return {reinterpret_cast<const char*>(v.base), v.len};
}

nghttp2_nv make_nv(std::string_view name, std::string_view value, std::uint8_t flags = NGHTTP2_NV_FLAG_NONE) noexcept {
  // nghttp2 copies names and values while submitting (no NO_COPY flags).
  return {reinterpret_cast<std::uint8_t*>(const_cast<char*>(name.data())),
          reinterpret_cast<std::uint8_t*>(const_cast<char*>(value.data())), name.size(), value.size(), flags};
}

// Headers that describe an HTTP/1 connection, not a message: never sent over HTTP/2 (RFC 9113
// section 8.2.2); the response's framing is HTTP/2's own.
bool connection_specific(std::string_view lower_name) noexcept {
  return lower_name == "connection" || lower_name == "keep-alive" || lower_name == "proxy-connection" ||
         lower_name == "transfer-encoding" || lower_name == "upgrade" || lower_name == "content-length";
}

}  // namespace

void FieldList::prepare(std::size_t lowered) {
  nv_.clear();
  used_ = 0;
  // Sized before any name is stored: growing it later would move the names nv_ points into.
  if (names_.size() < lowered) names_.resize(lowered);
}

void FieldList::add(std::string_view name, std::string_view value, std::uint8_t flags) {
  nv_.push_back(make_nv(name, value, flags));
}

void FieldList::add_lowered(std::string_view name, std::string_view value, std::uint8_t flags) {
  std::string& lower = names_[used_];
  lower.assign(name);
  for (char& ch : lower)
    if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
  if (connection_specific(lower)) return;
  ++used_;
  nv_.push_back(make_nv(lower, value, flags));
}

std::size_t FieldList::bytes() const noexcept {
  std::size_t n = 0;
  for (const nghttp2_nv& f : nv_) n += f.namelen + f.valuelen;
  return n;
}

bool RateBudget::take(runtime::Clock::time_point now) noexcept {
  if (last_ != runtime::Clock::time_point{}) {
    const double seconds = std::chrono::duration<double>(now - last_).count();
    tokens_ = std::min(capacity_, tokens_ + seconds * capacity_ / 10.0);
  }
  last_ = now;
  if (tokens_ < 1.0) return false;
  tokens_ -= 1.0;
  return true;
}

// One stream: the request as it arrives (header fields held as nghttp2's reference-counted
// buffers, no copy), then the exchange the application answers, then the response nghttp2 pulls
// under flow control.
class Stream final : public http::Exchange {
 public:
  Stream(Connection& c, std::int32_t id) : conn_(c), id_(id) {
    set_peer_address(c.peer_);
    if (c.tls_) set_tls(&c.tls_->info());
    parsed_.version_major = 2;
    parsed_.version_minor = 0;
    parsed_.stream_id = static_cast<std::uint32_t>(id);
  }
  ~Stream() { release_request(); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  bool peer_gone() const noexcept override { return closed_ || conn_.dead_; }
  http::Delivery respond(Response& response) override;
  void finish() noexcept override;

  void add_field(nghttp2_rcbuf* name, nghttp2_rcbuf* value, bool trailer) {
    const std::size_t size = nghttp2_rcbuf_get_buf(name).len + nghttp2_rcbuf_get_buf(value).len + 32;
    header_bytes_ += size;
    if (header_bytes_ > conn_.config_.max_header_list_size) {
      too_large_ = true;  // keep decoding (HPACK state is the connection's), keep nothing
      return;
    }
    nghttp2_rcbuf_incref(name);
    nghttp2_rcbuf_incref(value);
    (trailer ? trailer_fields_ : fields_).push_back({name, value});
  }
  // The request is complete: the views the handler sees.
  void materialize() {
    parsed_.method = parsed_.target = parsed_.host = {};
    for (const auto& [n, v] : fields_) {
      const std::string_view name = view(n), value = view(v);
      if (name == ":method") {
        parsed_.method = value;
      } else if (name == ":path") {
        parsed_.target = value;
      } else if (name == ":authority") {
        parsed_.host = value;
      } else if (name == ":scheme" || name == ":protocol") {
        continue;
      } else if (name == "cookie") {
        // Split into several fields for compression (RFC 9113 section 8.2.3): one again for the
        // application, as an HTTP/1 request would carry it.
        if (!cookie_.empty()) cookie_ += "; ";
        cookie_ += value;
      } else {
        if (name == "host" && parsed_.host.empty()) parsed_.host = value;
        parsed_.headers.push_back({name, value});
      }
    }
    if (!cookie_.empty()) parsed_.headers.push_back({"cookie", cookie_});
    for (const auto& [n, v] : trailer_fields_) parsed_.trailers.push_back({view(n), view(v)});
    const std::string_view target = parsed_.target;
    const std::size_t q = target.find('?');
    parsed_.path = target.substr(0, q);
    parsed_.query = q == std::string_view::npos ? std::string_view{} : target.substr(q + 1);
    parsed_.body = body_;
    parsed_.has_content_length = false;
    parsed_.content_length = body_.size();
    parsed_.keep_alive = true;
  }
  void begin() {
    begin_request(parsed_);
    if (conn_.proxy_headers_trusted_) apply_proxy_headers(conn_.server_.config().forwarded_allow_ips);
  }
  void release_request() noexcept {
    for (const auto& [n, v] : fields_) {
      nghttp2_rcbuf_decref(n);
      nghttp2_rcbuf_decref(v);
    }
    for (const auto& [n, v] : trailer_fields_) {
      nghttp2_rcbuf_decref(n);
      nghttp2_rcbuf_decref(v);
    }
    fields_.clear();
    trailer_fields_.clear();
    parsed_.headers.clear();
    parsed_.trailers.clear();
    shrink(body_);
    cookie_.clear();
    if (body_charged_ > 0) {
      conn_.server_.buffered_request_bytes() -= body_charged_;
      body_charged_ = 0;
    }
  }
  // Ready for another stream of the same connection (a spare): every state back to a new
  // stream's, buffers kept when they are small.
  void reset() noexcept {
    release_request();
    drop_response();
    shrink(out_body_);
    shrink(piece_);
    piece_off_ = 0;
    trailers_.clear();
    header_bytes_ = 0;
    too_large_ = rejected_ = queued_ = in_exchange_ = closed_ = head_ = false;
    receiving_ = true;
    prev_ = next_ = nullptr;
  }
  // Empties s, keeping its buffer unless it grew large (a big body is not held on to).
  static void shrink(std::string& s) noexcept {
    if (s.capacity() > 16 * 1024)
      std::string().swap(s);
    else
      s.clear();
  }
  // Appends request body bytes; false when they do not fit the limits (413, or 503 when the
  // worker's request buffer budget is spent).
  int append_body(const std::uint8_t* data, std::size_t len) {
    if (body_.size() + len > conn_.server_.parser_limits().max_body) return 413;
    if (body_.size() + len > body_.capacity()) {
      const std::size_t want =
          std::max(body_.size() + len,
                   std::min<std::size_t>(body_.capacity() * 2 + 1024, conn_.server_.parser_limits().max_body));
      std::size_t& held = conn_.server_.buffered_request_bytes();
      if (held - body_charged_ + want > conn_.server_.config().request_buffer_budget) return 503;
      body_.reserve(want);
      held = held - body_charged_ + body_.capacity();
      body_charged_ = body_.capacity();
    }
    body_.append(reinterpret_cast<const char*>(data), len);
    return 0;
  }
  // What nghttp2 pulls for the response's DATA frames.
  ssize_t read(std::uint8_t* buf, std::size_t length, std::uint32_t* flags);
  // Bytes of the response body held here for sending (counted in the connection's pending output).
  std::size_t held() const noexcept { return out_body_.size() - out_off_; }
  void drop_response() noexcept {
    conn_.pending_output_ -= held();
    shrink(out_body_);
    out_off_ = 0;
    producer_ = nullptr;
  }
  void submit(Response& response, http::Delivery& d);

  Connection& conn_;
  std::int32_t id_;
  Stream* prev_ = nullptr;
  Stream* next_ = nullptr;
  http::ParsedRequest parsed_;
  std::vector<std::pair<nghttp2_rcbuf*, nghttp2_rcbuf*>> fields_;
  std::vector<std::pair<nghttp2_rcbuf*, nghttp2_rcbuf*>> trailer_fields_;
  std::string cookie_;
  std::string body_;
  std::size_t body_charged_ = 0;  // body_ capacity charged to the worker's request buffer budget
  std::size_t header_bytes_ = 0;
  bool too_large_ = false;
  bool receiving_ = true;     // the request is still arriving (counted in conn_.receiving_)
  bool queued_ = false;       // in conn_.ready_
  bool in_exchange_ = false;  // handed to the handler, not finished
  bool closed_ = false;       // nghttp2 closed the stream (answered, or reset by either side)
  bool rejected_ = false;     // the protocol answered it; nothing is handed to the application
  // The response.
  bool head_ = false;
  std::string out_body_;
  std::size_t out_off_ = 0;
  Response::BodyProducer producer_;
  std::string piece_;  // the producer's last piece, partly sent
  std::size_t piece_off_ = 0;
  std::vector<std::pair<std::string, std::string>> trailers_;
};

void Stream::submit(Response& response, http::Delivery& d) {
  if (!http::headers_are_safe(response)) {
    log::write(log::Level::kError, "keel.http", "invalid_response_header",
               {{"route", request_.route()}, {"request_id", request_.request_id()}});
    response = http::problem_response(500, "the handler produced an invalid response header", request_.request_id());
  }
  if (response.status() < 200 || response.status() > 999) {
    // An interim (1xx) or malformed status cannot end an HTTP/2 stream (RFC 9113 section 8.1).
    log::write(log::Level::kError, "keel.http", "invalid_response_status",
               {{"route", request_.route()}, {"request_id", request_.request_id()}, {"status", response.status()}});
    response = http::problem_response(500, "the handler produced an invalid response status", request_.request_id());
  }
  const int status = response.status();
  const bool no_body = head_ || status == 204 || status == 304;
  char status_text[4];
  std::to_chars(status_text, status_text + 3, status);
  FieldList& nv = conn_.fields_;
  nv.prepare(response.headers().size() + 1);
  nv.add(":status", std::string_view(status_text, 3));
  const http::ServerConfig& config = conn_.server_.config();
  if (!config.server_header.empty()) nv.add("server", config.server_header);
  nv.add("date", conn_.server_.date().get());
  if (!response.content_type().empty()) nv.add("content-type", response.content_type());
  for (const auto& [name, value] : response.headers()) nv.add_lowered(name, value);
  const std::string& id = request_id_if_any();
  // A new value every response: indexing it would only churn the HPACK dynamic table.
  if (!id.empty()) nv.add_lowered(Request::id_header(), id, NGHTTP2_NV_FLAG_NO_INDEX);
  const bool stream = response.producer() && !no_body;
  char length_text[24];
  if (!response.producer() && status >= 200 && status != 204 && status != 304) {
    const auto r = std::to_chars(length_text, length_text + sizeof length_text, response.body().size());
    nv.add("content-length", std::string_view(length_text, static_cast<std::size_t>(r.ptr - length_text)));
  }
  const std::size_t head_bytes = nv.bytes();
  trailers_ = response.trailers();
  std::size_t body_bytes = 0;
  if (stream) {
    producer_ = response.producer();
  } else if (!no_body) {
    out_body_.assign(response.body());
    body_bytes = out_body_.size();
    conn_.pending_output_ += out_body_.size();
  }
  nghttp2_data_provider provider{};
  provider.source.ptr = this;
  provider.read_callback = &Connection::read_body;
  const bool has_data = stream || !out_body_.empty() || !trailers_.empty();
  if (nghttp2_submit_response(conn_.session_, id_, nv.data(), nv.size(), has_data ? &provider : nullptr) != 0) {
    drop_response();
    return;
  }
  d.delivered = true;
  d.bytes_out = head_bytes + body_bytes;
}

ssize_t Stream::read(std::uint8_t* buf, std::size_t length, std::uint32_t* flags) {
  std::size_t n = 0;
  bool eof = false;
  if (!producer_) {
    n = std::min(length, held());
    std::memcpy(buf, out_body_.data() + out_off_, n);
    out_off_ += n;
    conn_.pending_output_ -= n;
    eof = held() == 0;
  } else {
    while (n < length) {
      if (piece_off_ == piece_.size()) {
        if (!producer_) {
          eof = true;
          break;
        }
        piece_.clear();
        piece_off_ = 0;
        bool more = true;
        try {
          more = producer_(piece_);
        } catch (const std::exception& e) {
          // The head is gone already: the honest signal left is a reset stream.
          log::write(log::Level::kError, "keel.http", "stream_failed", {{"error", e.what()}});
          return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
        if (!more) producer_ = nullptr;
        continue;
      }
      const std::size_t k = std::min(length - n, piece_.size() - piece_off_);
      std::memcpy(buf + n, piece_.data() + piece_off_, k);
      piece_off_ += k;
      n += k;
    }
    if (!eof && !producer_ && piece_off_ == piece_.size()) eof = true;
  }
  if (eof) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (!trailers_.empty()) {
      FieldList& nv = conn_.fields_;
      nv.prepare(trailers_.size());
      for (const auto& [name, value] : trailers_) nv.add_lowered(name, value);
      if (nghttp2_submit_trailer(conn_.session_, id_, nv.data(), nv.size()) == 0)
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
    }
    shrink(out_body_);
    out_off_ = 0;
    shrink(piece_);
    piece_off_ = 0;
  }
  return static_cast<ssize_t>(n);
}

http::Delivery Stream::respond(Response& response) {
  http::Delivery d;
  d.bytes_in = header_bytes_ + body_.size();
  if (peer_gone()) return d;
  submit(response, d);
  if (d.delivered) conn_.server_.request_done();
  return d;
}

void Stream::finish() noexcept {
  Connection& c = conn_;
  in_exchange_ = false;
  --c.live_exchanges_;
  end_request();
  release_request();
  if (closed_) c.free_stream(*this);
  if (c.dead_) {
    if (c.live_exchanges_ == 0) c.server_.release(&c);
    return;
  }
  if (!c.dispatching_) c.drive();
}

// ---------------------------------------------------------------------------------------------

SessionTemplate::SessionTemplate(const Config& config) {
  if (nghttp2_session_callbacks_new(&callbacks_) != 0 || nghttp2_option_new(&options_) != 0) throw std::bad_alloc();
  nghttp2_session_callbacks_set_on_begin_frame_callback(callbacks_, &Connection::on_begin_frame);
  nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks_, &Connection::on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback2(callbacks_, &Connection::on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks_, &Connection::on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks_, &Connection::on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks_, &Connection::on_stream_close);
  nghttp2_session_callbacks_set_on_frame_send_callback(callbacks_, &Connection::on_frame_send);
  // keel's own budget counts resets (and says so in metrics); nghttp2's stays as a backstop.
  nghttp2_option_set_stream_reset_rate_limit(options_, 2ULL * config.max_reset_streams,
                                             std::max<std::uint64_t>(1, config.max_reset_streams / 5));
  nghttp2_option_set_max_continuations(options_, 8);
  nghttp2_option_set_max_outbound_ack(options_, 1000);
  nghttp2_option_set_max_settings(options_, 32);
  // Headers the client may not compress into the dynamic table beyond what keel announced.
  nghttp2_option_set_max_deflate_dynamic_table_size(options_, 4096);
}

SessionTemplate::~SessionTemplate() {
  nghttp2_option_del(options_);
  nghttp2_session_callbacks_del(callbacks_);
}

nghttp2_session* SessionTemplate::make(Connection* owner) const {
  nghttp2_session* s = nullptr;
  if (nghttp2_session_server_new3(&s, callbacks_, owner, options_, pooled_memory()) != 0) throw std::bad_alloc();
  return s;
}

std::unique_ptr<http::ServerConnection> Factory::adopt(http::Server& server, http::Handover&& handover) {
  return std::make_unique<Connection>(server, config_, template_, std::move(handover));
}

void Factory::start(http::ServerConnection& connection) {
  static_cast<Connection&>(connection).start();
}

// ---------------------------------------------------------------------------------------------

Connection::Connection(http::Server& server, const Config& config, const SessionTemplate& templ,
                       http::Handover&& handover)
    : ServerConnection(handover.admin),
      server_(server),
      config_(config),
      handler_(*handover.handler),
      fd_(handover.fd),
      peer_(std::move(handover.peer)),
      proxy_headers_trusted_(handover.proxy_headers_trusted),
      tls_(std::move(handover.tls)),
      pending_input_(handover.received),
      resets_(config.max_reset_streams),
      control_frames_(config.max_control_frames) {
  session_ = templ.make(this);
}

Connection::~Connection() {
  while (streams_ != nullptr) {
    Stream* s = streams_;
    unlink_stream(*s);
    delete s;
  }
  for (Stream* s : spare_streams_) delete s;
  if (session_ != nullptr) nghttp2_session_del(session_);
  if (fd_ >= 0) ::close(fd_);
}

void Connection::start() {
  server_.loop().modify(fd_, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, this);
  if (http::Observer* o = server_.observer()) o->http2_connection(+1);
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, config_.max_concurrent_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, config_.initial_window_size},
      {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, config_.max_frame_size},
      {NGHTTP2_SETTINGS_HEADER_TABLE_SIZE, config_.header_table_size},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, config_.max_header_list_size},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, std::size(settings));
  if (config_.connection_window_size > NGHTTP2_INITIAL_CONNECTION_WINDOW_SIZE)
    nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                          static_cast<std::int32_t>(config_.connection_window_size));
  dispatching_ = true;
  if (!pending_input_.empty()) {
    const std::string input = std::move(pending_input_);
    pending_input_.clear();
    feed(input.data(), input.size());
  }
  dispatching_ = false;
  // A drain that began while this connection was still HTTP/1 applies here too.
  if (server_.draining()) drain();
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
  drive();
}

void Connection::drive() {
  if (dead_ || dispatching_) return;
  dispatching_ = true;
  while (!dead_) {
    bool progress = false;
    if (lingering_) {
      read_input();
      break;
    }
    // The final GOAWAY: a grace after the drain's PING came back, or a second after the notice
    // whether it came back or not.
    if (draining_ && !final_goaway_) {
      const auto now = server_.loop().now();
      if (now - drain_started_ >= kDrainPingWait ||
          (drain_acked_ != runtime::Clock::time_point{} && now - drain_acked_ >= kDrainGrace))
        send_final_goaway();
    }
    dispatch_ready();
    if (dead_) break;
    progress |= produce_output();
    if (out_pending() > 0) progress |= flush();
    if (dead_) break;
    if (closing_ || (final_goaway_ && nghttp2_session_want_read(session_) == 0)) {
      if (out_pending() == 0 && nghttp2_session_want_write(session_) == 0) {
        start_linger();
        continue;
      }
    } else if (!draining_ && nghttp2_session_want_read(session_) == 0 && nghttp2_session_want_write(session_) == 0 &&
               out_pending() == 0) {
      close_now();  // the client's GOAWAY, all answered
      break;
    }
    if (peer_eof_) {
      close_now();
      break;
    }
    // Reading waits while serialised output is queued up to the bound (a client that does not
    // read cannot make keel buffer more) — the same backpressure as HTTP/1.
    if (want_read_ && !closing_ && out_pending() < server_.config().output_buffer_limit) progress |= read_input();
    if (!progress) break;
  }
  dispatching_ = false;
  if (!dead_) update_deadline();
}

bool Connection::read_input() {
  std::unique_ptr<char[]> buf = server_.take_read_buffer();
  const std::size_t size = http::Server::kReadBufferSize;
  bool progress = false;
  for (int round = 0; round < 4; ++round) {  // then let writes and other connections run
    const ssize_t n =
        http::transport_receive(fd_, lingering_ ? nullptr : tls_.get(), buf.get(), size, tls_read_wants_write_);
    if (n > 0) {
      progress = true;
      if (lingering_) {
        lingered_bytes_ += static_cast<std::size_t>(n);
        if (lingered_bytes_ > kMaxLingerBytes) {
          close_now();
          break;
        }
        continue;
      }
      progress_received_ = true;
      if (!feed(buf.get(), static_cast<std::size_t>(n))) break;
      if (static_cast<std::size_t>(n) < size && !tls_) {
        want_read_ = false;  // drained: edge-triggered epoll says when more comes
        break;
      }
      continue;
    }
    if (n == 0) {
      if (lingering_) {
        close_now();
      } else {
        peer_eof_ = true;
        want_read_ = false;
      }
      progress = true;
      break;
    }
    if (errno == EINTR) continue;
    want_read_ = false;
    if (errno != EAGAIN && errno != EWOULDBLOCK) close_now();
    break;
  }
  server_.give_read_buffer(std::move(buf));
  return progress;
}

// Hands bytes to nghttp2 (which calls back per frame); false when the session failed.
bool Connection::feed(const char* data, std::size_t size) {
  const ssize_t r = nghttp2_session_mem_recv(session_, reinterpret_cast<const std::uint8_t*>(data), size);
  if (r >= 0) return !dead_;
  // Protocol errors nghttp2 answers itself (GOAWAY queued); these are the fatal ones.
  std::string_view reason = "protocol_error";
  if (r == NGHTTP2_ERR_FLOODED) reason = "control_flood";
  if (r == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS) reason = "header_flood";
  if (r == NGHTTP2_ERR_BAD_CLIENT_MAGIC) reason = "bad_preface";
  fail(reason, NGHTTP2_PROTOCOL_ERROR);
  return false;
}

void Connection::dispatch_ready() {
  // Requests wait while the connection holds as much unsent response as it may (slow reader).
  // One at a time from the front: a handler may end the connection (and empty the queue).
  while (!ready_.empty() && !dead_ && !closing_ && pending_output_ < config_.max_pending_output) {
    Stream* s = ready_.front();
    ready_.pop_front();
    s->queued_ = false;
    s->materialize();
    s->begin();
    s->head_ = s->parsed_.method == "HEAD";
    s->in_exchange_ = true;
    ++live_exchanges_;
    ++requests_;
    handler_.handle(*s);  // may finish (and free) s before it returns
  }
  // keep_alive_requests (nginx's http2 max_requests): clients move to new connections now and
  // then, which spreads them over new workers and generations.
  const std::uint64_t max = server_.config().keep_alive_requests;
  if (max != 0 && requests_ >= max && !draining_ && !dead_) drain();
}

bool Connection::produce_output() {
  bool progress = false;
  const std::size_t limit = server_.config().output_buffer_limit;
  while (!dead_ && out_pending() < limit) {
    const std::uint8_t* data = nullptr;
    const ssize_t n = nghttp2_session_mem_send(session_, &data);
    if (n < 0) {
      close_now();  // out of memory, or a callback failed fatally
      return false;
    }
    if (n == 0) break;
    if (out_off_ == out_.size()) {
      out_off_ = 0;
      out_.clear();
    }
    out_.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(n));
    progress = true;
  }
  return progress;
}

bool Connection::flush() {
  const std::size_t before = out_off_;
  while (out_off_ < out_.size()) {
    const ssize_t n = http::transport_transmit(fd_, tls_.get(), out_.data() + out_off_, out_.size() - out_off_);
    if (n > 0) {
      out_off_ += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    close_now();
    return false;
  }
  if (out_off_ != before) progress_sent_ = true;
  if (out_off_ == out_.size()) {
    out_off_ = 0;
    if (out_.capacity() > 64 * 1024)
      std::string().swap(out_);
    else
      out_.clear();
  }
  return out_off_ != before;
}

void Connection::fail(std::string_view reason, std::uint32_t code) {
  if (closing_ || dead_) return;
  if (http::Observer* o = server_.observer()) o->http2_error(reason);
  if (reason != "bad_preface" && reason != "protocol_error") {
    // One line per 5 s at most: under a flood the metric counts, the log says it is happening.
    static runtime::Clock::time_point last_warning{};
    if (const auto now = runtime::Clock::now(); now - last_warning > std::chrono::seconds(5)) {
      last_warning = now;
      log::write(log::Level::kWarning, "keel.http2", "connection_refused",
                 {{"client_ip", std::string(base::client_ip(peer_))}, {"reason", reason}});
    }
  }
  nghttp2_session_terminate_session(session_, code);
  closing_ = true;
  clear_ready();
}

void Connection::unqueue(Stream& s) noexcept {
  if (!s.queued_) return;
  s.queued_ = false;
  if (auto it = std::find(ready_.begin(), ready_.end(), &s); it != ready_.end()) ready_.erase(it);
}

void Connection::clear_ready() noexcept {
  for (Stream* s : ready_) s->queued_ = false;
  ready_.clear();
}

void Connection::send_final_goaway() {
  if (final_goaway_ || dead_) return;
  final_goaway_ = true;
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(session_),
                        NGHTTP2_NO_ERROR, nullptr, 0);
}

void Connection::drain() {
  if (dead_ || draining_ || closing_) return;
  draining_ = true;
  drain_started_ = server_.loop().now();
  nghttp2_submit_shutdown_notice(session_);  // on_frame_send follows it with the PING
  drive();
}

void Connection::start_linger() {
  closing_ = false;
  if (peer_eof_) {
    close_now();
    return;
  }
  http::transport_half_close(fd_, tls_.get());
  lingering_ = true;
  want_read_ = true;
  server_.set_deadline(*this, http::Deadline::kLinger);
}

void Connection::close_now() {
  if (dead_) return;
  dead_ = true;
  server_.loop().remove(fd_);
  ::close(fd_);
  fd_ = -1;
  server_.set_deadline(*this, http::Deadline::kNone);
  if (http::Observer* o = server_.observer()) {
    o->http2_connection(-1);
    for (Stream* s = streams_; s != nullptr; s = s->next_)
      if (!s->closed_) o->http2_streams(-1);
  }
  clear_ready();
  // Streams still with the application learn it through peer_gone(); the others go now.
  for (Stream* s = streams_; s != nullptr;) {
    Stream* next = s->next_;
    s->closed_ = true;
    if (s->receiving_) {
      s->receiving_ = false;
      --receiving_;
    }
    s->drop_response();
    if (!s->in_exchange_) free_stream(*s);
    s = next;
  }
  if (live_exchanges_ == 0) server_.release(this);
}

void Connection::update_deadline() {
  if (lingering_) return;
  using http::Deadline;
  const auto arm = [this](Deadline kind, bool restart) {
    if (restart || deadline_kind() != kind) server_.set_deadline(*this, kind);
  };
  if (out_pending() > 0 || pending_output_ > 0) {
    // The socket does not take our bytes, or the client's windows do not let them out.
    arm(Deadline::kWrite, progress_sent_);
  } else if (receiving_ > 0) {
    arm(Deadline::kBody, progress_received_);
  } else if (live_exchanges_ > 0 || !ready_.empty()) {
    arm(Deadline::kNone, false);
  } else {
    arm(draining_ ? Deadline::kDrainIdle : Deadline::kKeepAlive, false);
  }
  progress_sent_ = progress_received_ = false;
}

void Connection::on_deadline(http::Deadline kind) {
  using http::Deadline;
  switch (kind) {
    case Deadline::kWrite:
      if (out_pending() > 0) {
        // The client stopped reading: reset rather than keep its output queued in the kernel.
        http::transport_reset_on_close(fd_);
        if (http::Observer* o = server_.observer()) o->http2_error("slow_reader");
        close_now();
        return;
      }
      fail("slow_reader", NGHTTP2_ENHANCE_YOUR_CALM);  // windows closed for --write-timeout
      break;
    case Deadline::kBody: {
      // Requests that stopped arriving: 408, as HTTP/1 answers a body that stops.
      for (Stream* s = streams_; s != nullptr; s = s->next_)
        if (s->receiving_ && !s->rejected_) reject(*s, 408, "timed out reading the request");
      if (http::Observer* o = server_.observer()) o->rejected(http::Rejection::kTimeout);
      break;
    }
    case Deadline::kDrainIdle:
      if (draining_ && !final_goaway_) {
        send_final_goaway();
        break;
      }
      [[fallthrough]];
    case Deadline::kKeepAlive:
      if (!draining_) {
        draining_ = true;
        drain_started_ = server_.loop().now();
      }
      send_final_goaway();  // idle: no stream can be in flight, one GOAWAY is enough
      break;
    case Deadline::kLinger:
    default:
      close_now();
      return;
  }
  drive();
}

Stream* Connection::stream(std::int32_t id) const noexcept {
  return static_cast<Stream*>(nghttp2_session_get_stream_user_data(session_, id));
}

void Connection::unlink_stream(Stream& s) noexcept {
  if (s.prev_ != nullptr)
    s.prev_->next_ = s.next_;
  else if (streams_ == &s)
    streams_ = s.next_;
  if (s.next_ != nullptr) s.next_->prev_ = s.prev_;
  s.prev_ = s.next_ = nullptr;
}

void Connection::reject(Stream& s, int status, std::string_view detail) {
  s.rejected_ = true;
  unqueue(s);
  Response r = http::problem_response(status, detail, {});
  http::Delivery d;
  s.submit(r, d);
  // If the client is still sending the request, on_frame_send resets the stream with NO_ERROR
  // once the response is out (RFC 9113 section 8.1): before it, the reset would discard it.
}

// --- nghttp2 callbacks ------------------------------------------------------------------------

int Connection::on_begin_frame(nghttp2_session*, const nghttp2_frame_hd* hd, void* user_data) {
  auto* c = static_cast<Connection*>(user_data);
  const auto now = c->server_.loop().now();
  bool control = false;
  switch (hd->type) {
    case NGHTTP2_PING:
    case NGHTTP2_SETTINGS:
    case NGHTTP2_PRIORITY:
    case NGHTTP2_WINDOW_UPDATE:
      control = (hd->flags & NGHTTP2_FLAG_ACK) == 0 || hd->type != NGHTTP2_SETTINGS;
      break;
    case NGHTTP2_HEADERS:
      // A stream id below one already used, on no stream nghttp2 still knows: the client reuses
      // an idle stream it implicitly closed (RFC 9113 section 5.1.1). nghttp2 would ignore the
      // block; the RFC says PROTOCOL_ERROR. (Trailers go to open streams and pass.)
      if (hd->stream_id <= c->max_stream_id_ && nghttp2_session_find_stream(c->session_, hd->stream_id) == nullptr) {
        c->fail("protocol_error", NGHTTP2_PROTOCOL_ERROR);
        return 0;
      }
      c->header_block_bytes_ = hd->length;
      control = hd->length == 0 && (hd->flags & NGHTTP2_FLAG_END_STREAM) == 0;
      break;
    case NGHTTP2_CONTINUATION:
      c->header_block_bytes_ += hd->length;
      control = hd->length == 0;
      break;
    case NGHTTP2_DATA:
      control = hd->length == 0 && (hd->flags & NGHTTP2_FLAG_END_STREAM) == 0;
      break;
    default:
      break;
  }
  // A header block may be split into CONTINUATION frames, but not without bound (the
  // CVE-2024-27316 class): its compressed size may not exceed what keel announced it accepts
  // decoded, plus a frame.
  if ((hd->type == NGHTTP2_HEADERS || hd->type == NGHTTP2_CONTINUATION) &&
      c->header_block_bytes_ > std::size_t{c->config_.max_header_list_size} + c->config_.max_frame_size) {
    c->fail("header_flood", NGHTTP2_ENHANCE_YOUR_CALM);
    return 0;
  }
  if (control && !c->control_frames_.take(now)) {
    c->fail("control_flood", NGHTTP2_ENHANCE_YOUR_CALM);
    return 0;
  }
  return 0;
}

int Connection::on_begin_headers(nghttp2_session* session, const nghttp2_frame* frame, void* user_data) {
  auto* c = static_cast<Connection*>(user_data);
  if (frame->hd.type == NGHTTP2_HEADERS) c->max_stream_id_ = std::max(c->max_stream_id_, frame->hd.stream_id);
  // A session that is over takes no new request (its GOAWAY is on the way).
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST || c->closing_) return 0;
  Stream* s = nullptr;
  if (!c->spare_streams_.empty()) {
    s = c->spare_streams_.back();
    c->spare_streams_.pop_back();
    s->id_ = frame->hd.stream_id;
    s->parsed_.stream_id = static_cast<std::uint32_t>(frame->hd.stream_id);
  } else {
    s = new Stream(*c, frame->hd.stream_id);
  }
  s->next_ = c->streams_;
  if (c->streams_ != nullptr) c->streams_->prev_ = s;
  c->streams_ = s;
  ++c->receiving_;
  nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, s);
  if (http::Observer* o = c->server_.observer()) o->http2_streams(+1);
  return 0;
}

int Connection::on_header(nghttp2_session*, const nghttp2_frame* frame, nghttp2_rcbuf* name, nghttp2_rcbuf* value,
                          std::uint8_t, void* user_data) {
  auto* c = static_cast<Connection*>(user_data);
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  Stream* s = c->stream(frame->hd.stream_id);
  if (s == nullptr || s->rejected_) return 0;
  s->add_field(name, value, frame->headers.cat != NGHTTP2_HCAT_REQUEST);
  return 0;
}

int Connection::on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
  auto* c = static_cast<Connection*>(user_data);
  switch (frame->hd.type) {
    case NGHTTP2_HEADERS:
    case NGHTTP2_DATA: {
      Stream* s = c->stream(frame->hd.stream_id);
      if (s == nullptr) return 0;
      if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST && !s->rejected_) {
        if (s->too_large_) {
          if (http::Observer* o = c->server_.observer()) o->rejected(http::Rejection::kTooLarge);
          c->reject(*s, 431, "request header fields too large");
        } else {
          // A declared length over the limit is refused before any of the body comes.
          for (const auto& [n, v] : s->fields_) {
            if (view(n) != "content-length") continue;
            std::uint64_t length = 0;
            const std::string_view text = view(v);
            std::from_chars(text.data(), text.data() + text.size(), length);
            if (length > c->server_.parser_limits().max_body) {
              if (http::Observer* o = c->server_.observer()) o->rejected(http::Rejection::kTooLarge);
              c->reject(*s, 413, "request body too large");
            }
          }
        }
      }
      if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0 && s->receiving_) {
        s->receiving_ = false;
        --c->receiving_;
        if (!s->rejected_) {
          s->queued_ = true;
          c->ready_.push_back(s);
        }
      }
      return 0;
    }
    case NGHTTP2_RST_STREAM: {
      // A client that opens streams and resets them at once makes the server work for nothing
      // (CVE-2023-44487): a budget of resets per connection.
      if (c->stream(frame->hd.stream_id) != nullptr && !c->resets_.take(c->server_.loop().now())) {
        c->fail("rapid_reset", NGHTTP2_ENHANCE_YOUR_CALM);
      }
      return 0;
    }
    case NGHTTP2_PING:
      // The client has seen the notice and opens no more streams; drive() sends the final
      // GOAWAY after a grace for the requests it had queued (never from inside this callback:
      // HEADERS right behind the ACK in the same read would be left out).
      if ((frame->hd.flags & NGHTTP2_FLAG_ACK) != 0 && c->draining_ &&
          std::memcmp(frame->ping.opaque_data, kDrainPing, sizeof kDrainPing) == 0)
        c->drain_acked_ = c->server_.loop().now();
      return 0;
    default:
      return 0;
  }
}

int Connection::on_data_chunk(nghttp2_session*, std::uint8_t, std::int32_t stream_id, const std::uint8_t* data,
                              std::size_t len, void* user_data) {
  auto* c = static_cast<Connection*>(user_data);
  Stream* s = c->stream(stream_id);
  if (s == nullptr || s->rejected_) return 0;
  if (const int status = s->append_body(data, len); status != 0) {
    if (http::Observer* o = c->server_.observer())
      o->rejected(status == 413 ? http::Rejection::kTooLarge : http::Rejection::kBufferBudget);
    c->reject(
        *s, status,
        status == 413 ? "request body too large" : "the server is short of memory for request bodies; retry later");
  }
  return 0;
}

int Connection::on_stream_close(nghttp2_session* session, std::int32_t stream_id, std::uint32_t, void* user_data) {
  auto* c = static_cast<Connection*>(user_data);
  Stream* s = c->stream(stream_id);
  if (s == nullptr) return 0;
  nghttp2_session_set_stream_user_data(session, stream_id, nullptr);
  c->stream_closed(*s);
  return 0;
}

void Connection::stream_closed(Stream& s) {
  s.closed_ = true;
  if (http::Observer* o = server_.observer()) o->http2_streams(-1);
  if (s.receiving_) {
    s.receiving_ = false;
    --receiving_;
  }
  unqueue(s);
  s.drop_response();
  if (!s.in_exchange_) free_stream(s);
}

void Connection::free_stream(Stream& s) noexcept {
  unlink_stream(s);
  // A few spares keep their buffers (header and body vectors, the request id, the response
  // body): the next streams of this connection allocate nothing for them.
  if (!dead_ && spare_streams_.size() < std::min<std::size_t>(config_.max_concurrent_streams, kMaxSpareStreams)) {
    s.reset();
    spare_streams_.push_back(&s);
  } else {
    delete &s;
  }
}

int Connection::on_frame_send(nghttp2_session* session, const nghttp2_frame* frame, void* user_data) {
  auto* c = static_cast<Connection*>(user_data);
  // The drain's PING goes right after the GOAWAY notice: its ACK says the client has seen it.
  if (frame->hd.type == NGHTTP2_GOAWAY && frame->goaway.last_stream_id == (1U << 31) - 1)
    nghttp2_submit_ping(session, NGHTTP2_FLAG_NONE, kDrainPing);
  // Data the client asked for and received pays for its WINDOW_UPDATE frames.
  if (frame->hd.type == NGHTTP2_DATA) c->control_frames_.refund();
  if ((frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS) &&
      (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0) {
    // A request answered by the protocol (413, 408...) before it was all sent: stop the rest.
    if (Stream* s = c->stream(frame->hd.stream_id); s != nullptr && s->rejected_ && s->receiving_)
      nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_NO_ERROR);
  }
  return 0;
}

ssize_t Connection::read_body(nghttp2_session*, std::int32_t, std::uint8_t* buf, std::size_t length,
                              std::uint32_t* data_flags, nghttp2_data_source* source, void*) {
  return static_cast<Stream*>(source->ptr)->read(buf, length, data_flags);
}

}  // namespace keel::http2
