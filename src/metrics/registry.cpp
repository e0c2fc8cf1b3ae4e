#include "metrics/registry.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <limits>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/strings.hpp"
#include "log/log.hpp"
#include "metrics/exposition.hpp"
#include "metrics/layout.hpp"

namespace keel {
namespace metrics_detail {
namespace {

enum class Kind : std::uint8_t { kCounter, kGauge, kHistogram };

template <class Child>
constexpr Kind kind_of() {
  if constexpr (std::is_same_v<Child, CounterChild>) {
    return Kind::kCounter;
  } else if constexpr (std::is_same_v<Child, GaugeChild>) {
    return Kind::kGauge;
  } else {
    static_assert(std::is_same_v<Child, HistogramChild>);
    return Kind::kHistogram;
  }
}

constexpr const char* kind_name(Kind k) {
  switch (k) {
    case Kind::kCounter:
      return "counter";
    case Kind::kGauge:
      return "gauge";
    case Kind::kHistogram:
      return "histogram";
  }
  return "unknown";
}

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
template <class V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;
using StringSet = std::unordered_set<std::string, StringHash, std::equal_to<>>;

constexpr std::size_t kPageBytes = 4096;
constexpr std::size_t kLocalRegionBytes = std::size_t{1} << 20;
constexpr std::size_t kMaxRegionBytes = std::size_t{1} << 30;
constexpr std::size_t kMaxWorkerRegions = 1 << 16;
constexpr std::size_t kNoRegion = static_cast<std::size_t>(-1);
constexpr std::size_t kNoSlot = static_cast<std::size_t>(-1);
// After the worker regions: the master's, the retired totals (exited workers), the absorbed totals
// (ended generations; left out of this generation's own numbers). The last two are totals: no gauges.
constexpr std::size_t kMasterRegion = 0, kRetiredRegion = 1, kAbsorbedRegion = 2, kSpecialRegions = 3;
constexpr std::size_t kTotalsRegions = 2;
constexpr std::string_view kOverflowValue = "__overflow__";
constexpr const char* kLogger = "keel.metrics";

constexpr std::size_t round_up(std::size_t n, std::size_t to) {
  return (n + to - 1) / to * to;
}

bool is_metric_name(std::string_view n) {
  if (n.empty()) return false;
  for (std::size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' || (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

bool is_label_name(std::string_view n) {
  if (n.empty()) return false;
  for (std::size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

// An anonymous mapping or one of a memfd: MAP_NORESERVE, so only the pages touched cost memory.
class Mapping {
 public:
  Mapping() = default;
  Mapping(std::size_t bytes, bool shared) {
    const int flags = (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS | MAP_NORESERVE;
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, flags, -1, 0);
    if (p == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "mmap(metrics arena)");
    p_ = p;
    bytes_ = bytes;
  }
  // Read-only mappings are another generation's arena (never written from here).
  Mapping(int fd, std::size_t bytes, bool writable) {
    const int prot = writable ? PROT_READ | PROT_WRITE : PROT_READ;
    void* p = ::mmap(nullptr, bytes, prot, MAP_SHARED | MAP_NORESERVE, fd, 0);
    if (p == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "mmap(metrics arena)");
    p_ = p;
    bytes_ = bytes;
  }
  Mapping(Mapping&& o) noexcept : p_(std::exchange(o.p_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  Mapping& operator=(Mapping&& o) noexcept {
    if (this != &o) {
      reset();
      p_ = std::exchange(o.p_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping() { reset(); }

  void reset() noexcept {
    if (p_ != nullptr) ::munmap(p_, bytes_);
    p_ = nullptr;
    bytes_ = 0;
  }
  [[nodiscard]] std::uint64_t* words() const noexcept { return static_cast<std::uint64_t*>(p_); }
  [[nodiscard]] std::size_t bytes() const noexcept { return bytes_; }

 private:
  void* p_ = nullptr;
  std::size_t bytes_ = 0;
};

// A region as seen from this process.
struct RegionRef {
  std::uint64_t* base = nullptr;  // the region header
  std::size_t bytes = 0;

  [[nodiscard]] std::uint64_t* records() const noexcept { return base + kRegionHeaderWords; }
  [[nodiscard]] std::size_t capacity_words() const noexcept { return bytes / 8 - kRegionHeaderWords; }
  // Published record words (acquire: the records below are complete).
  [[nodiscard]] std::size_t used_words() const noexcept {
    return std::min<std::size_t>(load(base[kRegionUsed], std::memory_order_acquire) / 8, capacity_words());
  }
};

struct ChildSlot {
  std::string key;  // label values, each followed by kLabelEnd
  void* child;      // CounterChild*, GaugeChild* or HistogramChild*, by the family's kind
};

struct FamilyData {
  Kind kind = Kind::kCounter;
  std::string name;     // as registered (a counter's ends in _total)
  std::string om_name;  // the OpenMetrics family name (a counter's without _total)
  std::string help;     // valid UTF-8
  std::vector<std::string> label_names;
  std::vector<double> bounds;               // histograms: finite upper bounds, ascending
  std::vector<std::string> le_prometheus;   // le="..." per bucket, +Inf last
  std::vector<std::string> le_openmetrics;  // the same with canonical numbers
  FamilyOptions options;
  std::size_t value_words = 0;
  bool has_exemplar = false;

  // The Family<> object handed out (only the one of this kind is used).
  Counter counter;
  Gauge gauge;
  Histogram histogram;

  // This process's children: stable addresses (deque), creation order, lookup by key.
  std::deque<CounterChild> counters;
  std::deque<GaugeChild> gauges;
  std::deque<HistogramChild> histograms;
  std::vector<ChildSlot> children;
  StringMap<std::size_t> by_key;
  std::size_t regular_children = 0;  // counted against options.max_series (not the overflow child)
  bool cap_warned = false;
  std::unique_ptr<std::uint64_t[]> dummy;  // process-local values of children whose region is full
};

// Every name a family's samples use in either format (the first is the OpenMetrics family name).
// A counter's name ends in "_total" (checked at registration and when reading a schema).
std::vector<std::string> sample_names(Kind kind, const std::string& name) {
  switch (kind) {
    case Kind::kCounter: {
      const std::string base = name.substr(0, name.size() - std::string_view("_total").size());
      return {base, name, base + "_created"};
    }
    case Kind::kGauge:
      return {name};
    case Kind::kHistogram:
      return {name, name + "_bucket", name + "_count", name + "_sum", name + "_created"};
  }
  return {name};
}

// Fills in what follows from kind, name and bounds: the record shape and the exposition strings.
void complete(FamilyData& f) {
  f.om_name = sample_names(f.kind, f.name).front();
  switch (f.kind) {
    case Kind::kCounter:
      f.value_words = kCounterValueWords;
      f.has_exemplar = true;
      break;
    case Kind::kGauge:
      f.value_words = kGaugeValueWords;
      break;
    case Kind::kHistogram:
      f.value_words = kHistogramBuckets + f.bounds.size() + 1;
      f.has_exemplar = true;
      for (const double b : f.bounds) {
        f.le_prometheus.push_back("le=\"" + format_bound(b, Format::kPrometheus) + "\"");
        f.le_openmetrics.push_back("le=\"" + format_bound(b, Format::kOpenMetrics) + "\"");
      }
      f.le_prometheus.emplace_back("le=\"+Inf\"");
      f.le_openmetrics.emplace_back("le=\"+Inf\"");
      break;
  }
}

constexpr std::array<std::pair<GaugeMode, const char*>, 4> kGaugeModes{{{GaugeMode::kSum, "sum"},
                                                                        {GaugeMode::kMax, "max"},
                                                                        {GaugeMode::kMin, "min"},
                                                                        {GaugeMode::kPerWorker, "per_worker"}}};

// The families as the arena's schema: what another binary needs to read this arena's records.
std::string schema_json(const std::vector<std::unique_ptr<FamilyData>>& families) {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& f : families) {
    nlohmann::json j{{"name", f->name}, {"kind", kind_name(f->kind)}, {"help", f->help}, {"labels", f->label_names}};
    if (f->kind == Kind::kHistogram) j["bounds"] = f->bounds;
    if (f->kind == Kind::kGauge)
      for (const auto& [mode, mode_name] : kGaugeModes)
        if (mode == f->options.gauge_mode) j["mode"] = mode_name;
    list.push_back(std::move(j));
  }
  return list.dump();
}

// The families of another generation's arena. Shared memory from another binary: anything that
// does not look exactly right leaves an empty list (that arena is then not merged) or, for one
// family, a family no record can match (kind/name checks below).
std::vector<std::unique_ptr<FamilyData>> parse_schema(std::string_view text) {
  std::vector<std::unique_ptr<FamilyData>> out;
  const nlohmann::json list = nlohmann::json::parse(text, nullptr, false);
  if (!list.is_array()) return out;
  for (const auto& j : list) {
    auto f = std::make_unique<FamilyData>();
    const auto str = [&j](const char* key) {
      const auto it = j.find(key);
      return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
    };
    if (!j.is_object()) return {};
    const std::string kind = str("kind");
    f->name = str("name");
    f->help = str("help");
    bool ok = is_metric_name(f->name);
    if (kind == "counter") {
      f->kind = Kind::kCounter;
      ok = ok && f->name.size() > 6 && f->name.ends_with("_total");
    } else if (kind == "gauge") {
      f->kind = Kind::kGauge;
      const std::string mode = str("mode");
      bool known_mode = false;
      for (const auto& [m, mode_name] : kGaugeModes) {
        if (mode != mode_name) continue;
        f->options.gauge_mode = m;
        known_mode = true;
      }
      ok = ok && known_mode;
    } else if (kind == "histogram") {
      f->kind = Kind::kHistogram;
      const auto it = j.find("bounds");
      if (it == j.end() || !it->is_array()) return {};
      for (const auto& b : *it) {
        if (!b.is_number()) return {};
        f->bounds.push_back(b.get<double>());
        const std::size_t n = f->bounds.size();
        ok = ok && std::isfinite(f->bounds.back()) && (n == 1 || f->bounds[n - 1] > f->bounds[n - 2]);
      }
    } else {
      return {};
    }
    const auto labels = j.find("labels");
    if (labels == j.end() || !labels->is_array()) return {};
    for (const auto& l : *labels) {
      if (!l.is_string() || !is_label_name(l.get<std::string>())) return {};
      f->label_names.push_back(l.get<std::string>());
    }
    if (!ok) return {};
    complete(*f);
    out.push_back(std::move(f));
  }
  return out;
}

template <class Child>
std::deque<Child>& storage(FamilyData& f) {
  if constexpr (kind_of<Child>() == Kind::kCounter) {
    return f.counters;
  } else if constexpr (kind_of<Child>() == Kind::kGauge) {
    return f.gauges;
  } else {
    return f.histograms;
  }
}

// A record header checked against the families (a region is shared memory: never trust sizes).
struct RecordView {
  std::uint32_t family = 0;
  std::size_t words = 0;        // the whole record
  std::size_t label_bytes = 0;  // at word kRecordHeaderWords
  std::size_t values = 0;       // offset of the first value word
  std::size_t exemplar = 0;     // offset of the exemplar words (if the family has them)
};

bool parse_record(const std::uint64_t* rec, std::size_t available_words,
                  const std::vector<std::unique_ptr<FamilyData>>& families, RecordView* out) {
  if (available_words < kRecordHeaderWords) return false;
  const std::uint64_t w0 = load(rec[0]);
  const std::uint64_t w1 = load(rec[1]);
  out->family = static_cast<std::uint32_t>(w0 >> 32);
  out->words = static_cast<std::size_t>(w0 & 0xffffffffu);
  out->label_bytes = static_cast<std::size_t>(w1 & 0xffffffffu);
  const auto value_words = static_cast<std::size_t>(w1 >> 32);
  if (out->words < kRecordHeaderWords || out->words > available_words || out->family >= families.size()) return false;
  const FamilyData& f = *families[out->family];
  out->values = kRecordHeaderWords + (out->label_bytes + 7) / 8;
  out->exemplar = out->values + value_words;
  const std::size_t end = out->exemplar + (f.has_exemplar ? kExemplarWords : 0);
  return value_words == f.value_words && end <= out->words;
}

// Label bytes of a live record, copied word by word with atomic loads.
void append_label_bytes(std::string& out, const std::uint64_t* labels, std::size_t bytes) {
  for (std::size_t i = 0; i * 8 < bytes; ++i) {
    const std::uint64_t w = load(labels[i]);
    char buf[8];
    std::memcpy(buf, &w, sizeof buf);
    out.append(buf, std::min<std::size_t>(8, bytes - i * 8));
  }
}

// The seqlock around retire() and reset(): readers of the arena retry while it is odd or changed.
class SeqWrite {
 public:
  explicit SeqWrite(std::uint64_t& seq) noexcept : seq_(seq), start_(load(seq)) {
    store(seq_, start_ + 1);
    std::atomic_thread_fence(std::memory_order_release);
  }
  ~SeqWrite() { store(seq_, start_ + 2, std::memory_order_release); }
  SeqWrite(const SeqWrite&) = delete;
  SeqWrite& operator=(const SeqWrite&) = delete;

 private:
  std::uint64_t& seq_;
  std::uint64_t start_;
};

// ---- exposition ---------------------------------------------------------------------------------

struct Entry {
  std::string_view key;           // label values, each followed by kLabelEnd
  const std::uint64_t* values;    // in the snapshot
  const std::uint64_t* exemplar;  // a consistent copy, or nullptr
  std::uint32_t region;           // index into Snapshot::regions
};

struct RegionSnapshot {
  std::vector<std::uint64_t> words;
  std::int64_t worker = kNoWorker;
  bool retired = false;
  std::string worker_prefix;  // while generations overlap: the worker label says whose worker it is
};

void append_labels(std::string& out, const FamilyData& f, std::string_view key) {
  std::size_t i = 0;
  while (!key.empty() && i < f.label_names.size()) {
    const std::size_t end = key.find(kLabelEnd);
    if (i > 0) out += ',';
    out += f.label_names[i];
    out += "=\"";
    append_escaped_label_value(out, key.substr(0, end));
    out += '"';
    key.remove_prefix(end == std::string_view::npos ? key.size() : end + 1);
    ++i;
  }
}

void begin_sample(std::string& out, std::string_view name, std::string_view suffix, std::string_view labels,
                  std::string_view extra) {
  out += name;
  out += suffix;
  if (!labels.empty() || !extra.empty()) {
    out += '{';
    out += labels;
    if (!labels.empty() && !extra.empty()) out += ',';
    out += extra;
    out += '}';
  }
  out += ' ';
}

double exemplar_time(const std::uint64_t* ex) {
  return std::bit_cast<double>(ex[kExTimestamp]);
}

void append_exemplar(std::string& out, const std::uint64_t* ex) {
  std::uint8_t id[16];
  std::memcpy(id, ex + kExTrace, sizeof id);
  out += " # {trace_id=\"";
  base::append_hex(out, id);
  out += "\"} ";
  append_value(out, std::bit_cast<double>(ex[kExValue]));
  out += ' ';
  append_value(out, exemplar_time(ex));
}

const std::uint64_t* latest_exemplar(const std::uint64_t* best, const std::uint64_t* candidate) {
  if (candidate == nullptr) return best;
  if (best == nullptr || exemplar_time(candidate) > exemplar_time(best)) return candidate;
  return best;
}

std::string worker_label(const RegionSnapshot& r, std::size_t index) {
  const std::string& prefix = r.worker_prefix;
  if (r.worker == kMasterWorker) return "worker=\"" + prefix + "master\"";
  if (r.worker >= 0) return "worker=\"" + prefix + std::to_string(r.worker) + "\"";
  return "worker=\"" + prefix + "region-" + std::to_string(index) + "\"";
}

void render_family(std::string& out, const FamilyData& f, std::vector<Entry>& entries,
                   const std::vector<RegionSnapshot>& regions, Format format, std::vector<std::uint64_t>& buckets) {
  const bool om = format == Format::kOpenMetrics;
  const std::string& family_name = om ? f.om_name : f.name;
  const char* type = kind_name(f.kind);
  if (om) {
    out += "# TYPE ";
    out += family_name;
    out += ' ';
    out += type;
    out += '\n';
  }
  if (!f.help.empty()) {
    out += "# HELP ";
    out += family_name;
    out += ' ';
    append_escaped_help(out, f.help, format);
    out += '\n';
  }
  if (!om) {
    out += "# TYPE ";
    out += family_name;
    out += ' ';
    out += type;
    out += '\n';
  }

  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    const int c = a.key.compare(b.key);
    return c < 0 || (c == 0 && a.region < b.region);
  });
  std::string labels;
  for (std::size_t begin = 0; begin < entries.size();) {
    std::size_t end = begin + 1;
    while (end < entries.size() && entries[end].key == entries[begin].key) ++end;
    labels.clear();
    append_labels(labels, f, entries[begin].key);

    switch (f.kind) {
      case Kind::kCounter: {
        std::uint64_t integral = 0;
        double fraction = 0;
        const std::uint64_t* ex = nullptr;
        for (std::size_t i = begin; i < end; ++i) {
          integral += entries[i].values[kCounterInt];
          fraction += std::bit_cast<double>(entries[i].values[kCounterFrac]);
          ex = latest_exemplar(ex, entries[i].exemplar);
        }
        begin_sample(out, f.name, {}, labels, {});
        if (fraction == 0) {
          append_uint(out, integral);
        } else {
          append_value(out, static_cast<double>(integral) + fraction);
        }
        if (om && ex != nullptr) append_exemplar(out, ex);
        out += '\n';
        break;
      }
      case Kind::kGauge: {
        // A process that never set the gauge counts as 0 in a sum and its own series, and not at
        // all in a min or max.
        const auto value_of = [](const Entry& e) {
          return e.values[0] == kGaugeUnset ? 0.0 : std::bit_cast<double>(e.values[0]);
        };
        if (f.options.gauge_mode == GaugeMode::kPerWorker) {
          for (std::size_t i = begin; i < end;) {
            const std::uint32_t region = entries[i].region;
            double v = 0;
            for (; i < end && entries[i].region == region; ++i) v += value_of(entries[i]);
            if (regions[region].retired) continue;
            const std::string worker = worker_label(regions[region], region);
            begin_sample(out, f.name, {}, labels, worker);
            append_value(out, v);
            out += '\n';
          }
          break;
        }
        bool any = false;
        double v = 0;
        const bool sum = f.options.gauge_mode == GaugeMode::kSum;
        for (std::size_t i = begin; i < end; ++i) {
          if (regions[entries[i].region].retired || (!sum && entries[i].values[0] == kGaugeUnset)) continue;
          const double x = value_of(entries[i]);
          if (!any) {
            v = x;
          } else if (sum) {
            v += x;
          } else if (std::isnan(v) || (f.options.gauge_mode == GaugeMode::kMax ? x > v : x < v)) {
            v = x;
          }
          any = true;
        }
        if (!any) break;
        begin_sample(out, f.name, {}, labels, {});
        append_value(out, v);
        out += '\n';
        break;
      }
      case Kind::kHistogram: {
        const std::size_t nb = f.bounds.size() + 1;
        buckets.assign(nb, 0);
        double sum = 0;
        const std::uint64_t* ex = nullptr;
        for (std::size_t i = begin; i < end; ++i) {
          sum += std::bit_cast<double>(entries[i].values[kHistogramSum]);
          for (std::size_t b = 0; b < nb; ++b) buckets[b] += entries[i].values[kHistogramBuckets + b];
          ex = latest_exemplar(ex, entries[i].exemplar);
        }
        const std::vector<std::string>& le = om ? f.le_openmetrics : f.le_prometheus;
        std::uint64_t cumulative = 0;
        for (std::size_t b = 0; b < nb; ++b) {
          cumulative += buckets[b];
          begin_sample(out, f.name, "_bucket", labels, le[b]);
          append_uint(out, cumulative);
          if (om && ex != nullptr && ex[kExBucket] == b) append_exemplar(out, ex);
          out += '\n';
        }
        // OpenMetrics: _sum is a counter (never negative or NaN) and absent with negative buckets;
        // _count goes with _sum.
        if (om && ((!f.bounds.empty() && f.bounds.front() < 0) || !(sum >= 0))) break;
        begin_sample(out, f.name, "_sum", labels, {});
        append_value(out, sum);
        out += '\n';
        begin_sample(out, f.name, "_count", labels, {});
        append_uint(out, cumulative);
        out += '\n';
        break;
      }
    }
    begin = end;
  }
}

// ---- other generations' arenas ------------------------------------------------------------------

// Where the records of a totals region are: family (4 bytes) + label key -> values.
struct TotalsIndex {
  StringMap<std::uint64_t*> map;
  std::size_t indexed_words = 0;
};

// Another generation's arena: its header, and (map_peer) its records mapped read-only.
struct PeerArena {
  Mapping mapping;
  std::size_t regions = 0;
  std::size_t region_bytes = 0;
  int generation = 0;
  std::uint64_t master_pid = 0;
  bool live = false;  // its master serves; else its counters are final (gauges are not shown)
  int fd = -1;
  std::size_t size = 0;
  std::uint64_t schema_offset = 0;
  std::uint64_t schema_bytes = 0;
  std::vector<std::unique_ptr<FamilyData>> families;  // parsed by map_peer()
  std::vector<std::size_t> slot_of;                   // its family -> the scrape's family list, or kNoSlot
};

bool process_alive(std::uint64_t pid) {
  if (pid == 0 || pid > static_cast<std::uint64_t>(std::numeric_limits<pid_t>::max())) return false;
  return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
}

// The header of the arena behind `fd` once a master has laid it out (magic), live or ended
// (closed, or its master gone). Everything in it is checked against the file's size: it is shared
// memory another binary wrote.
std::optional<PeerArena> open_peer(int fd) {
  struct stat st {};
  if (fd < 0 || ::fstat(fd, &st) != 0 || st.st_size < static_cast<off_t>(kArenaHeaderBytes)) return std::nullopt;
  // The header is read, not mapped: the master checks its peers every second, and mapping the
  // whole (sparse, ~1 GiB) arena for that costs more than it should (much more under ASan).
  std::uint64_t h[kArenaAbsorbedNext + 1] = {};
  if (::pread(fd, h, sizeof h, 0) != static_cast<ssize_t>(sizeof h)) return std::nullopt;
  if (h[kArenaMagicWord] != kArenaMagic) return std::nullopt;
  PeerArena p;
  p.fd = fd;
  p.size = static_cast<std::size_t>(st.st_size);
  p.master_pid = h[kArenaMasterPid];
  p.live = h[kArenaState] == kArenaOpen && process_alive(p.master_pid);
  const std::uint64_t regions = h[kArenaRegions];
  const std::uint64_t rb = h[kArenaRegionBytes];
  p.schema_offset = h[kArenaSchemaOffset];
  p.schema_bytes = h[kArenaSchemaBytes];
  const bool fits = regions >= kSpecialRegions && regions <= kMaxWorkerRegions + kSpecialRegions && rb >= kPageBytes &&
                    rb <= kMaxRegionBytes && rb % 8 == 0 && kArenaHeaderBytes + regions * rb <= p.schema_offset &&
                    p.schema_offset <= p.size && p.schema_bytes <= p.size - p.schema_offset;
  if (!fits) return std::nullopt;
  p.regions = regions;
  p.region_bytes = rb;
  p.generation = static_cast<int>(std::min<std::uint64_t>(h[kArenaGeneration], 1'000'000));
  return p;
}

// Maps the peer's arena and parses its schema (only when its records are to be read). False when
// it cannot be mapped or the schema is unusable.
bool map_peer(PeerArena& p) {
  try {
    p.mapping = Mapping(p.fd, p.size, false);
  } catch (const std::system_error&) {
    return false;
  }
  p.families = parse_schema(std::string_view(reinterpret_cast<const char*>(p.mapping.words()) + p.schema_offset,
                                             static_cast<std::size_t>(p.schema_bytes)));
  return !p.families.empty();
}

// Records of one family can be added to the other's: same type, labels and buckets.
bool same_shape(const FamilyData& a, const FamilyData& b) {
  return a.kind == b.kind && a.label_names == b.label_names && a.bounds == b.bounds;
}

// Where each of a peer's families goes in the scrape: the family of the same name when it has the
// same shape, a family of its own when no family here has the name (a metric only the other
// binary has), nowhere when the name means something else here.
void link_families(PeerArena& peer, std::vector<const FamilyData*>& families, StringSet& claimed,
                   std::vector<std::vector<Entry>>& by_family) {
  peer.slot_of.assign(peer.families.size(), kNoSlot);
  for (std::size_t i = 0; i < peer.families.size(); ++i) {
    const FamilyData& pf = *peer.families[i];
    const auto same =
        std::find_if(families.begin(), families.end(), [&pf](const FamilyData* f) { return f->name == pf.name; });
    if (same != families.end()) {
      const FamilyData& f = **same;
      if (same_shape(f, pf)) peer.slot_of[i] = static_cast<std::size_t>(same - families.begin());
      continue;
    }
    std::vector<std::string> names = sample_names(pf.kind, pf.name);
    if (std::any_of(names.begin(), names.end(), [&claimed](const std::string& n) { return claimed.contains(n); }))
      continue;
    for (auto& n : names) claimed.insert(std::move(n));
    peer.slot_of[i] = families.size();
    families.push_back(&pf);
    by_family.emplace_back();
  }
}

}  // namespace

// ---- the registry -------------------------------------------------------------------------------

struct Registry::Impl {
  mutable std::mutex mu;
  std::vector<std::unique_ptr<FamilyData>> families;
  StringSet claimed;        // every sample and family name the families use
  std::string scratch_key;  // for lookups

  Mapping local;  // this process's region before the arena (kept afterwards: see create_arena)
  Mapping arena;
  int arena_fd = -1;   // the arena's memfd (-1: an anonymous mapping, not shared with other generations)
  int next_fd = -1;    // an empty memfd for the arena of the generation this one may start
  int parent_fd = -1;  // the arena of the generation that started this one
  int generation = 1;
  std::atomic<bool> sealed{false};
  std::atomic<std::size_t> nworkers{0};
  std::size_t region_bytes = 0;
  RegionRef current;                      // where this process's children live
  std::size_t current_index = kNoRegion;  // its index in the arena (kNoRegion: the local region)
  bool region_full_warned = false;
  bool retired_full_warned = false;
  TotalsIndex retired_index;  // of the retired region

  Impl() { init_local(); }

  void init_local() {
    local = Mapping(kLocalRegionBytes, false);
    current = RegionRef{local.words(), kLocalRegionBytes};
    current_index = kNoRegion;
    store(current.base[kRegionWorker], static_cast<std::uint64_t>(kMasterWorker));
    region_full_warned = false;
  }

  [[nodiscard]] RegionRef region(std::size_t i) const noexcept {
    return RegionRef{arena.words() + kArenaHeaderBytes / 8 + i * (region_bytes / 8), region_bytes};
  }
  [[nodiscard]] std::uint64_t& seq() const noexcept { return arena.words()[kArenaSeq]; }

  FamilyData& family(std::size_t index, Kind kind) {
    if (index >= families.size() || families[index]->kind != kind)
      throw std::invalid_argument("metrics: no such " + std::string(kind_name(kind)) + " family");
    return *families[index];
  }

  static void bind(FamilyData& f, void* child, std::uint64_t* values) noexcept {
    Series* s = series_at(values);
    switch (f.kind) {
      case Kind::kCounter:
        static_cast<CounterChild*>(child)->s_ = s;
        break;
      case Kind::kGauge:
        static_cast<GaugeChild*>(child)->s_ = s;
        break;
      case Kind::kHistogram: {
        auto* h = static_cast<HistogramChild*>(child);
        h->bounds_ = f.bounds.data();
        h->nbounds_ = f.bounds.size();
        h->s_ = s;
        break;
      }
    }
  }

  static std::uint64_t* values_of(const FamilyData& f, const void* child) noexcept {
    switch (f.kind) {
      case Kind::kCounter:
        return words_of(static_cast<const CounterChild*>(child)->s_);
      case Kind::kGauge:
        return words_of(static_cast<const GaugeChild*>(child)->s_);
      case Kind::kHistogram:
        return words_of(static_cast<const HistogramChild*>(child)->s_);
    }
    return nullptr;
  }

  // Appends a zeroed record for (family, key) to a region this process writes; nullptr when full.
  static std::uint64_t* allocate(RegionRef r, std::size_t family_index, const FamilyData& f, std::string_view key) {
    const std::size_t label_words = (key.size() + 7) / 8;
    const std::size_t words = round_up(
        kRecordHeaderWords + label_words + f.value_words + (f.has_exemplar ? kExemplarWords : 0), kRecordAlignWords);
    const std::size_t used = load(r.base[kRegionUsed]) / 8;
    const std::size_t capacity = r.capacity_words();
    if (used > capacity || words > capacity - used) return nullptr;
    std::uint64_t* rec = r.records() + used;
    for (std::size_t i = 0; i < words; ++i) store(rec[i], 0);
    if (f.kind == Kind::kGauge) store(rec[kRecordHeaderWords + label_words], kGaugeUnset);
    store(rec[0], (static_cast<std::uint64_t>(family_index) << 32) | words);
    store(rec[1], (static_cast<std::uint64_t>(f.value_words) << 32) | key.size());
    for (std::size_t i = 0; i < label_words; ++i) {
      std::uint64_t w = 0;
      std::memcpy(&w, key.data() + i * 8, std::min<std::size_t>(8, key.size() - i * 8));
      store(rec[kRecordHeaderWords + i], w);
    }
    store(r.base[kRegionUsed], (used + words) * 8, std::memory_order_release);  // publish
    return rec + kRecordHeaderWords + label_words;
  }

  std::uint64_t* dummy(FamilyData& f) {
    if (!f.dummy) f.dummy = std::make_unique<std::uint64_t[]>(f.value_words + kExemplarWords);
    return f.dummy.get();
  }

  // Gives `child` fresh values in this process's region (or the family's dummy when it is full).
  void place(std::size_t family_index, FamilyData& f, void* child, std::string_view child_key) {
    std::uint64_t* values = allocate(current, family_index, f, child_key);
    if (values == nullptr) {
      values = dummy(f);
      if (!region_full_warned) {
        region_full_warned = true;
        log::write(
            log::Level::kWarning, kLogger, "metrics_region_full",
            {{"metric", f.name},
             {"region", current_index == kNoRegion ? std::int64_t{-1} : static_cast<std::int64_t>(current_index)},
             {"region_bytes", current.bytes}});
      }
    }
    bind(f, child, values);
  }

  template <class Child>
  Child& create_child(std::size_t family_index, FamilyData& f, std::string_view child_key, bool regular) {
    std::string owned(child_key);
    f.children.reserve(f.children.size() + 1);
    f.by_key.reserve(f.by_key.size() + 1);
    Child& c = storage<Child>(f).emplace_back();
    place(family_index, f, &c, owned);
    f.by_key.emplace(owned, f.children.size());
    f.children.push_back(ChildSlot{std::move(owned), &c});
    if (regular) ++f.regular_children;
    return c;
  }

  template <class Child, class Values>
  Child& child(std::size_t family_index, const Values& values) {
    std::lock_guard lock(mu);
    FamilyData& f = family(family_index, kind_of<Child>());
    if (values.size() != f.label_names.size()) {
      std::string names;
      for (const auto& n : f.label_names) names += (names.empty() ? "" : ", ") + n;
      throw std::invalid_argument("metric \"" + f.name + "\" has " + std::to_string(f.label_names.size()) +
                                  " label(s) (" + names + "), got " + std::to_string(values.size()) + " value(s)");
    }
    scratch_key.clear();
    for (const auto& v : values) {
      append_utf8_repaired(scratch_key, std::string_view(v));
      scratch_key += kLabelEnd;
    }
    if (const auto it = f.by_key.find(std::string_view(scratch_key)); it != f.by_key.end())
      return *static_cast<Child*>(f.children[it->second].child);
    if (f.regular_children < f.options.max_series) return create_child<Child>(family_index, f, scratch_key, true);

    // Beyond the cap: one shared child with every label "__overflow__".
    scratch_key.clear();
    for (std::size_t i = 0; i < f.label_names.size(); ++i) {
      scratch_key += kOverflowValue;
      scratch_key += kLabelEnd;
    }
    if (!f.cap_warned) {
      f.cap_warned = true;
      log::write(log::Level::kWarning, kLogger, "metric_cardinality_capped",
                 {{"metric", f.name}, {"max_series", f.options.max_series}});
    }
    if (const auto it = f.by_key.find(std::string_view(scratch_key)); it != f.by_key.end())
      return *static_cast<Child*>(f.children[it->second].child);
    return create_child<Child>(family_index, f, scratch_key, false);
  }

  template <class Child>
  Family<Child>& add(std::string name, std::string help, std::vector<std::string> label_names,
                     std::vector<double> buckets, FamilyOptions options) {
    constexpr Kind kind = kind_of<Child>();
    std::lock_guard lock(mu);
    const std::string quoted = "metric \"" + name + "\"";
    if (sealed.load())
      throw std::logic_error(quoted + ": families must be registered before the metrics arena is created (App::run)");
    if (!is_metric_name(name)) throw std::invalid_argument(quoted + ": invalid name (want [a-zA-Z_:][a-zA-Z0-9_:]*)");
    constexpr std::string_view kTotal = "_total";
    const bool ends_total = name.size() > kTotal.size() && name.ends_with(kTotal);
    if (kind == Kind::kCounter && !ends_total)
      throw std::invalid_argument(quoted + ": a counter's name must end in \"_total\"");
    for (std::size_t i = 0; i < label_names.size(); ++i) {
      const std::string& l = label_names[i];
      if (!is_label_name(l) || l.starts_with("__"))
        throw std::invalid_argument(quoted + ": invalid label name \"" + l +
                                    "\" (want [a-zA-Z_][a-zA-Z0-9_]*, not starting with \"__\")");
      if (kind == Kind::kHistogram && l == "le")
        throw std::invalid_argument(quoted + ": the label name \"le\" is reserved for histogram buckets");
      if (kind == Kind::kGauge && options.gauge_mode == GaugeMode::kPerWorker && l == "worker")
        throw std::invalid_argument(quoted + ": the label name \"worker\" is reserved for per-worker gauges");
      for (std::size_t j = 0; j < i; ++j)
        if (label_names[j] == l) throw std::invalid_argument(quoted + ": duplicate label name \"" + l + "\"");
    }
    if (options.max_series == 0) throw std::invalid_argument(quoted + ": max_series must be at least 1");
    if (kind == Kind::kHistogram) {
      if (!buckets.empty() && buckets.back() == std::numeric_limits<double>::infinity()) buckets.pop_back();
      for (std::size_t i = 0; i < buckets.size(); ++i) {
        if (!std::isfinite(buckets[i]))
          throw std::invalid_argument(quoted + ": histogram buckets must be finite (+Inf is implicit)");
        if (i > 0 && !(buckets[i] > buckets[i - 1]))
          throw std::invalid_argument(quoted + ": histogram buckets must be strictly increasing");
      }
    } else {
      buckets.clear();
    }

    // Every name the family's samples use, in either format: none may be another family's.
    std::vector<std::string> names = sample_names(kind, name);
    for (const auto& n : names)
      if (claimed.contains(n))
        throw std::invalid_argument(quoted + ": the name \"" + n + "\" is already used by another metric family");

    auto f = std::make_unique<FamilyData>();
    f->kind = kind;
    f->name = std::move(name);
    append_utf8_repaired(f->help, help);
    f->label_names = std::move(label_names);
    f->bounds = std::move(buckets);
    f->options = options;
    complete(*f);
    const std::size_t index = families.size();
    Family<Child>* fam = nullptr;
    if constexpr (kind == Kind::kCounter) {
      fam = &f->counter;
    } else if constexpr (kind == Kind::kGauge) {
      fam = &f->gauge;
    } else {
      fam = &f->histogram;
    }
    fam->name_ = f->name;
    fam->registry_ = &Registry::instance();
    fam->index_ = index;
    families.push_back(std::move(f));
    for (auto& n : names) claimed.insert(std::move(n));

    // A family without labels has exactly one child: create it now so it is exposed (as 0) at once.
    FamilyData& data = *families.back();
    if (data.label_names.empty()) create_child<Child>(index, data, {}, true);
    return *fam;
  }

  void check_worker_region(std::size_t r, const char* what) const {
    if (!sealed.load()) throw std::logic_error(std::string("metrics: ") + what + " before create_arena()");
    if (r >= nworkers.load())
      throw std::out_of_range(std::string("metrics: ") + what + ": no worker region " + std::to_string(r));
  }

  void clear_region(RegionRef r) noexcept {
    const std::size_t used = r.used_words();
    std::uint64_t* rec = r.records();
    for (std::size_t i = 0; i < used; ++i) store(rec[i], 0);
    store(r.base[kRegionUsed], 0, std::memory_order_release);
    store(r.base[kRegionWorker], static_cast<std::uint64_t>(kNoWorker));
    store(r.base[kRegionPid], 0);
  }

  // Indexes the records of a totals region this process has not seen yet.
  void catch_up(RegionRef totals, TotalsIndex& index) {
    const std::size_t used = totals.used_words();
    if (used < index.indexed_words) {
      index.map.clear();
      index.indexed_words = 0;
    }
    std::uint64_t* rec = totals.records();
    std::string k;
    for (std::size_t i = index.indexed_words; i < used;) {
      RecordView rv;
      if (!parse_record(rec + i, used - i, families, &rv)) break;
      k.assign(reinterpret_cast<const char*>(&rv.family), sizeof rv.family);
      append_label_bytes(k, rec + i + kRecordHeaderWords, rv.label_bytes);
      index.map.insert_or_assign(k, rec + i + rv.values);
      i += rv.words;
      index.indexed_words = i;
    }
  }

  // Adds a region's counters and histograms into a totals region (`index` is that region's). A
  // region of another generation's arena comes with that arena's schema and where its families
  // are here (slot_of[family]; kNoSlot or a slot past this binary's families: skipped).
  void fold(RegionRef src, RegionRef retired, TotalsIndex& index,
            const std::vector<std::unique_ptr<FamilyData>>* src_families = nullptr,
            const std::vector<std::size_t>* slot_of = nullptr) {
    catch_up(retired, index);
    const auto& schema = src_families != nullptr ? *src_families : families;
    const std::size_t used = src.used_words();
    const std::uint64_t* rec = src.records();
    std::string k;
    for (std::size_t i = 0; i < used;) {
      RecordView rv;
      if (!parse_record(rec + i, used - i, schema, &rv)) break;
      const std::uint64_t* v = rec + i + rv.values;
      const std::uint64_t* labels = rec + i + kRecordHeaderWords;
      i += rv.words;
      const std::size_t slot = slot_of != nullptr ? (*slot_of)[rv.family] : rv.family;
      if (slot >= families.size()) continue;
      const auto family = static_cast<std::uint32_t>(slot);
      FamilyData& f = *families[family];
      if (f.kind == Kind::kGauge) continue;  // a dead process's gauges mean nothing
      k.assign(reinterpret_cast<const char*>(&family), sizeof family);
      append_label_bytes(k, labels, rv.label_bytes);
      std::uint64_t* d = nullptr;
      if (const auto it = index.map.find(std::string_view(k)); it != index.map.end()) {
        d = it->second;
      } else {
        d = allocate(retired, family, f, std::string_view(k).substr(sizeof family));
        if (d == nullptr) {
          if (!retired_full_warned) {
            retired_full_warned = true;
            log::write(log::Level::kError, kLogger, "metrics_retired_region_full",
                       {{"metric", f.name}, {"region_bytes", retired.bytes}});
          }
          continue;
        }
        index.map.emplace(k, d);
        index.indexed_words = retired.used_words();
      }
      if (f.kind == Kind::kCounter) {
        add_u64(d[kCounterInt], load(v[kCounterInt]));
        add_double(d[kCounterFrac], load_double(v[kCounterFrac]));
      } else {
        add_double(d[kHistogramSum], load_double(v[kHistogramSum]));
        for (std::size_t b = 0; b <= f.bounds.size(); ++b)
          add_u64(d[kHistogramBuckets + b], load(v[kHistogramBuckets + b]));
      }
    }
  }

  // Copies a region's published records; entries point into the copy. `families` is the schema
  // of the arena the region belongs to; slot_of[family] is the family's list in `by_family`.
  static void snapshot_region(RegionRef r, std::uint32_t index, RegionSnapshot& out,
                              const std::vector<std::unique_ptr<FamilyData>>& families,
                              const std::vector<std::size_t>& slot_of, std::vector<std::vector<Entry>>& by_family) {
    const std::size_t used = r.used_words();
    out.worker = static_cast<std::int64_t>(load(r.base[kRegionWorker]));
    out.words.resize(used);
    const std::uint64_t* src = r.records();
    std::uint64_t* dst = out.words.data();
    for (std::size_t i = 0; i < used;) {
      RecordView rv;
      if (!parse_record(src + i, used - i, families, &rv)) break;
      const FamilyData& f = *families[rv.family];
      for (std::size_t j = 0; j < rv.exemplar; ++j) dst[i + j] = load(src[i + j]);
      const std::string_view labels(reinterpret_cast<const char*>(dst + i + kRecordHeaderWords), rv.label_bytes);
      const std::uint64_t* ex = nullptr;
      if (f.has_exemplar && read_exemplar(src + i + rv.exemplar, dst + i + rv.exemplar)) ex = dst + i + rv.exemplar;
      const std::size_t slot = slot_of[rv.family];
      if (slot != kNoSlot &&
          static_cast<std::size_t>(std::count(labels.begin(), labels.end(), kLabelEnd)) == f.label_names.size())
        by_family[slot].push_back(Entry{labels, dst + i + rv.values, ex, index});
      i += rv.words;
    }
  }

  // The first `nregions` regions of an arena (from `totals_from` on: totals, no gauges) under its
  // seqlock: retried while a retire()/reset() runs. Appends to `regions`; the entries go
  // to by_family[slot_of[family]].
  // `absorbed` (2 words, may be null) receives the arena's kArenaAbsorbed* words, read under the
  // same seqlock as the regions (they change together with the retired totals).
  static void snapshot_arena(const std::uint64_t* arena_words, std::size_t nregions, std::size_t totals_from,
                             std::size_t region_bytes, const std::vector<std::unique_ptr<FamilyData>>& families,
                             const std::vector<std::size_t>& slot_of, std::vector<RegionSnapshot>& regions,
                             std::vector<std::vector<Entry>>& by_family, std::uint64_t* absorbed = nullptr) {
    const std::size_t first = regions.size();
    regions.resize(first + nregions);
    std::vector<std::size_t> sizes(by_family.size());
    for (std::size_t i = 0; i < by_family.size(); ++i) sizes[i] = by_family[i].size();
    std::uint64_t* words = const_cast<std::uint64_t*>(arena_words);  // read only: loads
    constexpr int kMaxAttempts = 2000;  // about 100 ms of a stuck writer, then render what was read
    for (int attempt = 0;; ++attempt) {
      const bool last = attempt >= kMaxAttempts;
      const std::uint64_t s1 = load(words[kArenaSeq], std::memory_order_acquire);
      if ((s1 & 1) != 0 && !last) {
        pause(attempt);
        continue;
      }
      for (std::size_t i = 0; i < by_family.size(); ++i) by_family[i].resize(sizes[i]);
      for (std::size_t i = 0; i < nregions; ++i) {
        const RegionRef r{words + kArenaHeaderBytes / 8 + i * (region_bytes / 8), region_bytes};
        const std::size_t index = first + i;
        snapshot_region(r, static_cast<std::uint32_t>(index), regions[index], families, slot_of, by_family);
        regions[index].retired = i >= totals_from;
      }
      if (absorbed != nullptr) {
        absorbed[0] = load(words[kArenaAbsorbedParent]);
        absorbed[1] = load(words[kArenaAbsorbedNext]);
      }
      std::atomic_thread_fence(std::memory_order_acquire);
      if (load(words[kArenaSeq]) == s1 || last) return;
      pause(attempt);
    }
  }

  // This process's arena (or, before there is one, its local region).
  // Without `with_absorbed`, the totals of ended generations are left out.
  void snapshot(std::vector<RegionSnapshot>& regions, std::vector<std::vector<Entry>>& by_family,
                std::uint64_t* absorbed, bool with_absorbed) const {
    std::vector<std::size_t> identity(families.size());
    for (std::size_t i = 0; i < identity.size(); ++i) identity[i] = i;
    if (!sealed.load()) {
      regions.resize(1);
      snapshot_region(current, 0, regions[0], families, identity, by_family);
      return;
    }
    const std::size_t workers = nworkers.load();
    snapshot_arena(arena.words(), workers + kSpecialRegions - (with_absorbed ? 0 : 1), workers + kRetiredRegion,
                   region_bytes, families, identity, regions, by_family, absorbed);
  }

  static void pause(int attempt) {
    if (attempt < 16) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }
};

Registry::Registry() : impl_(std::make_unique<Impl>()) {
  // A fork() while another thread holds the mutex would leave it locked forever in the child
  // (whose first call is attach()): hold it across fork() instead.
  ::pthread_atfork([] { Registry::instance().impl_->mu.lock(); }, [] { Registry::instance().impl_->mu.unlock(); },
                   [] { Registry::instance().impl_->mu.unlock(); });
}
Registry::~Registry() = default;

Registry& Registry::instance() {
  // Never destroyed: threads may still update children while the process exits.
  static Registry* const registry = new Registry();
  return *registry;
}

namespace {

// A memfd of at least `bytes` for an arena: the one the previous generation prepared (its old
// content dropped: a generation that ran in it before may have left records; never shrunk, as
// the previous generation's workers may be reading it), else a new one. -1 when there is none.
int arena_memfd(int inherited, std::size_t bytes) {
  if (inherited >= 0) {
    struct stat st {};
    if (::fstat(inherited, &st) == 0 && S_ISREG(st.st_mode)) {
      const auto size = static_cast<std::size_t>(st.st_size);
      if (size > 0) (void)::fallocate(inherited, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, st.st_size);
      if (size >= bytes || ::ftruncate(inherited, static_cast<off_t>(bytes)) == 0) return inherited;
    }
    ::close(inherited);
  }
  const int fd = ::memfd_create("keel-metrics", MFD_CLOEXEC);
  if (fd < 0) return -1;
  if (::ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// A descriptor named in `env` that is one of keel's arena memfds (the variable may be stale:
// then the number can belong to anything else of this process, which must not be touched).
int inherited_arena_fd(const char* env) {
  const char* value = std::getenv(env);
  if (value == nullptr) return -1;
  const std::string text = value;
  ::unsetenv(env);
  int fd = -1;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), fd);
  if (ec != std::errc() || end != text.data() + text.size() || fd < 3) return -1;
  char target[64] = {};
  const std::string link = "/proc/self/fd/" + std::to_string(fd);
  const ssize_t n = ::readlink(link.c_str(), target, sizeof target - 1);
  if (n <= 0 || std::string_view(target, static_cast<std::size_t>(n)).rfind("/memfd:keel-metrics", 0) != 0) return -1;
  ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  return fd;
}

}  // namespace

ArenaLink inherited_arena_link(int generation) {
  ArenaLink link;
  link.fd = inherited_arena_fd(kArenaFdEnv);
  link.parent_fd = inherited_arena_fd(kParentArenaFdEnv);
  link.generation = generation;
  return link;
}

void Registry::create_arena(std::size_t worker_regions, std::size_t region_bytes, const ArenaLink& link) {
  Impl& m = *impl_;
  std::lock_guard lock(m.mu);
  if (m.sealed.load()) throw std::logic_error("metrics: the arena already exists");
  if (worker_regions > kMaxWorkerRegions) throw std::invalid_argument("metrics: too many worker regions");
  const std::size_t rb = round_up(std::max(region_bytes, kPageBytes), kPageBytes);
  if (rb > kMaxRegionBytes) throw std::invalid_argument("metrics: region_bytes is larger than 1 GiB");
  const std::string schema = schema_json(m.families);
  const std::size_t schema_offset = kArenaHeaderBytes + (worker_regions + kSpecialRegions) * rb;
  const std::size_t bytes = round_up(schema_offset + schema.size(), kPageBytes);
  // A memfd, so that another generation can map it; an anonymous mapping if that fails (the
  // service works the same, only scrapes during an upgrade show one generation).
  const int fd = arena_memfd(link.fd, bytes);
  Mapping arena = fd >= 0 ? Mapping(fd, bytes, true) : Mapping(bytes, true);
  std::uint64_t* h = arena.words();
  std::memcpy(reinterpret_cast<char*>(h) + schema_offset, schema.data(), schema.size());
  store(h[kArenaRegions], worker_regions + kSpecialRegions);
  store(h[kArenaRegionBytes], rb);
  store(h[kArenaSchemaOffset], schema_offset);
  store(h[kArenaSchemaBytes], schema.size());
  store(h[kArenaMasterPid], static_cast<std::uint64_t>(::getpid()));
  store(h[kArenaGeneration], static_cast<std::uint64_t>(std::max(link.generation, 1)));
  store(h[kArenaState], kArenaOpen);
  store(h[kArenaMagicWord], kArenaMagic, std::memory_order_release);
  m.arena = std::move(arena);
  m.arena_fd = fd;
  m.parent_fd = link.parent_fd;
  m.generation = std::max(link.generation, 1);
  if (fd >= 0) {
    m.next_fd = ::memfd_create("keel-metrics", MFD_CLOEXEC);  // empty until a next generation starts
  } else if (link.parent_fd >= 0) {
    ::close(link.parent_fd);
    m.parent_fd = -1;
  }
  m.region_bytes = rb;
  m.nworkers.store(worker_regions);
  for (std::size_t i = 0; i < worker_regions + kSpecialRegions; ++i) {
    store(m.region(i).base[kRegionWorker],
          static_cast<std::uint64_t>(i == worker_regions + kMasterRegion ? kMasterWorker : kNoWorker));
  }
  const RegionRef master = m.region(worker_regions + kMasterRegion);
  store(master.base[kRegionPid], static_cast<std::uint64_t>(::getpid()));

  // Children move into the master region with their values. The local region stays mapped: a
  // thread that loaded a child's old address a moment ago must not write into unmapped memory.
  const RegionRef local = m.current;
  m.current = master;
  m.current_index = worker_regions;
  m.region_full_warned = false;
  for (std::size_t fi = 0; fi < m.families.size(); ++fi) {
    FamilyData& f = *m.families[fi];
    for (const ChildSlot& slot : f.children) {
      const std::uint64_t* old = Impl::values_of(f, slot.child);
      m.place(fi, f, slot.child, slot.key);
      std::uint64_t* now = Impl::values_of(f, slot.child);
      const bool old_in_local = old >= local.records() && old < local.records() + local.capacity_words();
      if (now != f.dummy.get() && old_in_local)
        for (std::size_t w = 0; w < f.value_words; ++w) store(now[w], load(old[w]));
    }
  }
  m.sealed.store(true);
}

bool Registry::has_arena() const noexcept {
  return impl_->sealed.load();
}

std::size_t Registry::worker_regions() const noexcept {
  return impl_->nworkers.load();
}

void Registry::attach(std::size_t region, int worker_id, pid_t pid) {
  Impl& m = *impl_;
  std::lock_guard lock(m.mu);
  if (!m.sealed.load()) throw std::logic_error("metrics: attach() before create_arena()");
  if (region >= m.nworkers.load())
    throw std::out_of_range("metrics: attach(): no worker region " + std::to_string(region));
  const RegionRef r = m.region(region);
  store(r.base[kRegionWorker], static_cast<std::uint64_t>(worker_id >= 0 ? std::int64_t{worker_id} : kNoWorker));
  store(r.base[kRegionPid], static_cast<std::uint64_t>(pid));
  m.current = r;
  m.current_index = region;
  m.region_full_warned = false;
  for (std::size_t fi = 0; fi < m.families.size(); ++fi) {
    FamilyData& f = *m.families[fi];
    for (const ChildSlot& slot : f.children) m.place(fi, f, slot.child, slot.key);
  }
}

void Registry::retire(std::size_t region) {
  Impl& m = *impl_;
  std::lock_guard lock(m.mu);
  m.check_worker_region(region, "retire()");
  if (region == m.current_index) throw std::logic_error("metrics: retire(): this process writes to that region");
  const RegionRef r = m.region(region);
  const SeqWrite write(m.seq());
  m.fold(r, m.region(m.nworkers.load() + kRetiredRegion), m.retired_index);
  m.clear_region(r);
}

void Registry::reset(std::size_t region) {
  Impl& m = *impl_;
  std::lock_guard lock(m.mu);
  m.check_worker_region(region, "reset()");
  if (region == m.current_index) throw std::logic_error("metrics: reset(): this process writes to that region");
  const SeqWrite write(m.seq());
  m.clear_region(m.region(region));
}

std::vector<std::pair<std::string, int>> Registry::handover_fds() const {
  const Impl& m = *impl_;
  std::lock_guard lock(m.mu);
  if (m.arena_fd < 0 || m.next_fd < 0) return {};
  return {{kArenaFdEnv, m.next_fd}, {kParentArenaFdEnv, m.arena_fd}};
}

void Registry::close_arena() noexcept {
  Impl& m = *impl_;
  std::lock_guard lock(m.mu);
  if (m.sealed.load()) store(m.arena.words()[kArenaState], kArenaClosed, std::memory_order_release);
}

void Registry::absorb_ended_generations() {
  Impl& m = *impl_;
  std::lock_guard lock(m.mu);
  if (!m.sealed.load() || m.arena_fd < 0) return;
  std::uint64_t* h = m.arena.words();
  const int fds[2] = {m.parent_fd, m.next_fd};
  const ArenaWord marks[2] = {kArenaAbsorbedParent, kArenaAbsorbedNext};
  for (int k = 0; k < 2; ++k) {
    std::optional<PeerArena> peer = open_peer(fds[k]);
    if (!peer || peer->live || peer->master_pid == load(h[marks[k]]) || !map_peer(*peer)) continue;
    // Its families that are this binary's too (same name and shape); others cannot be kept.
    peer->slot_of.assign(peer->families.size(), kNoSlot);
    for (std::size_t i = 0; i < peer->families.size(); ++i) {
      const FamilyData& pf = *peer->families[i];
      for (std::size_t j = 0; j < m.families.size(); ++j) {
        const FamilyData& f = *m.families[j];
        if (f.name == pf.name && same_shape(f, pf)) peer->slot_of[i] = j;
      }
    }
    const RegionRef absorbed = m.region(m.nworkers.load() + kAbsorbedRegion);
    TotalsIndex index;
    {
      const SeqWrite write(m.seq());
      for (std::size_t i = 0; i < peer->regions; ++i)
        m.fold(
            RegionRef{peer->mapping.words() + kArenaHeaderBytes / 8 + i * (peer->region_bytes / 8), peer->region_bytes},
            absorbed, index, &peer->families, &peer->slot_of);
      store(h[marks[k]], peer->master_pid);
    }
    log::write(log::Level::kInfo, kLogger, "metrics_generation_absorbed",
               {{"generation", peer->generation}, {"master_pid", static_cast<std::int64_t>(peer->master_pid)}});
  }
}

std::string Registry::render(Format format, bool this_generation_only) const {
  const Impl& m = *impl_;
  std::lock_guard lock(m.mu);
  std::vector<RegionSnapshot> regions;
  std::vector<std::vector<Entry>> by_family(m.families.size());
  std::uint64_t absorbed[2] = {0, 0};
  m.snapshot(regions, by_family, absorbed, !this_generation_only);
  std::vector<const FamilyData*> families;
  for (const auto& f : m.families) families.push_back(f.get());

  // While another generation serves beside this one, its arena joins the scrape; once it ended,
  // its final counters do, until this generation's master has taken them over (absorb_ended_
  // generations()), so a counter never goes back when a generation leaves.
  std::vector<PeerArena> peers;
  if (!this_generation_only && m.sealed.load()) {
    struct Merged {
      int generation;
      std::uint64_t master_pid;
      std::size_t first_region, end_region;
    };
    std::vector<Merged> arenas{{m.generation, load(m.arena.words()[kArenaMasterPid]), 0, regions.size()}};
    StringSet claimed;
    const int fds[2] = {m.parent_fd, m.next_fd};
    for (int k = 0; k < 2; ++k) {
      std::optional<PeerArena> peer = open_peer(fds[k]);
      if (!peer || peer->master_pid == absorbed[k] || !map_peer(*peer)) continue;
      if (claimed.empty()) claimed = m.claimed;
      link_families(*peer, families, claimed, by_family);
      const std::size_t first = regions.size();
      Impl::snapshot_arena(peer->mapping.words(), peer->regions, peer->regions - kTotalsRegions, peer->region_bytes,
                           peer->families, peer->slot_of, regions, by_family);
      if (peer->live) {
        arenas.push_back({peer->generation, peer->master_pid, first, regions.size()});
      } else {
        for (std::size_t i = first; i < regions.size(); ++i) regions[i].retired = true;  // no gauges of the dead
      }
      peers.push_back(std::move(*peer));
    }
    // Per-worker series say whose worker: "<generation>.<id>", or "<master pid>.<id>" when two
    // merged arenas have the same generation number (a plain USR2 upgrade): two series of a
    // family must never have the same labels.
    for (const Merged& a : arenas) {
      if (arenas.size() < 2) break;
      const bool ambiguous = std::count_if(arenas.begin(), arenas.end(),
                                           [&a](const Merged& b) { return b.generation == a.generation; }) > 1;
      const std::string prefix = (ambiguous ? std::to_string(a.master_pid) : std::to_string(a.generation)) + ".";
      for (std::size_t i = a.first_region; i < a.end_region; ++i) regions[i].worker_prefix = prefix;
    }
  }

  std::size_t entries = 0;
  for (const auto& list : by_family) entries += list.size();
  std::string out;
  out.reserve(families.size() * 160 + entries * 96);
  std::vector<std::uint64_t> buckets;
  for (std::size_t fi = 0; fi < families.size(); ++fi)
    render_family(out, *families[fi], by_family[fi], regions, format, buckets);
  if (format == Format::kOpenMetrics) out += "# EOF\n";
  return out;
}

template <class Child>
Child& Registry::child(std::size_t family, const std::vector<std::string>& values) {
  return impl_->child<Child>(family, values);
}

template <class Child>
Child& Registry::child(std::size_t family, std::span<const std::string_view> values) {
  return impl_->child<Child>(family, values);
}

void Registry::reset_for_tests() {
  Impl& m = *impl_;
  std::lock_guard lock(m.mu);
  m.families.clear();
  m.claimed.clear();
  m.arena.reset();
  for (int* fd : {&m.arena_fd, &m.next_fd, &m.parent_fd}) {
    if (*fd >= 0) ::close(*fd);
    *fd = -1;
  }
  m.generation = 1;
  m.sealed.store(false);
  m.nworkers.store(0);
  m.region_bytes = 0;
  m.retired_index = {};
  m.retired_full_warned = false;
  m.init_local();
}

template CounterChild& Registry::child<CounterChild>(std::size_t, const std::vector<std::string>&);
template GaugeChild& Registry::child<GaugeChild>(std::size_t, const std::vector<std::string>&);
template HistogramChild& Registry::child<HistogramChild>(std::size_t, const std::vector<std::string>&);
template CounterChild& Registry::child<CounterChild>(std::size_t, std::span<const std::string_view>);
template GaugeChild& Registry::child<GaugeChild>(std::size_t, std::span<const std::string_view>);
template HistogramChild& Registry::child<HistogramChild>(std::size_t, std::span<const std::string_view>);

}  // namespace metrics_detail

// ---- public API ---------------------------------------------------------------------------------

template <class Child>
Child& Family<Child>::labels(std::initializer_list<std::string_view> values) {
  if (registry_ == nullptr) throw std::logic_error("metrics: family not registered");
  return registry_->child<Child>(index_, std::span<const std::string_view>(values.begin(), values.size()));
}

template <class Child>
Child& Family<Child>::labels(const std::vector<std::string>& values) {
  if (registry_ == nullptr) throw std::logic_error("metrics: family not registered");
  return registry_->child<Child>(index_, values);
}

template class Family<CounterChild>;
template class Family<GaugeChild>;
template class Family<HistogramChild>;

const std::vector<double>& default_latency_buckets() {
  static const std::vector<double> buckets{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                           0.1,    0.25,  0.5,    1,     2.5,  5,     10};
  return buckets;
}

Counter& MetricsRegistry::counter(std::string name, std::string help, std::vector<std::string> label_names,
                                  FamilyOptions options) {
  return metrics_detail::Registry::instance().impl_->add<CounterChild>(std::move(name), std::move(help),
                                                                       std::move(label_names), {}, options);
}

Gauge& MetricsRegistry::gauge(std::string name, std::string help, std::vector<std::string> label_names,
                              FamilyOptions options) {
  return metrics_detail::Registry::instance().impl_->add<GaugeChild>(std::move(name), std::move(help),
                                                                     std::move(label_names), {}, options);
}

Histogram& MetricsRegistry::histogram(std::string name, std::string help, std::vector<std::string> label_names,
                                      std::vector<double> buckets, FamilyOptions options) {
  return metrics_detail::Registry::instance().impl_->add<HistogramChild>(
      std::move(name), std::move(help), std::move(label_names), std::move(buckets), options);
}

MetricsRegistry& metrics() {
  static MetricsRegistry registry;
  return registry;
}

}  // namespace keel
