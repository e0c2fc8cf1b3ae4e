// The HTTP/1 connection behind the request seam, with a fake RequestHandler in place of the
// application: framing, pipelining (one exchange at a time, answers in order), deferred answers,
// a peer that leaves while its request is handled, backpressure and timeouts. A real Server runs
// on its own thread over a loopback listener; the test is the client, over a blocking socket.

#include "http/connection.hpp"

#include <gtest/gtest.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "http/handler.hpp"
#include "http/server.hpp"
#include "net/listener.hpp"

namespace keel::http {
namespace {

using namespace std::chrono_literals;

// Answers each request with "<method> <path>" (inline), or holds it until the test releases it.
class FakeHandler final : public RequestHandler {
 public:
  void handle(Exchange& exchange) noexcept override {
    const Request& r = exchange.request();
    std::lock_guard lock(mutex_);
    seen_.push_back(std::string(r.method()) + " " + std::string(r.path()) + " body=" + std::string(r.body()));
    if (defer_) {
      held_.push_back(&exchange);
      changed_.notify_all();
      return;
    }
    answer(exchange, std::string(r.method()) + " " + std::string(r.path()));
  }

  // Answers the oldest held exchange; returns what respond() reported. On the loop thread.
  Delivery release_one(const std::string& body) {
    Exchange* e = nullptr;
    {
      std::lock_guard lock(mutex_);
      e = held_.front();
      held_.pop_front();
    }
    return answer(*e, body);
  }

  Delivery answer(Exchange& exchange, std::string body) {
    Delivery d;
    if (!exchange.peer_gone()) {
      Response resp = Response::text(std::move(body));
      d = exchange.respond(resp);
    }
    last_gone_ = exchange.peer_gone();
    exchange.finish();
    return d;
  }

  bool front_gone() {
    std::lock_guard lock(mutex_);
    return !held_.empty() && held_.front()->peer_gone();
  }

  bool wait_held(std::size_t n, std::chrono::milliseconds timeout = 5s) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return held_.size() >= n; });
  }
  std::vector<std::string> seen() {
    std::lock_guard lock(mutex_);
    return seen_;
  }

  bool defer_ = false;
  std::atomic<bool> last_gone_{false};

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::string> seen_;
  std::deque<Exchange*> held_;
};

class ConnectionTest : public ::testing::Test {
 protected:
  void start(ServerConfig config = {}) {
    std::vector<net::Listener> ls;
    ls.push_back(net::open_listener(net::parse_bind("127.0.0.1:0"), 64, false));
    port_ = ls.back().bound.port;
    server_ = std::make_unique<Server>(std::move(config), std::move(ls));
    server_->set_handler(&handler_);
    thread_ = std::thread([this] { server_->run(); });
  }
  // Runs fn on the server's loop thread and waits for it.
  template <class Fn>
  auto on_loop(Fn fn) {
    std::packaged_task<decltype(fn())()> task(std::move(fn));  // NOLINT
    auto result = task.get_future();
    server_->loop().post([&task] { task(); });
    return result.get();
  }
  void TearDown() override {
    if (server_) {
      on_loop([this] { server_->loop().stop(); });
      thread_.join();
    }
    for (int fd : clients_) ::close(fd);
  }
  int connect() {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port_));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << std::strerror(errno);
    clients_.push_back(fd);
    return fd;
  }
  static void send_all(int fd, const std::string& data) {
    std::size_t off = 0;
    while (off < data.size()) {
      const ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      ASSERT_GT(n, 0) << std::strerror(errno);
      off += static_cast<std::size_t>(n);
    }
  }
  // Reads until `count` complete responses (Content-Length framed) arrived, EOF or timeout.
  static std::vector<std::string> read_responses(int fd, std::size_t count, std::chrono::milliseconds timeout = 5s) {
    std::string buf;
    std::vector<std::string> out;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (out.size() < count) {
      for (;;) {  // split off complete responses
        const auto head_end = buf.find("\r\n\r\n");
        if (head_end == std::string::npos) break;
        std::size_t length = 0;
        const auto cl = buf.find("Content-Length: ");
        if (cl != std::string::npos && cl < head_end) length = std::stoul(buf.substr(cl + 16));
        if (buf.size() < head_end + 4 + length) break;
        out.push_back(buf.substr(0, head_end + 4 + length));
        buf.erase(0, head_end + 4 + length);
      }
      if (out.size() >= count) break;
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left <= 0ms) break;
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
      char tmp[16384];
      const ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
      if (n <= 0) break;
      buf.append(tmp, static_cast<std::size_t>(n));
    }
    return out;
  }
  static std::string body_of(const std::string& response) { return response.substr(response.find("\r\n\r\n") + 4); }

  FakeHandler handler_;
  std::unique_ptr<Server> server_;
  std::thread thread_;
  int port_ = 0;
  std::vector<int> clients_;
};

