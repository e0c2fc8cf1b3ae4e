// A bounded pool of threads for blocking calls offloaded from the event loop. The queue is
// bounded so an overloaded worker sheds load (503) instead of growing without limit.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace keel {

class ThreadPool {
 public:
  ThreadPool(int threads, std::size_t max_queue);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Returns false when the queue is full.
  bool submit(std::function<void()> job);
  [[nodiscard]] std::size_t queued() const;

 private:
  void work();
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  std::size_t max_queue_;
  bool stopping_ = false;
  std::size_t idle_ = 0;
  std::vector<std::thread> threads_;
  int thread_count_;
};

}  // namespace keel
