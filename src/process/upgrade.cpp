#include "process/upgrade.hpp"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <optional>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "config/values.hpp"
#include "process/prefork.hpp"

namespace keel::process {

double histogram_quantile(double q, const std::vector<double>& le, const std::vector<double>& cumulative,
                          double count) {
  if (count <= 0 || le.empty() || le.size() != cumulative.size()) return std::nan("");
  const double rank = q * count;
  double lower = 0, below = 0;
  for (std::size_t i = 0; i < le.size(); ++i) {
    if (cumulative[i] >= rank) {
      const double in_bucket = cumulative[i] - below;
      if (in_bucket <= 0) return le[i];
      return lower + (le[i] - lower) * (rank - below) / in_bucket;
    }
    lower = le[i];
    below = cumulative[i];
  }
  return le.back();
}

namespace {

using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;

volatile sig_atomic_t g_interrupted = 0;
void on_interrupt(int) {
  g_interrupted = 1;
}

// A master's control socket.
struct Master {
  std::string path;
  std::string error;       // of the last failed call
  pid_t expected_pid = 0;  // > 0: only this process may answer on `path` (a generation we started)
  bool refused = false;    // the last call found someone else on `path`: nothing was sent

  std::optional<Json> call(const Json& request) {
    const auto body = control_request(path, request.dump(), error, 3000, expected_pid, &refused);
    if (!body) return std::nullopt;
    Json j = Json::parse(*body, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      error = "unreadable answer from " + path;
      return std::nullopt;
    }
    if (j.contains("ok") && j["ok"] == false) {
      error = j.value("error", std::string("refused"));
      return std::nullopt;
    }
    return j;
  }
  bool command(const Json& request) { return call(request).has_value(); }
};

// One generation's cumulative figures at one moment.
struct Figures {
  double requests = 0, errors = 0, count = 0;
  std::vector<double> le, cumulative;
  int ready = 0, target = 0;
  std::uint64_t crashes = 0;
};

Figures figures_of(const Json& stats) {
  Figures f;
  f.ready = stats.value("workers_ready", 0);
  f.target = stats.value("workers_target", 0);
  f.crashes = stats.value("crashes", std::uint64_t{0});
  if (stats.contains("http")) {
    const Json& h = stats["http"];
    f.requests = h.value("requests", 0.0);
    f.errors = h.value("errors", 0.0);
    f.count = h.value("count", 0.0);
    f.le = h.value("le", std::vector<double>{});
    f.cumulative = h.value("cumulative", std::vector<double>{});
  }
  return f;
}

// What a generation did between two snapshots.
struct Window {
  double requests = 0, errors = 0;
  double p99_s = std::nan("");
  std::uint64_t crashes = 0;
  [[nodiscard]] double error_ratio() const { return requests > 0 ? errors / requests : 0.0; }
  [[nodiscard]] Json to_json() const {
    return {{"requests", requests},
            {"errors", errors},
            {"error_ratio", error_ratio()},
            {"p99_ms", std::isnan(p99_s) ? Json() : Json(p99_s * 1000)},
            {"crashes", crashes}};
  }
};

Window between(const Figures& a, const Figures& b) {
  Window w;
  w.requests = b.requests - a.requests;
  w.errors = b.errors - a.errors;
  w.crashes = b.crashes - a.crashes;
  if (a.le == b.le) {  // the same buckets (else: no baseline yet, take all of b)
    std::vector<double> cum(b.cumulative.size());
    for (std::size_t i = 0; i < cum.size(); ++i) cum[i] = b.cumulative[i] - a.cumulative[i];
    w.p99_s = histogram_quantile(0.99, b.le, cum, b.count - a.count);
  } else {
    w.p99_s = histogram_quantile(0.99, b.le, b.cumulative, b.count);
  }
  return w;
}

// `path` against our working directory (not resolved: a symlink a deploy swaps is still followed
// when the master executes it).
std::string absolute_path(const std::string& path) {
  if (path.empty() || path[0] == '/') return path;
  char cwd[4096];
  if (::getcwd(cwd, sizeof cwd) == nullptr) return path;
  std::string p = path;
  while (p.starts_with("./")) p.erase(0, 2);
  return std::string(cwd) + "/" + p;
}

std::string format_ms(double seconds) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f ms", seconds * 1000);
  return buf;
}

std::string format_ratio(double r) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f%%", r * 100);
  return buf;
}

