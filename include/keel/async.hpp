// Awaitables for coroutine handlers: a timer on the worker's event loop, and offloading a
// blocking call to the worker's bounded thread pool with the result delivered back on the loop.
#pragma once

#include <chrono>
#include <coroutine>
#include <exception>
#include <functional>
#include <optional>
#include <type_traits>
#include <utility>

namespace keel {

namespace detail {
// Resumes h on the current worker's event loop after the delay.
void schedule_resume(std::chrono::nanoseconds delay, std::coroutine_handle<> h);
// Runs work on the thread pool, then resumes h on the loop. Returns false, without running
// anything, when the pool's queue is full.
bool submit_blocking(std::function<void()> work, std::coroutine_handle<> h);
}  // namespace detail

// co_await keel::sleep(50ms);
class SleepAwaiter {
 public:
  explicit SleepAwaiter(std::chrono::nanoseconds d) : delay_(d) {}
  bool await_ready() const noexcept { return delay_.count() <= 0; }
  void await_suspend(std::coroutine_handle<> h) { detail::schedule_resume(delay_, h); }
  void await_resume() const noexcept {}

 private:
  std::chrono::nanoseconds delay_;
};

template <class Rep, class Period>
SleepAwaiter sleep(std::chrono::duration<Rep, Period> d) {
  return SleepAwaiter(std::chrono::duration_cast<std::chrono::nanoseconds>(d));
}

// Thrown by co_await offload(...) when the thread pool's queue is full (the server answers 503).
class PoolSaturated : public std::exception {
 public:
  const char* what() const noexcept override { return "thread pool queue is full"; }
};

// auto rows = co_await keel::offload([&] { return db.query(...); });
template <class F>
class OffloadAwaiter {
 public:
  using Result = std::invoke_result_t<F&>;
  explicit OffloadAwaiter(F fn) : fn_(std::move(fn)) {}

  bool await_ready() const noexcept { return false; }
  bool await_suspend(std::coroutine_handle<> h) {
    const bool queued = detail::submit_blocking(
        [this] {
          try {
            if constexpr (std::is_void_v<Result>) {
              fn_();
            } else {
              result_.emplace(fn_());
            }
          } catch (...) {
            error_ = std::current_exception();
          }
        },
        h);
    if (!queued) error_ = std::make_exception_ptr(PoolSaturated{});
    return queued;  // not queued: resume at once and throw
  }
  Result await_resume() {
    if (error_) std::rethrow_exception(error_);
    if constexpr (!std::is_void_v<Result>) return std::move(*result_);
  }

 private:
  F fn_;
  std::conditional_t<std::is_void_v<Result>, bool, std::optional<Result>> result_{};
  std::exception_ptr error_;
};

template <class F>
OffloadAwaiter<std::decay_t<F>> offload(F&& fn) {
  return OffloadAwaiter<std::decay_t<F>>(std::forward<F>(fn));
}

}  // namespace keel
