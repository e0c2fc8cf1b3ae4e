#include "app/cli.hpp"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <iostream>
#include <map>
#include <set>

#include "base/build_info.hpp"
#include "config/values.hpp"

namespace keel::cli {
namespace {

const char* type_label(SettingType t) {
  switch (t) {
    case SettingType::kInt:
      return "INT";
    case SettingType::kFloat:
      return "FLOAT";
    case SettingType::kDuration:
      return "DURATION";
    case SettingType::kSize:
      return "SIZE";
    case SettingType::kList:
      return "ITEM";
    case SettingType::kEnum:
      return "CHOICE";
    case SettingType::kUrl:
      return "URL";
    default:
      return "TEXT";
  }
}

// The long flags an application or a subcommand takes (CLI11's own table, so it cannot drift).
std::set<std::string> long_flags(const CLI::App& app) {
  std::set<std::string> out{"--help"};
  for (const CLI::Option* o : app.get_options())
    for (const auto& name : o->get_lnames()) out.insert("--" + name);
  return out;
}

// Flags people reach for that keel spells differently; edit distance would not find these. The
// hint is the whole parenthesised remark.
std::string known_hint(std::string_view arg, const std::set<std::string>& known) {
  static const std::pair<std::string_view, std::string_view> kHints[] = {
      {"--pid", "--control-socket"}, {"--pid-file", "--control-socket"}, {"--socket", "--control-socket"}};
  for (const auto& [from, to] : kHints)
    if (arg == from && known.contains(std::string(to))) return "did you mean " + std::string(to) + "?";
  if ((arg == "--port" || arg == "--host") && known.contains("--bind"))
    return "keel takes one --bind HOST:PORT, e.g. --bind 0.0.0.0:8000";
  // gunicorn's --preload loads the application in the master before forking; edit distance would
  // offer --reload, which is something else entirely.
  if (arg == "--preload")
    return "keel has no --preload: the application is built before the workers fork, and startup hooks run in "
           "each worker";
  return {};
}

// The --help section of a server setting, from its name.
std::string server_group(std::string_view n) {
  auto starts = [n](std::string_view p) { return n.substr(0, p.size()) == p; };
  if (starts("otel_") || starts("trace_")) return "Tracing";
  if (starts("tls_") || starts("cert") || starts("keyfile") || n == "ca_certs" || n == "ciphers") return "TLS";
  if (starts("log_") || starts("access_log") || n == "request_id_header") return "Logging";
  if (starts("health") || starts("readiness") || starts("startup_path") || starts("metrics_") ||
      n == "operational_middleware")
    return "Health and metrics";
  if (starts("limit_") || n == "worker_connections" || n == "request_buffer_budget" || n == "output_buffer_limit" ||
      n == "header_timeout" || n == "body_timeout" || n == "body_deadline" || n == "write_timeout")
    return "Limits and timeouts";
  if (n == "workers" || n == "threads" || n == "thread_queue" || n == "timeout" || starts("max_") ||
      n == "graceful_timeout" || n == "shutdown_delay")
    return "Workers";
  if (n == "pid_file" || n == "control_socket" || n == "service_version" || starts("reload") || n == "strict_env")
    return "Process";
  return "Server";
}

// "--wrkers" -> "unknown flag --wrkers (did you mean --workers?)"; empty when every flag is known.
// Flags after a subcommand's name are checked against that subcommand's flags (plus the main
// ones when it falls through to them) and named with it: "upgrade: unknown flag --pid".
std::string unknown_flags(int argc, char** argv, const std::set<std::string>& main_known, const CLI::App* sub,
                          const std::set<std::string>& sub_known) {
  std::string out;
  const std::set<std::string>* known = &main_known;
  std::string where;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg(argv[i]);
    if (arg == "--") break;
    if (sub != nullptr && known == &main_known && arg == sub->get_name()) {
      known = &sub_known;
      where = sub->get_name() + ": ";
      continue;
    }
    if (arg.size() < 3 || arg.substr(0, 2) != "--") continue;
    arg = arg.substr(0, arg.find('='));
    if (known->contains(std::string(arg))) continue;
    std::string hint = known_hint(arg, *known);
    if (hint.empty()) {
      const std::vector<std::string_view> candidates(known->begin(), known->end());
      hint = config::suggest(arg, candidates);
      if (!hint.empty()) hint = "did you mean " + hint + "?";
    }
    out += (out.empty() ? "" : "; ") + where + "unknown flag " + std::string(arg) +
           (hint.empty() ? "" : " (" + hint + ")");
  }
  return out;
}

}  // namespace

