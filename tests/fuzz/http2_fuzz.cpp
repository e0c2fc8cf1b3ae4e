// libFuzzer target for keel's HTTP/2 server connection (src/http2/connection.cpp, over nghttp2),
// with the real http::Server, request seam and socket I/O around it.
//
// The input is what a client sends on a plaintext HTTP/2 connection, cut into segments by the
// marker "@@h2" followed by one command byte:
//
//   [0xFF | 0xFE] segment0 ( "@@h2" cmd segment )*
//
// segment0 is what the HTTP/1 connection had read when it handed the connection over
// (Handover::received, fed by Connection::start()); it gets the 24-byte client preface in front
// unless it already starts with it, or unless the input starts with 0xFF (dropped), which keeps
// the bad-preface path reachable. A leading 0xFE (dropped) sets keep_alive_requests to 3 (the
// connection drains itself after 3 requests; 0 otherwise). Each later segment is written into the client end of the
// socketpair and the connection is told the socket is readable (on_io(EPOLLIN)), after the
// command (cmd % 10):
//   0  nothing more;                     5  answer the deferred ("/defer") exchanges;
//   1  fire the connection's deadline    6  the client half-closes after this segment;
//      as the server's tick() would;     7  an EPOLLERR event;
//   2  graceful shutdown (drain());      8  the client stops reading (a window-less client
//   3  shrink the server's socket send      cannot fill the socket otherwise);
//      buffer to its minimum;            9  the client reads again.
//   4  the client stops/resumes reading;
// Between steps the client end is read (unless stopped) and the connection gets EPOLLOUT. At the
// end the deferred exchanges are answered (some before, some after the close), the client closes
// its end (unread output left behind if it had stopped reading), the connection gets
// EPOLLIN|EPOLLRDHUP and, if still alive, its deadlines fire.
//
// One http::Server (no listeners), handler and http2::Factory with small limits (concurrent
// streams, resets, control frames, pending output, request body) so the defences are reachable.
// The server is made anew for each input: it owns the connection (add_connection) and frees it
// from its graveyard when destroyed, and its cached clock (the rate budgets' time) makes runs
// deterministic. The handler answers from the request path: "/" a small body, "/echo" the
// request body, "/big" 100 KB (flow control), "/stream" a producer of a few pieces,
// "/stream-throw" a producer that throws, "/trailers" and "/stream-trailers" trailer fields,
// "/empty" 204, "/status/<n>" any status, "/bad-header" an invalid header (500), "/id" the
// request id, "/defer" held until a command or the end; anything else 404.
//
// Checks (any violation traps):
//  - the handler sees an HTTP/2 request with a method and a path, a body within the limit, and
//    is never given an exchange whose peer is gone;
//  - the server's bytes are frames: first a SETTINGS frame, none above 16384 bytes (nghttp2 never
//    exceeds the minimum SETTINGS_MAX_FRAME_SIZE on its own), stream frames on odd (client)
//    streams and connection frames on stream 0, no PUSH_PROMISE, no HEADERS/DATA on a stream
//    after its END_STREAM nor DATA before its HEADERS, RST_STREAM(NO_ERROR) only after the
//    stream's complete response (RFC 9113 section 8.1), no response HEADERS on a stream above
//    the last stream id of a GOAWAY sent before, and a whole frame last unless the connection was
//    cut short (an error event, a write timeout, the client's half-close, or the client leaving
//    with output unread);
//  - the observer's accounts balance: the connection opened and closed once, HTTP/2 connection
//    +1/-1, streams opened = closed and never below zero, error reasons from the documented set;
//  - after the client closed (and deadlines passed) the connection is closed and released, and
//    the worker's request-body budget account is back to zero.

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "fuzz_check.hpp"
#include "http/handler.hpp"
#include "http/observer.hpp"
#include "http/server.hpp"
#include "http2/connection.hpp"
#include "keel/request.hpp"
#include "keel/response.hpp"
#include "log/log.hpp"

