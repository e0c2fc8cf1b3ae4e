// Tests of client/curl_easy.hpp, the libcurl wrapper under keel::fetch, the OTLP exporter, the
// HTTP health check and the healthcheck subcommand. Network rule: every socket is on 127.0.0.1.
#include "client/curl_easy.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

using keel::client::Easy;
using keel::client::HeaderList;
using keel::client::Multi;
using keel::client::OverLimit;
using keel::client::Response;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// An HTTP/1.1 server thread on 127.0.0.1 that serves one connection at a time, request after
// request (keep-alive). `answer` gets each request head (request line and fields, without the
// blank line) and returns the raw bytes to send back; an empty answer sends nothing, so the
// client waits.
class LoopbackServer {
 public:
  using Answer = std::function<std::string(const std::string& head)>;

  explicit LoopbackServer(Answer answer) : answer_(std::move(answer)) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (listen_fd_ < 0 || ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::listen(listen_fd_, 8) != 0 || ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0)
      throw std::runtime_error("loopback listener");
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { accept_loop(); });
  }
  ~LoopbackServer() {
    stop_ = true;
    thread_.join();
    ::close(listen_fd_);
  }
  LoopbackServer(const LoopbackServer&) = delete;
  LoopbackServer& operator=(const LoopbackServer&) = delete;

  std::string url(std::string_view path = "/") const {
    return "http://127.0.0.1:" + std::to_string(port_) + std::string(path);
  }
  int connections() const { return connections_.load(); }
  std::vector<std::string> heads() const {
    std::lock_guard lock(mu_);
    return heads_;
  }

 private:
  // True when fd is readable before the server stops.
  bool readable(int fd) const {
    for (;;) {
      if (stop_) return false;
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 10) > 0) return true;
    }
  }

  void accept_loop() {
    while (readable(listen_fd_)) {
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      ++connections_;
      serve(fd);
      ::close(fd);
    }
  }

  void serve(int fd) {
    std::string in;
    for (;;) {
      const auto end = in.find("\r\n\r\n");
      if (end == std::string::npos) {
        char chunk[4096];
        if (!readable(fd)) return;
        const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
        if (n <= 0) return;
        in.append(chunk, static_cast<std::size_t>(n));
        continue;
      }
      const std::string head = in.substr(0, end);
      in.erase(0, end + 4);  // the tests send no request bodies
      {
        std::lock_guard lock(mu_);
        heads_.push_back(head);
      }
      const std::string out = answer_(head);
      for (std::size_t off = 0; off < out.size();) {
        const ssize_t n = ::send(fd, out.data() + off, out.size() - off, MSG_NOSIGNAL);
        if (n <= 0) return;
        off += static_cast<std::size_t>(n);
      }
    }
  }

  Answer answer_;
  int listen_fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  mutable std::mutex mu_;
  std::vector<std::string> heads_;
  std::thread thread_;
};

std::string ok(std::string_view body, std::string_view extra_fields = "") {
  return "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" + std::string(extra_fields) +
         "\r\n" + std::string(body);
}

// A loopback port with nothing listening on it.
std::string refused_url() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return "http://127.0.0.1:" + std::to_string(ntohs(a.sin_port)) + "/";
}

// One transfer of url with a fresh handle and the wrapper's defaults (the body dropped).
Response get_once(const std::string& url) {
  Easy easy;
  easy.setopt(CURLOPT_URL, url.c_str());
  easy.perform();
  return easy.take_response();
}

