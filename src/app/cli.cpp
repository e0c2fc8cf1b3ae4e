#include "app/cli.hpp"

#include <CLI/CLI.hpp>
#include <iostream>
#include <map>
#include <set>

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

// "--wrkers" -> "unknown flag --wrkers (did you mean --workers?)"; empty when every flag is known.
std::string unknown_flags(int argc, char** argv, const std::set<std::string>& known) {
  std::vector<std::string_view> candidates(known.begin(), known.end());
  std::string out;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg(argv[i]);
    if (arg == "--") break;
    if (arg.size() < 3 || arg.substr(0, 2) != "--") continue;
    arg = arg.substr(0, arg.find('='));
    if (known.contains(std::string(arg))) continue;
    const std::string hint = config::suggest(arg, candidates);
    out += (out.empty() ? "" : "; ") + std::string("unknown flag ") + std::string(arg) +
           (hint.empty() ? "" : " (did you mean " + hint + "?)");
  }
  return out;
}

}  // namespace

Command parse(int argc, char** argv, const std::vector<Flag>& flags) {
  Command cmd;
  CLI::App app{
      "keel HTTP application server. Every flag is also a config file key and a KEEL_* variable "
      "(see `config`)."};
  std::set<std::string> known{"--help", "--config", "--env-file", "--json", "--check", "--control-socket", "--url"};
  std::map<std::string, std::vector<std::string>> values;  // setting name -> values in order
  std::map<std::string, std::int64_t> bool_counts;
  for (const auto& f : flags) {
    std::string names;
    for (const auto& a : f.aliases) names += a + ",";
    names += config::to_flag_name(f.name);
    for (const auto& a : f.aliases)
      if (a.rfind("--", 0) == 0) known.insert(a);
    known.insert(config::to_flag_name(f.name));
    std::string help = f.help + " [env " + f.env + "]";
    if (f.type == SettingType::kBool) {
      // --reuse-port sets it, --no-reuse-port clears it (a setting on by default: --no-access-log).
      const std::string negated = "--no-" + config::to_flag_name(f.name).substr(2);
      known.insert(negated);
      app.add_flag(names + ",!" + negated, bool_counts[f.name], help + " (" + negated + ": false)");
      continue;
    }
    auto* opt = app.add_option(names, values[f.name], help)
                    ->type_name(type_label(f.type))
                    ->expected(1)
                    ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    if (!f.default_text.empty()) opt->default_str(f.default_text);
  }
  bool no_server_header = false;
  app.add_flag("--no-server-header", no_server_header, "send no Server header");
  known.insert("--no-server-header");
  app.add_option("--config", cmd.sources.config_file, "TOML config file [env KEEL_CONFIG]")->type_name("FILE");
  app.add_option("--env-file", cmd.sources.env_file, ".env file [env KEEL_ENV_FILE] (default ./.env when present)")
      ->type_name("FILE");

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
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    cmd.kind = Command::Kind::kExit;
    cmd.exit_code = app.exit(e);
    return cmd;
  } catch (const CLI::ParseError& e) {
    const std::string unknown = unknown_flags(argc, argv, known);
    std::cerr << argv[0] << ": error: " << (unknown.empty() ? e.what() : unknown) << "\n";
    cmd.kind = Command::Kind::kExit;
    cmd.exit_code = 78;  // EX_CONFIG: distinct from runtime failures
    return cmd;
  }
  for (const auto& f : flags) {
    if (f.type == SettingType::kBool) {
      if (bool_counts[f.name] != 0) cmd.sources.flags.emplace_back(f.name, bool_counts[f.name] > 0 ? "true" : "false");
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
  return cmd;
}

}  // namespace keel::cli
