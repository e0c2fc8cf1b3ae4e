// Shared memory between the master and its workers, mapped before the first fork: one slot per
// worker process with its heartbeat, request count and lifecycle state. The worker writes with
// relaxed atomic stores on its own cache line, so the hot path pays nothing measurable, and the
// master reads without any system call. (A temp file mtime, as gunicorn uses, costs a syscall per
// beat; a pipe needs the master to drain it.)
#pragma once

#include <sys/types.h>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>

namespace keel::process {

enum class WorkerState : int {
  kFree = 0,
  kBooting = 1,   // forked, not yet accepting
  kReady = 2,     // accepting and serving
  kRetiring = 3,  // asks the master for a replacement (max requests, lifetime, memory)
  kDraining = 4,  // stopped accepting, finishing in-flight requests
};

struct alignas(64) WorkerSlot {
  std::atomic<pid_t> pid{0};
  std::atomic<int> state{0};
  std::atomic<std::int64_t> heartbeat_ms{0};  // steady clock, milliseconds
  std::atomic<std::uint64_t> requests{0};
  std::atomic<std::uint64_t> connections{0};  // open client connections (siblings read it at their cap)

  void set_state(WorkerState s) noexcept { state.store(static_cast<int>(s), std::memory_order_release); }
  WorkerState get_state() const noexcept { return static_cast<WorkerState>(state.load(std::memory_order_acquire)); }
};

class WorkerTable {
 public:
  static constexpr std::size_t kSlots = 1024;
  WorkerTable();
  ~WorkerTable();
  WorkerTable(const WorkerTable&) = delete;
  WorkerTable& operator=(const WorkerTable&) = delete;

  WorkerSlot& operator[](std::size_t i) noexcept { return slots_[i]; }
  // A free slot, marked booting; nullptr when all are taken.
  WorkerSlot* acquire() noexcept;
  void release(WorkerSlot& slot) noexcept;
  [[nodiscard]] std::size_t index_of(const WorkerSlot& slot) const noexcept {
    return static_cast<std::size_t>(&slot - slots_);
  }

 private:
  WorkerSlot* slots_ = nullptr;
};

std::int64_t steady_ms() noexcept;

// Every slot of this process's master (mapped before the fork: the same addresses in all its
// workers), so a worker can see its siblings; empty without a master.
std::span<WorkerSlot> all_worker_slots() noexcept;

// sigqueue() value the master attaches to the SIGTERM that stops the whole service (workers then
// close the shared listening sockets for good), as opposed to a plain SIGTERM retiring one worker.
inline constexpr int kStopServiceSignalValue = 1;

}  // namespace keel::process
