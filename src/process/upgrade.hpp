// `<binary> upgrade`: starts a new generation of workers beside the running one (sharing the
// listening sockets), verifies it and promotes it or rolls it back, by talking to the masters
// over their control sockets. Strategies:
//   canary      k of N workers new (--canary-weight, or --steps), each step observed for
//               --analysis-window: error ratio, p99 latency, crashes; pass: the rest is rolled,
//               fail: the new generation retires and the old one is back to N.
//   blue-green  a full new generation, all ready, then the old one parks (stops serving, master
//               kept for --rollback-window); `upgrade --rollback` brings it back at once.
//   rolling     one worker at a time, each gated on readiness.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace keel::process {

struct UpgradeRequest {
  std::string control_socket;  // the running (primary) master's
  std::string binary;          // empty: the running command's executable; else sent absolute, checked first
  std::string strategy = "canary";
  std::string canary_weight = "25%";
  std::string steps;  // "10,25,50,100"
  std::string analysis_window = "60s";
  double max_error_ratio = 0.01;
  double max_error_ratio_delta = 0.005;
  double max_p99_ratio = 1.5;
  std::string p99_floor = "5ms";  // p99s below this compare as this (bucket noise)
  std::uint64_t min_requests = 100;
  std::string ready_timeout = "60s";
  std::string rollback_window = "300s";
  bool rollback = false;
  std::string config_file;        // for the new generation; sent absolute, checked readable first
  std::vector<std::string> args;  // flags for the new generation (from --set)
  bool json = false;
};

// Exit codes: 0 promoted (or switched back by --rollback), 1 rolled back by the analysis,
// 2 nothing changed (no master, an upgrade already running, ...), 78 invalid flags (a --binary
// that is not an executable file, a --config that cannot be read, ...).
int run_upgrade(const UpgradeRequest& request);

// The q-quantile of a histogram as Prometheus' histogram_quantile computes it: linear
// interpolation inside the bucket (le: finite upper bounds ascending, cumulative counts; count:
// all observations). NaN without observations; the largest finite bound when it falls in +Inf.
double histogram_quantile(double q, const std::vector<double>& le, const std::vector<double>& cumulative, double count);

}  // namespace keel::process
