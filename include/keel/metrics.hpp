// Metrics: counters, gauges and histograms aggregated across worker processes.
//
//   auto& orders = keel::metrics().counter("shop_orders_total", "Orders placed.", {"kind"});
//   auto& paid = orders.labels({"paid"});   // look a child up once (mutex) ...
//   paid.inc();                             // ... then every update is lock- and allocation-free
//
// Families are registered at startup, before App::run() forks the workers (a registration after
// that throws std::logic_error). Every process (master and each worker) writes its own values
// into its own region of a shared-memory arena the master maps before the first fork; a scrape of
// /metrics, served by any worker, sums the live regions plus the retired totals the master folds
// in when a worker exits, so counters never go backwards when workers are recycled, crash or are
// scaled down.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace keel {

namespace metrics_detail {
struct Series;  // one child's values in shared memory
class Registry;
}  // namespace metrics_detail

// How a gauge's per-process values combine in a scrape.
enum class GaugeMode { kSum, kMax, kMin, kPerWorker /* one series per process, label worker="<id>" */ };

// A 16-byte trace id (W3C trace context) attached to an observation as an OpenMetrics exemplar.
struct TraceId {
  std::uint8_t bytes[16]{};
  [[nodiscard]] bool valid() const noexcept;
};

class CounterChild {
 public:
  void inc(double v = 1.0) noexcept;  // v >= 0; negative values are ignored
  void inc(double v, const TraceId& exemplar) noexcept;
  [[nodiscard]] double value() const noexcept;  // this process's value

 private:
  friend class metrics_detail::Registry;
  metrics_detail::Series* s_ = nullptr;
};

class GaugeChild {
 public:
  void set(double v) noexcept;
  void add(double v) noexcept;  // may be negative
  [[nodiscard]] double value() const noexcept;

 private:
  friend class metrics_detail::Registry;
  metrics_detail::Series* s_ = nullptr;
};

class HistogramChild {
 public:
  void observe(double v) noexcept;
  void observe(double v, const TraceId& exemplar) noexcept;
  [[nodiscard]] std::uint64_t count() const noexcept;  // this process's count
  [[nodiscard]] double sum() const noexcept;

 private:
  friend class metrics_detail::Registry;
  metrics_detail::Series* s_ = nullptr;
  const double* bounds_ = nullptr;  // upper bounds, ascending, without +Inf
  std::size_t nbounds_ = 0;
};

template <class Child>
class Family {
 public:
  // The child for these label values (one per label name, in order). Creating a child takes a
  // mutex; keep the reference. Beyond the family's cardinality cap, new label values share one
  // overflow child (every label "__overflow__") and a warning is logged once.
  Child& labels(std::initializer_list<std::string_view> values);
  Child& labels(const std::vector<std::string>& values);
  [[nodiscard]] const std::string& name() const noexcept { return name_; }

 private:
  friend class metrics_detail::Registry;
  std::string name_;
  metrics_detail::Registry* registry_ = nullptr;
  std::size_t index_ = 0;  // family index in the registry
};

using Counter = Family<CounterChild>;
using Gauge = Family<GaugeChild>;
using Histogram = Family<HistogramChild>;

// 0.5 ms .. 10 s, for latencies in seconds.
const std::vector<double>& default_latency_buckets();

struct FamilyOptions {
  std::size_t max_series = 1000;  // cardinality cap per process
  GaugeMode gauge_mode = GaugeMode::kSum;
};

class MetricsRegistry {
 public:
  // Names: [a-zA-Z_:][a-zA-Z0-9_:]*; label names [a-zA-Z_][a-zA-Z0-9_]* not starting with "__";
  // counters must end in "_total". Throws std::invalid_argument on a bad or duplicate name, and
  // std::logic_error once the arena is sealed (after the fork).
  Counter& counter(std::string name, std::string help, std::vector<std::string> label_names = {},
                   FamilyOptions options = {});
  Gauge& gauge(std::string name, std::string help, std::vector<std::string> label_names = {},
               FamilyOptions options = {});
  Histogram& histogram(std::string name, std::string help, std::vector<std::string> label_names = {},
                       std::vector<double> buckets = default_latency_buckets(), FamilyOptions options = {});
};

// The process-wide registry.
MetricsRegistry& metrics();

}  // namespace keel
