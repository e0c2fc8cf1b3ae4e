// The HTTP/2 server connection (http2::Connection) driven over a socketpair on the test's thread,
// as the fuzz target does (tests/fuzz/http2_fuzz.cpp): a real http::Server without listeners owns
// it, an nghttp2 client session on the other end makes the requests and reads the answers.

#include "http2/connection.hpp"

#include <gtest/gtest.h>
#include <nghttp2/nghttp2.h>

#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "http/handler.hpp"
#include "http/server.hpp"

namespace keel::http2 {
namespace {

class Handler final : public http::RequestHandler {
 public:
  void handle(http::Exchange& e) noexcept override {
    ++handled;
    if (!e.peer_gone()) {
      Response r = Response::text("hello\n");
      e.respond(r);
    }
    e.finish();
  }
  int handled = 0;
};

// What the client saw of one stream.
struct Answer {
  int status = 0;
  std::string body;
  bool ended = false;                     // END_STREAM received
  bool reset = false;                     // RST_STREAM received
  std::uint32_t reset_code = 0xffffffff;  // its error code
  bool closed = false;
};

// An nghttp2 client session over the test's end of the socketpair.
class Client {
 public:
  explicit Client(int fd) : fd_(fd) {
    nghttp2_session_callbacks* cb = nullptr;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_header_callback(cb, &Client::on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, &Client::on_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, &Client::on_frame);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, &Client::on_close);
    nghttp2_session_client_new(&session_, cb, this);
    nghttp2_session_callbacks_del(cb);
    nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, nullptr, 0);
  }
  ~Client() { nghttp2_session_del(session_); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // A request; `end` false leaves the stream open for a body that comes later (or never).
  std::int32_t request(std::string_view method, std::string_view path,
                       std::vector<std::pair<std::string, std::string>> extra = {}, bool end = true) {
    std::vector<std::pair<std::string, std::string>> fields = {
        {":method", std::string(method)}, {":scheme", "http"}, {":authority", "test"}, {":path", std::string(path)}};
    fields.insert(fields.end(), extra.begin(), extra.end());
    std::vector<nghttp2_nv> nv;
    for (auto& [n, v] : fields)
      nv.push_back({reinterpret_cast<std::uint8_t*>(n.data()), reinterpret_cast<std::uint8_t*>(v.data()), n.size(),
                    v.size(), NGHTTP2_NV_FLAG_NONE});
    return nghttp2_submit_headers(session_, end ? NGHTTP2_FLAG_END_STREAM : NGHTTP2_FLAG_NONE, -1, nullptr, nv.data(),
                                  nv.size(), nullptr);
  }
  // DATA on an open stream, without ending it.
  void data(std::int32_t stream, std::string bytes) {
    send();  // nghttp2 makes the stream when its HEADERS go out; DATA needs it
    body_ = std::move(bytes);
    nghttp2_data_provider p{};
    p.read_callback = [](nghttp2_session*, std::int32_t, std::uint8_t* buf, std::size_t length, std::uint32_t* flags,
                         nghttp2_data_source*, void* user) -> ssize_t {
      auto* self = static_cast<Client*>(user);
      const std::size_t n = std::min(length, self->body_.size());
      std::memcpy(buf, self->body_.data(), n);
      self->body_.erase(0, n);
      *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
      return static_cast<ssize_t>(n);
    };
    ASSERT_EQ(nghttp2_submit_data(session_, NGHTTP2_FLAG_NONE, stream, &p), 0);
  }
  // Sends what the session has queued.
  void send() {
    const std::uint8_t* out = nullptr;
    for (ssize_t n; (n = nghttp2_session_mem_send(session_, &out)) > 0;)
      ASSERT_EQ(::send(fd_, out, static_cast<std::size_t>(n), MSG_NOSIGNAL), n);
  }
  // Reads what the server wrote; true when anything came.
  bool receive() {
    bool any = false;
    char buf[16384];
    for (ssize_t n; (n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT)) > 0;) {
      any = true;
      EXPECT_EQ(
          nghttp2_session_mem_recv(session_, reinterpret_cast<const std::uint8_t*>(buf), static_cast<std::size_t>(n)),
          n);
    }
    return any;
  }
  // The client resets a stream (its HEADERS sent first: nghttp2 would drop them otherwise).
  void reset(std::int32_t stream) {
    send();
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream, NGHTTP2_CANCEL);
  }
  std::map<std::int32_t, Answer> answers;
  std::uint32_t goaway_code = 0xffffffff;  // of the last GOAWAY received

 private:
  static int on_header(nghttp2_session*, const nghttp2_frame* f, const std::uint8_t* name, std::size_t namelen,
                       const std::uint8_t* value, std::size_t valuelen, std::uint8_t, void* user) {
    if (std::string_view(reinterpret_cast<const char*>(name), namelen) == ":status")
      static_cast<Client*>(user)->answers[f->hd.stream_id].status =
          std::stoi(std::string(reinterpret_cast<const char*>(value), valuelen));
    return 0;
  }
  static int on_data(nghttp2_session*, std::uint8_t, std::int32_t stream, const std::uint8_t* data, std::size_t len,
                     void* user) {
    static_cast<Client*>(user)->answers[stream].body.append(reinterpret_cast<const char*>(data), len);
    return 0;
  }
  static int on_frame(nghttp2_session*, const nghttp2_frame* f, void* user) {
    auto* self = static_cast<Client*>(user);
    if ((f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) && (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0)
      self->answers[f->hd.stream_id].ended = true;
    if (f->hd.type == NGHTTP2_GOAWAY) self->goaway_code = f->goaway.error_code;
    if (f->hd.type == NGHTTP2_RST_STREAM) {
      self->answers[f->hd.stream_id].reset = true;
      self->answers[f->hd.stream_id].reset_code = f->rst_stream.error_code;
    }
    return 0;
  }
  static int on_close(nghttp2_session*, std::int32_t stream, std::uint32_t, void* user) {
    static_cast<Client*>(user)->answers[stream].closed = true;
    return 0;
  }

  int fd_;
  nghttp2_session* session_ = nullptr;
  std::string body_;
};

