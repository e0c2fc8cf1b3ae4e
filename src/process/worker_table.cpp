#include "process/worker_table.hpp"

#include <sys/mman.h>

#include <chrono>
#include <new>
#include <system_error>

namespace keel::process {
namespace {
std::span<WorkerSlot> g_slots;
}  // namespace

std::span<WorkerSlot> all_worker_slots() noexcept {
  return g_slots;
}

WorkerTable::WorkerTable() {
  void* p = ::mmap(nullptr, sizeof(WorkerSlot) * kSlots, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "mmap(worker table)");
  slots_ = static_cast<WorkerSlot*>(p);
  for (std::size_t i = 0; i < kSlots; ++i) new (&slots_[i]) WorkerSlot();
  g_slots = std::span<WorkerSlot>(slots_, kSlots);
}

WorkerTable::~WorkerTable() {
  if (g_slots.data() == slots_) g_slots = {};
  if (slots_ != nullptr) ::munmap(slots_, sizeof(WorkerSlot) * kSlots);
}

WorkerSlot* WorkerTable::acquire() noexcept {
  for (std::size_t i = 0; i < kSlots; ++i) {
    if (slots_[i].get_state() == WorkerState::kFree) {
      slots_[i].pid.store(0);
      slots_[i].requests.store(0);
      slots_[i].connections.store(0);
      slots_[i].heartbeat_ms.store(steady_ms());
      slots_[i].set_state(WorkerState::kBooting);
      return &slots_[i];
    }
  }
  return nullptr;
}

void WorkerTable::release(WorkerSlot& slot) noexcept {
  slot.pid.store(0);
  slot.set_state(WorkerState::kFree);
}

std::int64_t steady_ms() noexcept {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace keel::process
