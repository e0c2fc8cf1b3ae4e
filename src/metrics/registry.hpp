// The metrics registry behind keel/metrics.hpp: families, the shared-memory arena with one region
// per process, folding of exited workers into retired totals, and exposition.
//
// Arena layout (MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, mapped by the master before the first
// fork, so only touched pages cost memory): `regions` worker regions, then one region for the
// master (or the single process), one for the retired totals, and one for the totals taken over
// from an ended generation (see below). Each region is written by one
// process only (its series are appended with a bump allocator and published with a release store
// of the used size; values are relaxed atomics). A scrape reads every region under a sequence
// counter the master bumps around retire(), so a worker folded into the retired totals is never
// counted twice or missed.
//
// The arena is a memfd. During an upgrade two generations (two masters, possibly two binaries)
// serve side by side; each master prepares an empty memfd for the generation it may start and
// hands both over at exec, so each generation's scrapes merge the other's arena (read-only, by
// the family schema stored in it): every scrape shows the whole service, not whichever generation
// the scrape happened to reach. When a generation ends, the other's master takes its final
// counters into its retired totals, so no counter goes back across an upgrade.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "keel/metrics.hpp"

namespace keel::metrics_detail {

enum class Format { kPrometheus, kOpenMetrics };

// How a master's arena links to the generation that started it (see the comment at the top).
struct ArenaLink {
  int fd = -1;         // the memfd the previous generation prepared for this one's arena (-1: a new one)
  int parent_fd = -1;  // the previous generation's arena, merged into scrapes while its master lives
  int generation = 1;  // shown in the worker label of per-worker gauges while generations overlap
};
// What a master hands to the generation it starts: {environment variable, descriptor}.
inline constexpr const char* kArenaFdEnv = "KEEL_METRICS_ARENA_FD";
inline constexpr const char* kParentArenaFdEnv = "KEEL_METRICS_PARENT_FD";
// The link a master started by another one inherited (the variables are removed: they name
// descriptors of this process only); descriptors that are not keel arenas are ignored.
ArenaLink inherited_arena_link(int generation);

// Content negotiation as Prometheus 2.x sends it: OpenMetrics when the Accept header lists
// application/openmetrics-text (any version 0.0.1 / 1.0.0) with a q-value above that of
// text/plain; else the Prometheus text format 0.0.4.
Format negotiate(std::string_view accept);
// "text/plain; version=0.0.4; charset=utf-8" or
// "application/openmetrics-text; version=1.0.0; charset=utf-8".
const char* content_type(Format format);

class Registry {
 public:
  static Registry& instance();

  // Before any fork: maps the arena; registration is closed from then on. Before it, children
  // live in process-local memory (so registration and labels() work in unit tests and before
  // run()); creating the arena moves them into the master region.
  void create_arena(std::size_t worker_regions, std::size_t region_bytes = std::size_t{1} << 20,
                    const ArenaLink& link = {});
  // The descriptors a generation started by this one inherits (empty without an arena):
  // {kArenaFdEnv, the prepared memfd}, {kParentArenaFdEnv, this arena}.
  [[nodiscard]] std::vector<std::pair<std::string, int>> handover_fds() const;
  // The master, on its way out: this arena's counters are final from now on.
  void close_arena() noexcept;
  // The master, when another generation's master ended (closed its arena, or died): that
  // generation's final counters and histograms move into this arena's absorbed totals, so scrapes
  // keep counting them once its arena is no longer merged (its gauges end with it; so do families
  // this binary does not have). Idempotent; a generation still serving is left alone.
  void absorb_ended_generations();
  [[nodiscard]] bool has_arena() const noexcept;
  [[nodiscard]] std::size_t worker_regions() const noexcept;

  // In a forked worker, first thing: this process now writes to worker region `region` (empty:
  // the master cleared it), and every child created so far moves there with zero values, so
  // references held by application code stay valid. worker_id is the `worker` label of
  // per-worker gauges; pid is recorded for diagnostics.
  void attach(std::size_t region, int worker_id, pid_t pid);

  // Master, after reaping the process that used `region`: adds its counters and histograms into
  // the retired totals (gauges of a dead process mean nothing and are dropped) and clears it.
  void retire(std::size_t region);

  // Clears a region without folding (the master, before handing a region to a new worker whose
  // previous owner was already retired). Idempotent.
  // attach(), retire() and reset() throw std::logic_error before create_arena() (and retire() /
  // reset() for the region this process writes to), std::out_of_range for a bad region index.
  void reset(std::size_t region);

  // The exposition of every family: live regions + master region + retired totals, aggregated
  // by (family, label values); gauges by their GaugeMode. Families without any series still get
  // their HELP/TYPE lines. OpenMetrics ends with "# EOF" and carries exemplars.
  // `this_generation_only`: without the other generation's arena (the upgrade analysis compares
  // the generations, each from its own numbers).
  [[nodiscard]] std::string render(Format format, bool this_generation_only = false) const;

  // Internal to the implementation (Family<>::labels).
  template <class Child>
  Child& child(std::size_t family, const std::vector<std::string>& values);
  // The same without building strings (Family<>::labels(std::initializer_list<std::string_view>)).
  template <class Child>
  Child& child(std::size_t family, std::span<const std::string_view> values);

  // For tests: forget every family and unmap the arena.
  void reset_for_tests();

 private:
  friend class keel::MetricsRegistry;  // registration
  struct Impl;

  Registry();
  ~Registry();

  std::unique_ptr<Impl> impl_;
};

}  // namespace keel::metrics_detail
