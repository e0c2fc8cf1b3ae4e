// Tests of the metrics registry: families, children, the hot path, the shared-memory arena
// (attach / retire / reset, across real fork()ed processes) and the aggregation in render().
#include "metrics/registry.hpp"
#include "log/log.hpp"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "keel/metrics.hpp"

namespace {

using keel::metrics;
using keel::metrics_detail::Format;
using keel::metrics_detail::Registry;

class MetricsRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override { Registry::instance().reset_for_tests(); }
  void TearDown() override { Registry::instance().reset_for_tests(); }

  static std::string render(Format f = Format::kPrometheus) { return Registry::instance().render(f); }

  static std::vector<std::string> lines(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
  }

  static bool has_line(const std::string& text, const std::string& line) {
    for (const auto& l : lines(text))
      if (l == line) return true;
    return false;
  }

  // The value of the sample line starting with `prefix` + " ", or NaN.
  static double sample(const std::string& text, const std::string& prefix) {
    for (const auto& l : lines(text))
      if (l.starts_with(prefix + " ")) return std::stod(l.substr(prefix.size() + 1));
    return std::numeric_limits<double>::quiet_NaN();
  }

  static bool contains(const std::string& haystack, const std::string& needle) {
    return haystack.find(needle) != std::string::npos;
  }

