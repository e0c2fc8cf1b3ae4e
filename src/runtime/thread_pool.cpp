#include "runtime/thread_pool.hpp"

#include <pthread.h>
#include <signal.h>

#include <atomic>

namespace keel::runtime {
namespace {
std::atomic<bool> g_abandoned{false};
}  // namespace

ThreadPool::ThreadPool(int threads, std::size_t max_queue) : max_queue_(max_queue), thread_count_(threads) {}

ThreadPool::~ThreadPool() {
  stop(std::chrono::steady_clock::time_point::max());
}

bool ThreadPool::submit(std::function<void()> job, std::function<void()> done) {
  {
    std::lock_guard lock(state_->mutex);
    if (state_->queue.size() >= max_queue_ || state_->stopping) return false;
    // Threads start on first use: a worker that never offloads never pays for them, and the
    // fork of pre-forked workers happens before any thread exists.
    if (state_->idle <= state_->queue.size() && threads_.size() < static_cast<std::size_t>(thread_count_)) {
      ++state_->live;
      threads_.emplace_back([state = state_] { work(state); });
    }
    state_->queue.emplace_back(std::move(job), std::move(done));
  }
  state_->cv.notify_one();
  return true;
}

std::size_t ThreadPool::queued() const {
  std::lock_guard lock(state_->mutex);
  return state_->queue.size();
}

std::size_t ThreadPool::stop(std::chrono::steady_clock::time_point deadline) {
  std::size_t stuck = 0;
  {
    std::unique_lock lock(state_->mutex);
    if (state_->abandoned) return state_->live;  // stopped before: never wait for those again
    state_->stopping = true;
    state_->queue.clear();  // never started: nothing waits for them once the loop has stopped
    state_->cv.notify_all();
    const auto all_ended = [this] { return state_->live == 0; };
    if (deadline == std::chrono::steady_clock::time_point::max())
      state_->exited.wait(lock, all_ended);
    else
      state_->exited.wait_until(lock, deadline, all_ended);
    stuck = state_->live;
    if (stuck != 0) state_->abandoned = true;  // no completion runs from now on
  }
  for (auto& t : threads_) {
    if (stuck == 0)
      t.join();
    else
      t.detach();  // the state is shared: a thread that ends later touches nothing freed
  }
  threads_.clear();
  if (stuck != 0) g_abandoned.store(true);
  return stuck;
}

namespace {
thread_local ThreadPool* t_current = nullptr;
}  // namespace

ThreadPool* ThreadPool::current() noexcept {
  return t_current;
}

void ThreadPool::set_current(ThreadPool* pool) noexcept {
  t_current = pool;
}

bool ThreadPool::any_abandoned() noexcept {
  return g_abandoned.load();
}

void ThreadPool::work(const std::shared_ptr<State>& state) {
  // Signals belong to the event-loop thread: SIGABRT on --timeout must interrupt the loop (to
  // print its stack), and SIGTERM/SIGINT are read from its signalfd.
  sigset_t all;
  sigfillset(&all);
  ::pthread_sigmask(SIG_BLOCK, &all, nullptr);
  std::unique_lock lock(state->mutex);
  for (;;) {
    ++state->idle;
    state->cv.wait(lock, [&state] { return state->stopping || !state->queue.empty(); });
    --state->idle;
    if (state->queue.empty()) break;  // stopping, queue empty
    auto [job, done] = std::move(state->queue.front());
    state->queue.pop_front();
    lock.unlock();
    job();
    lock.lock();
    // Under the lock: stop() either sees this thread still running (and marks the pool
    // abandoned before anything it posts to goes away) or waits for this completion to finish.
    if (done && !state->abandoned) done();
  }
  --state->live;
  state->exited.notify_all();
}

}  // namespace keel::runtime