class Upgrade {
 public:
  explicit Upgrade(const UpgradeRequest& r) : r_(r) {}
  int run();

 private:
  // Returns 0 on a valid configuration, else prints the flag's problem and returns 78.
  int parse_flags();
  int fail_to_start(const std::string& why);
  void note(const std::string& line) const {
    if (!r_.json) std::fprintf(stderr, "upgrade: %s\n", line.c_str());
  }
  bool wait_ready(Master& m, int workers, const char* who);
  std::optional<std::string> analyse(int step_percent);
  void publish(Master& m, Json progress);
  int canary();
  int blue_green();
  int switch_back();
  int rolling();
  bool spawn(int workers);
  int promote();
  int roll_back(std::string reason);
  int finish(const std::string& verdict, const std::string& reason, int code);

  const UpgradeRequest& r_;
  std::string binary_;             // --binary, absolute
  std::vector<std::string> args_;  // the new generation's flags (--set, --config with an absolute path)
  Master old_;
  Master new_;
  int workers_ = 0;  // N: what the old generation runs
  int generation_ = 0;
  std::vector<int> steps_;
  std::chrono::milliseconds window_{}, ready_timeout_{}, rollback_window_{};
  double p99_floor_s_ = 0.005;
  Clock::time_point started_ = Clock::now();
  Json steps_done_ = Json::array();
  Json last_old_, last_new_;
  std::string weight_;
};

int Upgrade::parse_flags() {
  auto bad = [](const std::string& flag, const std::string& why) {
    std::fprintf(stderr, "upgrade: error: %s: %s\n", flag.c_str(), why.c_str());
    return 78;
  };
  auto duration = [](const std::string& text, std::chrono::milliseconds& out) {
    const auto d = config::parse_duration(text);
    if (!d) return false;
    out = *d.value;
    return true;
  };
  if (r_.control_socket.empty())
    return bad("--control-socket", "required (or KEEL_CONTROL_SOCKET): the running master's control_socket");
  // The running master executes the binary and the new generation reads the config file from the
  // master's working directory, not ours: both are sent as absolute paths, checked here first.
  // The problem with `raw` as a regular file we may access with `mode` ("" when none); `path`
  // becomes its absolute form.
  auto file_problem = [](const std::string& raw, int mode, const char* not_what, std::string& path) {
    path = absolute_path(raw);
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return path + ": " + std::strerror(errno);
    if (!S_ISREG(st.st_mode) || ::access(path.c_str(), mode) != 0) return path + ": " + not_what;
    return std::string();
  };
  std::string path;
  if (!r_.binary.empty()) {
    if (auto why = file_problem(r_.binary, X_OK, "not an executable file", path); !why.empty())
      return bad("--binary", why);
    binary_ = path;
  }
  args_ = r_.args;
  if (!r_.config_file.empty()) {
    if (auto why = file_problem(r_.config_file, R_OK, "not a readable file", path); !why.empty())
      return bad("--config", why);
    args_.push_back("--config=" + path);
  }
  if (!duration(r_.analysis_window, window_) || window_.count() <= 0)
    return bad("--analysis-window", "expected a duration > 0 like 60s, got '" + r_.analysis_window + "'");
  if (!duration(r_.ready_timeout, ready_timeout_) || ready_timeout_.count() <= 0)
    return bad("--ready-timeout", "expected a duration > 0 like 60s, got '" + r_.ready_timeout + "'");
  if (!duration(r_.rollback_window, rollback_window_) || rollback_window_.count() <= 0)
    return bad("--rollback-window", "expected a duration > 0 like 300s, got '" + r_.rollback_window + "'");
  std::chrono::milliseconds floor{};
  if (!duration(r_.p99_floor, floor))
    return bad("--p99-floor", "expected a duration like 5ms, got '" + r_.p99_floor + "'");
  p99_floor_s_ = static_cast<double>(floor.count()) / 1000.0;
  if (!(r_.max_error_ratio >= 0 && r_.max_error_ratio <= 1)) return bad("--max-error-ratio", "expected 0..1");
  if (!(r_.max_error_ratio_delta >= 0 && r_.max_error_ratio_delta <= 1))
    return bad("--max-error-ratio-delta", "expected 0..1");
  if (!(r_.max_p99_ratio >= 1)) return bad("--max-p99-ratio", "expected a ratio >= 1");
  auto percent = [](std::string text) -> std::optional<int> {
    if (!text.empty() && text.back() == '%') text.pop_back();
    const auto n = config::parse_int(text);
    if (!n || *n.value < 1 || *n.value > 100) return std::nullopt;
    return static_cast<int>(*n.value);
  };
  if (!r_.steps.empty()) {
    std::stringstream in(r_.steps);
    std::string item;
    while (std::getline(in, item, ',')) {
      const auto p = percent(item);
      if (!p || (!steps_.empty() && *p <= steps_.back()))
        return bad("--steps", "expected increasing percentages 1..100 like 10,25,50,100, got '" + r_.steps + "'");
      steps_.push_back(*p);
    }
  } else {
    const auto w = percent(r_.canary_weight);
    if (!w || *w == 100) return bad("--canary-weight", "expected 1%..99%, got '" + r_.canary_weight + "'");
    steps_ = {*w};
  }
  if (steps_.back() != 100) steps_.push_back(100);
  return 0;
}

