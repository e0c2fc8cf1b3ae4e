// The memory layout of the metrics arena and the atomic accessors shared by the hot path
// (children.cpp), the registry and the exposition (registry.cpp).
//
// Everything in a region is 8-byte words accessed through std::atomic_ref (relaxed unless noted),
// so one process can read what another writes without a data race.
//
//   arena:   [header page: seq, magic, regions, region_bytes, schema offset, schema bytes, master
//            pid, generation, state, absorbed parent, absorbed next] [worker region 0] ...
//            [worker region n-1] [master] [retired totals] [absorbed totals] [schema: JSON]
//            The schema makes an arena readable by another binary: during an upgrade each
//            generation merges the other's arena (a memfd handed over at exec) into its scrapes.
//   region:  [header: used bytes of records, worker id, pid, 5 spare words] [record] [record] ...
//   record:  [family << 32 | record words] [value words << 32 | label bytes]
//            [label values, each followed by 0xFF, zero-padded to a word]
//            [value words] [exemplar words (counters, histograms)] [zero padding to 64 bytes]
//
// A Series* is the address of a record's first value word:
//   counter:   [0] integral part (uint64, fetch_add), [1] fractional part (double bits, CAS)
//   gauge:     [0] value (double bits); kGaugeUnset until the first set()/add(), so a process
//              that never set a kMin/kMax gauge takes no part in the min/max
//   histogram: [0] sum (double bits, CAS), [1 + i] observations in bucket i (non-cumulative; the
//              last one is +Inf); the count is the sum of the buckets, so +Inf == _count always.
//   exemplar:  [seq] [trace id: 2 words] [value bits] [timestamp bits] [bucket]; seq is a seqlock
//              (odd while written) that writers take with a CAS and readers never wait on.
#pragma once

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "keel/metrics.hpp"

namespace keel::metrics_detail {

inline constexpr std::uint64_t kArenaMagic = 0x6b65656c6d657472;  // "keelmetr"
inline constexpr std::size_t kArenaHeaderBytes = 4096;
enum ArenaWord : std::size_t {
  kArenaSeq = 0,
  kArenaMagicWord = 1,  // written last (release): the rest of the header and the schema are complete
  kArenaRegions = 2,
  kArenaRegionBytes = 3,
  kArenaSchemaOffset = 4,
  kArenaSchemaBytes = 5,
  kArenaMasterPid = 6,
  kArenaGeneration = 7,
  kArenaState = 8,
  // The master pid of the previous / next generation whose final counters this arena's retired
  // totals took over (its arena is then no longer merged into scrapes).
  kArenaAbsorbedParent = 9,
  kArenaAbsorbedNext = 10,
};
enum ArenaState : std::uint64_t { kArenaOpen = 1, kArenaClosed = 2 };

inline constexpr std::size_t kRegionHeaderWords = 8;
enum RegionWord : std::size_t { kRegionUsed = 0, kRegionWorker = 1, kRegionPid = 2 };
inline constexpr std::int64_t kNoWorker = -1;
inline constexpr std::int64_t kMasterWorker = -2;

inline constexpr std::size_t kRecordHeaderWords = 2;
inline constexpr std::size_t kRecordAlignWords = 8;  // records start on a 64-byte line
inline constexpr char kLabelEnd = '\xff';            // never part of valid UTF-8

inline constexpr std::size_t kCounterInt = 0;
inline constexpr std::size_t kCounterFrac = 1;
inline constexpr std::size_t kCounterValueWords = 2;
inline constexpr std::size_t kGaugeValueWords = 1;
inline constexpr std::uint64_t kGaugeUnset = 0x7ff06b65656c2121;  // a signaling NaN no arithmetic yields
inline constexpr std::size_t kHistogramSum = 0;
inline constexpr std::size_t kHistogramBuckets = 1;

inline constexpr std::size_t kExemplarWords = 6;
enum ExemplarWord : std::size_t { kExSeq = 0, kExTrace = 1, kExValue = 3, kExTimestamp = 4, kExBucket = 5 };

inline std::uint64_t* words_of(Series* s) noexcept {
  return reinterpret_cast<std::uint64_t*>(s);
}
inline Series* series_at(std::uint64_t* w) noexcept {
  return reinterpret_cast<Series*>(w);
}

inline std::uint64_t load(const std::uint64_t& w, std::memory_order o = std::memory_order_relaxed) noexcept {
  return std::atomic_ref<std::uint64_t>(const_cast<std::uint64_t&>(w)).load(o);
}
inline void store(std::uint64_t& w, std::uint64_t v, std::memory_order o = std::memory_order_relaxed) noexcept {
  std::atomic_ref<std::uint64_t>(w).store(v, o);
}
inline void add_u64(std::uint64_t& w, std::uint64_t v) noexcept {
  std::atomic_ref<std::uint64_t>(w).fetch_add(v, std::memory_order_relaxed);
}
inline double load_double(const std::uint64_t& w) noexcept {
  return std::bit_cast<double>(load(w));
}
inline void store_double(std::uint64_t& w, double v) noexcept {
  store(w, std::bit_cast<std::uint64_t>(v));
}
inline void add_double(std::uint64_t& w, double v) noexcept {
  std::atomic_ref<std::uint64_t> a(w);
  std::uint64_t old = a.load(std::memory_order_relaxed);
  while (!a.compare_exchange_weak(old, std::bit_cast<std::uint64_t>(std::bit_cast<double>(old) + v),
                                  std::memory_order_relaxed, std::memory_order_relaxed)) {
  }
}

// Writes an exemplar unless another thread is writing this one right now (then it is dropped:
// exemplars are samples).
inline void write_exemplar(std::uint64_t* ex, const TraceId& id, double value, double timestamp,
                           std::uint64_t bucket) noexcept {
  std::atomic_ref<std::uint64_t> seq(ex[kExSeq]);
  std::uint64_t s = seq.load(std::memory_order_relaxed);
  if ((s & 1) != 0 || !seq.compare_exchange_strong(s, s + 1, std::memory_order_acquire, std::memory_order_relaxed))
    return;
  std::atomic_thread_fence(std::memory_order_release);
  std::uint64_t trace[2];
  std::memcpy(trace, id.bytes, sizeof trace);
  store(ex[kExTrace], trace[0]);
  store(ex[kExTrace + 1], trace[1]);
  store_double(ex[kExValue], value);
  store_double(ex[kExTimestamp], timestamp);
  store(ex[kExBucket], bucket);
  seq.store(s + 2, std::memory_order_release);
}

// Copies a consistent exemplar into out[kExemplarWords] (out[kExSeq] = 1) or returns false when
// there is none or it is being written.
inline bool read_exemplar(const std::uint64_t* ex, std::uint64_t* out) noexcept {
  for (int attempt = 0; attempt < 3; ++attempt) {
    const std::uint64_t s1 = load(ex[kExSeq], std::memory_order_acquire);
    if (s1 == 0) return false;
    if ((s1 & 1) != 0) continue;
    for (std::size_t i = 1; i < kExemplarWords; ++i) out[i] = load(ex[i]);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (load(ex[kExSeq]) == s1) {
      out[kExSeq] = 1;
      return true;
    }
  }
  return false;
}

}  // namespace keel::metrics_detail
