// The hot path: updates of a child's values in this process's region. Lock-free (relaxed atomics
// on 8-byte words; a CAS loop only for doubles), allocation-free, safe from several threads.
#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdint>

#include "keel/metrics.hpp"
#include "metrics/layout.hpp"

namespace keel {
namespace {

using metrics_detail::add_double;
using metrics_detail::add_u64;
using metrics_detail::load;
using metrics_detail::load_double;
using metrics_detail::words_of;

constexpr double kTwo53 = 9007199254740992.0;

double now_seconds() noexcept {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Counters keep integral increments in an integer word (one fetch_add, exact) and the rest in a
// double word.
void counter_add(std::uint64_t* w, double v) noexcept {
  if (v < kTwo53) {
    const auto i = static_cast<std::int64_t>(v);
    if (static_cast<double>(i) == v) {
      add_u64(w[metrics_detail::kCounterInt], static_cast<std::uint64_t>(i));
      return;
    }
  }
  add_double(w[metrics_detail::kCounterFrac], v);
}

// The bucket v falls in: the first bound >= v, or nbounds for +Inf.
std::size_t bucket_of(const double* bounds, std::size_t nbounds, double v) noexcept {
  if (nbounds <= 8) {
    std::size_t i = 0;
    while (i < nbounds && v > bounds[i]) ++i;
    return i;
  }
  return static_cast<std::size_t>(std::lower_bound(bounds, bounds + nbounds, v) - bounds);
}

}  // namespace

bool TraceId::valid() const noexcept {
  for (const std::uint8_t b : bytes)
    if (b != 0) return true;
  return false;
}

void CounterChild::inc(double v) noexcept {
  if (s_ == nullptr || !(v >= 0)) return;  // negative and NaN increments are ignored
  counter_add(words_of(s_), v);
}

void CounterChild::inc(double v, const TraceId& exemplar) noexcept {
  if (s_ == nullptr || !(v >= 0)) return;
  std::uint64_t* w = words_of(s_);
  counter_add(w, v);
  if (exemplar.valid())
    metrics_detail::write_exemplar(w + metrics_detail::kCounterValueWords, exemplar, v, now_seconds(), 0);
}

double CounterChild::value() const noexcept {
  if (s_ == nullptr) return 0;
  const std::uint64_t* w = words_of(s_);
  return static_cast<double>(load(w[metrics_detail::kCounterInt])) + load_double(w[metrics_detail::kCounterFrac]);
}

void GaugeChild::set(double v) noexcept {
  if (s_ == nullptr) return;
  metrics_detail::store_double(words_of(s_)[0], v);
}

void GaugeChild::add(double v) noexcept {
  if (s_ == nullptr) return;
  std::atomic_ref<std::uint64_t> a(words_of(s_)[0]);
  std::uint64_t old = a.load(std::memory_order_relaxed);
  for (;;) {
    const double current = old == metrics_detail::kGaugeUnset ? 0.0 : std::bit_cast<double>(old);
    if (a.compare_exchange_weak(old, std::bit_cast<std::uint64_t>(current + v), std::memory_order_relaxed,
                                std::memory_order_relaxed))
      return;
  }
}

double GaugeChild::value() const noexcept {
  if (s_ == nullptr) return 0;
  const std::uint64_t bits = load(words_of(s_)[0]);
  return bits == metrics_detail::kGaugeUnset ? 0.0 : std::bit_cast<double>(bits);
}

void HistogramChild::observe(double v) noexcept {
  if (s_ == nullptr || std::isnan(v)) return;  // NaN has no bucket and would poison the sum
  std::uint64_t* w = words_of(s_);
  add_u64(w[metrics_detail::kHistogramBuckets + bucket_of(bounds_, nbounds_, v)], 1);
  add_double(w[metrics_detail::kHistogramSum], v);
}

void HistogramChild::observe(double v, const TraceId& exemplar) noexcept {
  if (s_ == nullptr || std::isnan(v)) return;
  std::uint64_t* w = words_of(s_);
  const std::size_t bucket = bucket_of(bounds_, nbounds_, v);
  add_u64(w[metrics_detail::kHistogramBuckets + bucket], 1);
  add_double(w[metrics_detail::kHistogramSum], v);
  if (exemplar.valid())
    metrics_detail::write_exemplar(w + metrics_detail::kHistogramBuckets + nbounds_ + 1, exemplar, v, now_seconds(),
                                   bucket);
}

std::uint64_t HistogramChild::count() const noexcept {
  if (s_ == nullptr) return 0;
  const std::uint64_t* w = words_of(s_);
  std::uint64_t n = 0;
  for (std::size_t i = 0; i <= nbounds_; ++i) n += load(w[metrics_detail::kHistogramBuckets + i]);
  return n;
}

double HistogramChild::sum() const noexcept {
  if (s_ == nullptr) return 0;
  return load_double(words_of(s_)[metrics_detail::kHistogramSum]);
}

}  // namespace keel
