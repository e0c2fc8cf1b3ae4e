// One HTTP/2 connection (RFC 9113) over nghttp2: frames, HPACK and flow control are the
// library's; keel's are the transport (socket or TLS session, from the HTTP/1 connection that
// accepted it), the request seam (one http::Exchange per stream, many in flight at once),
// deadlines, the flood defences and the two-step GOAWAY drain.
#pragma once

#include <nghttp2/nghttp2.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "http/handler.hpp"
#include "http/server.hpp"
#include "http2/config.hpp"
#include "runtime/event_loop.hpp"
#include "tls/session.hpp"

namespace keel::http2 {

class Stream;

// A bucket of `capacity` tokens refilled at capacity per 10 s: how many of something a
// connection may do in a burst, and how often over time.
class RateBudget {
 public:
  explicit RateBudget(std::uint32_t capacity) noexcept : capacity_(capacity), tokens_(capacity) {}
  // Takes one token; false when none is left.
  bool take(runtime::Clock::time_point now) noexcept;
  // Gives one back (up to the capacity): work the peer asked for and got.
  void refund() noexcept {
    if (tokens_ < capacity_) tokens_ += 1;
  }

 private:
  double capacity_;
  double tokens_;
  runtime::Clock::time_point last_{};
};

// The fields of one HEADERS frame being submitted, as nghttp2 takes them; names lower-cased
// into storage kept from frame to frame (no allocation once warm). nghttp2 copies them.
class FieldList {
 public:
  // Starts a new list that will hold up to `lowered` names added with add_lowered().
  void prepare(std::size_t lowered);
  void add(std::string_view name, std::string_view value, std::uint8_t flags = NGHTTP2_NV_FLAG_NONE);
  // Adds name in lower case (HTTP/2 field names are), unless it is one of HTTP/1's
  // connection-specific fields, which HTTP/2 does not carry (RFC 9113 section 8.2.2).
  void add_lowered(std::string_view name, std::string_view value, std::uint8_t flags = NGHTTP2_NV_FLAG_NONE);
  nghttp2_nv* data() noexcept { return nv_.data(); }
  std::size_t size() const noexcept { return nv_.size(); }
  std::size_t bytes() const noexcept;  // names and values

 private:
  std::vector<nghttp2_nv> nv_;
  std::vector<std::string> names_;
  std::size_t used_ = 0;
};

// The callbacks and options every connection's nghttp2 session is made with.
class SessionTemplate;

class Connection final : public http::ServerConnection {
 public:
  Connection(http::Server& server, const Config& config, const SessionTemplate& templ, http::Handover&& handover);
  ~Connection() override;

  // Sends keel's SETTINGS and processes what the HTTP/1 connection had read (the preface and
  // whatever followed it).
  void start();
  void on_io(std::uint32_t events) override;
  void on_deadline(http::Deadline kind) override;
  // GOAWAY in two steps: a notice with the highest stream id, a PING, and once it comes back
  // (or after a second) the final GOAWAY with the last stream processed. In-flight streams finish.
  void drain() override;

 private:
  friend class Stream;
  friend class SessionTemplate;

