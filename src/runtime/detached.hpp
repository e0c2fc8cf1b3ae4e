// A fire-and-forget coroutine: starts at once and frees its frame when it finishes. For work that
// nobody awaits — a handler's task driven to completion for its connection, health-check runners
// and their timeout timers. The body must catch everything itself.
#pragma once

#include <coroutine>
#include <exception>

namespace keel::runtime {

struct Detached {
  struct promise_type {
    Detached get_return_object() noexcept { return {}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }
  };
};

}  // namespace keel::runtime
