// Tests of the exposition formats: number rendering, escaping, UTF-8 repair, content negotiation,
// and a populated registry checked by real parsers: promtool (Prometheus text with
// `promtool check metrics`; OpenMetrics with Prometheus' own OpenMetrics parser, the one its
// scrapes use, through `promtool tsdb create-blocks-from openmetrics`) and the prometheus_client
// Python parsers.
#include "metrics/exposition.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>

#include "keel/metrics.hpp"
#include "metrics/registry.hpp"

namespace {

using keel::metrics;
using keel::metrics_detail::Format;
using keel::metrics_detail::Registry;
namespace md = keel::metrics_detail;

constexpr double kInf = std::numeric_limits<double>::infinity();

std::string value_text(double v) {
  std::string out;
  md::append_value(out, v);
  return out;
}

TEST(MetricsNumbers, SampleValues) {
  EXPECT_EQ(value_text(5), "5");
  EXPECT_EQ(value_text(0), "0");
  EXPECT_EQ(value_text(-0.0), "0");
  EXPECT_EQ(value_text(-3), "-3");
  EXPECT_EQ(value_text(0.25), "0.25");
  EXPECT_EQ(value_text(0.1), "0.1");
  EXPECT_EQ(value_text(1e-7), "1e-07");
  EXPECT_EQ(value_text(123456.789), "123456.789");
  EXPECT_EQ(value_text(1e20), "1e+20");
  EXPECT_EQ(value_text(9007199254740991.0), "9007199254740991");
  EXPECT_EQ(std::stod(value_text(0.1 + 0.2)), 0.1 + 0.2) << "shortest round trip";
  EXPECT_EQ(value_text(kInf), "+Inf");
  EXPECT_EQ(value_text(-kInf), "-Inf");
  EXPECT_EQ(value_text(std::nan("")), "NaN");
  std::string u;
  md::append_uint(u, 18446744073709551615ULL);
  EXPECT_EQ(u, "18446744073709551615");
}

TEST(MetricsNumbers, BucketBoundsLikeGoAndOpenMetricsCanonicalNumbers) {
  struct Case {
    double v;
    const char* prometheus;
    const char* openmetrics;
  };
  // The OpenMetrics column is the spec's list of canonical renderings.
  const Case cases[] = {
      {0, "0", "0.0"},
      {0.001, "0.001", "0.001"},
      {0.002, "0.002", "0.002"},
      {0.01, "0.01", "0.01"},
      {0.1, "0.1", "0.1"},
      {0.9, "0.9", "0.9"},
      {0.95, "0.95", "0.95"},
      {0.99, "0.99", "0.99"},
      {0.999, "0.999", "0.999"},
      {1, "1", "1.0"},
      {1.7, "1.7", "1.7"},
      {10, "10", "10.0"},
      {1e-10, "1e-10", "1e-10"},
      {1e-9, "1e-09", "1e-09"},
      {1e-5, "1e-05", "1e-05"},
      {1e-4, "0.0001", "0.0001"},
      {100000, "100000", "100000.0"},
      {1e6, "1e+06", "1e+06"},
      {1e10, "1e+10", "1e+10"},
      {1e23, "1e+23", "1e+23"},
      {1.1e23, "1.1e+23", "1.1e+23"},
      {0.0005, "0.0005", "0.0005"},
      {0.0025, "0.0025", "0.0025"},
      {2.5, "2.5", "2.5"},
      {123456.7, "123456.7", "123456.7"},
      {-0.5, "-0.5", "-0.5"},
      {-2, "-2", "-2.0"},
      {kInf, "+Inf", "+Inf"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(md::format_bound(c.v, Format::kPrometheus), c.prometheus) << c.v;
    EXPECT_EQ(md::format_bound(c.v, Format::kOpenMetrics), c.openmetrics) << c.v;
  }
}

TEST(MetricsEscaping, LabelValuesAndHelp) {
  std::string out;
  md::append_escaped_label_value(out, "a\\b\"c\nd\te");
  EXPECT_EQ(out, "a\\\\b\\\"c\\nd\te");
  out.clear();
  md::append_escaped_help(out, "a\\b\"c\nd", Format::kPrometheus);
  EXPECT_EQ(out, "a\\\\b\"c\\nd");
  out.clear();
  md::append_escaped_help(out, "a\\b\"c\nd", Format::kOpenMetrics);
  EXPECT_EQ(out, "a\\\\b\\\"c\\nd");
}

TEST(MetricsEscaping, Utf8Repair) {
  const auto repaired = [](std::string_view in) {
    std::string out;
    md::append_utf8_repaired(out, in);
    return out;
  };
  const std::string r = "\xef\xbf\xbd";
  EXPECT_EQ(repaired("plain"), "plain");
  EXPECT_EQ(repaired("caf\xc3\xa9 \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf"), "caf\xc3\xa9 \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf");
  EXPECT_EQ(repaired(std::string_view("a\0b", 3)), std::string("a\0b", 3));
  EXPECT_EQ(repaired("\xff"), r);
  EXPECT_EQ(repaired("\x80x"), r + "x");                   // lone continuation byte
  EXPECT_EQ(repaired("\xe2\x82"), r);                      // truncated: one replacement
  EXPECT_EQ(repaired("\xe2\x82x"), r + "x");               // maximal subpart, then go on
  EXPECT_EQ(repaired("\xc0\xaf"), r + r);                  // overlong
  EXPECT_EQ(repaired("\xed\xa0\x80"), r + r + r);          // surrogate
  EXPECT_EQ(repaired("\xf4\x90\x80\x80"), r + r + r + r);  // above U+10FFFF
  EXPECT_EQ(repaired("\xf0\x9f\x98"), r);
  EXPECT_TRUE(md::is_valid_utf8("\xe6\x97\xa5"));
  EXPECT_FALSE(md::is_valid_utf8("\xe6\x97"));
}

TEST(MetricsNegotiation, AcceptHeaders) {
  EXPECT_EQ(md::negotiate("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
                          "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
            Format::kOpenMetrics);
  EXPECT_EQ(md::negotiate("application/openmetrics-text; version=0.0.1,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
            Format::kOpenMetrics);
  EXPECT_EQ(md::negotiate(""), Format::kPrometheus);
  EXPECT_EQ(md::negotiate("text/plain"), Format::kPrometheus);
  EXPECT_EQ(md::negotiate("text/plain;version=0.0.4"), Format::kPrometheus);
  EXPECT_EQ(md::negotiate("*/*"), Format::kPrometheus);
  EXPECT_EQ(md::negotiate("application/json"), Format::kPrometheus);
  EXPECT_EQ(md::negotiate("application/openmetrics-text"), Format::kOpenMetrics);
  EXPECT_EQ(md::negotiate("Application/OpenMetrics-Text; Version=1.0.0"), Format::kOpenMetrics);
  EXPECT_EQ(md::negotiate("application/openmetrics-text;version=1.0.0;q=0"), Format::kPrometheus);
  EXPECT_EQ(md::negotiate("application/openmetrics-text;q=0,text/plain;q=0.1"), Format::kPrometheus);
  EXPECT_EQ(md::negotiate("application/openmetrics-text;q=0.4,text/plain;q=0.5"), Format::kPrometheus);
  EXPECT_EQ(md::negotiate("text/plain;q=0.4, application/openmetrics-text;q=0.5"), Format::kOpenMetrics);
  EXPECT_EQ(md::negotiate("text/plain, application/openmetrics-text"), Format::kPrometheus) << "tie";
  EXPECT_EQ(md::negotiate("application/openmetrics-text, */*"), Format::kOpenMetrics);
  EXPECT_EQ(md::negotiate("application/openmetrics-text;q=0.1, */*;q=0.5"), Format::kPrometheus);
  EXPECT_EQ(md::negotiate("application/openmetrics-text;version=2.0.0"), Format::kPrometheus) << "unknown version";
  EXPECT_EQ(md::negotiate("application/openmetrics-text;q=oops"), Format::kPrometheus);
  EXPECT_EQ(md::negotiate(" , ;; ,application/openmetrics-text ; q=\"0.9\" "), Format::kOpenMetrics);
}

TEST(MetricsNegotiation, ContentTypes) {
  EXPECT_STREQ(md::content_type(Format::kPrometheus), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_STREQ(md::content_type(Format::kOpenMetrics), "application/openmetrics-text; version=1.0.0; charset=utf-8");
}

// ---- a populated registry through real parsers ----------------------------------------------------

class MetricsExpositionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Registry::instance().reset_for_tests();
    char dir[] = "/tmp/keel-metrics-test-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
  }
  void TearDown() override {
    Registry::instance().reset_for_tests();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // Every kind of family and value, spread over worker regions, the master and the retired totals.
  static void populate() {
    auto& m = metrics();
    auto& orders = m.counter("test_orders_total", "Orders placed, by kind.", {"kind", "note"});
    auto& depth =
        m.gauge("test_queue_depth", "Items waiting \"now\".", {"queue"}, {.gauge_mode = keel::GaugeMode::kPerWorker});
    auto& temperature =
        m.gauge("test_temperature_celsius", "Hottest process.", {}, {.gauge_mode = keel::GaugeMode::kMax});
    auto& latency =
        m.histogram("test_request_duration_seconds", "Request latency.\nSecond line \\ backslash.", {"route"});
    auto& offset = m.histogram("test_clock_offset_seconds", "Clock offset.", {}, {-1, -0.5, 0, 0.5, 1});
    m.counter("test_unused_total", "Never incremented.", {"x"});
    m.gauge("test_unused_bytes", "Never set.", {"x"});
    auto& cpu = m.counter("test_cpu_seconds_total", "CPU time.");
    auto& special = m.gauge("test_special_values", "NaN and infinities.", {"which"});
    keel::TraceId id;
    for (std::uint8_t i = 0; i < 16; ++i) id.bytes[i] = static_cast<std::uint8_t>(0xa0 + i);

    auto& reg = Registry::instance();
    orders.labels({"paid", "plain"}).inc(3);
    reg.create_arena(3);
    orders.labels({"paid", "plain"}).inc(1, id);  // master, with an exemplar

    reg.attach(0, 1, ::getpid());
    orders.labels({"paid", "quote \" backslash \\ newline \n end"}).inc(2, id);
    latency.labels({"/users/{id}"}).observe(0.003, id);
    latency.labels({"/users/{id}"}).observe(0.2);
    depth.labels({"db"}).set(4);
    temperature.labels({}).set(21.5);
    offset.labels({}).observe(-0.7);
    cpu.labels({}).inc(0.125);

    reg.attach(1, 2, ::getpid());
    orders.labels({"free", "caf\xc3\xa9 \xff"}).inc();
    orders.labels({"paid", "plain"}).inc(5);
    latency.labels({"/users/{id}"}).observe(12, id);
    latency.labels({"/"}).observe(0.0004);
    depth.labels({"db"}).set(2);
    temperature.labels({}).set(23);
    offset.labels({}).observe(0.3);
    cpu.labels({}).inc(1);
    special.labels({"nan"}).set(std::nan(""));
    special.labels({"inf"}).set(kInf);
    special.labels({"-inf"}).set(-kInf);

    reg.attach(2, 3, ::getpid());
    latency.labels({"/"}).observe(0.07, id);
    reg.retire(0);
  }

  std::string write(const std::string& name, const std::string& content) const {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path, std::ios::binary) << content;
    return path;
  }

  // Runs a shell command; returns its exit status and its stdout + stderr.
  static int run(const std::string& command, std::string* output) {
    FILE* p = ::popen((command + " 2>&1").c_str(), "r");
    if (p == nullptr) return -1;
    char buf[4096];
    std::size_t n = 0;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) output->append(buf, n);
    const int status = ::pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  static bool python_client_available() {
    std::string out;
    return ::access("/usr/bin/python3", X_OK) == 0 &&
           run("/usr/bin/python3 -c 'import prometheus_client.openmetrics.parser, prometheus_client.parser'", &out) ==
               0;
  }

  // promtool's OpenMetrics backfill wants a timestamp on every sample: add one after each value.
  static std::string with_timestamps(const std::string& om) {
    std::string out;
    std::istringstream in(om);
    for (std::string line; std::getline(in, line);) {
      if (!line.empty() && line[0] != '#') {
        std::size_t i = line.find_first_of("{ ");
        if (i != std::string::npos && line[i] == '{') {
          bool quoted = false;
          for (++i; i < line.size(); ++i) {
            if (quoted && line[i] == '\\') {
              ++i;
            } else if (line[i] == '"') {
              quoted = !quoted;
            } else if (!quoted && line[i] == '}') {
              break;
            }
          }
          ++i;
        }
        const std::size_t value_end = line.find(' ', i + 1);
        line.insert(value_end == std::string::npos ? line.size() : value_end, " 1700000000");
      }
      out += line;
      out += '\n';
    }
    return out;
  }

  std::string dir_;
};

TEST_F(MetricsExpositionTest, PrometheusTextPassesPromtool) {
  if (::access("/usr/bin/promtool", X_OK) != 0) GTEST_SKIP() << "/usr/bin/promtool is not installed";
  populate();
  const std::string text = Registry::instance().render(Format::kPrometheus);
  std::string out;
  EXPECT_EQ(run("/usr/bin/promtool check metrics < " + write("metrics.prom", text), &out), 0) << out << "\n" << text;
  EXPECT_EQ(out, "") << text;
}

TEST_F(MetricsExpositionTest, OpenMetricsPassesPrometheusOpenMetricsParser) {
  if (::access("/usr/bin/promtool", X_OK) != 0) GTEST_SKIP() << "/usr/bin/promtool is not installed";
  populate();
  const std::string text = Registry::instance().render(Format::kOpenMetrics);
  // `promtool check metrics` itself only understands the Prometheus text format (it rejects
  // exemplars and OpenMetrics counter naming), so the OpenMetrics text goes through the parser
  // Prometheus scrapes with, via the backfill command.
  std::string out;
  const std::string input = write("metrics.om", with_timestamps(text));
  EXPECT_EQ(run("/usr/bin/promtool tsdb create-blocks-from openmetrics " + input + " " + dir_ + "/blocks", &out), 0)
      << out << "\n"
      << text;
}

TEST_F(MetricsExpositionTest, BothFormatsParseWithThePythonClientAndAgree) {
  if (!python_client_available()) GTEST_SKIP() << "python3 prometheus_client is not installed";
  populate();
  const std::string om = write("metrics.om", Registry::instance().render(Format::kOpenMetrics));
  const std::string prom = write("metrics.prom", Registry::instance().render(Format::kPrometheus));
  const std::string script = write("check.py", R"PY(
import math, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_prom

def samples(families):
    out = {}
    for f in families:
        for s in f.samples:
            labels = tuple(sorted((k, repr(float(v)) if k == 'le' else v) for k, v in s.labels.items()))
            key = (s.name, labels)
            assert key not in out, key
            out[key] = (s.value, s.exemplar)
    return out

om_families = list(parse_om(open(sys.argv[1], encoding='utf-8').read()))
prom_families = list(parse_prom(open(sys.argv[2], encoding='utf-8').read()))
om, prom = samples(om_families), samples(prom_families)
types = {f.name: f.type for f in om_families}
assert types['test_orders'] == 'counter', types
assert types['test_request_duration_seconds'] == 'histogram', types
assert types['test_queue_depth'] == 'gauge', types
assert 'test_unused' in types and 'test_unused_bytes' in types, types
for key, (value, _) in om.items():
    other = prom[key][0]
    assert value == other or (math.isnan(value) and math.isnan(other)), (key, value, other)

def value(name, **labels):
    return om[(name, tuple(sorted(labels.items())))]

assert value('test_orders_total', kind='paid', note='plain')[0] == 9
assert value('test_orders_total', kind='paid', note='quote " backslash \\ newline \n end')[0] == 2
assert value('test_orders_total', kind='free', note='caf\u00e9 \ufffd')[0] == 1
ex = value('test_orders_total', kind='paid', note='plain')[1]
assert ex.labels == {'trace_id': 'a0a1a2a3a4a5a6a7a8a9aaabacadaeaf'} and ex.value == 1, ex
assert value('test_request_duration_seconds_count', route='/users/{id}')[0] == 3
assert value('test_request_duration_seconds_bucket', route='/users/{id}', le=repr(math.inf))[0] == 3
ex = value('test_request_duration_seconds_bucket', route='/users/{id}', le=repr(math.inf))[1]
assert ex.value == 12, ex
assert value('test_cpu_seconds_total')[0] == 1.125
assert value('test_temperature_celsius')[0] == 23
assert value('test_queue_depth', queue='db', worker='2')[0] == 2
assert ('test_clock_offset_seconds_sum', ()) not in om  # negative buckets: no _sum in OpenMetrics
assert abs(prom[('test_clock_offset_seconds_sum', ())][0] + 0.4) < 1e-9
assert math.isnan(value('test_special_values', which='nan')[0])
assert value('test_special_values', which='-inf')[0] == -math.inf
print('ok', len(om_families))
)PY");
  std::string out;
  EXPECT_EQ(run("/usr/bin/python3 " + script + " " + om + " " + prom, &out), 0) << out;
  EXPECT_EQ(out.rfind("ok ", 0), 0u) << out;
}

TEST_F(MetricsExpositionTest, OpenMetricsShape) {
  populate();
  const std::string text = Registry::instance().render(Format::kOpenMetrics);
  EXPECT_TRUE(text.ends_with("\n# EOF\n")) << text;
  EXPECT_NE(text.find("# TYPE test_orders counter\n# HELP test_orders Orders placed, by kind.\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("# TYPE test_unused counter\n# HELP test_unused Never incremented.\n# TYPE"), std::string::npos)
      << text;
  EXPECT_EQ(text.find("_created"), std::string::npos) << text;
  EXPECT_NE(text.find("test_request_duration_seconds_bucket{route=\"/\",le=\"0.1\"} 2 # {trace_id="), std::string::npos)
      << text;
  const std::string prom = Registry::instance().render(Format::kPrometheus);
  EXPECT_NE(prom.find("# HELP test_orders_total Orders placed, by kind.\n# TYPE test_orders_total counter\n"),
            std::string::npos)
      << prom;
  EXPECT_EQ(prom.find("# EOF"), std::string::npos);
}

}  // namespace
