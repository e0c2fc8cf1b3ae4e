// The command line: one flag per setting (generated from the settings table, so every setting has
// its flag and flags can only name settings), spelled like gunicorn/uvicorn's where they exist,
// plus the subcommands `config` and `status`.
#pragma once

#include <string>
#include <vector>

#include "config/loader.hpp"
#include "keel/settings.hpp"
#include "process/upgrade.hpp"

namespace keel::cli {

struct Flag {
  std::string name;                    // setting name: "graceful_timeout" -> --graceful-timeout
  std::vector<std::string> aliases{};  // "-t", "--limit-request-field_size"
  SettingType type = SettingType::kString;
  std::string help{};
  std::string env{};           // shown in --help
  std::string default_text{};  // shown in --help (empty for secrets)
  bool secret = false;         // `upgrade --set` refuses it (it would stay in every later argv)
  std::string group{};         // --help section: "Server", "Workers", ..., "App settings"
};

// What --help and --version say about the program.
struct Program {
  std::string name{};             // usage line and --version ("keel-demo")
  std::string description{};      // first line of --help
  std::string service_version{};  // the application's service_version, printed by --version when set
};

struct Command {
  enum class Kind { kServe, kConfig, kStatus, kHealthcheck, kUpgrade, kExit };
  Kind kind = Kind::kServe;
  int exit_code = 0;  // kExit: --help, --version (0) or a command-line error (78, already printed)
  config::Sources sources;
  bool json = false;                // config --json, status --json
  bool check = false;               // config --check
  std::string control_socket;       // status
  std::string url;                  // healthcheck --url
  process::UpgradeRequest upgrade;  // upgrade: its flags, --set turned into the new generation's flags
};

// Parses argv. Bool settings are plain flags (--reuse-port); list settings may repeat (--bind a
// --bind b). Values are not checked here: the configuration loader validates every source alike.
// --version / -V prints the program's name and service_version, and keel's version and commit.
Command parse(int argc, char** argv, const std::vector<Flag>& flags, const Program& program = {});

}  // namespace keel::cli