TEST_F(ConnectionTest, AnswersPipelinedRequestsInOrder) {
  start();
  const int fd = connect();
  send_all(fd,
           "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
           "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
           "GET /c HTTP/1.1\r\nHost: x\r\n\r\n");
  const auto got = read_responses(fd, 3);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(body_of(got[0]), "GET /a");
  EXPECT_EQ(body_of(got[1]), "POST /b");
  EXPECT_EQ(body_of(got[2]), "GET /c");
  EXPECT_EQ(got[0].rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << got[0];
  EXPECT_EQ(handler_.seen()[1], "POST /b body=hello");
}

TEST_F(ConnectionTest, HandsOverOneExchangeAtATimeAndWaitsForADeferredAnswer) {
  handler_.defer_ = true;
  start();
  const int fd = connect();
  send_all(fd, "GET /first HTTP/1.1\r\nHost: x\r\n\r\nGET /second HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(handler_.wait_held(1));
  // The second request is buffered, not handed over, while the first is unanswered.
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(handler_.seen().size(), 1u);
  EXPECT_TRUE(read_responses(fd, 1, 100ms).empty());
  const Delivery d = on_loop([this] { return handler_.release_one("one"); });
  EXPECT_TRUE(d.delivered);
  EXPECT_EQ(d.bytes_in, std::string("GET /first HTTP/1.1\r\nHost: x\r\n\r\n").size());
  EXPECT_GT(d.bytes_out, 3u);
  ASSERT_TRUE(handler_.wait_held(1));
  EXPECT_EQ(handler_.seen().size(), 2u);
  on_loop([this] { return handler_.release_one("two"); });
  const auto got = read_responses(fd, 2);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(body_of(got[0]), "one");
  EXPECT_EQ(body_of(got[1]), "two");
}

TEST_F(ConnectionTest, APeerThatLeavesDuringADeferredExchangeIsReportedGone) {
  handler_.defer_ = true;
  start();
  const int fd = connect();
  send_all(fd, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(handler_.wait_held(1));
  const linger reset{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
  ::close(fd);
  clients_.clear();
  // The connection notices the reset while the exchange is held; the answer then goes nowhere.
  bool gone = false;
  for (int i = 0; i < 200 && !gone; ++i) {
    std::this_thread::sleep_for(10ms);
    gone = on_loop([this] { return handler_.front_gone(); });
  }
  ASSERT_TRUE(gone);
  const Delivery d = on_loop([this] { return handler_.release_one("late"); });
  EXPECT_FALSE(d.delivered);
  EXPECT_TRUE(handler_.last_gone_);
}

TEST_F(ConnectionTest, AnIncompleteHeadTimesOutWith408) {
  ServerConfig c;
  c.header_timeout = 200ms;
  start(c);
  const int fd = connect();
  send_all(fd, "GET /never HTTP/1.1\r\nHost: x\r\n");
  const auto got = read_responses(fd, 1, 3s);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].rfind("HTTP/1.1 408", 0), 0u) << got[0];
  EXPECT_TRUE(handler_.seen().empty());
}

TEST_F(ConnectionTest, StopsTakingRequestsWhileTheClientDoesNotRead) {
  ServerConfig c;
  c.output_buffer_limit = 64 * 1024;
  c.keep_alive_requests = 0;  // no Connection: close after 1,000 requests
  start(c);
  const int fd = connect();
  // Many pipelined requests whose answers the client never reads: once the unsent output passes
  // the limit (after the kernel's buffers fill), the connection stops handing requests over.
  std::string many;
  const std::string path(2000, 'p');
  constexpr std::size_t kRequests = 20000;  // ~40 MB each way: more than the kernel's buffers hold
  for (std::size_t i = 0; i < kRequests; ++i) many += "GET /" + path + " HTTP/1.1\r\nHost: x\r\n\r\n";
  std::atomic<bool> blocked{false}, stop{false};
  std::thread writer([&] {
    std::size_t off = 0;
    while (off < many.size() && !stop) {
      pollfd p{fd, POLLOUT, 0};
      if (::poll(&p, 1, 500) <= 0) {  // the server stopped reading: we are blocked
        blocked = true;
        continue;
      }
      const ssize_t n = ::send(fd, many.data() + off, many.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0 && errno == EAGAIN) continue;
      if (n <= 0) break;
      off += static_cast<std::size_t>(n);
    }
  });
  for (int i = 0; i < 1000 && !blocked; ++i) std::this_thread::sleep_for(10ms);
  const std::size_t handled = handler_.seen().size();
  EXPECT_TRUE(blocked) << "the server kept reading although its output was not taken";
  EXPECT_LT(handled, kRequests) << "every request was handled although nothing was read";
  EXPECT_GT(handled, 0u);
  // Reading the answers lets the rest through.
  const auto got = read_responses(fd, kRequests, 60s);
  stop = true;
  writer.join();
  EXPECT_EQ(got.size(), kRequests);
  EXPECT_EQ(body_of(got.back()), "GET /" + path);
}

}  // namespace
}  // namespace keel::http