Command parse(int argc, char** argv, const std::vector<Flag>& flags, const Program& program) {
  Command cmd;
  const std::string name = program.name.empty() ? std::string("keel") : program.name;
  CLI::App app{
      program.description.empty() ? name + ": an HTTP service built on keel" : name + ": " + program.description, name};
  app.footer("Every flag is also a config file key and an environment variable (shown as [env ...]); `" + name +
             " config` prints the effective value and origin of each.");
  // An application setting named `version` keeps --version: then only -V prints the version.
  bool version_taken = false;
  for (const auto& f : flags) version_taken = version_taken || f.name == "version";
  app.set_version_flag(version_taken ? "-V" : "--version,-V", [&program, name] {
    std::string text = name + (program.service_version.empty() ? "" : " " + program.service_version);
    return text + "\nkeel " + std::string(base::keel_version()) + " (commit " + std::string(base::keel_commit()) + ")";
  });
  std::set<std::string> known{"--help",  "--config", "--env-file", "--json",
                              "--check", "--url",    "--version",  "--control-socket"};
  std::map<std::string, std::vector<std::string>> values;  // setting name -> values in order
  std::map<std::string, std::int64_t> bool_counts, bool_negations;
  for (const auto& f : flags) {
    std::string names;
    for (const auto& a : f.aliases) names += a + ",";
    names += config::to_flag_name(f.name);
    for (const auto& a : f.aliases)
      if (a.rfind("--", 0) == 0) known.insert(a);
    known.insert(config::to_flag_name(f.name));
    std::string help = f.help + " [env " + f.env + "]";
    const std::string group = f.group.empty() ? server_group(f.name) : f.group;
    if (f.type == SettingType::kBool) {
      // --reuse-port sets it, --no-reuse-port clears it (a setting on by default: --no-access-log).
      // Two flags, the negation listed in the help of the first: CLI11's own "!--no-x" would show
      // the negation's value, {false}, as if it were the default.
      const std::string negated = "--no-" + config::to_flag_name(f.name).substr(2);
      known.insert(negated);
      const bool on = config::parse_bool(f.default_text).value.value_or(false);
      app.add_flag(names, bool_counts[f.name],
                   help + " (default: " + (on ? "on" : "off") + "; negate with " + negated + ")")
          ->group(group);
      app.add_flag(negated, bool_negations[f.name])->group("");  // hidden: named in the line above
      continue;
    }
    auto* opt = app.add_option(names, values[f.name], help)
                    ->type_name(type_label(f.type))
                    ->expected(1)
                    ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
                    ->group(group);
    if (!f.default_text.empty()) opt->default_str(f.default_text);
  }
  bool no_server_header = false;
  app.add_flag("--no-server-header", no_server_header, "send no Server header")->group("Server");
  known.insert("--no-server-header");
  // The last one wins: `upgrade --config` appends one to the running command line.
  app.add_option("--config", cmd.sources.config_file, "TOML config file [env KEEL_CONFIG]")
      ->type_name("FILE")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast)
      ->group("Configuration files");
  app.add_option("--env-file", cmd.sources.env_file, ".env file [env KEEL_ENV_FILE] (default ./.env when present)")
      ->type_name("FILE")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast)
      ->group("Configuration files");

  auto* config = app.add_subcommand("config", "print the effective configuration with the source of every value");
  config->add_flag("--json", cmd.json, "as JSON");
  config->add_flag("--check", cmd.check, "validate only: exit 0, or print every problem and exit 78");
  config->fallthrough();  // `app config --workers 3` shows what --workers 3 would do
  auto* status = app.add_subcommand("status", "show the workers of a running master and exit");
  status->add_option("--control-socket", cmd.control_socket, "the master's control_socket")->required();
  status->add_flag("--json", cmd.json, "print the raw JSON");
  auto* healthcheck = app.add_subcommand(
      "healthcheck", "ask the running service's liveness endpoint; exit 0 when healthy (container HEALTHCHECK)");
  healthcheck->add_option("--url", cmd.url, "http://HOST:PORT/PATH (default: the first --bind and health_path)");
  healthcheck->fallthrough();
  auto* upgrade = app.add_subcommand(
      "upgrade", "start a new generation of workers beside the running ones, verify it, promote or roll back");
  process::UpgradeRequest& up = cmd.upgrade;
  std::vector<std::string> sets;
  upgrade->add_option("--control-socket", up.control_socket, "the running master's control_socket")
      ->envname("KEEL_CONTROL_SOCKET")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  upgrade->add_option("--binary", up.binary, "the new executable (default: the running command's)");
  upgrade->add_option("--strategy", up.strategy, "canary | blue-green | rolling")
      ->check(CLI::IsMember({"canary", "blue-green", "rolling"}));
  upgrade->add_option("--canary-weight", up.canary_weight, "share of the workers the canary gets (25%)");
  upgrade->add_option("--steps", up.steps, "canary steps in percent, e.g. 10,25,50,100");
  upgrade->add_option("--analysis-window", up.analysis_window, "how long each canary step is observed (60s)");
  upgrade->add_option("--max-error-ratio", up.max_error_ratio, "5xx / all allowed for the new generation (0.01)");
  upgrade->add_option("--max-error-ratio-delta", up.max_error_ratio_delta,
                      "how much worse than the old generation's error ratio the new one may be (0.005)");
  upgrade->add_option("--max-p99-ratio", up.max_p99_ratio, "new p99 / old p99 allowed (1.5)");
  upgrade->add_option("--p99-floor", up.p99_floor, "p99s below this compare as equal to it (5ms)");
  upgrade->add_option("--min-requests", up.min_requests, "requests the new generation must answer per step (100)");
  upgrade->add_option("--ready-timeout", up.ready_timeout, "how long new workers may take to be ready (60s)");
  upgrade->add_option("--rollback-window", up.rollback_window,
                      "blue-green: how long the old generation stays parked (300s)");
  upgrade->add_flag("--rollback", up.rollback, "blue-green: switch back to the parked generation");
  upgrade->add_option("--config", up.config_file, "config file for the new generation");
  upgrade->add_option("--set", sets, "KEY=VALUE setting for the new generation (repeatable)");
  upgrade->add_flag("--json", up.json, "print the verdict as JSON");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    cmd.kind = Command::Kind::kExit;
    cmd.exit_code = app.exit(e);
    return cmd;
  } catch (const CLI::CallForVersion& e) {
    cmd.kind = Command::Kind::kExit;
    cmd.exit_code = app.exit(e);
    return cmd;
  } catch (const CLI::ParseError& e) {
    const CLI::App* active = nullptr;
    for (const CLI::App* sub : {config, status, healthcheck, upgrade})
      if (sub->parsed()) active = sub;
    std::set<std::string> sub_known;
    if (active != nullptr) {
      sub_known = long_flags(*active);
      if (active == config || active == healthcheck) sub_known.insert(known.begin(), known.end());  // fallthrough
    }
    const std::string unknown = unknown_flags(argc, argv, known, active, sub_known);
    std::cerr << argv[0] << ": error: " << (unknown.empty() ? e.what() : unknown) << "\n";
    cmd.kind = Command::Kind::kExit;
    cmd.exit_code = 78;  // EX_CONFIG: distinct from runtime failures
    return cmd;
  }
  for (const auto& f : flags) {
    if (f.type == SettingType::kBool) {
      const std::int64_t count = bool_counts[f.name] - bool_negations[f.name];
      if (count != 0) cmd.sources.flags.emplace_back(f.name, count > 0 ? "true" : "false");
      continue;
    }
    const auto& v = values[f.name];
    if (v.empty()) continue;
    if (f.type == SettingType::kList) {  // repeated flags add items
      std::string joined;
      for (const auto& item : v) joined += (joined.empty() ? "" : ",") + item;
      cmd.sources.flags.emplace_back(f.name, joined);
    } else {
      cmd.sources.flags.emplace_back(f.name, v.back());
    }
  }
  if (no_server_header) cmd.sources.flags.emplace_back("server_header", "");
  if (status->parsed()) cmd.kind = Command::Kind::kStatus;
  if (config->parsed()) cmd.kind = Command::Kind::kConfig;
  if (healthcheck->parsed()) cmd.kind = Command::Kind::kHealthcheck;
  if (upgrade->parsed()) {
    cmd.kind = Command::Kind::kUpgrade;
    // --set KEY=VALUE becomes the new generation's flag for that setting (flags win over every
    // other source there); checked here so a typo fails before anything starts.
    std::vector<std::string_view> names;
    for (const auto& f : flags) names.push_back(f.name);
    for (const auto& item : sets) {
      const auto eq = item.find('=');
      std::string key = item.substr(0, eq);
      std::replace(key.begin(), key.end(), '-', '_');
      const Flag* flag = nullptr;
      for (const auto& f : flags)
        if (f.name == key) flag = &f;
      std::string problem;
      std::string shown = item;  // what the message repeats: never a secret's value
      if (eq == std::string::npos || key.empty()) {
        problem = "expected KEY=VALUE";
      } else if (flag != nullptr && flag->secret) {
        // The new generation's command line is every later generation's too, and any local user
        // reads it with ps: secrets go through a file.
        shown = key + "=********";
        problem = "'" + key +
                  "' is a secret: --set would put its value on the command line of the new generation and of "
                  "every later one, readable by any local user with ps. Set it in the config file given with "
                  "--config, or in the file " +
                  flag->env + "_FILE names";
      } else if (flag == nullptr) {
        shown = key + "=...";  // perhaps a misspelt secret: its value is not repeated
        const std::string hint = config::suggest(key, names);
        problem = "unknown setting '" + key + "'" + (hint.empty() ? "" : " (did you mean " + hint + "?)");
      } else if (key == "workers" || key == "control_socket" || key == "bind" || key == "pid_file") {
        problem = "'" + key + "' cannot differ between generations (the upgrade sets workers itself)";
      } else if (flag->type == SettingType::kBool) {
        const auto b = config::parse_bool(item.substr(eq + 1));
        if (!b)
          problem = "'" + item.substr(eq + 1) + "' is not a boolean";
        else
          up.args.push_back((*b.value ? "--" : "--no-") + config::to_flag_name(key).substr(2));
      } else {
        up.args.push_back(config::to_flag_name(key) + "=" + item.substr(eq + 1));
      }
      if (!problem.empty()) {
        std::cerr << argv[0] << ": error: upgrade --set " << shown << ": " << problem << "\n";
        cmd.kind = Command::Kind::kExit;
        cmd.exit_code = 78;
        return cmd;
      }
    }
  }
  return cmd;
}

}  // namespace keel::cli
