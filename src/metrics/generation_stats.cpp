#include "metrics/generation_stats.hpp"

#include <algorithm>
#include <charconv>
#include <limits>
#include <map>
#include <optional>

#include "keel/json_writer.hpp"

namespace keel::metrics_detail {
namespace {

// The value of label `name` in a sample line's {...} part, unescaped; nullopt when absent.
std::optional<std::string> label(std::string_view labels, std::string_view name) {
  std::size_t i = 0;
  while (i < labels.size()) {
    const std::size_t eq = labels.find("=\"", i);
    if (eq == std::string_view::npos) return std::nullopt;
    const std::string_view key = labels.substr(i, eq - i);
    std::string value;
    std::size_t j = eq + 2;
    for (; j < labels.size() && labels[j] != '"'; ++j) {
      if (labels[j] == '\\' && j + 1 < labels.size()) {
        ++j;
        value += labels[j] == 'n' ? '\n' : labels[j];
      } else {
        value += labels[j];
      }
    }
    if (key == name) return value;
    i = j + 1;
    if (i < labels.size() && labels[i] == ',') ++i;
  }
  return std::nullopt;
}

double number(std::string_view s) {
  if (s == "+Inf") return std::numeric_limits<double>::infinity();
  double v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

}  // namespace

std::string http_summary_json(std::string_view exposition, const std::vector<std::string>& excluded) {
  static constexpr std::string_view kRequests = "http_requests_total{";
  static constexpr std::string_view kBuckets = "http_request_duration_seconds_bucket{";
  double requests = 0, errors = 0, count = 0;
  std::map<double, double> buckets;  // le -> cumulative, summed over series
  while (!exposition.empty()) {
    const std::size_t nl = exposition.find('\n');
    const std::string_view line = exposition.substr(0, nl);
    exposition = nl == std::string_view::npos ? std::string_view() : exposition.substr(nl + 1);
    const bool is_requests = line.starts_with(kRequests);
    const bool is_bucket = line.starts_with(kBuckets);
    if (!is_requests && !is_bucket) continue;
    const std::size_t open = line.find('{');
    const std::size_t close = line.rfind('}');
    if (close == std::string_view::npos || close < open) continue;
    const std::string_view labels = line.substr(open + 1, close - open - 1);
    const auto route = label(labels, "route");
    if (route && std::find(excluded.begin(), excluded.end(), *route) != excluded.end()) continue;
    std::string_view rest = line.substr(close + 1);
    while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
    const double value = number(rest.substr(0, rest.find(' ')));
    if (is_requests) {
      requests += value;
      const auto status = label(labels, "status");
      if (status && !status->empty() && (*status)[0] == '5') errors += value;
    } else if (const auto le = label(labels, "le")) {
      const double bound = number(*le);
      if (bound == std::numeric_limits<double>::infinity())
        count += value;
      else
        buckets[bound] += value;
    }
  }
  JsonWriter w;
  w.begin_object();
  w.key("requests").value(requests).key("errors").value(errors).key("count").value(count);
  w.key("le").begin_array();
  for (const auto& [le, n] : buckets) w.value(le);
  w.end_array().key("cumulative").begin_array();
  for (const auto& [le, n] : buckets) w.value(n);
  w.end_array().end_object();
  return std::move(w).take();
}

}  // namespace keel::metrics_detail