TEST(CurlEasy, CapturesStatusHeadersAndBody) {
  LoopbackServer server(
      [](const std::string&) { return ok("hello", "X-One: 1\r\nx-dup: first\r\nX-Dup:   second\r\nX-Empty:\r\n"); });
  Easy easy;
  easy.setopt(CURLOPT_URL, server.url("/a").c_str());
  easy.keep_body();
  const Response& r = easy.perform();
  EXPECT_EQ(r.result, CURLE_OK);
  EXPECT_TRUE(r.error.empty());
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.status_line, "HTTP/1.1 200 OK");
  EXPECT_EQ(r.body, "hello");
  EXPECT_FALSE(r.body_over_limit);
  EXPECT_EQ(r.header("x-one"), "1");
  EXPECT_EQ(r.header("X-DUP"), "second");  // the last of that name, leading OWS removed
  EXPECT_EQ(r.header("x-empty"), "");
  EXPECT_FALSE(r.header("x-none"));
  ASSERT_GE(r.headers.size(), 5u);
  EXPECT_EQ(r.headers[0].first, "Content-Length");
  EXPECT_EQ(r.headers[2].first, "x-dup");  // names as sent
  ASSERT_EQ(server.heads().size(), 1u);
  EXPECT_EQ(server.heads()[0].rfind("GET /a HTTP/1.1\r\n", 0), 0u);
}

TEST(CurlEasy, BodyIsDroppedUnlessKept) {
  LoopbackServer server([](const std::string&) { return ok("0123456789"); });
  const Response r = get_once(server.url());
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "");
  EXPECT_TRUE(r.body_over_limit);
}

TEST(CurlEasy, BodyLimitTruncatesOrFails) {
  LoopbackServer server([](const std::string&) { return ok("0123456789"); });
  Easy easy;
  easy.setopt(CURLOPT_URL, server.url().c_str());
  easy.keep_body(4, OverLimit::kTruncate);
  const Response& cut = easy.perform();
  EXPECT_EQ(cut.result, CURLE_OK);
  EXPECT_EQ(cut.body, "0123");
  EXPECT_TRUE(cut.body_over_limit);

  easy.keep_body(10, OverLimit::kFail);  // exactly the limit is fine
  EXPECT_EQ(easy.perform().body, "0123456789");

  easy.keep_body(9, OverLimit::kFail);
  const Response& failed = easy.perform();
  EXPECT_EQ(failed.result, CURLE_WRITE_ERROR);
  EXPECT_TRUE(failed.body_over_limit);
  EXPECT_EQ(failed.status, 0);
  EXPECT_FALSE(failed.error.empty());
}

TEST(CurlEasy, InterimResponsesAreForgotten) {
  LoopbackServer server([](const std::string&) {
    return "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n" +
           std::string("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
  });
  const Response r = get_once(server.url());
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.status_line, "HTTP/1.1 404 Not Found");
  EXPECT_FALSE(r.header("link"));
}

TEST(CurlEasy, SendsTheHeaderListAndKeepsTheConnection) {
  LoopbackServer server([](const std::string&) { return ok("x"); });
  Easy easy;
  easy.setopt(CURLOPT_URL, server.url().c_str());
  HeaderList headers;
  headers.append("X-Request-ID: abc");
  headers.append("Accept:");  // removes libcurl's default
  easy.set_headers(std::move(headers));
  EXPECT_EQ(easy.perform().status, 200);
  EXPECT_EQ(easy.perform().status, 200);
  const auto heads = server.heads();
  ASSERT_EQ(heads.size(), 2u);
  for (const std::string& head : heads) {
    EXPECT_NE(head.find("\r\nX-Request-ID: abc"), std::string::npos) << head;
    EXPECT_EQ(head.find("\r\nAccept:"), std::string::npos) << head;
  }
  EXPECT_EQ(server.connections(), 1);  // keep-alive: the second request reused the connection
}

TEST(CurlEasy, ResetRestoresTheDefaultsAndKeepsTheConnection) {
  LoopbackServer server([](const std::string&) { return ok("body"); });
  Easy easy;
  easy.setopt(CURLOPT_URL, server.url("/first").c_str());
  HeaderList headers;
  headers.append("X-Only-Once: 1");
  easy.set_headers(std::move(headers));
  easy.keep_body();
  EXPECT_EQ(easy.perform().body, "body");

  easy.reset();
  easy.setopt(CURLOPT_URL, server.url("/second").c_str());
  const Response& r = easy.perform();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "");  // dropped again
  const auto heads = server.heads();
  ASSERT_EQ(heads.size(), 2u);
  EXPECT_EQ(heads[1].rfind("GET /second ", 0), 0u);
  EXPECT_EQ(heads[1].find("X-Only-Once"), std::string::npos);
  EXPECT_EQ(server.connections(), 1);
}

