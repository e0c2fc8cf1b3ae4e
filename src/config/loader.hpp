// Reads the configuration sources a Registry resolves: the config file (--config, else
// $KEEL_CONFIG), the .env file (--env-file, else $KEEL_ENV_FILE, else ./.env when present), the
// process environment and the command-line flags; and prints the result (`config`, `config --json`)
// with the origin of every value and secrets redacted.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "config/settings.hpp"

namespace keel::config {

struct Sources {
  std::vector<std::pair<std::string, std::string>> flags;  // setting name -> value, command-line order
  std::string config_file;                                 // from --config; empty: $KEEL_CONFIG, else none
  std::string env_file;                                    // from --env-file; empty: $KEEL_ENV_FILE, else ./.env
};

inline constexpr const char* kConfigFileEnv = "KEEL_CONFIG";
inline constexpr const char* kEnvFileEnv = "KEEL_ENV_FILE";
// The bool setting that turns unknown prefixed variables from warnings into problems.
inline constexpr const char* kStrictEnvSetting = "strict_env";

struct Loaded {
  std::string config_file;  // the file that was read, empty when none
  std::string env_file;
  DotenvResult dotenv;            // the .env entries the settings were resolved from
  std::vector<Problem> problems;  // empty: every setting resolved and valid
  // .env entries that were dropped: keel's hand-over variables (set only by a keel master in the
  // real environment) and PATH, LD_* and proxy variables. `origin` is ".env:LINE".
  std::vector<Problem> ignored;
  // Prefixed variables (environment, .env) that name no setting: warnings unless strict_env is
  // on, then they are in `problems` instead.
  std::vector<UnknownVariable> unknown_env;
  // The .env entries export_dotenv puts into the environment: registered settings' variables and
  // their NAME_FILE forms, nothing else.
  std::vector<DotenvEntry> exportable;
};

// True for a variable only a keel master sets for the process it starts (KEEL_UPGRADE_FROM,
// KEEL_GENERATION, KEEL_LISTEN_FDS, the metrics arena descriptors): never taken from a file.
void add_internal_env(std::string name);
[[nodiscard]] bool is_internal_env(std::string_view name);

// True for PATH, LD_* and the proxy variables (http_proxy, HTTPS_PROXY, no_proxy, ...): a .env
// never sets those, whatever the application registers.
[[nodiscard]] bool is_never_from_dotenv(std::string_view name);

// Reads the files named by `sources` and the environment, and resolves `registry`.
Loaded load(Registry& registry, const Sources& sources);

// "<program>: invalid configuration (2 problems):\n  workers (env KEEL_WORKERS): expected ...\n ..."
std::string format_problems(const std::string& program, const std::vector<Problem>& problems);

// The effective configuration: one line per setting — name, display value, origin, and the
// problem with it when `loaded` has one (a required setting unset, an invalid value) — after a
// header naming the files; or the same as a JSON document.
std::string report_text(const Registry& registry, const Loaded& loaded);
std::string report_json(const Registry& registry, const Loaded& loaded);

// Puts the .env entries that are registered settings (or their NAME_FILE forms) into the process
// environment where a variable is not already set, so libraries that read the same variables
// (OTEL_*) see them too. Anything else in the .env (LD_PRELOAD, a library's own variables) is
// only usable for ${VAR} expansion inside the file: an exported LD_PRELOAD would run in every
// process the master executes (USR2, `upgrade`).
void export_dotenv(const Loaded& loaded);

}  // namespace keel::config
