// ThreadPool shutdown is bounded: stop() joins what ends by the deadline and abandons (never
// joins) a thread still blocked in a job, whose completion then never runs (issue 14, 15b).
#include "runtime/thread_pool.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace {

using Clock = std::chrono::steady_clock;

// A gate a job waits on; opened by the test (or its end).
struct Gate {
  std::mutex m;
  std::condition_variable cv;
  bool open = false;
  bool entered = false;
  void wait() {
    std::unique_lock lock(m);
    entered = true;
    cv.notify_all();
    cv.wait(lock, [this] { return open; });
  }
  void wait_entered() {
    std::unique_lock lock(m);
    cv.wait(lock, [this] { return entered; });
  }
  void release() {
    const std::lock_guard lock(m);
    open = true;
    cv.notify_all();
  }
};

TEST(ThreadPoolTest, StopJoinsIdleThreadsAtOnce) {
  keel::runtime::ThreadPool pool(4, 16);
  std::atomic<int> ran{0}, done{0};
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(pool.submit([&ran] { ++ran; }, [&done] { ++done; }));
  while (done.load() < 4) std::this_thread::yield();
  const auto t0 = Clock::now();
  EXPECT_EQ(pool.stop(Clock::now() + std::chrono::seconds(5)), 0u);
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(1));
  EXPECT_EQ(ran.load(), 4);
  EXPECT_FALSE(pool.submit([] {}));  // stopped
}

// Sets a flag when destroyed: the pool destroys a job after deciding on its completion.
struct DestroyedFlag {
  std::atomic<bool>* flag;
  explicit DestroyedFlag(std::atomic<bool>* f) : flag(f) {}
  DestroyedFlag(const DestroyedFlag& other) : flag(other.flag) {}
  DestroyedFlag& operator=(const DestroyedFlag&) = delete;
  ~DestroyedFlag() {
    if (flag != nullptr) flag->store(true);
  }
};

TEST(ThreadPoolTest, AThreadBlockedPastTheDeadlineIsAbandonedNotJoined) {
  static Gate gate;  // outlives the abandoned thread
  static std::atomic<bool> left{false};
  {
    keel::runtime::ThreadPool pool(2, 16);
    ASSERT_TRUE(pool.submit([] {
      gate.wait();
      left = true;
    }));
    gate.wait_entered();
    const auto t0 = Clock::now();
    EXPECT_EQ(pool.stop(Clock::now() + std::chrono::milliseconds(100)), 1u);
    const auto waited = Clock::now() - t0;
    EXPECT_GE(waited, std::chrono::milliseconds(90));
    EXPECT_LT(waited, std::chrono::seconds(2));
    EXPECT_TRUE(keel::runtime::ThreadPool::any_abandoned());
    EXPECT_EQ(pool.stop(Clock::time_point::max()), 1u);  // a second stop (the destructor's) never waits
  }                                                      // ~ThreadPool returned although the thread is still blocked
  gate.release();
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  while (!left.load()) {  // no static is destroyed under the thread
    ASSERT_LT(Clock::now(), deadline);
    std::this_thread::yield();
  }
}

TEST(ThreadPoolTest, AnAbandonedJobsCompletionNeverRuns) {
  static Gate gate;
  static std::atomic<bool> completed{false};
  static std::atomic<bool> job_destroyed{false};
  {
    keel::runtime::ThreadPool pool(1, 16);
    {
      DestroyedFlag marker(&job_destroyed);
      ASSERT_TRUE(pool.submit([marker] { gate.wait(); }, [] { completed = true; }));
    }
    gate.wait_entered();
    job_destroyed = false;  // copies made while submitting are gone; the pool's own copy remains
    EXPECT_EQ(pool.stop(Clock::now() + std::chrono::milliseconds(10)), 1u);
  }
  gate.release();
  // The job is destroyed after its completion was decided: poll for that, then look.
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  while (!job_destroyed.load()) {
    ASSERT_LT(Clock::now(), deadline) << "the abandoned job never ended";
    std::this_thread::yield();
  }
  EXPECT_FALSE(completed.load()) << "the completion ran after the pool was abandoned";
}

}  // namespace