TEST(CurlEasy, ConnectionRefusedCarriesTheErrno) {
  const Response r = get_once(refused_url());
  EXPECT_EQ(r.result, CURLE_COULDNT_CONNECT);
  EXPECT_EQ(r.os_errno, ECONNREFUSED);
  EXPECT_EQ(r.status, 0);
  EXPECT_FALSE(r.error.empty());
}

TEST(CurlEasy, TimeoutEndsASilentExchange) {
  LoopbackServer server([](const std::string&) { return std::string(); });
  Easy easy;
  easy.setopt(CURLOPT_URL, server.url().c_str());
  easy.setopt(CURLOPT_TIMEOUT_MS, 200L);
  const auto start = Clock::now();
  const Response& r = easy.perform();
  EXPECT_EQ(r.result, CURLE_OPERATION_TIMEDOUT);
  EXPECT_LT(Clock::now() - start, milliseconds(2000));
  EXPECT_NE(r.error.find("timed out"), std::string::npos) << r.error;  // "Operation timed out after ..."
}

TEST(CurlEasy, RefusedOptionThrowsNamingIt) {
  Easy easy;
  try {
    easy.setopt(CURLOPT_PROTOCOLS_STR, "http,no-such-protocol");
    ADD_FAILURE() << "expected std::runtime_error";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string_view(e.what()).rfind("curl_easy_setopt: ", 0), 0u) << e.what();
  }
}

TEST(CurlMulti, CompletesAndReusesTheConnection) {
  LoopbackServer server([](const std::string&) { return ok("{}", "Retry-After: 3\r\n"); });
  Multi multi;
  Easy easy;
  easy.setopt(CURLOPT_URL, server.url().c_str());
  easy.keep_body(64);
  const auto never = [] { return Clock::time_point::max(); };
  for (int i = 0; i < 2; ++i) {
    const Response& r = multi.perform(easy, Clock::now() + std::chrono::seconds(5), never, 5000);
    EXPECT_EQ(r.result, CURLE_OK);
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "{}");
    EXPECT_EQ(r.header("retry-after"), "3");
  }
  EXPECT_EQ(server.connections(), 1);
}

TEST(CurlMulti, DeadlineEndsASilentExchange) {
  LoopbackServer server([](const std::string&) { return std::string(); });
  Multi multi;
  Easy easy;
  easy.setopt(CURLOPT_URL, server.url().c_str());
  const auto start = Clock::now();
  const Response& r = multi.perform(
      easy, start + milliseconds(150), [] { return Clock::time_point::max(); }, 150);
  EXPECT_EQ(r.result, CURLE_OPERATION_TIMEDOUT);
  EXPECT_EQ(r.error, "timed out after 150 ms");
  EXPECT_LT(Clock::now() - start, milliseconds(1500));
}

TEST(CurlMulti, WakeupInterruptsATransferInFlight) {
  LoopbackServer server([](const std::string&) { return std::string(); });
  Multi multi;
  Easy easy;
  easy.setopt(CURLOPT_URL, server.url().c_str());
  std::atomic<std::int64_t> stop_at{Clock::time_point::max().time_since_epoch().count()};
  const auto stop = [&stop_at] { return Clock::time_point(Clock::duration(stop_at.load())); };
  std::thread stopper([&] {
    std::this_thread::sleep_for(milliseconds(100));
    stop_at = Clock::now().time_since_epoch().count();
    multi.wakeup();
  });
  const auto start = Clock::now();
  // The deadline is far away; without wakeup() the poll would still return within 1 s and see
  // stop(), so the bound below is tighter than that.
  const Response& r = multi.perform(easy, start + std::chrono::seconds(30), stop, 30000);
  const auto took = Clock::now() - start;
  stopper.join();
  EXPECT_EQ(r.result, CURLE_OPERATION_TIMEDOUT);
  EXPECT_EQ(r.error, "interrupted by shutdown (deadline reached)");
  EXPECT_LT(took, milliseconds(700));
}

}  // namespace