namespace {

using namespace keel;

constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
constexpr std::string_view kMarker = "@@h2";
// Small enough for -max_len to exceed it (413), and the worker's request body budget to run out
// with two bodies in flight (503).
constexpr std::size_t kBodyLimit = 8 * 1024;

// FUZZ_H2_VERBOSE=1: one line per request handled, server frame, rejection, error and step.
const bool g_verbose = std::getenv("FUZZ_H2_VERBOSE") != nullptr;
#define VERBOSE(...)                                             \
  do {                                                           \
    if (g_verbose) std::fprintf(stderr, "h2fuzz: " __VA_ARGS__); \
  } while (false)

// --- observer: the accounts the server keeps -------------------------------------------------

class Accounts final : public http::Observer {
 public:
  void request_started(http::Protocol) noexcept override {}
  void request_finished(const http::RequestRecord&) noexcept override {}
  void rejected(http::Rejection why) noexcept override { VERBOSE("rejected %d\n", static_cast<int>(why)); }
  void connection_opened() noexcept override { ++opened; }
  void connection_closed() noexcept override { ++closed; }
  std::chrono::steady_clock::time_point tick(std::chrono::steady_clock::time_point) noexcept override {
    return std::chrono::steady_clock::time_point::max();
  }
  void http2_connection(int delta) noexcept override {
    if (delta > 0)
      ++h2_opened;
    else
      ++h2_closed;
  }
  void http2_streams(int delta) noexcept override {
    streams += delta;
    if (streams < 0) negative_streams = true;
  }
  void http2_error(std::string_view reason) noexcept override {
    VERBOSE("http2_error %.*s\n", static_cast<int>(reason.size()), reason.data());
    bool known = false;
    for (std::string_view k : http::kHttp2ErrorReasons) known = known || k == reason;
    if (!known) unknown_error = true;
  }

  int opened = 0, closed = 0, h2_opened = 0, h2_closed = 0;
  long streams = 0;
  bool negative_streams = false, unknown_error = false;
};

// --- handler: a few behaviours chosen by the path ---------------------------------------------

std::size_t parse_number(std::string_view s, std::size_t fallback) {
  std::size_t n = fallback;
  std::from_chars(s.data(), s.data() + s.size(), n);
  return n;
}

class Handler final : public http::RequestHandler {
 public:
  void handle(http::Exchange& e) noexcept override {
    Request& r = e.request();
    FUZZ_CHECK(!e.peer_gone());  // handed over while the stream is open
    FUZZ_CHECK(r.http_version() == "2");
    FUZZ_CHECK(!r.method().empty());
    FUZZ_CHECK(!r.target().empty());
    FUZZ_CHECK(r.body().size() <= kBodyLimit);
    ++handled;
    VERBOSE("handle stream %u %.*s %.*s body=%zu\n", r.stream_id(), static_cast<int>(r.method().size()),
            r.method().data(), static_cast<int>(r.target().size()), r.target().data(), r.body().size());
    if (r.path() == "/defer") {
      held.push_back(&e);
      return;
    }
    answer(e);
  }

  // Answers (unless the peer is gone) and finishes; e must not be touched afterwards.
  static void answer(http::Exchange& e) noexcept {
    if (!e.peer_gone()) {
      Response resp = make(e.request());
      e.respond(resp);
    }
    e.finish();
  }

  // Answers the first `n` held exchanges (all by default), oldest first.
  void answer_held(std::size_t n = static_cast<std::size_t>(-1)) {
    std::vector<http::Exchange*> now;
    n = std::min(n, held.size());
    now.assign(held.begin(), held.begin() + static_cast<std::ptrdiff_t>(n));
    held.erase(held.begin(), held.begin() + static_cast<std::ptrdiff_t>(n));
    for (http::Exchange* e : now) answer(*e);
  }

  std::vector<http::Exchange*> held;
  std::size_t handled = 0;

