#include "app/thread_pool.hpp"

#include <pthread.h>
#include <signal.h>

namespace keel {

ThreadPool::ThreadPool(int threads, std::size_t max_queue) : max_queue_(max_queue), thread_count_(threads) {}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

bool ThreadPool::submit(std::function<void()> job) {
  {
    std::lock_guard lock(mutex_);
    if (queue_.size() >= max_queue_ || stopping_) return false;
    // Threads start on first use: a worker that never offloads never pays for them, and the
    // fork of pre-forked workers happens before any thread exists.
    if (idle_ <= queue_.size() && threads_.size() < static_cast<std::size_t>(thread_count_))
      threads_.emplace_back([this] { work(); });
    queue_.push_back(std::move(job));
  }
  cv_.notify_one();
  return true;
}

std::size_t ThreadPool::queued() const {
  std::lock_guard lock(mutex_);
  return queue_.size();
}

void ThreadPool::work() {
  // Signals belong to the event-loop thread: SIGABRT on --timeout must interrupt the loop (to
  // print its stack), and SIGTERM/SIGINT are read from its signalfd.
  sigset_t all;
  sigfillset(&all);
  ::pthread_sigmask(SIG_BLOCK, &all, nullptr);
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock lock(mutex_);
      ++idle_;
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      --idle_;
      if (queue_.empty()) return;  // stopping, queue drained
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    job();
  }
}

}  // namespace keel
