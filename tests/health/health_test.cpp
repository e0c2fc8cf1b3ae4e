// Health's rounds on a bare event loop and thread pool (no server, no fork): concurrent checks,
// timeouts, critical versus degraded, the result cache, and a blocking check that is still
// running not being started twice.

#include "keel/health.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <stdexcept>
#include <thread>

#include "keel/async.hpp"
#include "runtime/detached.hpp"
#include "runtime/event_loop.hpp"
#include "runtime/thread_pool.hpp"

namespace {

using namespace std::chrono_literals;
using keel::HealthReport;

// Runs one readiness round on a loop of its own and returns its report.
class BareWorker {
 public:
  BareWorker() : pool_(4, 64) { keel::runtime::ThreadPool::set_current(&pool_); }
  // Every check of a round has a timeout timer that sleeps its whole timeout, done or not: the
  // loop runs until they have fired (no check here has more than 1 s), so no coroutine is left
  // suspended (LeakSanitizer would report its frame).
  ~BareWorker() {
    run_for(1100ms);
    keel::runtime::ThreadPool::set_current(nullptr);
    pool_.stop(std::chrono::steady_clock::now() + 2s);
  }

  HealthReport readiness(keel::Health& health) {
    std::optional<HealthReport> out;
    loop_.post([&] { run(health, out); });
    // A guard against a round that never ends: the test fails instead of hanging.
    loop_.post_at(keel::runtime::Clock::now() + 5s, [this] { loop_.stop(); });
    loop_.run();
    EXPECT_TRUE(out.has_value()) << "the round did not finish";
    return out.value_or(HealthReport{});
  }

  // Runs the loop for a while: what is still under way (a timed-out check) finishes.
  void run_for(std::chrono::milliseconds d) {
    loop_.post_at(keel::runtime::Clock::now() + d, [this] { loop_.stop(); });
    loop_.run();
  }

 private:
  keel::runtime::Detached run(keel::Health& health, std::optional<HealthReport>& out) {
    out = co_await health.readiness();
    loop_.stop();
  }

  keel::runtime::EventLoop loop_;
  keel::runtime::ThreadPool pool_;
};

const keel::CheckResult& result(const HealthReport& r, const std::string& name) {
  for (const auto& c : r.checks)
    if (c.name == name) return c;
  throw std::runtime_error("no check " + name);
}

TEST(HealthRound, ChecksRunConcurrentlyEachBoundedByItsTimeout) {
  // "db" (a pool thread) and "cache" (a coroutine on the loop) each wait until the other has
  // started: run one after the other, the first would give up and fail.
  std::atomic<int> started{0};
  keel::Health health;
  health.add("db",
             [&] {
               ++started;
               for (int i = 0; i < 100 && started < 2; ++i) std::this_thread::sleep_for(5ms);
               if (started < 2) throw std::runtime_error("ran alone");
             },
             {.timeout = 1s});
  health.add("cache",
             [&]() -> keel::Task<void> {
               ++started;
               for (int i = 0; i < 100 && started < 2; ++i) co_await keel::sleep(5ms);
               if (started < 2) throw std::runtime_error("ran alone");
             },
             {.timeout = 1s});
  health.add("slow", []() -> keel::Task<void> { co_await keel::sleep(400ms); }, {.timeout = 100ms});
  BareWorker w;
  const HealthReport r = w.readiness(health);
  EXPECT_EQ(r.status, HealthReport::Status::kFailing);
  EXPECT_TRUE(result(r, "db").ok) << result(r, "db").error;
  EXPECT_TRUE(result(r, "cache").ok) << result(r, "cache").error;
  EXPECT_FALSE(result(r, "slow").ok);
  EXPECT_EQ(result(r, "slow").error, "timed out after 100ms");
}

TEST(HealthRound, ANonCriticalFailureDegradesAndTheReasonIsKept) {
  keel::Health health;
  health.add("db", [] {});
  health.add("search", [] { throw std::runtime_error("connection refused"); }, {.critical = false});
  BareWorker w;
  const HealthReport r = w.readiness(health);
  EXPECT_EQ(r.status, HealthReport::Status::kDegraded);
  EXPECT_EQ(r.http_status(), 200);
  EXPECT_EQ(result(r, "search").error, "connection refused");
  EXPECT_FALSE(result(r, "search").critical);
}

TEST(HealthRound, ResultsAreCachedForTheTtl) {
  std::atomic<int> runs{0};
  keel::Health health;
  health.add("db", [&] { ++runs; });
  health.cache_ttl(1s);
  BareWorker w;
  w.readiness(health);
  w.readiness(health);
  EXPECT_EQ(runs.load(), 1) << "a second probe within the TTL ran the check again";
  std::this_thread::sleep_for(1100ms);
  w.readiness(health);
  EXPECT_EQ(runs.load(), 2);
}

TEST(HealthRound, ABlockingCheckStillRunningIsNotStartedAgain) {
  std::atomic<int> starts{0};
  std::atomic<bool> release{false};
  keel::Health health;
  health.add("stuck",
             [&] {
               ++starts;
               while (!release) std::this_thread::sleep_for(5ms);
             },
             {.timeout = 50ms});
  health.cache_ttl(1ms);
  BareWorker w;
  const HealthReport first = w.readiness(health);
  EXPECT_EQ(result(first, "stuck").error, "timed out after 50ms");
  std::this_thread::sleep_for(5ms);
  const HealthReport second = w.readiness(health);
  EXPECT_NE(result(second, "stuck").error.find("still running after"), std::string::npos)
      << result(second, "stuck").error;
  EXPECT_EQ(starts.load(), 1);
  release = true;  // the stuck call returns; ~BareWorker lets its completion run
}

}  // namespace
