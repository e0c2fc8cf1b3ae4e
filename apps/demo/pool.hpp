// A bounded pool of database connections shared by a worker's threads: a thread takes an idle
// connection or opens one while under the bound, else waits for one to come back.
#pragma once

#include <poll.h>

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
  // `socket_of` names a network connection's socket so an idle one can be checked before reuse;
  // leave it empty for connections without one (SQLite).
  Pool(std::size_t max, std::function<std::unique_ptr<Conn>()> open, std::function<int(const Conn&)> socket_of = {})
      : max_(max), open_(std::move(open)), socket_of_(std::move(socket_of)) {}

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
    while (!idle_.empty()) {
      auto c = std::move(idle_.back());
      idle_.pop_back();
      if (still_open(*c)) return Lease(*this, std::move(c));
      --open_count_;  // closed by the server while idle: open a fresh one instead of failing a request
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

  // PostgreSQL and Redis send nothing unasked to an idle client (no LISTEN, no RESP3 push here), so
  // a readable idle socket means the server closed it — usually after sending a FATAL such as
  // "terminating connection due to administrator command" on a restart. Sending a query on it would
  // fail the request; the kernel already knows, so ask it (one poll, no round trip).
  bool still_open(const Conn& c) const {
    if (!socket_of_) return true;
    pollfd p{socket_of_(c), POLLIN, 0};
    if (p.fd < 0) return false;
    return ::poll(&p, 1, 0) == 0;
  }

  std::size_t max_;
  std::function<std::unique_ptr<Conn>()> open_;
  std::function<int(const Conn&)> socket_of_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Conn>> idle_;
  std::size_t open_count_ = 0;
};

}  // namespace demo
