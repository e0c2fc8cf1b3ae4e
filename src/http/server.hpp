// The HTTP server of one worker process: accepts on inherited listeners, owns the connections,
// their deadline lists, the Date cache and the blocking-call pool, and drains on SIGTERM.
#pragma once

#include <array>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "app/router.hpp"
#include "app/thread_pool.hpp"
#include "http/request_parser.hpp"
#include "http/response_writer.hpp"
#include "keel/app.hpp"
#include "net/event_loop.hpp"
#include "net/listener.hpp"

namespace keel::http {

class Connection;

// Deadline kinds. Every connection is in at most one list; each list has one fixed duration,
// so appending at the tail keeps it sorted and all operations are O(1).
enum class Deadline : std::uint8_t { kNone, kKeepAlive, kHeader, kBody, kWrite, kLinger, kCount };

class Server {
 public:
  Server(const ServerOptions& options, const Router& router, const std::vector<Middleware>& middleware,
         std::vector<net::Listener> listeners);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Serves until shutdown; returns the process exit code.
  int run();

  // Server-wide state the connections use.
  const ServerOptions& options() const noexcept { return options_; }
  const Router& router() const noexcept { return router_; }
  const std::vector<Middleware>& middleware() const noexcept { return middleware_; }
  net::EventLoop& loop() noexcept { return loop_; }
  const DateCache& date() const noexcept { return date_; }
  ThreadPool& pool() noexcept { return pool_; }
  bool draining() const noexcept { return draining_; }
  std::size_t& in_flight() noexcept { return in_flight_; }
  const ParserLimits& parser_limits() const noexcept { return parser_limits_; }

  void set_deadline(Connection& c, Deadline kind);
  // Called by a connection when it is finished; freed after the current loop iteration.
  void release(Connection* c);

  // The server of the calling thread (its worker).
  static Server* current() noexcept;

 private:
  class Acceptor;
  class SignalWatcher;
  struct DeadlineList {
    Connection* head = nullptr;
    Connection* tail = nullptr;
    net::Clock::duration duration{};
  };

  net::Clock::time_point tick();
  void on_accept(int listen_fd);
  void begin_shutdown(bool graceful);
  void unlink(Connection& c);

  const ServerOptions& options_;
  const Router& router_;
  const std::vector<Middleware>& middleware_;
  ParserLimits parser_limits_;
  net::EventLoop loop_;
  DateCache date_;
  ThreadPool pool_;
  std::vector<net::Listener> listeners_;
  std::vector<std::unique_ptr<Acceptor>> acceptors_;
  std::unique_ptr<SignalWatcher> signals_;
  std::array<DeadlineList, static_cast<std::size_t>(Deadline::kCount)> lists_{};
  std::vector<Connection*> graveyard_;
  std::size_t connections_ = 0;
  std::size_t in_flight_ = 0;
  int reserve_fd_ = -1;
  std::string over_capacity_;  // canned 503 for connections over --worker-connections
  bool accepting_ = true;
  net::Clock::time_point accept_resume_at_{};
  bool draining_ = false;
  net::Clock::time_point drain_deadline_{};
  std::size_t live_connections_ = 0;  // not yet released
  std::vector<Connection*> all_;      // every live connection (for drain)
  friend class Connection;
};

}  // namespace keel::http