int Upgrade::fail_to_start(const std::string& why) {
  std::fprintf(stderr, "upgrade: %s\n", why.c_str());
  return 2;
}

void Upgrade::publish(Master& m, Json progress) {
  progress["strategy"] = r_.strategy;
  progress["generation"] = generation_;
  progress["elapsed_s"] = std::chrono::duration<double>(Clock::now() - started_).count();
  Master copy{m.path, {}, m.expected_pid};
  copy.command({{"cmd", "progress"}, {"upgrade", progress}});
}

// Until `who` has `workers` ready workers; false (with the reason noted) when its master is gone
// or the ready timeout passes.
bool Upgrade::wait_ready(Master& m, int workers, const char* who) {
  const auto deadline = Clock::now() + ready_timeout_;
  int ready = 0;
  while (Clock::now() < deadline && g_interrupted == 0) {
    const auto stats = m.call({{"cmd", "stats"}});
    if (!stats && m.refused) return false;  // someone else's socket: waiting will not change that
    if (!stats) {
      // Is it gone? The old master knows how its child ended.
      std::string ended;
      if (const auto st = old_.call({{"cmd", "status"}}); st && st->contains("next_generation"))
        ended = (*st)["next_generation"].value("exited", std::string());
      if (!ended.empty() || &m == &old_) {
        m.error = std::string("the ") + who + " generation's master exited (" + (ended.empty() ? m.error : ended) +
                  ") before its workers were ready";
        return false;
      }
    } else {
      ready = stats->value("workers_ready", 0);
      if (ready >= workers) return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  m.error = g_interrupted != 0
                ? std::string("interrupted")
                : std::string("the ") + who + " generation was not ready within " + r_.ready_timeout + " (" +
                      std::to_string(ready) + " of " + std::to_string(workers) + " workers ready)";
  return false;
}

bool Upgrade::spawn(int workers) {
  Json req = {{"cmd", "spawn"}, {"workers", workers}, {"args", args_}};
  if (!binary_.empty()) req["binary"] = binary_;
  const auto answer = old_.call(req);
  if (!answer) return false;
  new_.path = answer->value("control_socket", std::string());
  // Only that master may answer there: a socket planted at the path must not decide the verdict.
  new_.expected_pid = static_cast<pid_t>(answer->value("pid", 0));
  if (new_.expected_pid <= 0) {
    old_.error = "the running master did not say which process the new generation is";
    return false;
  }
  generation_ = answer->value("generation", 0);
  note("generation " + std::to_string(generation_) + " started (master " + std::to_string(answer->value("pid", 0)) +
       ", " + std::to_string(workers) + " workers)");
  return true;
}

// One canary step: compares the generations over the analysis window. nullopt: passed; else the
// reason it failed.
std::optional<std::string> Upgrade::analyse(int step_percent) {
  const auto base_old = old_.call({{"cmd", "stats"}});
  const auto base_new = new_.call({{"cmd", "stats"}});
  if (!base_old || !base_new) return "cannot read the generations' figures: " + (base_old ? new_.error : old_.error);
  if (!base_new->contains("http"))
    return std::string("the new generation has no metrics (metrics_path is empty): nothing to analyse");
  const Figures a_old = figures_of(*base_old), a_new = figures_of(*base_new);
  const auto end = Clock::now() + window_;
  Window w_old, w_new;
  for (;;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    if (g_interrupted != 0) return std::string("interrupted");
    const auto s_new = new_.call({{"cmd", "stats"}});
    if (!s_new) return "the new generation stopped answering: " + new_.error;
    const auto s_old = old_.call({{"cmd", "stats"}});
    if (!s_old) return "the old generation stopped answering: " + old_.error;
    w_new = between(a_new, figures_of(*s_new));
    w_old = between(a_old, figures_of(*s_old));
    last_old_ = w_old.to_json();
    last_new_ = w_new.to_json();
    publish(old_, {{"step_percent", step_percent},
                   {"weight", weight_},
                   {"window_s", std::chrono::duration<double>(window_).count()},
                   {"old", last_old_},
                   {"new", last_new_}});
    if (w_new.crashes > 0)
      return std::to_string(w_new.crashes) + " worker crash(es) in the new generation during the analysis";
    const bool enough = w_new.requests >= static_cast<double>(r_.min_requests);
    const double ratio_new = w_new.error_ratio(), ratio_old = w_old.error_ratio();
    if (enough && ratio_new > r_.max_error_ratio && ratio_new > ratio_old + r_.max_error_ratio_delta)
      return "error ratio " + format_ratio(ratio_new) + " (" + std::to_string(static_cast<long long>(w_new.errors)) +
             " of " + std::to_string(static_cast<long long>(w_new.requests)) + ") against the old generation's " +
             format_ratio(ratio_old) + ": above --max-error-ratio " + format_ratio(r_.max_error_ratio) +
             " and --max-error-ratio-delta " + format_ratio(r_.max_error_ratio_delta);
    if (Clock::now() >= end) break;
  }
  if (w_new.requests < static_cast<double>(r_.min_requests))
    return "inconclusive: the new generation answered " + std::to_string(static_cast<long long>(w_new.requests)) +
           " requests in the window, fewer than --min-requests " + std::to_string(r_.min_requests);
  if (w_old.requests >= static_cast<double>(r_.min_requests) && !std::isnan(w_new.p99_s) && !std::isnan(w_old.p99_s)) {
    const double p_new = std::max(w_new.p99_s, p99_floor_s_), p_old = std::max(w_old.p99_s, p99_floor_s_);
    if (p_new > r_.max_p99_ratio * p_old) {
      char ratio[32];
      std::snprintf(ratio, sizeof ratio, "%.2f", p_new / p_old);
      return "p99 latency " + format_ms(w_new.p99_s) + " against the old generation's " + format_ms(w_old.p99_s) +
             ": ratio " + ratio + " above --max-p99-ratio";
    }
  }
  steps_done_.push_back({{"step_percent", step_percent}, {"old", last_old_}, {"new", last_new_}, {"passed", true}});
  note("step " + std::to_string(step_percent) + "% passed: new error ratio " + format_ratio(w_new.error_ratio()) +
       ", p99 " + format_ms(w_new.p99_s) + " (old " + format_ratio(w_old.error_ratio()) + ", " +
       format_ms(w_old.p99_s) + ")");
  return std::nullopt;
}

int Upgrade::finish(const std::string& verdict, const std::string& reason, int code) {
  Json out = {
      {"verdict", verdict},      {"reason", reason},
      {"strategy", r_.strategy}, {"generation", generation_},
      {"steps", steps_done_},    {"duration_s", std::chrono::duration<double>(Clock::now() - started_).count()}};
  if (!last_new_.is_null()) out["new"] = last_new_;
  if (!last_old_.is_null()) out["old"] = last_old_;
  // The generation that serves now logs the verdict and shows it in `status`.
  Master primary{r_.control_socket, {}};
  publish(primary, out);
  out["elapsed_s"] = out["duration_s"];
  if (r_.json) {
    std::printf("%s\n", out.dump().c_str());
  } else {
    std::fprintf(stderr, "upgrade: %s: %s\n", verdict.c_str(), reason.c_str());
  }
  return code;
}

int Upgrade::promote() {
  if (!new_.command({{"cmd", "scale"}, {"workers", workers_}}) || !wait_ready(new_, workers_, "new"))
    return roll_back("promotion failed: " + new_.error);
  if (!old_.command({{"cmd", "retire"}})) note("the old generation did not answer retire: " + old_.error);
  const std::string generation_path = new_.path;
  if (!new_.command({{"cmd", "promote"}, {"control_socket", r_.control_socket}}))
    return finish("promoted", "the new generation serves, but did not take the control socket: " + new_.error, 0);
  return finish("promoted",
                "generation " + std::to_string(generation_) + " serves on all " + std::to_string(workers_) +
                    " workers; the old generation drains and exits",
                0);
}

int Upgrade::roll_back(std::string reason) {  // a copy: it may be a Master's error, which the calls below reset
  note("rolling back: " + reason);
  if (!old_.command({{"cmd", "scale"}, {"workers", workers_}}))
    note("could not scale the old generation back: " + old_.error);
  else if (!wait_ready(old_, workers_, "old"))
    note("the old generation is not back to " + std::to_string(workers_) + " workers: " + old_.error);
  if (!new_.path.empty() && !new_.command({{"cmd", "retire"}})) {
    // Already gone (crashed at startup), or stuck: the old master's child; nothing else to do.
  }
  return finish("rolled_back", reason, 1);
}

int Upgrade::canary() {
  auto new_count = [this](int percent) {
    const int k = static_cast<int>(std::lround(workers_ * percent / 100.0));
    return std::clamp(k, 1, workers_);
  };
  int k = new_count(steps_.front());
  if (!spawn(k)) return fail_to_start("cannot start the new generation: " + old_.error);
  if (!wait_ready(new_, k, "new")) return roll_back(new_.error);
  for (std::size_t i = 0; i < steps_.size(); ++i) {
    const int percent = steps_[i];
    if (percent == 100) return promote();
    k = new_count(percent);
    if (i > 0) {
      if (!new_.command({{"cmd", "scale"}, {"workers", k}}) || !wait_ready(new_, k, "new"))
        return roll_back(new_.error);
    }
    old_.command({{"cmd", "scale"}, {"workers", std::max(1, workers_ - k)}});
    weight_ = std::to_string(k) + " new / " + std::to_string(std::max(1, workers_ - k)) + " old workers";
    note("step " + std::to_string(percent) + "%: " + weight_ + ", analysing for " + r_.analysis_window);
    if (const auto failed = analyse(percent)) return roll_back(*failed);
  }
  return promote();
}

int Upgrade::rolling() {
  if (!spawn(1)) return fail_to_start("cannot start the new generation: " + old_.error);
  for (int k = 1; k <= workers_; ++k) {
    if (k > 1 && !new_.command({{"cmd", "scale"}, {"workers", k}})) return roll_back(new_.error);
    if (!wait_ready(new_, k, "new")) return roll_back(new_.error);
    const auto st = new_.call({{"cmd", "stats"}});
    if (st && st->value("crashes", 0) > 0) return roll_back("a worker of the new generation crashed");
    weight_ = std::to_string(k) + " new / " + std::to_string(std::max(1, workers_ - k)) + " old workers";
    publish(old_, {{"weight", weight_}});
    note(weight_);
    if (k < workers_) old_.command({{"cmd", "scale"}, {"workers", workers_ - k}});
  }
  return promote();
}

int Upgrade::blue_green() {
  if (!spawn(workers_)) return fail_to_start("cannot start the new generation: " + old_.error);
  weight_ = "0 new / " + std::to_string(workers_) + " old workers (new generation warming up)";
  if (!wait_ready(new_, workers_, "new")) return roll_back(new_.error);
  const auto window_ms = static_cast<std::int64_t>(rollback_window_.count());
  if (!old_.command({{"cmd", "park"}, {"window_ms", window_ms}}))
    return roll_back("the old generation could not park: " + old_.error);
  if (!new_.command({{"cmd", "promote"}, {"control_socket", r_.control_socket}}))
    note("the new generation did not take the control socket: " + new_.error);
  return finish("switched",
                "generation " + std::to_string(generation_) + " serves all " + std::to_string(workers_) +
                    " workers; the old generation is parked for " + r_.rollback_window + " (upgrade --rollback)",
                0);
}

int Upgrade::switch_back() {
  Master parked{r_.control_socket + ".parked", {}};
  const auto st = parked.call({{"cmd", "status"}});
  if (!st)
    return fail_to_start("no parked generation answers on " + parked.path +
                         " (blue-green keeps one for --rollback-window): " + parked.error);
  generation_ = st->value("generation", 0);
  const int workers = st->value("workers_target", 0) > 0 ? st->value("workers_target", 0) : workers_;
  if (!parked.command({{"cmd", "unpark"}})) return fail_to_start("cannot unpark: " + parked.error);
  const auto stats = parked.call({{"cmd", "stats"}});
  const int target = stats ? stats->value("workers_target", workers) : workers;
  if (!wait_ready(parked, target, "parked")) {
    // Keep serving with what serves now; park the old one again for the rest of its window.
    parked.command({{"cmd", "park"}, {"window_ms", static_cast<std::int64_t>(rollback_window_.count())}});
    return fail_to_start("the parked generation did not come back: " + parked.error);
  }
  old_.command({{"cmd", "retire"}});
  if (!parked.command({{"cmd", "promote"}, {"control_socket", r_.control_socket}}))
    note("the restored generation did not take the control socket: " + parked.error);
  return finish("rolled_back_on_request",
                "generation " + std::to_string(generation_) + " serves again on " + std::to_string(target) + " workers",
                0);
}

int Upgrade::run() {
  if (const int rc = parse_flags(); rc != 0) return rc;
  old_.path = r_.control_socket;
  const auto st = old_.call({{"cmd", "status"}});
  if (!st) return fail_to_start(old_.error);
  workers_ = st->value("workers_target", 0);
  struct sigaction sa {};
  sa.sa_handler = on_interrupt;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::signal(SIGHUP, SIG_IGN);  // a dropped ssh session must not leave two generations behind
  ::signal(SIGPIPE, SIG_IGN);
  if (r_.rollback) return switch_back();
  if (st->value("role", std::string("primary")) != "primary")
    return fail_to_start("the master on " + r_.control_socket + " is not the primary generation");
  if (st->contains("next_generation") && (*st)["next_generation"].value("exited", std::string()).empty())
    return fail_to_start("an upgrade is already running (generation " +
                         std::to_string((*st)["next_generation"].value("generation", 0)) + ")");
  if (Master parked{r_.control_socket + ".parked", {}}; parked.call({{"cmd", "status"}}))
    return fail_to_start("a parked generation still answers on " + parked.path +
                         ": roll back to it (upgrade --rollback) or let its rollback window end first");
  if (workers_ < 1) return fail_to_start("the running master reports no workers");
  if (r_.strategy == "blue-green") return blue_green();
  if (r_.strategy == "rolling") return rolling();
  return canary();
}

}  // namespace

int run_upgrade(const UpgradeRequest& request) {
  Upgrade upgrade(request);
  try {
    return upgrade.run();
  } catch (const std::exception& e) {  // an answer of the wrong shape (another keel version?)
    std::fprintf(stderr, "upgrade: unexpected answer from a master: %s\n", e.what());
    return 2;
  }
}

}  // namespace keel::process
