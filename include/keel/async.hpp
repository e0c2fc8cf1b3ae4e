// Awaitables for coroutine handlers: a timer on the worker's event loop, and offloading a
// blocking call to the worker's bounded thread pool with the result delivered back on the loop.
//
// GCC 12 and older miscompile aggregate-initialised temporaries inside a co_await expression:
// a temporary lambda with captures, or a braced aggregate argument, is bit-copied and both
// copies are destroyed, so every capture or member with a destructor is destroyed twice
// (shared_ptr counts drop, strings are freed twice). No library can undo that: the second
// destruction happens in the caller's frame. keel therefore rejects the forms it can see at
// compile time on those compilers (offload of a temporary callable with a destructor, fetch of
// a temporary request) with a message naming the safe form; docs/api.md lists the rest.
#pragma once

#include <chrono>
#include <coroutine>
#include <exception>
#include <functional>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>

// 1 on compilers with the co_await temporary bug: seen with GCC 12.2; keel treats every GCC before 13
// as affected. clang is not affected.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#define KEEL_COAWAIT_TEMPORARY_BUG 1
#else
#define KEEL_COAWAIT_TEMPORARY_BUG 0
#endif

namespace keel {

namespace detail {
// Resumes h on the current worker's event loop after the delay.
void schedule_resume(std::chrono::nanoseconds delay, std::coroutine_handle<> h);
// Runs work on the thread pool, then resumes h on the loop. Returns false, without running
// anything, when the pool's queue is full.
bool submit_blocking(std::function<void()> work, std::coroutine_handle<> h);

// A temporary of type T inside a co_await expression is safe on every compiler when destroying
// it twice is harmless (trivially destructible) or when it was not aggregate-initialised.
template <class T>
inline constexpr bool kSafeCoAwaitTemporary = !KEEL_COAWAIT_TEMPORARY_BUG || std::is_lvalue_reference_v<T> ||
                                              std::is_trivially_destructible_v<std::remove_cvref_t<T>>;
}  // namespace detail

// co_await keel::sleep(50ms);
class SleepAwaiter {
 public:
  explicit SleepAwaiter(std::chrono::nanoseconds d) noexcept : delay_(d) {}
  bool await_ready() const noexcept { return delay_.count() <= 0; }
  void await_suspend(std::coroutine_handle<> h) { detail::schedule_resume(delay_, h); }
  void await_resume() const noexcept {}

 private:
  std::chrono::nanoseconds delay_;  // trivially destructible: safe as a temporary anywhere
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

// The awaiter of keel::offload. Its state (the callable, the arguments, the result) lives on the
// heap and is owned by one pointer, released exactly once whatever the compiler does with the
// awaiter temporary; the pool thread only ever sees that state.
//   F: the callable as passed: an lvalue reference (called in place) or a value (moved in).
template <class F, class... Args>
class OffloadAwaiter {
  using Callable = std::conditional_t<std::is_lvalue_reference_v<F>, F, std::remove_cvref_t<F>>;

 public:
  using Result = std::invoke_result_t<std::remove_reference_t<Callable>&, std::decay_t<Args>&...>;

  template <class G, class... A>
  explicit OffloadAwaiter(G&& fn, A&&... args) : state_(new State{std::forward<G>(fn), {std::forward<A>(args)...}}) {}
  OffloadAwaiter(OffloadAwaiter&& other) noexcept : state_(std::exchange(other.state_, nullptr)) {}
  OffloadAwaiter(const OffloadAwaiter&) = delete;
  OffloadAwaiter& operator=(const OffloadAwaiter&) = delete;
  OffloadAwaiter& operator=(OffloadAwaiter&&) = delete;
  ~OffloadAwaiter() { delete std::exchange(state_, nullptr); }

  bool await_ready() const noexcept { return false; }
  bool await_suspend(std::coroutine_handle<> h) {
    State* s = state_;
    const bool queued = detail::submit_blocking(
        [s] {
          try {
            if constexpr (std::is_void_v<Result>) {
              std::apply(s->fn, s->args);
            } else {
              s->result.emplace(std::apply(s->fn, s->args));
            }
          } catch (...) {
            s->error = std::current_exception();
          }
        },
        h);
    if (!queued) s->error = std::make_exception_ptr(PoolSaturated{});
    return queued;  // not queued: resume at once and throw
  }
  Result await_resume() {
    if (state_->error) std::rethrow_exception(state_->error);
    if constexpr (!std::is_void_v<Result>) return std::move(*state_->result);
  }

 private:
  struct State {
    Callable fn;
    std::tuple<std::decay_t<Args>...> args;
    std::conditional_t<std::is_void_v<Result>, bool, std::optional<Result>> result{};
    std::exception_ptr error{};
  };
  State* state_;
};

// Runs fn(args...) on the worker's thread pool; the coroutine resumes on the loop with its result
// (or its exception).
//   auto rows = co_await keel::offload([&] { return db.query(...); });
//   auto n = co_await keel::offload([](std::shared_ptr<Cache> c) { return c->size(); }, cache);
// An lvalue callable is called in place (it must outlive the co_await, as a local does); a
// temporary one is moved into the awaiter. Arguments are copied (or moved) into the awaiter.
template <class F, class... Args>
OffloadAwaiter<F, Args...> offload(F&& fn, Args&&... args) {
  static_assert(detail::kSafeCoAwaitTemporary<F>,
                "keel::offload: GCC 12 destroys the captures of a temporary lambda twice inside co_await "
                "(a compiler bug; clang is not affected). Pass the values as arguments of a lambda "
                "without captures: co_await keel::offload([](auto p) { ... }, p); or name the lambda: "
                "auto work = [p] { ... }; co_await keel::offload(work); (see docs/api.md, 'Compilers')");
  static_assert(((detail::kSafeCoAwaitTemporary<Args> || !std::is_aggregate_v<std::remove_cvref_t<Args>>)&&...),
                "keel::offload: GCC 12 destroys a braced temporary argument twice inside co_await (a compiler "
                "bug). Name the argument first: auto value = T{...}; co_await keel::offload(fn, value);");
  return OffloadAwaiter<F, Args...>(std::forward<F>(fn), std::forward<Args>(args)...);
}

}  // namespace keel
