// Tests of keel::checks. Network rule: every socket here is on 127.0.0.0/8 or ::1.
// Real PostgreSQL / Redis servers are optional: set KEEL_TEST_POSTGRES_URL / KEEL_TEST_REDIS_URL
// (e.g. from tests/process/deps.py) to run the happy-path cases against them.
#include "keel/checks.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// Runs f, expects it to throw std::runtime_error, returns the message.
template <class F>
std::string failure_of(F&& f) {
  try {
    f();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected std::runtime_error";
  return {};
}

template <class F>
milliseconds time_of(F&& f) {
  const auto start = Clock::now();
  f();
  return std::chrono::duration_cast<milliseconds>(Clock::now() - start);
}

class Socket {
 public:
  explicit Socket(int fd = -1) : fd_(fd) {}
  Socket(Socket&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Socket& operator=(Socket&& o) noexcept {
    std::swap(fd_, o.fd_);
    return *this;
  }
  ~Socket() {
    if (fd_ >= 0) ::close(fd_);
  }
  int fd() const { return fd_; }

 private:
  int fd_;
};

// A TCP socket listening on 127.0.0.1 (or ::1) at an ephemeral port; accepts nothing by itself.
class Listener {
 public:
  explicit Listener(int backlog = 16, bool ipv6 = false) {
    sock_ = Socket(::socket(ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (sock_.fd() < 0) throw std::runtime_error("socket");
    if (ipv6) {
      sockaddr_in6 a{};
      a.sin6_family = AF_INET6;
      a.sin6_addr = in6addr_loopback;
      if (::bind(sock_.fd(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) throw std::runtime_error("bind ::1");
    } else {
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      if (::bind(sock_.fd(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) throw std::runtime_error("bind");
    }
    if (::listen(sock_.fd(), backlog) != 0) throw std::runtime_error("listen");
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    ::getsockname(sock_.fd(), reinterpret_cast<sockaddr*>(&ss), &len);
    port_ =
        ntohs(ipv6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  }
  int fd() const { return sock_.fd(); }
  std::uint16_t port() const { return port_; }

 private:
  Socket sock_;
  std::uint16_t port_ = 0;
};

// A loopback port with nothing listening on it (bound once, then released).
std::uint16_t closed_port() {
  Listener l;
  return l.port();
}

// Accepts connections on a background thread and hands each one to handler (one at a time).
class Server {
 public:
  explicit Server(std::function<void(int)> handler) : handler_(std::move(handler)) {
    if (::pipe2(stop_, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
    thread_ = std::thread([this] { run(); });
  }
  ~Server() {
    const char b = 'x';
    (void)!::write(stop_[1], &b, 1);
    thread_.join();
    ::close(stop_[0]);
    ::close(stop_[1]);
  }
  std::uint16_t port() const { return listener_.port(); }

 private:
  void run() {
    for (;;) {
      pollfd fds[2] = {{listener_.fd(), POLLIN, 0}, {stop_[0], POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0) continue;
      if (fds[1].revents != 0) return;
      Socket conn(::accept4(listener_.fd(), nullptr, nullptr, SOCK_CLOEXEC));
      if (conn.fd() < 0) continue;
      timeval tv{2, 0};
      ::setsockopt(conn.fd(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      handler_(conn.fd());
    }
  }

  Listener listener_;
  std::function<void(int)> handler_;
  int stop_[2] = {-1, -1};
  std::thread thread_;
};

void write_all(int fd, const std::string& data) {
  std::size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return;
    off += static_cast<std::size_t>(n);
  }
}

// Appends to buffer until `done(buffer)` or EOF / the 2 s receive timeout.
void read_until(int fd, std::string& buffer, const std::function<bool(const std::string&)>& done) {
  char chunk[4096];
  while (!done(buffer)) {
    const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n <= 0) return;
    buffer.append(chunk, static_cast<std::size_t>(n));
  }
}

bool has_head(const std::string& b) {
  return b.find("\r\n\r\n") != std::string::npos;
}

// An HTTP server answering every request with the given status line and no body.
Server http_server(std::string status_line) {
  return Server([status_line](int fd) {
    std::string request;
    read_until(fd, request, has_head);
    write_all(fd, "HTTP/1.1 " + status_line + "\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
  });
}

// Number of complete RESP commands (arrays of bulk strings) at the start of b.
std::size_t resp_commands(const std::string& b) {
  std::size_t count = 0;
  std::size_t pos = 0;
  const auto read_line = [&](char type, long& value) {
    if (pos >= b.size() || b[pos] != type) return false;
    const auto end = b.find("\r\n", pos);
    if (end == std::string::npos) return false;
    value = std::strtol(b.c_str() + pos + 1, nullptr, 10);
    pos = end + 2;
    return true;
  };
  for (;;) {
    long items = 0;
    if (!read_line('*', items)) return count;
    for (long i = 0; i < items; ++i) {
      long len = 0;
      if (!read_line('$', len)) return count;
      if (b.size() < pos + static_cast<std::size_t>(len) + 2) return count;
      pos += static_cast<std::size_t>(len) + 2;
    }
    ++count;
  }
}

// A fake Redis server: the n-th command received on a connection gets answers[n] (raw RESP).
// Records the bytes received on the latest connection.
struct FakeRedis {
  explicit FakeRedis(std::vector<std::string> answers)
      : server([this, answers](int fd) {
          std::string seen;
          for (std::size_t i = 0; i < answers.size(); ++i) {
            read_until(fd, seen, [&](const std::string& b) { return resp_commands(b) > i; });
            {
              // Recorded before answering: the client returns as soon as it has the answer.
              std::lock_guard lock(mutex);
              received = seen;
            }
            if (resp_commands(seen) <= i) break;
            write_all(fd, answers[i]);
          }
        }) {}
  std::string received_bytes() {
    std::lock_guard lock(mutex);
    return received;
  }
  std::mutex mutex;
  std::string received;
  Server server;
};

// A loopback listener nobody accepts from, with its queue full: with backlog 0 Linux queues one
// connection and then drops further SYNs, so a new connect stays pending (SYN_SENT). `pending`
// tells whether that was observed (a probe connect still pending after 200 ms).
struct FullBacklog {
  FullBacklog() : listener(0) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(listener.port());
    for (int i = 0; i < 8 && !pending; ++i) {
      Socket s(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
      ::connect(s.fd(), reinterpret_cast<sockaddr*>(&a), sizeof a);
      pollfd p{s.fd(), POLLOUT, 0};
      pending = ::poll(&p, 1, 200) == 0;
      fillers.push_back(std::move(s));
    }
  }
  std::uint16_t port() const { return listener.port(); }

  Listener listener;
  std::vector<Socket> fillers;
  bool pending = false;
};

// The timeout of the bounded cases, and how far past it a check may return.
constexpr milliseconds kShort{300};
constexpr milliseconds kSlack{200};

std::filesystem::path temp_file(const std::string& name) {
  return std::filesystem::temp_directory_path() / ("keel-checks-" + std::to_string(::getpid()) + "-" + name);
}

// ------------------------------------------------------------------------------------------------
// tcp_connect
// ------------------------------------------------------------------------------------------------

TEST(TcpConnectCheck, SucceedsAgainstAListeningSocket) {
  Listener l;
  EXPECT_NO_THROW(keel::checks::tcp_connect("127.0.0.1", l.port(), milliseconds(1000)));
}

TEST(TcpConnectCheck, SucceedsOverIpv6Loopback) {
  std::unique_ptr<Listener> l;
  try {
    l = std::make_unique<Listener>(16, true);
  } catch (const std::exception&) {
    GTEST_SKIP() << "no IPv6 loopback here";
  }
  EXPECT_NO_THROW(keel::checks::tcp_connect("::1", l->port(), milliseconds(1000)));
}

TEST(TcpConnectCheck, ResolvesLocalhost) {
  Listener l;  // 127.0.0.1 only: if localhost resolves to ::1 first, that refusal is skipped over
  EXPECT_NO_THROW(keel::checks::tcp_connect("localhost", l.port(), milliseconds(1000)));
}

TEST(TcpConnectCheck, RefusedOnAClosedPort) {
  const auto port = closed_port();
  std::string message;
  const auto elapsed =
      time_of([&] { message = failure_of([&] { keel::checks::tcp_connect("127.0.0.1", port, milliseconds(2000)); }); });
  EXPECT_EQ(message, "connect 127.0.0.1:" + std::to_string(port) + ": Connection refused");
  EXPECT_LT(elapsed, milliseconds(500));
}

TEST(TcpConnectCheck, RespectsTheTimeoutWhenTheListenBacklogIsFull) {
  FullBacklog full;
  if (!full.pending) GTEST_SKIP() << "this kernel completes connects to a full backlog";
  std::string message;
  const auto elapsed =
      time_of([&] { message = failure_of([&] { keel::checks::tcp_connect("127.0.0.1", full.port(), kShort); }); });
  EXPECT_EQ(message, "connect 127.0.0.1:" + std::to_string(full.port()) + ": timed out after 300ms");
  EXPECT_GE(elapsed, kShort);
  EXPECT_LT(elapsed, kShort + kSlack);
}

TEST(TcpConnectCheck, AcceptsABracketedIpv6Address) {
  std::unique_ptr<Listener> l;
  try {
    l = std::make_unique<Listener>(16, true);
  } catch (const std::exception&) {
    GTEST_SKIP() << "no IPv6 loopback here";
  }
  EXPECT_NO_THROW(keel::checks::tcp_connect("[::1]", l->port(), milliseconds(1000)));
}

// The connect phase of every client check is bounded too.
TEST(ChecksConnectPhase, EveryCheckRespectsTheTimeoutWhenTheListenBacklogIsFull) {
  FullBacklog full;
  if (!full.pending) GTEST_SKIP() << "this kernel completes connects to a full backlog";
  const std::string port = std::to_string(full.port());
  const std::vector<std::pair<std::string, std::function<void()>>> checks = {
      {"timed out after 300ms", [&] { keel::checks::http_get("http://127.0.0.1:" + port + "/", kShort); }},
      {"connect: timed out after 300ms",
       [&] { keel::checks::postgres("postgresql://app:s3cr3t@127.0.0.1:" + port + "/db", kShort); }},
      {"connect 127.0.0.1:" + port + ": timed out after 300ms",
       [&] { keel::checks::redis_ping("redis://:s3cr3t@127.0.0.1:" + port, kShort); }},
  };
  for (const auto& expected_and_check : checks) {  // no structured binding: clang 14 cannot capture one
    const std::string& expected = expected_and_check.first;
    std::string message;
    const auto elapsed = time_of([&] { message = failure_of(expected_and_check.second); });
    EXPECT_EQ(message, expected);
    EXPECT_LT(elapsed, kShort + kSlack) << expected;
  }
}

TEST(TcpConnectCheck, RejectsANonPositiveTimeout) {
  Listener l;
  EXPECT_THROW(keel::checks::tcp_connect("127.0.0.1", l.port(), milliseconds(0)), std::runtime_error);
}

// ------------------------------------------------------------------------------------------------
// http_get
// ------------------------------------------------------------------------------------------------

TEST(HttpGetCheck, HealthyOn200) {
  Server s = http_server("200 OK");
  EXPECT_NO_THROW(
      keel::checks::http_get("http://127.0.0.1:" + std::to_string(s.port()) + "/health", milliseconds(2000)));
}

TEST(HttpGetCheck, HealthyOnARedirectWithoutFollowingIt) {
  Server s = Server([](int fd) {
    std::string request;
    read_until(fd, request, has_head);
    write_all(fd, "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/\r\nContent-Length: 0\r\n\r\n");
  });
  EXPECT_NO_THROW(keel::checks::http_get("http://127.0.0.1:" + std::to_string(s.port()) + "/", milliseconds(2000)));
}

TEST(HttpGetCheck, FailsOn503NamingTheStatus) {
  Server s = http_server("503 Service Unavailable");
  const auto message = failure_of(
      [&] { keel::checks::http_get("http://127.0.0.1:" + std::to_string(s.port()) + "/health", milliseconds(2000)); });
  EXPECT_EQ(message, "HTTP 503");
}

TEST(HttpGetCheck, FailsOn404) {
  Server s = http_server("404 Not Found");
  EXPECT_EQ(failure_of([&] {
              keel::checks::http_get("http://127.0.0.1:" + std::to_string(s.port()) + "/", milliseconds(2000));
            }),
            "HTTP 404");
}

TEST(HttpGetCheck, TimesOutWhenTheServerNeverAnswers) {
  Listener silent;  // the handshake completes in the kernel; nobody reads or answers
  std::string message;
  const auto elapsed = time_of([&] {
    message =
        failure_of([&] { keel::checks::http_get("http://127.0.0.1:" + std::to_string(silent.port()) + "/", kShort); });
  });
  EXPECT_EQ(message, "timed out after 300ms");
  EXPECT_GE(elapsed, kShort - milliseconds(5));
  EXPECT_LT(elapsed, kShort + kSlack);
}

TEST(HttpGetCheck, RefusedNamesTheAddressAndNeverThePassword) {
  const auto port = closed_port();
  const auto message = failure_of([&] {
    keel::checks::http_get("http://admin:s3cr3t@127.0.0.1:" + std::to_string(port) + "/", milliseconds(2000));
  });
  EXPECT_EQ(message, "connect 127.0.0.1:" + std::to_string(port) + ": Connection refused");
  EXPECT_EQ(message.find("s3cr3t"), std::string::npos);
}

TEST(HttpGetCheck, RejectsOtherSchemes) {
  const auto message = failure_of([] { keel::checks::http_get("file:///etc/passwd", milliseconds(1000)); });
  EXPECT_FALSE(message.empty());
}

// ------------------------------------------------------------------------------------------------
// sqlite
// ------------------------------------------------------------------------------------------------

TEST(SqliteCheck, HealthyOnAnExistingDatabaseFileInEveryForm) {
  // A zero-length file is a valid, empty SQLite database.
  const auto path = temp_file("ok.db");
  { std::ofstream(path.string()).flush(); }
  EXPECT_NO_THROW(keel::checks::sqlite(path.string(), milliseconds(1000)));
  EXPECT_NO_THROW(keel::checks::sqlite("sqlite:" + path.string(), milliseconds(1000)));
  EXPECT_NO_THROW(keel::checks::sqlite("sqlite://" + path.string(), milliseconds(1000)));
  std::filesystem::remove(path);
}

TEST(SqliteCheck, FailsOnAMissingFileWithoutCreatingIt) {
  const auto path = temp_file("missing.db");
  std::filesystem::remove(path);
  const auto message = failure_of([&] { keel::checks::sqlite(path.string(), milliseconds(1000)); });
  EXPECT_EQ(message, "open " + path.string() + ": unable to open database file");
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(SqliteCheck, FailsOnAFileThatIsNotADatabase) {
  const auto path = temp_file("not.db");
  {
    std::ofstream out(path.string());
    for (int i = 0; i < 64; ++i) out << "this is certainly not an SQLite database file\n";
  }
  const auto message = failure_of([&] { keel::checks::sqlite("sqlite:" + path.string(), milliseconds(1000)); });
  EXPECT_EQ(message, "PRAGMA schema_version on " + path.string() + ": file is not a database");
  std::filesystem::remove(path);
}

// ------------------------------------------------------------------------------------------------
// postgres
// ------------------------------------------------------------------------------------------------

TEST(PostgresCheck, ClosedPortFailsFastNamingTheRefusalWithoutThePassword) {
  const auto port = std::to_string(closed_port());
  for (const std::string& conninfo :
       std::vector<std::string>{"postgresql://app:s3cr3t@127.0.0.1:" + port + "/appdb",
                                "postgres://app:s3cr3t@127.0.0.1:" + port + "/appdb?sslmode=disable",
                                "host=127.0.0.1 port=" + port + " user=app password=s3cr3t dbname=appdb"}) {
    std::string message;
    const auto elapsed =
        time_of([&] { message = failure_of([&] { keel::checks::postgres(conninfo, milliseconds(2000)); }); });
    EXPECT_NE(message.find("Connection refused"), std::string::npos) << message;
    EXPECT_NE(message.find(port), std::string::npos) << message;
    EXPECT_EQ(message.find("s3cr3t"), std::string::npos) << message;
    EXPECT_EQ(message.rfind("connect: ", 0), 0u) << message;
    EXPECT_LT(elapsed, milliseconds(500));
  }
}

TEST(PostgresCheck, SilentServerTimesOutWithinTheDeadline) {
  Listener silent;
  for (const char* sslmode : {"disable", "prefer"}) {
    std::string message;
    const auto elapsed = time_of([&] {
      message = failure_of([&] {
        keel::checks::postgres(
            "postgresql://app:s3cr3t@127.0.0.1:" + std::to_string(silent.port()) + "/db?sslmode=" + sslmode, kShort);
      });
    });
    EXPECT_EQ(message, "connect: timed out after 300ms");
    EXPECT_GE(elapsed, kShort - milliseconds(5));
    EXPECT_LT(elapsed, kShort + kSlack);
  }
}

TEST(PostgresCheck, InvalidConnectionStringsNeverEchoThePassword) {
  for (const std::string& conninfo :
       std::vector<std::string>{"postgresql://app:s3cr3t@[::1/db", "host=127.0.0.1 password=s3cr3t bogus",
                                "host=127.0.0.1 password='s3 cr3t' nosuchkey=1"}) {
    const auto message = failure_of([&] { keel::checks::postgres(conninfo, milliseconds(1000)); });
    EXPECT_EQ(message.rfind("invalid connection string: ", 0), 0u) << message;
    EXPECT_EQ(message.find("s3cr3t"), std::string::npos) << message;
    EXPECT_EQ(message.find("s3 cr3t"), std::string::npos) << message;
  }
}

TEST(PostgresCheck, HealthyAgainstARealServer) {
  const char* url = std::getenv("KEEL_TEST_POSTGRES_URL");
  if (url == nullptr || *url == '\0') GTEST_SKIP() << "KEEL_TEST_POSTGRES_URL is not set";
  EXPECT_NO_THROW(keel::checks::postgres(url, milliseconds(2000)));
  std::string other_db(url);
  other_db = other_db.substr(0, other_db.rfind('/')) + "/no_such_db";
  const auto message = failure_of([&] { keel::checks::postgres(other_db, milliseconds(2000)); });
  EXPECT_NE(message.find("no_such_db"), std::string::npos) << message;
}

// ------------------------------------------------------------------------------------------------
// redis_ping
// ------------------------------------------------------------------------------------------------

TEST(RedisPingCheck, ClosedPortFailsFastNamingTheRefusalWithoutThePassword) {
  const auto port = std::to_string(closed_port());
  for (const std::string& url : std::vector<std::string>{
           "redis://:s3cr3t@127.0.0.1:" + port, "redis://app:s3cr3t@127.0.0.1:" + port + "/2", "127.0.0.1:" + port}) {
    std::string message;
    const auto elapsed =
        time_of([&] { message = failure_of([&] { keel::checks::redis_ping(url, milliseconds(2000)); }); });
    EXPECT_EQ(message, "connect 127.0.0.1:" + port + ": Connection refused");
    EXPECT_LT(elapsed, milliseconds(500));
  }
}

TEST(RedisPingCheck, HealthyWhenPingAnswersPong) {
  FakeRedis fake({"+PONG\r\n"});
  EXPECT_NO_THROW(
      keel::checks::redis_ping("redis://127.0.0.1:" + std::to_string(fake.server.port()), milliseconds(2000)));
}

TEST(RedisPingCheck, AuthenticatesAndSelectsTheDatabase) {
  FakeRedis fake({"+OK\r\n", "+OK\r\n", "+PONG\r\n"});
  EXPECT_NO_THROW(keel::checks::redis_ping("redis://:p%40ss@127.0.0.1:" + std::to_string(fake.server.port()) + "/3",
                                           milliseconds(2000)));
  EXPECT_EQ(fake.received_bytes(),
            "*2\r\n$4\r\nAUTH\r\n$4\r\np@ss\r\n*2\r\n$6\r\nSELECT\r\n$1\r\n3\r\n*1\r\n$4\r\nPING\r\n");
}

TEST(RedisPingCheck, PingErrorIsReported) {
  FakeRedis fake({"-ERR unknown command 'PING'\r\n"});
  EXPECT_EQ(failure_of([&] {
              keel::checks::redis_ping("127.0.0.1:" + std::to_string(fake.server.port()), milliseconds(2000));
            }),
            "PING answered: ERR unknown command 'PING'");
}

TEST(RedisPingCheck, AuthFailureNeverShowsThePassword) {
  FakeRedis fake({"-WRONGPASS invalid username-password pair or user is disabled.\r\n"});
  const auto message = failure_of([&] {
    keel::checks::redis_ping("redis://default:s3cr3t@127.0.0.1:" + std::to_string(fake.server.port()),
                             milliseconds(2000));
  });
  EXPECT_EQ(message, "AUTH failed: WRONGPASS invalid username-password pair or user is disabled.");
}

TEST(RedisPingCheck, SilentServerTimesOutWithinTheDeadline) {
  Listener silent;
  std::string message;
  const auto elapsed = time_of([&] {
    message =
        failure_of([&] { keel::checks::redis_ping("redis://127.0.0.1:" + std::to_string(silent.port()), kShort); });
  });
  EXPECT_EQ(message, "PING: timed out after 300ms");
  EXPECT_LT(elapsed, kShort + kSlack);
}

TEST(RedisPingCheck, RejectsBadUrlsWithoutThePassword) {
  const auto scheme =
      failure_of([] { keel::checks::redis_ping("rediss://:s3cr3t@127.0.0.1:6380", milliseconds(500)); });
  EXPECT_NE(scheme.find("unsupported scheme"), std::string::npos) << scheme;
  const auto port = failure_of([] { keel::checks::redis_ping("redis://:s3cr3t@127.0.0.1:99999", milliseconds(500)); });
  EXPECT_EQ(port, "invalid port in redis URL redis://:****@127.0.0.1:99999");
}

TEST(RedisPingCheck, HealthyAgainstARealServer) {
  const char* url = std::getenv("KEEL_TEST_REDIS_URL");
  if (url == nullptr || *url == '\0') GTEST_SKIP() << "KEEL_TEST_REDIS_URL is not set";
  EXPECT_NO_THROW(keel::checks::redis_ping(url, milliseconds(2000)));
}

}  // namespace