 private:
  static Response make(const Request& r) {
    const std::string_view path = r.path();
    if (path == "/") {
      Response resp = Response::text("hello\n");
      resp.add_header("Connection", "keep-alive");  // connection-specific: never sent over HTTP/2
      resp.add_header("X-Method", std::string(r.method()));
      return resp;
    }
    if (path == "/echo") {
      Response resp = Response::text(std::string(r.body()));
      resp.add_header("X-Headers", std::to_string(r.headers().size()));
      if (auto ct = r.header("content-type")) resp.set_content_type(std::string(*ct));
      return resp;
    }
    if (path == "/big") return Response::text(std::string(100 * 1024, 'b'));
    if (path == "/stream" || path == "/stream-trailers" || path == "/stream-throw") {
      const std::size_t pieces = std::min<std::size_t>(parse_number(r.query(), 4), 32);
      const bool throws = path == "/stream-throw";
      Response resp = Response::stream([i = std::size_t{0}, pieces, throws](std::string& out) mutable {
        if (throws && i == 1) throw std::runtime_error("producer failed");
        out.assign(i % 3 == 2 ? 0 : 1000 + i, static_cast<char>('a' + i % 26));  // an empty piece now and then
        return ++i < pieces;
      });
      if (path == "/stream-trailers") resp.add_trailer("X-Checksum", "1234");
      return resp;
    }
    if (path == "/trailers") {
      Response resp = Response::text("with trailers\n");
      resp.add_trailer("Grpc-Status", "0");
      resp.add_trailer("X-Checksum", "abcd");
      return resp;
    }
    if (path == "/empty") return Response(204);
    if (path.starts_with("/status/")) {
      const std::size_t status = parse_number(path.substr(8), 200);
      return Response::text("status\n", static_cast<int>(std::min<std::size_t>(status, 1000)));
    }
    if (path == "/bad-header") {
      Response resp = Response::text("never sent\n");
      resp.add_header("X-Bad", "a\r\nb");
      return resp;
    }
    if (path == "/id") return Response::text(std::string(r.request_id()));
    return Response::text("not found\n", 404);
  }
};

// --- the server's bytes, frame by frame -------------------------------------------------------

class FrameChecker {
 public:
  void add(const char* data, std::size_t n) {
    buf_.append(data, n);
    std::size_t off = 0;
    while (buf_.size() - off >= 9) {
      const auto* h = reinterpret_cast<const std::uint8_t*>(buf_.data() + off);
      const std::uint32_t length = (std::uint32_t{h[0]} << 16) | (std::uint32_t{h[1]} << 8) | h[2];
      if (buf_.size() - off < 9 + length) break;
      frame(h[3], h[4], read32(h + 5) & 0x7fffffffU, length, h + 9);
      off += 9 + length;
    }
    buf_.erase(0, off);
  }
  // The connection is gone: its bytes end with a whole frame.
  void finish() const { FUZZ_CHECK(buf_.empty()); }

 private:
  enum : std::uint8_t {
    kData = 0,
    kHeaders = 1,
    kRstStream = 3,
    kSettings = 4,
    kPushPromise = 5,
    kPing = 6,
    kGoaway = 7
  };
  enum : std::uint8_t { kEndStream = 0x1, kAck = 0x1, kPadded = 0x8, kPriority = 0x20 };
  struct StreamState {
    bool headers = false;
    bool ended = false;
  };

  static std::uint32_t read32(const std::uint8_t* p) {
    return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | p[3];
  }

  void frame(std::uint8_t type, std::uint8_t flags, std::uint32_t stream, std::uint32_t length, const std::uint8_t* p) {
    VERBOSE("frame type=%u flags=0x%02x stream=%u length=%u\n", type, flags, stream, length);
    FUZZ_CHECK(length <= 16384);
    if (frames_++ == 0) FUZZ_CHECK(type == kSettings && (flags & kAck) == 0 && stream == 0);
    FUZZ_CHECK(type <= 9 && type != kPushPromise);
    switch (type) {
      case kData:
      case kHeaders: {
        FUZZ_CHECK(stream % 2 == 1);
        StreamState& s = streams_[stream];
        FUZZ_CHECK(!s.ended);
        if (type == kData) FUZZ_CHECK(s.headers);
        if (type == kHeaders && !s.headers) FUZZ_CHECK(stream <= last_stream_id_);
        if (type == kHeaders) s.headers = true;
        if ((flags & kEndStream) != 0) s.ended = true;
        break;
      }
      case kRstStream: {
        FUZZ_CHECK(stream != 0 && length == 4);
        StreamState& s = streams_[stream];
        // NO_ERROR only asks the client to stop sending a request the server has answered in full
        // (RFC 9113 section 8.1): the response must have gone out before it.
        if (read32(p) == 0) FUZZ_CHECK(s.headers && s.ended);
        s.ended = true;
        break;
      }
      case kSettings:
      case kPing:
        FUZZ_CHECK(stream == 0);
        break;
      case kGoaway:
        FUZZ_CHECK(stream == 0 && length >= 8);
        last_stream_id_ = std::min(last_stream_id_, read32(p) & 0x7fffffffU);
        break;
      default:
        break;
    }
  }