class Http2ConnectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    http::ServerConfig config;
    config.limit_request_body = 1024;
    server_ = std::make_unique<http::Server>(config, std::vector<net::Listener>{});
    server_->set_handler(&handler_);
    server_->set_http2(&factory_);
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    client_fd_ = sv[1];
    client_ = std::make_unique<Client>(client_fd_);
    // What accept and the HTTP/1 connection do before handing a connection over: registered with
    // the loop, in the server's live set; nothing read yet (the preface comes through the socket).
    http::Handover h;
    h.handler = &handler_;
    h.fd = sv[0];
    h.peer = "127.0.0.1:40000";
    std::unique_ptr<http::ServerConnection> conn = factory_.adopt(*server_, std::move(h));
    server_->loop().add(sv[0], EPOLLIN | EPOLLRDHUP | EPOLLET, conn.get());
    conn_ = conn.release();
    server_->add_connection(conn_);
  }
  void TearDown() override {
    client_.reset();
    ::close(client_fd_);
    if (conn_ != nullptr) conn_->on_io(EPOLLIN | EPOLLRDHUP);
    server_.reset();  // frees the connection
  }
  // The client sends what it has queued (the first time: its preface), the connection runs, the
  // client reads the answers, until nothing moves.
  void exchange() {
    client_->send();
    if (!started_) {
      started_ = true;
      factory_.start(*conn_);
    } else {
      conn_->on_io(EPOLLIN);
    }
    for (int i = 0; i < 16 && client_->receive(); ++i) {
      client_->send();  // SETTINGS ACK, WINDOW_UPDATE
      conn_->on_io(EPOLLIN | EPOLLOUT);
    }
  }
  // What Server::tick() does when the connection's deadline has passed.
  void expire_deadline() {
    const http::Deadline kind = conn_->deadline_kind();
    ASSERT_NE(kind, http::Deadline::kNone);
    server_->set_deadline(*conn_, http::Deadline::kNone);
    conn_->on_deadline(kind);
  }

  Handler handler_;
  Factory factory_{[] {
    Config c;
    c.max_header_list_size = 1024;
    c.max_reset_streams = 10;
    return c;
  }()};
  std::unique_ptr<http::Server> server_;
  http::ServerConnection* conn_ = nullptr;
  int client_fd_ = -1;
  std::unique_ptr<Client> client_;
  bool started_ = false;
};

