// keel::sleep and keel::offload (include/keel/async.hpp): resumes on the calling thread's event
// loop, blocking work on its thread pool. The request's log context follows the coroutine.
#include "keel/async.hpp"

#include "runtime/event_loop.hpp"
#include "runtime/request_context.hpp"
#include "runtime/thread_pool.hpp"

namespace keel::detail {

void schedule_resume(std::chrono::nanoseconds delay, std::coroutine_handle<> h) {
  runtime::EventLoop* loop = runtime::EventLoop::current();
  if (runtime::RequestContext* ctx = runtime::current_request()) {
    // The request's log context follows the coroutine: current again while it runs.
    loop->post_at(runtime::Clock::now() + delay, [h, ctx] {
      runtime::ScopedRequestContext scoped(ctx);
      h.resume();
    });
    return;
  }
  loop->resume_at(runtime::Clock::now() + delay, h);
}

bool submit_blocking(std::function<void()> work, std::coroutine_handle<> h) {
  runtime::EventLoop* loop = runtime::EventLoop::current();
  runtime::ThreadPool* pool = runtime::ThreadPool::current();
  if (loop == nullptr || pool == nullptr) return false;       // outside a worker: like a full pool (PoolSaturated)
  runtime::RequestContext* ctx = runtime::current_request();  // offloaded work logs with the request's context too
  // The resume is the completion: a pool abandoned at shutdown (a job blocked past the bound)
  // never posts to a loop that may be gone.
  return pool->submit(
      [work = std::move(work), ctx] {
        runtime::ScopedRequestContext scoped(ctx);
        work();
      },
      [h, loop, ctx] {
        loop->post([h, ctx] {
          runtime::ScopedRequestContext scoped(ctx);
          h.resume();
        });
      });
}

}  // namespace keel::detail
