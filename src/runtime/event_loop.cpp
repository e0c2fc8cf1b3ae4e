#include "runtime/event_loop.hpp"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>
#include <system_error>

namespace keel::runtime {
namespace {
thread_local EventLoop* t_current = nullptr;
constexpr std::uint64_t kWakeTag = ~std::uint64_t{0};
}  // namespace

EventLoop* EventLoop::current() noexcept {
  return t_current;
}

EventLoop::EventLoop() : now_(Clock::now()) {
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) throw std::system_error(errno, std::generic_category(), "epoll_create1");
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kWakeTag;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev) != 0)
    throw std::system_error(errno, std::generic_category(), "epoll_ctl(eventfd)");
}

EventLoop::~EventLoop() {
  if (wake_fd_ >= 0) ::close(wake_fd_);
  if (epoll_fd_ >= 0) ::close(epoll_fd_);
}

void EventLoop::add(int fd, std::uint32_t events, IoHandler* handler) {
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = handler;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0)
    throw std::system_error(errno, std::generic_category(), "epoll_ctl(ADD)");
}

void EventLoop::modify(int fd, std::uint32_t events, IoHandler* handler) {
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = handler;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &ev) != 0)
    throw std::system_error(errno, std::generic_category(), "epoll_ctl(MOD)");
}

void EventLoop::remove(int fd) noexcept {
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
}

void EventLoop::post_at(Clock::time_point when, std::function<void()> fn) {
  timers_.push(Timer{when, timer_seq_++, {}, std::move(fn)});
}

void EventLoop::resume_at(Clock::time_point when, std::coroutine_handle<> h) {
  timers_.push(Timer{when, timer_seq_++, h, {}});
}

void EventLoop::post(std::function<void()> fn) {
  {
    std::lock_guard lock(posted_mutex_);
    posted_.push_back(std::move(fn));
  }
  const std::uint64_t one = 1;
  // A full counter (never in practice) still leaves the fd readable, so the wakeup is not lost.
  [[maybe_unused]] const ssize_t n = ::write(wake_fd_, &one, sizeof one);
}

void EventLoop::run_posted() {
  std::uint64_t count;
  [[maybe_unused]] const ssize_t n = ::read(wake_fd_, &count, sizeof count);
  {
    std::lock_guard lock(posted_mutex_);
    running_posted_.swap(posted_);
  }
  for (auto& fn : running_posted_) fn();
  running_posted_.clear();
}

void EventLoop::run() {
  t_current = this;
  running_ = true;
  constexpr int kMaxEvents = 256;
  epoll_event events[kMaxEvents];
  while (running_) {
    int timeout_ms = -1;
    Clock::time_point next = Clock::time_point::max();
    if (!timers_.empty()) next = timers_.top().when;
    if (tick_) next = std::min(next, tick_());
    if (!running_) break;
    if (next != Clock::time_point::max()) {
      const auto now = Clock::now();
      // Round up so a deadline is never woken for just before it expires.
      const auto ms = std::chrono::ceil<std::chrono::milliseconds>(next - now).count();
      timeout_ms = static_cast<int>(std::clamp<long long>(ms, 0, 60'000));
    }
    const int n = ::epoll_wait(epoll_fd_, events, kMaxEvents, timeout_ms);
    if (n < 0 && errno != EINTR) throw std::system_error(errno, std::generic_category(), "epoll_wait");
    now_ = Clock::now();
    for (int i = 0; i < n; ++i) {
      if (events[i].data.u64 == kWakeTag) {
        run_posted();
        continue;
      }
      static_cast<IoHandler*>(events[i].data.ptr)->on_io(events[i].events);
    }
    while (!timers_.empty() && timers_.top().when <= now_) {
      // priority_queue::top is const: move the callback out through a cast before popping.
      Timer t = std::move(const_cast<Timer&>(timers_.top()));
      timers_.pop();
      if (t.fn) {
        t.fn();
      } else {
        t.handle.resume();
      }
    }
  }
  t_current = nullptr;
}

}  // namespace keel::runtime
