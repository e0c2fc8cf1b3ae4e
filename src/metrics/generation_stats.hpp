// A generation's HTTP figures for `upgrade` (canary analysis): read from this master's own
// exposition, so they are exactly what Prometheus would scrape from the generation.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace keel::metrics_detail {

// From a Prometheus text exposition: {"requests": N, "errors": N5xx, "le": [...], "cumulative":
// [...], "count": N} summed over every series of http_requests_total and
// http_request_duration_seconds except the routes in `excluded` (health probes and scrapes would
// dilute the comparison). "le"/"cumulative" are the finite histogram bounds and their cumulative
// counts; "count" is the +Inf bucket.
std::string http_summary_json(std::string_view exposition, const std::vector<std::string>& excluded);

}  // namespace keel::metrics_detail
