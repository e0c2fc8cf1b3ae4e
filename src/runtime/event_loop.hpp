// One epoll event loop per worker process. Edge-triggered I/O readiness, a timer heap for
// coroutine sleeps, a thread-safe post() for results coming back from the thread pool, and a
// per-iteration hook the HTTP server uses for its connection deadline lists.
#pragma once

#include <chrono>
#include <coroutine>
#include <cstdint>
#include <functional>
#include <mutex>
#include <queue>
#include <vector>

namespace keel::runtime {

using Clock = std::chrono::steady_clock;

class IoHandler {
 public:
  virtual void on_io(std::uint32_t events) = 0;

 protected:
  ~IoHandler() = default;
};

class EventLoop {
 public:
  EventLoop();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // The loop of the calling thread (set while run() is active on it).
  static EventLoop* current() noexcept;

  void add(int fd, std::uint32_t events, IoHandler* handler);
  void modify(int fd, std::uint32_t events, IoHandler* handler);
  void remove(int fd) noexcept;

  // Resumes h on this loop at (or soon after) `when`.
  void resume_at(Clock::time_point when, std::coroutine_handle<> h);
  // Runs fn on this loop at (or soon after) `when`.
  void post_at(Clock::time_point when, std::function<void()> fn);
  // Runs fn on this loop's thread; safe from any thread.
  void post(std::function<void()> fn);

  // Called once per iteration after I/O and timers; returns the next deadline it needs, if any.
  void set_tick(std::function<Clock::time_point()> tick) { tick_ = std::move(tick); }

  // Time cached at the start of the current iteration: cheap for deadline arithmetic.
  [[nodiscard]] Clock::time_point now() const noexcept { return now_; }

  void run();
  void stop() noexcept { running_ = false; }  // from the loop thread (signal handlers use post/fd)

 private:
  struct Timer {
    Clock::time_point when;
    std::uint64_t seq;
    std::coroutine_handle<> handle;
    std::function<void()> fn;  // instead of resuming a handle
    bool operator>(const Timer& o) const noexcept { return when != o.when ? when > o.when : seq > o.seq; }
  };
  class Wakeup;

  void run_posted();
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  bool running_ = false;
  Clock::time_point now_;
  std::uint64_t timer_seq_ = 0;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<>> timers_;
  std::function<Clock::time_point()> tick_;
  std::mutex posted_mutex_;
  std::vector<std::function<void()>> posted_;
  std::vector<std::function<void()>> running_posted_;
};

}  // namespace keel::runtime
