// A bounded pool of database connections shared by a worker's threads: a thread takes an idle
// connection or opens one while under the bound, else waits for one to come back.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

namespace demo {

template <class Conn>
class Pool {
 public:
  Pool(std::size_t max, std::function<std::unique_ptr<Conn>()> open) : max_(max), open_(std::move(open)) {}

  class Lease {
   public:
    Lease(Pool& p, std::unique_ptr<Conn> c) : pool_(p), conn_(std::move(c)) {}
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease() { pool_.give_back(std::move(conn_), broken_); }
    Conn& operator*() noexcept { return *conn_; }
    Conn* operator->() noexcept { return conn_.get(); }
    // The connection failed: close it instead of returning it.
    void discard() noexcept { broken_ = true; }

   private:
    Pool& pool_;
    std::unique_ptr<Conn> conn_;
    bool broken_ = false;
  };

  Lease acquire() {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [this] { return !idle_.empty() || open_count_ < max_; });
    if (!idle_.empty()) {
      auto c = std::move(idle_.back());
      idle_.pop_back();
      return Lease(*this, std::move(c));
    }
    ++open_count_;
    lock.unlock();
    try {
      return Lease(*this, open_());
    } catch (...) {
      lock.lock();
      --open_count_;
      cv_.notify_one();
      throw;
    }
  }

  void clear() {
    std::lock_guard lock(mutex_);
    open_count_ -= idle_.size();
    idle_.clear();
  }

 private:
  void give_back(std::unique_ptr<Conn> c, bool broken) {
    std::lock_guard lock(mutex_);
    if (broken || !c) {
      --open_count_;
      // A broken connection usually means the server restarted or the network dropped: the idle
      // connections from the same time are dead too. Close them now rather than failing one
      // request per stale connection later.
      open_count_ -= idle_.size();
      idle_.clear();
    } else {
      idle_.push_back(std::move(c));
    }
    cv_.notify_one();
  }

  std::size_t max_;
  std::function<std::unique_ptr<Conn>()> open_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Conn>> idle_;
  std::size_t open_count_ = 0;
};

}  // namespace demo
