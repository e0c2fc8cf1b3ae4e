// A bounded pool of threads for blocking calls offloaded from the event loop. The queue is
// bounded so an overloaded worker sheds load (503) instead of growing without limit.
//
// Shutdown is bounded: stop() waits for the running jobs at most until a deadline, then leaves
// the threads still blocked (a stuck database call, a sleep) behind instead of joining them, so
// no offloaded call can hold the process past --graceful-timeout or a SIGINT. The threads keep
// the pool's state alive (shared), and a job's completion (the resume posted to the event loop)
// never runs once the pool was abandoned: the loop it would post to may be gone.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace keel::runtime {

class ThreadPool {
 public:
  ThreadPool(int threads, std::size_t max_queue);
  // Joins the threads (stop() without a deadline), unless stop() already abandoned them.
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Returns false when the queue is full or the pool stopped. `done` (optional) runs on the
  // pool thread after `job`, unless the pool was abandoned in between.
  bool submit(std::function<void()> job, std::function<void()> done = {});
  [[nodiscard]] std::size_t queued() const;

  // Stops taking jobs, drops the queued ones that never started, waits until `deadline` for the
  // running ones, and detaches the threads still busy then. Returns how many were abandoned.
  std::size_t stop(std::chrono::steady_clock::time_point deadline);

  // The pool keel::offload submits to from the calling thread (an event-loop thread); null: none.
  static ThreadPool* current() noexcept;
  static void set_current(ThreadPool* pool) noexcept;

  // True once any pool in this process abandoned a thread: the process must end with _exit
  // (static destructors would run under a thread still executing application code).
  static bool any_abandoned() noexcept;

 private:
  struct State {
    std::mutex mutex;
    std::condition_variable cv;      // work arrives, or stopping
    std::condition_variable exited;  // a thread ended
    std::deque<std::pair<std::function<void()>, std::function<void()>>> queue;
    bool stopping = false;
    bool abandoned = false;
    std::size_t idle = 0;
    std::size_t live = 0;  // threads started and not yet ended
  };
  static void work(const std::shared_ptr<State>& state);

  std::shared_ptr<State> state_ = std::make_shared<State>();
  std::size_t max_queue_;
  std::vector<std::thread> threads_;
  int thread_count_;
};

}  // namespace keel::runtime