  std::string buf_;
  std::size_t frames_ = 0;
  std::uint32_t last_stream_id_ = 0x7fffffffU;
  std::unordered_map<std::uint32_t, StreamState> streams_;
};

// --- one run ------------------------------------------------------------------------------------

struct Fixture {
  Fixture() {
    log::Options o;
    o.level = log::Level::kCritical;  // "connection_refused" warnings and handler errors are expected
    log::configure(o);
    log::set_synchronous(true);
    config.limit_request_body = kBodyLimit;
    config.keep_alive_requests = 0;
    config.output_buffer_limit = 32 * 1024;
    config.request_buffer_budget = 12 * 1024;
    config.forwarded_allow_ips = net::AddressSet::parse({"127.0.0.0/8", "10.0.0.0/8"});
    http2::Config h2;
    h2.max_concurrent_streams = 8;
    h2.max_header_list_size = 4 * 1024;
    h2.initial_window_size = 16 * 1024;      // a client can overrun it within -max_len
    h2.connection_window_size = 128 * 1024;  // above the default: keel raises it at start
    h2.max_reset_streams = 50;
    h2.max_control_frames = 50;
    h2.max_pending_output = 64 * 1024;
    factory = std::make_unique<http2::Factory>(h2);
    config_max_requests = config;
    config_max_requests.keep_alive_requests = 3;
  }
  http::ServerConfig config;
  http::ServerConfig config_max_requests;
  Handler handler;
  std::unique_ptr<http2::Factory> factory;
};

Fixture& fixture() {
  static Fixture p;
  return p;
}

class Run {
 public:
  Run(Fixture& p, std::string_view received, const http::ServerConfig& config) : p_(p), server_(config, {}) {
    server_.set_handler(&p.handler);
    server_.set_http2(p.factory.get());
    server_.set_observer(&accounts_);
    int sv[2];
    FUZZ_CHECK(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
    const int big = 4 << 20;  // capped at net.core.wmem_max (twice it, in fact)
    ::setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    ::setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    server_fd_ = sv[0];
    client_fd_ = sv[1];
    http::Handover h;
    h.handler = &p.handler;
    h.fd = server_fd_;
    h.peer = "127.0.0.1:40000";
    h.proxy_headers_trusted = true;
    h.received = received;
    // What accept and the HTTP/1 connection did before the hand-over: registered with the loop,
    // in the server's live set.
    std::unique_ptr<http::ServerConnection> conn = p.factory->adopt(server_, std::move(h));
    server_.loop().add(server_fd_, EPOLLIN | EPOLLRDHUP | EPOLLET, conn.get());
    conn_ = conn.release();
    server_.add_connection(conn_);
    p.factory->start(*conn_);
    pump();
  }

  ~Run() {
    if (client_fd_ >= 0) ::close(client_fd_);
  }

  // Reads what the server wrote (unless the client stopped reading) and tells the connection the
  // socket has room again, until it writes no more.
  void pump() {
    if (!reading_ || client_fd_ < 0) return;
    char buf[16384];
    for (int round = 0; round < 64; ++round) {
      bool any = false;
      for (;;) {
        const ssize_t n = ::recv(client_fd_, buf, sizeof buf, 0);
        if (n <= 0) break;
        frames_.add(buf, static_cast<std::size_t>(n));
        any = true;
      }
      if (!any) break;
      conn_->on_io(EPOLLOUT);
    }
  }

  // Writes a segment into the client end, the connection reading as it arrives.
  void send(std::string_view seg) {
    if (client_fd_ < 0 || client_shut_) return;
    std::size_t off = 0;
    int stalls = 0;
    while (off < seg.size() && stalls < 3) {
      const ssize_t n = ::send(client_fd_, seg.data() + off, seg.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        off += static_cast<std::size_t>(n);
        stalls = 0;
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        ++stalls;  // the server does not read (its output is backed up): give it a turn
      } else {
        return;  // the server closed its end
      }
      conn_->on_io(EPOLLIN);
      pump();
    }
    if (seg.empty()) conn_->on_io(EPOLLIN);
  }

  // What Server::tick() does when the connection's deadline has passed.
  void fire_deadline() {
    const http::Deadline kind = conn_->deadline_kind();
    if (kind == http::Deadline::kNone) return;
    if (kind == http::Deadline::kWrite) abortive_ = true;  // may reset the connection mid-frame
    server_.set_deadline(*conn_, http::Deadline::kNone);
    VERBOSE("deadline %d\n", static_cast<int>(kind));
    conn_->on_deadline(kind);
    pump();
  }

  void command(std::uint8_t cmd, std::string_view seg) {
    VERBOSE("command %d, segment of %zu bytes\n", cmd % 10, seg.size());
    switch (cmd % 10) {
      case 1:
        fire_deadline();
        break;
      case 2:
        conn_->drain();
        pump();
        break;
      case 3: {
        const int small = 1;  // raised to the minimum
        ::setsockopt(server_fd_, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
        break;
      }
      case 4:
        reading_ = !reading_;
        break;
      case 5:
        p_.handler.answer_held();
        pump();
        break;
      case 7:
        abortive_ = true;
        conn_->on_io(EPOLLERR);
        break;
      case 8:
        reading_ = false;
        break;
      case 9:
        reading_ = true;
        break;
      default:
        break;
    }
    send(seg);
    pump();
    if (cmd % 10 == 6 && client_fd_ >= 0 && !client_shut_) {
      abortive_ = true;  // the client is gone: what the server had not written yet is dropped
      ::shutdown(client_fd_, SHUT_WR);
      client_shut_ = true;
      conn_->on_io(EPOLLIN | EPOLLRDHUP);
      pump();
    }
  }

  // The client goes away; every exchange is answered; the connection must end up released.
  void finish() {
    VERBOSE("finish: %zu held%s\n", p_.handler.held.size(), reading_ ? "" : ", the client vanishes");
    if (reading_) {
      p_.handler.answer_held(p_.handler.held.size() / 2);
      pump();
    } else {
      abortive_ = true;  // a client that stopped reading closes with the server's output unread
      p_.handler.answer_held(p_.handler.held.size() / 2);
    }
    ::close(client_fd_);
    client_fd_ = -1;
    conn_->on_io(EPOLLIN | EPOLLRDHUP);
    p_.handler.answer_held();
    for (int i = 0; i < 4 && accounts_.closed == 0; ++i) fire_deadline();
    FUZZ_CHECK(p_.handler.held.empty());
    FUZZ_CHECK(accounts_.opened == 1 && accounts_.closed == 1);
    FUZZ_CHECK(accounts_.h2_opened == 1 && accounts_.h2_closed == 1);
    FUZZ_CHECK(accounts_.streams == 0 && !accounts_.negative_streams);
    FUZZ_CHECK(!accounts_.unknown_error);
    FUZZ_CHECK(server_.buffered_request_bytes() == 0);
    // Unless the connection was cut short, the server's bytes end with a whole frame.
    if (!abortive_) frames_.finish();
  }

 private:
  Fixture& p_;
  Accounts accounts_;    // outlives the server
  http::Server server_;  // frees the connection (graveyard) when destroyed
  http::ServerConnection* conn_ = nullptr;
  int server_fd_ = -1;  // the connection's: it closes it
  int client_fd_ = -1;
  bool reading_ = true;
  bool client_shut_ = false;
  bool abortive_ = false;  // an error event, a write timeout or the client's EOF ended it
  FrameChecker frames_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Fixture& p = fixture();
  std::string_view in(reinterpret_cast<const char*>(data), size);
  bool prefix = true;
  const http::ServerConfig* config = &p.config;
  if (!in.empty() && static_cast<std::uint8_t>(in[0]) == 0xFF) {
    prefix = false;
    in.remove_prefix(1);
  } else if (!in.empty() && static_cast<std::uint8_t>(in[0]) == 0xFE) {
    config = &p.config_max_requests;
    in.remove_prefix(1);
  }
  std::size_t cut = in.find(kMarker);
  std::string first;
  if (prefix && !in.starts_with(kPreface)) first = kPreface;
  first += in.substr(0, cut);
  {
    Run run(p, first, *config);
    while (cut != std::string_view::npos) {
      const std::size_t start = cut + kMarker.size();
      const std::uint8_t cmd = start < in.size() ? static_cast<std::uint8_t>(in[start]) : 0;
      const std::size_t seg_start = std::min(start + 1, in.size());
      cut = in.find(kMarker, seg_start);
      run.command(cmd, in.substr(seg_start, cut == std::string_view::npos ? std::string_view::npos : cut - seg_start));
    }
    run.finish();
  }
  FUZZ_CHECK(p.handler.held.empty());
  return 0;
}