  // nghttp2 callbacks; user_data is the Connection.
  static int on_begin_frame(nghttp2_session*, const nghttp2_frame_hd* hd, void* user_data);
  static int on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* user_data);
  static int on_header(nghttp2_session*, const nghttp2_frame* frame, nghttp2_rcbuf* name, nghttp2_rcbuf* value,
                       std::uint8_t flags, void* user_data);
  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user_data);
  static int on_data_chunk(nghttp2_session*, std::uint8_t flags, std::int32_t stream_id, const std::uint8_t* data,
                           std::size_t len, void* user_data);
  static int on_stream_close(nghttp2_session*, std::int32_t stream_id, std::uint32_t error_code, void* user_data);
  static int on_frame_send(nghttp2_session*, const nghttp2_frame* frame, void* user_data);
  static ssize_t read_body(nghttp2_session*, std::int32_t stream_id, std::uint8_t* buf, std::size_t length,
                           std::uint32_t* data_flags, nghttp2_data_source* source, void* user_data);

  // The state machine: read and feed nghttp2, hand ready streams to the application, serialise
  // and write, until nothing moves. Every event and every completion ends up here.
  void drive();
  bool read_input();
  bool feed(const char* data, std::size_t size);
  void dispatch_ready();
  void clear_ready() noexcept;
  void unqueue(Stream& s) noexcept;
  bool produce_output();
  bool flush();
  // The session is over: GOAWAY with `code` (counted as `reason`), then close once it is sent.
  void fail(std::string_view reason, std::uint32_t code);
  void send_final_goaway();
  void close_when_done();
  void start_linger();
  void close_now();
  void update_deadline();
  Stream* stream(std::int32_t id) const noexcept;
  void unlink_stream(Stream& s) noexcept;
  // A stream is over for the protocol and the application: kept as a spare, or deleted.
  void free_stream(Stream& s) noexcept;
  void stream_closed(Stream& s);
  // Answers a stream from the protocol itself (431, 413, 408, 503): no handler ran.
  void reject(Stream& s, int status, std::string_view detail);
  std::size_t out_pending() const noexcept { return out_.size() - out_off_; }

  http::Server& server_;
  const Config& config_;
  http::RequestHandler& handler_;
  int fd_;
  std::string peer_;
  bool proxy_headers_trusted_;
  std::unique_ptr<tls::Session> tls_;
  nghttp2_session* session_ = nullptr;
  std::string pending_input_;  // what the HTTP/1 connection read, fed by start()

  std::string out_;
  std::size_t out_off_ = 0;
  FieldList fields_;                    // scratch for the HEADERS frames this connection submits
  Stream* streams_ = nullptr;           // every stream object alive (open, or handled after closing)
  std::vector<Stream*> spare_streams_;  // up to the concurrency limit (at most kMaxSpareStreams)
  static constexpr std::size_t kMaxSpareStreams = 128;
  std::deque<Stream*> ready_;       // requests complete, waiting for the application
  std::size_t live_exchanges_ = 0;  // streams handed to the handler and not finished
  std::size_t receiving_ = 0;       // streams whose request is still arriving
  std::size_t pending_output_ = 0;  // response bytes submitted, not yet taken by nghttp2
  std::uint64_t requests_ = 0;
  RateBudget resets_;
  RateBudget control_frames_;
  std::size_t header_block_bytes_ = 0;
  std::int32_t max_stream_id_ =
      0;  // the highest stream the client opened  // HEADERS + CONTINUATION payload of the block being read

  bool dead_ = false;
  bool dispatching_ = false;  // inside drive(): a finish() must not re-enter it
  bool want_read_ = true;
  bool tls_read_wants_write_ = false;
  bool peer_eof_ = false;
  bool lingering_ = false;
  bool closing_ = false;            // the session is over: flush, then close
  bool draining_ = false;           // the GOAWAY notice went out
  bool final_goaway_ = false;       // the final GOAWAY went out
  bool progress_sent_ = false;      // DATA went out since the deadline was armed
  bool progress_received_ = false;  // request bytes came in since the deadline was armed
  runtime::Clock::time_point drain_started_{};
  runtime::Clock::time_point drain_acked_{};  // the drain's PING came back
  std::size_t lingered_bytes_ = 0;
};

class SessionTemplate {
 public:
  explicit SessionTemplate(const Config& config);
  ~SessionTemplate();
  SessionTemplate(const SessionTemplate&) = delete;
  SessionTemplate& operator=(const SessionTemplate&) = delete;
  nghttp2_session* make(Connection* owner) const;

 private:
  nghttp2_session_callbacks* callbacks_ = nullptr;
  nghttp2_option* options_ = nullptr;
};

// The http::ProtocolFactory the composition root gives the server.
class Factory final : public http::ProtocolFactory {
 public:
  explicit Factory(Config config) : config_(config), template_(config_) {}
  std::unique_ptr<http::ServerConnection> adopt(http::Server& server, http::Handover&& handover) override;
  void start(http::ServerConnection& connection) override;

 private:
  Config config_;
  SessionTemplate template_;
};

}  // namespace keel::http2
