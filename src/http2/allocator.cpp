#include "http2/allocator.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

namespace keel::http2 {
namespace {

constexpr std::size_t kHeader = 16;   // before each block: its size class (keeps 16-byte alignment)
constexpr std::size_t kStep = 32;     // size classes of 32 bytes...
constexpr std::size_t kClasses = 64;  // ...up to 2 KiB; larger blocks go straight to malloc
constexpr std::size_t kLarge = kClasses;
constexpr std::size_t kMaxCachedBytes = 4u << 20;  // per thread; beyond it, blocks are freed

struct FreeBlock {
  FreeBlock* next;
};

struct Pool {
  FreeBlock* lists[kClasses] = {};
  std::size_t cached_bytes = 0;
  ~Pool() {
    for (FreeBlock*& head : lists)
      while (head != nullptr) {
        FreeBlock* next = head->next;
        std::free(reinterpret_cast<char*>(head) - kHeader);
        head = next;
      }
  }
};

thread_local Pool t_pool;

std::size_t class_of(std::size_t size) noexcept {
  return size == 0 ? 0 : (size - 1) / kStep;
}

std::size_t& header_of(void* block) noexcept {
  return *reinterpret_cast<std::size_t*>(static_cast<char*>(block) - kHeader);
}

void* pool_malloc(std::size_t size, void*) {
  const std::size_t cls = class_of(size);
  if (cls < kClasses) {
    Pool& p = t_pool;
    if (FreeBlock* b = p.lists[cls]; b != nullptr) {
      p.lists[cls] = b->next;
      p.cached_bytes -= (cls + 1) * kStep;
      return b;
    }
    char* raw = static_cast<char*>(std::malloc(kHeader + (cls + 1) * kStep));
    if (raw == nullptr) return nullptr;
    *reinterpret_cast<std::size_t*>(raw) = cls;
    return raw + kHeader;
  }
  char* raw = static_cast<char*>(std::malloc(kHeader + size));
  if (raw == nullptr) return nullptr;
  *reinterpret_cast<std::size_t*>(raw) = kLarge + size;  // the size, for realloc
  return raw + kHeader;
}

void pool_free(void* block, void*) {
  if (block == nullptr) return;
  const std::size_t tag = header_of(block);
  if (tag < kClasses) {
    Pool& p = t_pool;
    const std::size_t bytes = (tag + 1) * kStep;
    if (p.cached_bytes + bytes <= kMaxCachedBytes) {
      auto* b = static_cast<FreeBlock*>(block);
      b->next = p.lists[tag];
      p.lists[tag] = b;
      p.cached_bytes += bytes;
      return;
    }
  }
  std::free(static_cast<char*>(block) - kHeader);
}

void* pool_calloc(std::size_t count, std::size_t size, void* user) {
  if (size != 0 && count > SIZE_MAX / size) return nullptr;
  void* block = pool_malloc(count * size, user);
  if (block != nullptr) std::memset(block, 0, count * size);
  return block;
}

void* pool_realloc(void* block, std::size_t size, void* user) {
  if (block == nullptr) return pool_malloc(size, user);
  if (size == 0) {
    pool_free(block, user);
    return nullptr;
  }
  const std::size_t tag = header_of(block);
  const std::size_t capacity = tag < kClasses ? (tag + 1) * kStep : tag - kLarge;
  if (size <= capacity) return block;
  void* grown = pool_malloc(size, user);
  if (grown == nullptr) return nullptr;
  std::memcpy(grown, block, capacity);
  pool_free(block, user);
  return grown;
}

nghttp2_mem g_memory{nullptr, pool_malloc, pool_free, pool_calloc, pool_realloc};

}  // namespace

nghttp2_mem* pooled_memory() noexcept {
  return &g_memory;
}

}  // namespace keel::http2