TEST_F(Http2ConnectionTest, AnswersARequest) {
  const std::int32_t id = client_->request("GET", "/");
  exchange();
  const Answer& a = client_->answers[id];
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(a.body, "hello\n");
  EXPECT_TRUE(a.ended);
  EXPECT_FALSE(a.reset);
  EXPECT_EQ(handler_.handled, 1);
}

// Regression (found by fuzz_http2): reject() queued RST_STREAM(NO_ERROR) right behind the
// response while the request was still arriving, and nghttp2 sends nothing more on a stream with
// a reset queued: the client got a bare reset instead of the 413 (408, 503).
TEST_F(Http2ConnectionTest, ABodyAnnouncedTooLargeIsAnswered413ThenTheStreamIsReset) {
  const std::int32_t id = client_->request("POST", "/", {{"content-length", "5000"}}, false);
  exchange();
  const Answer& a = client_->answers[id];
  EXPECT_EQ(a.status, 413);
  EXPECT_FALSE(a.body.empty());
  EXPECT_TRUE(a.ended);
  // Then the client is told to stop sending the body, without an error (RFC 9113 section 8.1).
  EXPECT_TRUE(a.reset);
  EXPECT_EQ(a.reset_code, std::uint32_t{NGHTTP2_NO_ERROR});
  EXPECT_EQ(handler_.handled, 0);
}

TEST_F(Http2ConnectionTest, ABodyOverTheLimitIsAnswered413) {
  const std::int32_t id = client_->request("POST", "/", {}, false);
  client_->data(id, std::string(2000, 'x'));
  exchange();
  const Answer& a = client_->answers[id];
  EXPECT_EQ(a.status, 413);
  EXPECT_TRUE(a.ended);
  EXPECT_TRUE(a.reset);
  EXPECT_EQ(a.reset_code, std::uint32_t{NGHTTP2_NO_ERROR});
}

TEST_F(Http2ConnectionTest, ABodyThatStopsComingIsAnswered408) {
  const std::int32_t id = client_->request("POST", "/", {}, false);
  client_->data(id, "part");
  exchange();
  EXPECT_EQ(client_->answers[id].status, 0);
  expire_deadline();  // --body-timeout
  exchange();
  const Answer& a = client_->answers[id];
  EXPECT_EQ(a.status, 408);
  EXPECT_TRUE(a.ended);
  EXPECT_TRUE(a.reset);
  EXPECT_EQ(a.reset_code, std::uint32_t{NGHTTP2_NO_ERROR});
}

// A complete request refused for its header list: the answer, and no reset (nothing more comes).
TEST_F(Http2ConnectionTest, HeadersOverTheListSizeAreAnswered431) {
  const std::int32_t id = client_->request("GET", "/", {{"x-big", std::string(2000, 'h')}});
  exchange();
  const Answer& a = client_->answers[id];
  EXPECT_EQ(a.status, 431);
  EXPECT_TRUE(a.ended);
  EXPECT_FALSE(a.reset);
  EXPECT_EQ(handler_.handled, 0);
}

// Regression (fixed in 3e6310e; fuzz_http2's seed rapid_reset_queued): the reset that spends the
// budget closes a stream whose complete request is still queued for the handler, after fail()
// had cleared the queue; erasing it from the cleared queue corrupted the heap.
TEST_F(Http2ConnectionTest, ARapidResetOfCompleteRequestsEndsTheConnectionWithEnhanceYourCalm) {
  for (int i = 0; i < 15; ++i) client_->reset(client_->request("GET", "/"));
  exchange();
  EXPECT_EQ(client_->goaway_code, std::uint32_t{NGHTTP2_ENHANCE_YOUR_CALM});
  EXPECT_EQ(handler_.handled, 0);
}

}  // namespace
}  // namespace keel::http2