  template <class F>
  static std::string invalid_argument_of(F&& f) {
    try {
      f();
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    ADD_FAILURE() << "expected std::invalid_argument";
    return {};
  }

  // Runs f in a fork()ed child that exits with f's return value; returns the exit status.
  template <class F>
  static int in_child(F&& f) {
    const pid_t pid = ::fork();
    if (pid == 0) ::_exit(f());
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  // A second generation in a fork()ed child, as an upgraded binary starts: it inherits the arenas
  // this process hands over, forgets this process's families and runs body(link, generation),
  // which registers its own, creates its arena from the link and returns its exit code. The two
  // go in steps: the child's step() lets the test see its state (reached()) until go_on().
  class NextGeneration {
   public:
    template <class F>
    explicit NextGeneration(F&& body) {
      EXPECT_EQ(::pipe(up_), 0);
      EXPECT_EQ(::pipe(down_), 0);
      pid_ = ::fork();
      if (pid_ != 0) return;
      const auto fds = Registry::instance().handover_fds();
      const keel::metrics_detail::ArenaLink link{.fd = ::dup(fds.at(0).second), .parent_fd = ::dup(fds.at(1).second)};
      Registry::instance().reset_for_tests();
      ::_exit(body(link, *this));
    }
    NextGeneration(const NextGeneration&) = delete;
    NextGeneration& operator=(const NextGeneration&) = delete;
    ~NextGeneration() {
      for (const int fd : {up_[0], up_[1], down_[0], down_[1]}) ::close(fd);
    }
    [[nodiscard]] pid_t pid() const { return pid_; }
    bool step() {  // in the child
      char c = 0;
      return ::write(up_[1], "s", 1) == 1 && ::read(down_[0], &c, 1) == 1;
    }
    bool reached() {  // in the test
      char c = 0;
      return ::read(up_[0], &c, 1) == 1;
    }
    bool go_on() { return ::write(down_[1], "g", 1) == 1; }
    int exit_code() {
      int status = 0;
      ::waitpid(pid_, &status, 0);
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }

   private:
    int up_[2] = {-1, -1};
    int down_[2] = {-1, -1};
    pid_t pid_ = -1;
  };
};

TEST_F(MetricsRegistryTest, CounterIncrementsAndRenders) {
  auto& orders = metrics().counter("shop_orders_total", "Orders placed.", {"kind"});
  auto& paid = orders.labels({"paid"});
  EXPECT_EQ(&paid, &orders.labels({"paid"}));
  EXPECT_EQ(&paid, &orders.labels(std::vector<std::string>{"paid"}));
  EXPECT_NE(&paid, &orders.labels({"free"}));
  paid.inc();
  paid.inc(2);
  paid.inc(0.5);
  paid.inc(-4);                                        // ignored
  paid.inc(std::numeric_limits<double>::quiet_NaN());  // ignored
  EXPECT_DOUBLE_EQ(paid.value(), 3.5);
  EXPECT_EQ(orders.name(), "shop_orders_total");

  const std::string text = render();
  EXPECT_TRUE(has_line(text, "# HELP shop_orders_total Orders placed.")) << text;
  EXPECT_TRUE(has_line(text, "# TYPE shop_orders_total counter")) << text;
  EXPECT_TRUE(has_line(text, "shop_orders_total{kind=\"paid\"} 3.5")) << text;
  EXPECT_TRUE(has_line(text, "shop_orders_total{kind=\"free\"} 0")) << text;
}

TEST_F(MetricsRegistryTest, IntegralCountersRenderWithoutDecimalPoint) {
  auto& c = metrics().counter("jobs_total", "Jobs.").labels({});
  for (int i = 0; i < 5; ++i) c.inc();
  EXPECT_TRUE(has_line(render(), "jobs_total 5"));
  EXPECT_TRUE(has_line(render(Format::kOpenMetrics), "jobs_total 5"));
}

TEST_F(MetricsRegistryTest, FamilyWithoutLabelsIsExposedAtOnceAndEmptyFamiliesKeepTheirHeader) {
  metrics().gauge("queue_depth", "Queued items.");
  metrics().counter("events_total", "Events.", {"type"});
  const std::string text = render();
  EXPECT_TRUE(has_line(text, "queue_depth 0")) << text;
  EXPECT_TRUE(has_line(text, "# HELP events_total Events.")) << text;
  EXPECT_TRUE(has_line(text, "# TYPE events_total counter")) << text;
  EXPECT_EQ(text.find("events_total{"), std::string::npos) << text;
}

TEST_F(MetricsRegistryTest, InvalidNamesAreRejected) {
  auto& m = metrics();
  for (const char* bad : {"", "1abc", "a-b", "a b", "é"}) {
    EXPECT_THROW(m.gauge(bad, "h"), std::invalid_argument) << bad;
  }
  EXPECT_NO_THROW(m.gauge("ok:name_1", "h"));
  const std::string no_total = invalid_argument_of([&] { m.counter("requests", "h"); });
  EXPECT_TRUE(contains(no_total, "\"requests\"")) << no_total;
  EXPECT_THROW(m.counter("_total", "h"), std::invalid_argument);
  int n = 0;
  for (const char* bad : {"", "1a", "a-b", "__reserved", "a:b"}) {
    EXPECT_THROW(m.gauge("g_" + std::to_string(++n), "h", {bad}), std::invalid_argument) << bad;
  }
  EXPECT_THROW(m.gauge("dup_labels", "h", {"a", "a"}), std::invalid_argument);
  EXPECT_THROW(m.histogram("h_le", "h", {"le"}), std::invalid_argument);
  EXPECT_THROW(m.gauge("per_worker", "h", {"worker"}, {.gauge_mode = keel::GaugeMode::kPerWorker}),
               std::invalid_argument);
  EXPECT_NO_THROW(m.gauge("summed", "h", {"worker"}));
  EXPECT_THROW(m.gauge("capped", "h", {}, {.max_series = 0}), std::invalid_argument);
}

TEST_F(MetricsRegistryTest, DuplicateAndClashingFamilyNamesAreRejected) {
  auto& m = metrics();
  m.counter("orders_total", "h");
  const std::string duplicate = invalid_argument_of([&] { m.counter("orders_total", "h"); });
  EXPECT_TRUE(contains(duplicate, "orders_total")) << duplicate;
  EXPECT_THROW(m.gauge("orders_total", "h"), std::invalid_argument);
  EXPECT_THROW(m.gauge("orders", "h"), std::invalid_argument);  // the OpenMetrics family name
  EXPECT_THROW(m.gauge("orders_created", "h"), std::invalid_argument);
  m.histogram("latency_seconds", "h");
  EXPECT_THROW(m.gauge("latency_seconds_count", "h"), std::invalid_argument);
  EXPECT_THROW(m.gauge("latency_seconds_bucket", "h"), std::invalid_argument);
  // A counter's OpenMetrics family name may not be another family's sample name either.
  EXPECT_THROW(m.counter("latency_seconds_sum_total", "h"), std::invalid_argument);
}

TEST_F(MetricsRegistryTest, HistogramBucketsAreValidated) {
  auto& m = metrics();
  EXPECT_THROW(m.histogram("h1", "h", {}, {1, 1}), std::invalid_argument);
  EXPECT_THROW(m.histogram("h2", "h", {}, {2, 1}), std::invalid_argument);
  EXPECT_THROW(m.histogram("h3", "h", {}, {1, std::nan("")}), std::invalid_argument);
  EXPECT_THROW(m.histogram("h4", "h", {}, {-std::numeric_limits<double>::infinity(), 1}), std::invalid_argument);
  // A trailing +Inf is the implicit bucket: accepted, not doubled.
  m.histogram("h5", "h", {}, {1, std::numeric_limits<double>::infinity()}).labels({}).observe(3);
  const std::string text = render();
  EXPECT_TRUE(has_line(text, "h5_bucket{le=\"1\"} 0")) << text;
  EXPECT_TRUE(has_line(text, "h5_bucket{le=\"+Inf\"} 1")) << text;
  EXPECT_EQ(text.find("le=\"+Inf\"", text.find("le=\"+Inf\"") + 1), std::string::npos) << text;
  // No buckets at all: just +Inf.
  m.histogram("h6", "h", {}, {}).labels({}).observe(3);
  EXPECT_TRUE(has_line(render(), "h6_bucket{le=\"+Inf\"} 1"));
}

TEST_F(MetricsRegistryTest, RegistrationAfterTheArenaIsALogicError) {
  metrics().counter("before_total", "h");
  Registry::instance().create_arena(1);
  EXPECT_TRUE(Registry::instance().has_arena());
  EXPECT_EQ(Registry::instance().worker_regions(), 1u);
  EXPECT_THROW(metrics().counter("after_total", "h"), std::logic_error);
  EXPECT_THROW(Registry::instance().create_arena(1), std::logic_error);
}

TEST_F(MetricsRegistryTest, LabelCountMismatchNamesTheFamily) {
  auto& requests = metrics().counter("http_things_total", "h", {"method", "route"});
  const std::string msg = invalid_argument_of([&] { requests.labels({"GET"}); });
  EXPECT_TRUE(contains(msg, "http_things_total")) << msg;
  EXPECT_TRUE(contains(msg, "method, route")) << msg;
  EXPECT_THROW(requests.labels({"GET", "/", "extra"}), std::invalid_argument);
  EXPECT_THROW(requests.labels(std::vector<std::string>{}), std::invalid_argument);
}

TEST_F(MetricsRegistryTest, CardinalityCapSendsNewLabelValuesToTheOverflowChildAndWarnsOnce) {
  auto& users = metrics().counter("logins_total", "h", {"user", "region"}, {.max_series = 3});
  ::testing::internal::CaptureStdout();
  auto& a = users.labels({"a", "eu"});
  users.labels({"b", "eu"});
  users.labels({"c", "eu"});
  auto& overflow = users.labels({"d", "eu"});
  auto& overflow2 = users.labels({"e", "us"});
  keel::log::flush();  // the logger writes from its own thread
  const std::string log = ::testing::internal::GetCapturedStdout();
  EXPECT_EQ(&overflow, &overflow2);
  EXPECT_NE(&overflow, &a);
  EXPECT_EQ(&a, &users.labels({"a", "eu"}));  // known values keep their child
  overflow.inc(2);
  a.inc();

  std::size_t warnings = 0;
  for (std::size_t p = log.find("metric_cardinality_capped"); p != std::string::npos;
       p = log.find("metric_cardinality_capped", p + 1))
    ++warnings;
  EXPECT_EQ(warnings, 1u) << log;
  EXPECT_TRUE(contains(log, "\"metric\":\"logins_total\"")) << log;
  EXPECT_TRUE(contains(log, "\"max_series\":3")) << log;
  EXPECT_TRUE(contains(log, "\"level\":\"warning\"")) << log;

  const std::string text = render();
  EXPECT_TRUE(has_line(text, "logins_total{user=\"__overflow__\",region=\"__overflow__\"} 2")) << text;
  EXPECT_TRUE(has_line(text, "logins_total{user=\"a\",region=\"eu\"} 1")) << text;
  EXPECT_EQ(text.find("user=\"d\""), std::string::npos) << text;
}

TEST_F(MetricsRegistryTest, LabelValuesAreEscapedAndInvalidUtf8IsReplaced) {
  auto& f = metrics().counter("labelled_total", "h", {"v"});
  f.labels({"quote\" backslash\\ newline\n end"}).inc();
  f.labels({"caf\xc3\xa9 \xe6\x97\xa5\xf0\x9f\x98\x80"}).inc();  // valid UTF-8 is kept as is
  f.labels({"bad\xff\xfe"}).inc();
  f.labels({std::string_view("trunc\xe2\x82")}).inc();
  f.labels({"overlong\xc0\xaf surrogate\xed\xa0\x80"}).inc();
  const std::string text = render();
  EXPECT_TRUE(has_line(text, "labelled_total{v=\"quote\\\" backslash\\\\ newline\\n end\"} 1")) << text;
  EXPECT_TRUE(has_line(text, "labelled_total{v=\"caf\xc3\xa9 \xe6\x97\xa5\xf0\x9f\x98\x80\"} 1")) << text;
  EXPECT_TRUE(has_line(text, "labelled_total{v=\"bad\xef\xbf\xbd\xef\xbf\xbd\"} 1")) << text;
  EXPECT_TRUE(has_line(text, "labelled_total{v=\"trunc\xef\xbf\xbd\"} 1")) << text;
  EXPECT_TRUE(has_line(text,
                       "labelled_total{v=\"overlong\xef\xbf\xbd\xef\xbf\xbd "
                       "surrogate\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"} 1"))
      << text;
  // Two invalid values that repair to the same text are one series, not two equal ones.
  auto& x = f.labels({"x\xff"});
  EXPECT_EQ(&x, &f.labels({"x\xfe"}));
}

TEST_F(MetricsRegistryTest, HelpIsEscapedPerFormat) {
  metrics().gauge("helpful", "back\\slash\nnew \"quoted\"");
  EXPECT_TRUE(has_line(render(), "# HELP helpful back\\\\slash\\nnew \"quoted\""));
  EXPECT_TRUE(has_line(render(Format::kOpenMetrics), "# HELP helpful back\\\\slash\\nnew \\\"quoted\\\""));
}

TEST_F(MetricsRegistryTest, HistogramBucketsAreCumulativeWithInfEqualToCount) {
  auto& h = metrics().histogram("size_bytes", "Sizes.", {"kind"}, {1, 2.5, 5}).labels({"x"});
  for (const double v : {0.5, 1.0, 2.0, 7.0, -3.0}) h.observe(v);
  h.observe(std::numeric_limits<double>::quiet_NaN());  // ignored
  EXPECT_EQ(h.count(), 5u);
  EXPECT_DOUBLE_EQ(h.sum(), 7.5);
  const std::string text = render();
  EXPECT_TRUE(has_line(text, "# TYPE size_bytes histogram")) << text;
  EXPECT_TRUE(has_line(text, "size_bytes_bucket{kind=\"x\",le=\"1\"} 3")) << text;  // le is inclusive
  EXPECT_TRUE(has_line(text, "size_bytes_bucket{kind=\"x\",le=\"2.5\"} 4")) << text;
  EXPECT_TRUE(has_line(text, "size_bytes_bucket{kind=\"x\",le=\"5\"} 4")) << text;
  EXPECT_TRUE(has_line(text, "size_bytes_bucket{kind=\"x\",le=\"+Inf\"} 5")) << text;
  EXPECT_TRUE(has_line(text, "size_bytes_sum{kind=\"x\"} 7.5")) << text;
  EXPECT_TRUE(has_line(text, "size_bytes_count{kind=\"x\"} 5")) << text;
  const std::string om = render(Format::kOpenMetrics);
  EXPECT_TRUE(has_line(om, "size_bytes_bucket{kind=\"x\",le=\"1.0\"} 3")) << om;
  EXPECT_TRUE(has_line(om, "size_bytes_bucket{kind=\"x\",le=\"5.0\"} 4")) << om;
}

TEST_F(MetricsRegistryTest, HistogramWithDefaultBucketsIsMonotonic) {
  auto& family = metrics().histogram("latency_seconds", "h");
  auto& h = family.labels({});
  std::uint64_t seed = 12345;
  for (int i = 0; i < 5000; ++i) {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    h.observe(static_cast<double>(seed >> 40) / static_cast<double>(1ULL << 24) * 12.0);  // 0 .. 12 s
  }
  const std::string text = render();
  double previous = -1;
  std::size_t buckets = 0;
  for (const auto& l : lines(text)) {
    if (!l.starts_with("latency_seconds_bucket")) continue;
    const double v = std::stod(l.substr(l.rfind(' ') + 1));
    EXPECT_GE(v, previous) << l;
    previous = v;
    ++buckets;
  }
  EXPECT_EQ(buckets, keel::default_latency_buckets().size() + 1);
  EXPECT_EQ(sample(text, "latency_seconds_bucket{le=\"+Inf\"}"), 5000);
  EXPECT_EQ(sample(text, "latency_seconds_count"), 5000);
  EXPECT_NEAR(sample(text, "latency_seconds_sum"), h.sum(), 1e-6 * h.sum());
}

TEST_F(MetricsRegistryTest, DefaultLatencyBuckets) {
  const std::vector<double> want{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  EXPECT_EQ(keel::default_latency_buckets(), want);
  EXPECT_EQ(&keel::metrics(), &keel::metrics());
}

TEST_F(MetricsRegistryTest, ExemplarsOnlyInOpenMetricsAfterTheRightSample) {
  keel::TraceId id;
  for (std::uint8_t i = 0; i < 16; ++i) id.bytes[i] = static_cast<std::uint8_t>(i * 17);
  EXPECT_TRUE(id.valid());
  EXPECT_FALSE(keel::TraceId{}.valid());
  const std::string hex = "00112233445566778899aabbccddeeff";

  auto& c = metrics().counter("traced_total", "h").labels({});
  c.inc(2, id);
  c.inc(1, keel::TraceId{});  // no exemplar: keeps the previous one
  auto& h = metrics().histogram("traced_seconds", "h", {}, {0.1, 0.5, 1}).labels({});
  h.observe(0.05);
  h.observe(0.3, id);
  metrics().gauge("untraced", "h");

  const std::string prom = render();
  EXPECT_EQ(prom.find(" # "), std::string::npos) << prom;
  EXPECT_EQ(prom.find("trace_id"), std::string::npos) << prom;

  const std::string om = render(Format::kOpenMetrics);
  const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  std::size_t exemplars = 0;
  for (const auto& l : lines(om)) {
    const std::size_t p = l.find(" # {");
    if (p == std::string::npos) continue;
    ++exemplars;
    const std::string prefix = l.substr(0, p);
    const std::string ex = l.substr(p + 4);
    EXPECT_TRUE(ex.starts_with("trace_id=\"" + hex + "\"} ")) << l;
    const std::string rest = ex.substr(ex.find("} ") + 2);
    const double value = std::stod(rest.substr(0, rest.find(' ')));
    const double ts = std::stod(rest.substr(rest.find(' ') + 1));
    EXPECT_NEAR(ts, now, 60) << l;
    if (prefix.starts_with("traced_total")) {
      EXPECT_EQ(prefix, "traced_total 3");
      EXPECT_EQ(value, 2);
    } else {
      EXPECT_EQ(prefix, "traced_seconds_bucket{le=\"0.5\"} 2") << "the bucket the value fell in";
      EXPECT_EQ(value, 0.3);
    }
  }
  EXPECT_EQ(exemplars, 2u) << om;
  EXPECT_TRUE(om.ends_with("# EOF\n"));
  EXPECT_TRUE(has_line(om, "# TYPE traced counter")) << om;
}

TEST_F(MetricsRegistryTest, ChildrenKeepTheirAddressAcrossCreateArenaAndAttach) {
  auto& family = metrics().counter("moves_total", "h", {"k"});
  auto& c = family.labels({"a"});
  auto& g = metrics().gauge("level", "h").labels({});
  c.inc(4);
  g.set(7);
  Registry::instance().create_arena(2);
  EXPECT_EQ(&c, &family.labels({"a"}));
  EXPECT_EQ(c.value(), 4) << "create_arena keeps the values (they move to the master region)";
  EXPECT_EQ(g.value(), 7);
  c.inc();
  Registry::instance().attach(0, 3, ::getpid());
  EXPECT_EQ(&c, &family.labels({"a"}));
  EXPECT_EQ(c.value(), 0) << "attach starts the worker's own series at zero";
  c.inc(10);
  EXPECT_EQ(sample(render(), "moves_total{k=\"a\"}"), 15) << "master region + worker region";
}

TEST_F(MetricsRegistryTest, GaugesCombineByMode) {
  auto& m = metrics();
  auto& sum = m.gauge("g_sum", "h").labels({});
  auto& max = m.gauge("g_max", "h", {}, {.gauge_mode = keel::GaugeMode::kMax}).labels({});
  auto& min = m.gauge("g_min", "h", {}, {.gauge_mode = keel::GaugeMode::kMin}).labels({});
  auto& per = m.gauge("g_per", "h", {"pool"}, {.gauge_mode = keel::GaugeMode::kPerWorker}).labels({"db"});
  const auto set_all = [&](double v) {
    sum.set(v);
    max.set(v);
    min.set(v);
    per.set(v);
  };
  set_all(2);  // before the arena: this process is "master"
  EXPECT_TRUE(has_line(render(), "g_per{pool=\"db\",worker=\"master\"} 2")) << render();

  Registry::instance().create_arena(3);
  Registry::instance().attach(0, 7, ::getpid());
  set_all(5);
  Registry::instance().attach(1, 8, ::getpid());
  set_all(-1);
  per.add(-0.5);
  sum.add(10);

  std::string text = render();
  EXPECT_EQ(sample(text, "g_sum"), 2 + 5 + 9) << text;
  EXPECT_EQ(sample(text, "g_max"), 5) << text;
  EXPECT_EQ(sample(text, "g_min"), -1) << text;
  EXPECT_TRUE(has_line(text, "g_per{pool=\"db\",worker=\"7\"} 5")) << text;
  EXPECT_TRUE(has_line(text, "g_per{pool=\"db\",worker=\"8\"} -1.5")) << text;
  EXPECT_TRUE(has_line(text, "g_per{pool=\"db\",worker=\"master\"} 2")) << text;

  Registry::instance().attach(2, 9, ::getpid());
  Registry::instance().retire(0);  // a dead process's gauges are dropped, not folded
  text = render();
  EXPECT_EQ(sample(text, "g_sum"), 2 + 9 + 0) << text;
  EXPECT_EQ(sample(text, "g_max"), 2) << text;
  EXPECT_EQ(sample(text, "g_min"), -1) << text;
  EXPECT_FALSE(has_line(text, "g_per{pool=\"db\",worker=\"7\"} 5")) << text;
  EXPECT_TRUE(has_line(text, "g_per{pool=\"db\",worker=\"9\"} 0")) << text;
}

TEST_F(MetricsRegistryTest, MinAndMaxIgnoreProcessesThatNeverSetTheGauge) {
  auto& started = metrics().gauge("started_seconds", "h", {}, {.gauge_mode = keel::GaugeMode::kMin}).labels({});
  auto& limit = metrics().gauge("limit_count", "h", {}, {.gauge_mode = keel::GaugeMode::kMax}).labels({});
  auto& total = metrics().gauge("total_count", "h").labels({});
  std::string text = render();
  EXPECT_TRUE(has_line(text, "# TYPE started_seconds gauge")) << text;
  EXPECT_EQ(text.find("\nstarted_seconds "), std::string::npos) << "never set anywhere: no sample\n" << text;
  EXPECT_TRUE(has_line(text, "total_count 0")) << text;

  started.set(1000);
  limit.set(-5);
  Registry::instance().create_arena(1);
  Registry::instance().attach(0, 0, ::getpid());
  EXPECT_EQ(started.value(), 0);
  text = render();
  EXPECT_EQ(sample(text, "started_seconds"), 1000) << "the worker has not set it yet: not 0\n" << text;
  EXPECT_EQ(sample(text, "limit_count"), -5) << text;
  started.add(2000);  // add() on an unset gauge starts from 0
  limit.add(1);
  total.add(3);
  text = render();
  EXPECT_EQ(sample(text, "started_seconds"), 1000) << text;
  EXPECT_EQ(sample(text, "limit_count"), 1) << text;
  EXPECT_EQ(sample(text, "total_count"), 3) << text;
}

TEST_F(MetricsRegistryTest, RetireFoldsCountersAndHistogramsAndResetDropsARegion) {
  auto& family = metrics().counter("work_total", "h", {"kind"});
  auto& c = family.labels({"a"});
  auto& h = metrics().histogram("work_seconds", "h", {}, {1, 10}).labels({});
  auto& reg = Registry::instance();
  reg.create_arena(4);
  c.inc(1);  // master
  reg.attach(0, 0, ::getpid());
  c.inc(10);
  c.inc(0.25);
  h.observe(0.5);
  h.observe(5);
  reg.attach(1, 1, ::getpid());
  c.inc(100);
  h.observe(50);
  family.labels({"only_in_1"}).inc(3);

  std::string text = render();
  EXPECT_EQ(sample(text, "work_total{kind=\"a\"}"), 111.25) << text;
  EXPECT_EQ(sample(text, "work_seconds_count"), 3) << text;

  reg.retire(0);
  text = render();
  EXPECT_EQ(sample(text, "work_total{kind=\"a\"}"), 111.25) << "retire must not lose or double count\n" << text;
  EXPECT_EQ(sample(text, "work_seconds_bucket{le=\"1\"}"), 1) << text;
  EXPECT_EQ(sample(text, "work_seconds_bucket{le=\"10\"}"), 2) << text;
  EXPECT_EQ(sample(text, "work_seconds_count"), 3) << text;
  EXPECT_EQ(sample(text, "work_seconds_sum"), 55.5) << text;
  reg.retire(0);  // already empty: nothing changes
  EXPECT_EQ(sample(render(), "work_total{kind=\"a\"}"), 111.25);

  reg.attach(2, 2, ::getpid());
  c.inc(1000);
  reg.retire(1);  // region 1 folds into the same retired series
  text = render();
  EXPECT_EQ(sample(text, "work_total{kind=\"a\"}"), 1111.25) << text;
  EXPECT_EQ(sample(text, "work_total{kind=\"only_in_1\"}"), 3) << text;
  EXPECT_EQ(sample(text, "work_seconds_count"), 3) << text;

  EXPECT_THROW(reg.retire(2), std::logic_error) << "this process writes to region 2";
  EXPECT_THROW(reg.reset(2), std::logic_error);
  EXPECT_THROW(reg.retire(4), std::out_of_range);
  reg.attach(3, 3, ::getpid());
  reg.reset(2);  // dropped without folding
  EXPECT_EQ(sample(render(), "work_total{kind=\"a\"}"), 111.25);
  reg.reset(2);  // idempotent
  reg.reset(0);
  EXPECT_EQ(sample(render(), "work_total{kind=\"a\"}"), 111.25);
}

TEST_F(MetricsRegistryTest, ArenaOperationsBeforeCreateArenaAreLogicErrors) {
  auto& reg = Registry::instance();
  EXPECT_FALSE(reg.has_arena());
  EXPECT_THROW(reg.attach(0, 0, ::getpid()), std::logic_error);
  EXPECT_THROW(reg.retire(0), std::logic_error);
  EXPECT_THROW(reg.reset(0), std::logic_error);
}

TEST_F(MetricsRegistryTest, AFullRegionHandsOutUnexportedChildrenInsteadOfCrashing) {
  auto& family = metrics().counter("many_total", "h", {"id"}, {.max_series = 10000});
  Registry::instance().create_arena(0, 4096);
  ::testing::internal::CaptureStdout();
  std::vector<keel::CounterChild*> children;
  for (int i = 0; i < 200; ++i) children.push_back(&family.labels({std::to_string(i)}));
  keel::log::flush();  // the logger writes from its own thread
  const std::string log = ::testing::internal::GetCapturedStdout();
  for (auto* c : children) c->inc();
  EXPECT_EQ(log.find("metrics_region_full"), log.rfind("metrics_region_full")) << log;
  EXPECT_NE(log.find("metrics_region_full"), std::string::npos) << log;
  const std::string text = render();
  EXPECT_TRUE(has_line(text, "many_total{id=\"0\"} 1")) << text;
  EXPECT_FALSE(has_line(text, "many_total{id=\"199\"} 1")) << text;
  EXPECT_EQ(&family.labels({"199"}), children.back());
}

TEST_F(MetricsRegistryTest, UpdatesFromSeveralThreadsAreNotLost) {
  auto& c = metrics().counter("threaded_total", "h").labels({});
  auto& g = metrics().gauge("threaded_gauge", "h").labels({});
  auto& h = metrics().histogram("threaded_seconds", "h").labels({});
  constexpr int kThreads = 4;
  constexpr int kIterations = 50000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kIterations; ++i) {
        c.inc();
        c.inc(0.5);
        g.add(1);
        g.add(-0.5);
        h.observe(0.25);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(c.value(), kThreads * kIterations * 1.5);
  EXPECT_EQ(g.value(), kThreads * kIterations * 0.5);
  EXPECT_EQ(h.count(), static_cast<std::uint64_t>(kThreads * kIterations));
  EXPECT_EQ(h.sum(), kThreads * kIterations * 0.25);
}

// A worker is a real process: it attaches to region 1, counts, exits; the master retires the
// region and the totals stay.
TEST_F(MetricsRegistryTest, ForkedWorkerIsFoldedIntoTheRetiredTotals) {
  auto& family = metrics().counter("forked_total", "h", {"who"});
  auto& h = metrics().histogram("forked_seconds", "h", {}, {1}).labels({});
  auto& reg = Registry::instance();
  reg.create_arena(2);
  family.labels({"master"}).inc(2);

  const int status = in_child([&] {
    reg.attach(1, 1, ::getpid());
    auto& mine = family.labels({"worker"});
    for (int i = 0; i < 5; ++i) mine.inc();
    family.labels({"master"}).inc(1);  // the same series, in this worker's region
    h.observe(0.5);
    return mine.value() == 5 ? 0 : 1;
  });
  ASSERT_EQ(status, 0);

  std::string text = render();
  EXPECT_EQ(sample(text, "forked_total{who=\"worker\"}"), 5) << "the dead worker's region still counts\n" << text;
  EXPECT_EQ(sample(text, "forked_total{who=\"master\"}"), 3) << text;
  reg.retire(1);
  text = render();
  EXPECT_EQ(sample(text, "forked_total{who=\"worker\"}"), 5) << text;
  EXPECT_EQ(sample(text, "forked_total{who=\"master\"}"), 3) << text;
  EXPECT_EQ(sample(text, "forked_seconds_count"), 1) << text;

  // The region is reused by the next worker, which starts from zero.
  ASSERT_EQ(in_child([&] {
              reg.attach(1, 2, ::getpid());
              family.labels({"worker"}).inc(7);
              return 0;
            }),
            0);
  reg.retire(1);
  EXPECT_EQ(sample(render(), "forked_total{who=\"worker\"}"), 12);
}

// An upgrade: a second generation (here a fork()ed child that re-registers its own families, as
// another binary would) gets the arena its parent prepared plus the parent's arena. While both
// masters serve, each one's scrape shows both: same families summed, a family only the other has
// rendered from the other's schema, a same-named family of another shape left out, per-worker
// series told apart by generation. Once a master closes its arena its counters stay in the other's
// scrapes, and the other's master takes them over into its retired totals.
TEST_F(MetricsRegistryTest, AnotherGenerationsArenaIsMergedWhileItsMasterServes) {
  using keel::GaugeMode;
  auto& reg = Registry::instance();
  metrics().counter("served_total", "Requests.", {"route"}).labels({"/a"}).inc(3);
  metrics().gauge("conns", "Connections.", {}).labels({}).set(5);
  metrics().gauge("busy", "Per worker.", {}, {.gauge_mode = GaugeMode::kPerWorker}).labels({}).set(1);
  reg.create_arena(1, std::size_t{1} << 20, {.generation = 1});
  ASSERT_EQ(reg.handover_fds().size(), 2U);
  EXPECT_EQ(sample(render(), "busy{worker=\"master\"}"), 1) << "no other generation: plain worker labels";

  NextGeneration next([](keel::metrics_detail::ArenaLink link, NextGeneration& self) {
    auto& r = Registry::instance();
    metrics().counter("only_new_total", "Only in the new binary.").labels({}).inc(2);
    metrics().counter("served_total", "Requests.", {"route"}).labels({"/a"}).inc(4);
    metrics().gauge("conns", "Connections by kind.", {"kind"}).labels({"tls"}).set(9);  // another shape
    metrics().gauge("busy", "Per worker.", {}, {.gauge_mode = GaugeMode::kPerWorker}).labels({}).set(2);
    link.generation = 2;
    r.create_arena(1, std::size_t{1} << 20, link);
    // This generation's scrape merges its parent's arena too.
    const std::string mine = r.render(Format::kPrometheus);
    int ok = sample(mine, "served_total{route=\"/a\"}") == 7 && sample(mine, "only_new_total") == 2 &&
                     sample(mine, "busy{worker=\"1.master\"}") == 1 && sample(mine, "busy{worker=\"2.master\"}") == 2 &&
                     sample(mine, "conns{kind=\"tls\"}") == 9 && !contains(mine, "conns 5")
                 ? 0
                 : 1;
    if (r.render(Format::kPrometheus, true).find("served_total{route=\"/a\"} 4") == std::string::npos) ok = 2;
    if (!self.step()) return 3;
    r.close_arena();
    if (!self.step()) return 3;
    return ok;
  });
  ASSERT_TRUE(next.reached());
  std::string text = render();
  EXPECT_EQ(sample(text, "served_total{route=\"/a\"}"), 7) << text;
  EXPECT_EQ(sample(text, "only_new_total"), 2) << text;
  EXPECT_TRUE(has_line(text, "# HELP only_new_total Only in the new binary.")) << text;
  EXPECT_EQ(sample(text, "conns"), 5) << text;
  EXPECT_FALSE(contains(text, "kind=\"tls\"")) << "a family of another shape is left out\n" << text;
  EXPECT_EQ(sample(text, "busy{worker=\"1.master\"}"), 1) << text;
  EXPECT_EQ(sample(text, "busy{worker=\"2.master\"}"), 2) << text;
  EXPECT_EQ(sample(Registry::instance().render(Format::kPrometheus, true), "served_total{route=\"/a\"}"), 3);
  EXPECT_TRUE(contains(render(Format::kOpenMetrics), "# TYPE only_new counter")) << render(Format::kOpenMetrics);

  ASSERT_TRUE(next.go_on());
  ASSERT_TRUE(next.reached());  // the child closed its arena: its counters are final
  text = render();
  EXPECT_EQ(sample(text, "served_total{route=\"/a\"}"), 7) << "an ended generation still counts\n" << text;
  EXPECT_EQ(sample(text, "only_new_total"), 2) << text;
  EXPECT_EQ(sample(text, "busy{worker=\"master\"}"), 1) << "its gauges end with it, labels are plain\n" << text;
  EXPECT_FALSE(contains(text, "2.master")) << text;

  // The master takes the final counters over (once): the same totals, now from its own arena.
  reg.absorb_ended_generations();
  reg.absorb_ended_generations();
  text = render();
  EXPECT_EQ(sample(text, "served_total{route=\"/a\"}"), 7) << text;
  EXPECT_EQ(sample(reg.render(Format::kPrometheus, true), "served_total{route=\"/a\"}"), 3)
      << "this generation's own numbers (the upgrade analysis) leave out what it took over";
  EXPECT_FALSE(contains(text, "only_new_total")) << "a family this binary lacks ends with its generation\n" << text;
  ASSERT_TRUE(next.go_on());
  EXPECT_EQ(next.exit_code(), 0) << "the child's own checks failed";
  EXPECT_EQ(sample(render(), "served_total{route=\"/a\"}"), 7);
}

// A plain USR2 upgrade: both masters have the same generation number, so per-worker series are
// told apart by master pid (equal labels would make the scrape invalid).
TEST_F(MetricsRegistryTest, PerWorkerSeriesOfTwoMastersOfTheSameGenerationStayDistinct) {
  using keel::GaugeMode;
  auto& reg = Registry::instance();
  auto& busy = metrics().gauge("busy", "Per worker.", {}, {.gauge_mode = GaugeMode::kPerWorker});
  busy.labels({}).set(1);
  reg.create_arena(1);
  NextGeneration next([](keel::metrics_detail::ArenaLink link, NextGeneration& self) {
    metrics().gauge("busy", "Per worker.", {}, {.gauge_mode = GaugeMode::kPerWorker}).labels({}).set(2);
    link.generation = 1;
    Registry::instance().create_arena(1, std::size_t{1} << 20, link);
    return self.step() ? 0 : 3;
  });
  ASSERT_TRUE(next.reached());
  const std::string text = render();
  EXPECT_EQ(sample(text, "busy{worker=\"" + std::to_string(::getpid()) + ".master\"}"), 1) << text;
  EXPECT_EQ(sample(text, "busy{worker=\"" + std::to_string(next.pid()) + ".master\"}"), 2) << text;
  ASSERT_TRUE(next.go_on());
  EXPECT_EQ(next.exit_code(), 0);
}

// Scrapes in another process while the master retires workers: the seqlock means a counter is
// never seen going backwards (missed) or above the true total (counted twice).
TEST_F(MetricsRegistryTest, ScrapesDuringRetireNeverSeeACounterGoBackwards) {
  auto& c = metrics().counter("retired_jobs_total", "h").labels({});
  auto& filler = metrics().counter("retired_filler_total", "h", {"id"});  // makes each retire() longer
  auto& reg = Registry::instance();
  reg.create_arena(2);
  constexpr int kRounds = 40;
  constexpr int kPerRound = 1000;

  int done[2];
  ASSERT_EQ(::pipe(done), 0);
  const pid_t reader = ::fork();
  if (reader == 0) {
    ::close(done[1]);
    double previous = 0;
    int code = 0;
    for (;;) {
      pollfd p{done[0], POLLIN, 0};
      const bool finished = ::poll(&p, 1, 0) > 0;
      const double v = sample(reg.render(Format::kPrometheus), "retired_jobs_total");
      if (!(v >= previous)) code = 1;
      if (v > kRounds * kPerRound) code = 2;
      previous = v;
      if (finished) break;
    }
    if (previous != kRounds * kPerRound) code = 3;
    ::_exit(code);
  }
  ::close(done[0]);
  for (int round = 0; round < kRounds; ++round) {
    const std::size_t region = static_cast<std::size_t>(round % 2);
    ASSERT_EQ(in_child([&] {
                reg.attach(region, round, ::getpid());
                for (int i = 0; i < 200; ++i) filler.labels({std::to_string(i)}).inc();
                for (int i = 0; i < kPerRound; ++i) c.inc();
                return 0;
              }),
              0);
    reg.retire(region);
  }
  ::close(done[1]);
  int status = 0;
  ::waitpid(reader, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: went backwards, 2: counted twice, 3: wrong final total";
  EXPECT_EQ(sample(render(), "retired_jobs_total"), kRounds * kPerRound);
}

}  // namespace
