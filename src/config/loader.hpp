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

struct Loaded {
  std::string config_file;  // the file that was read, empty when none
  std::string env_file;
  DotenvResult dotenv;
  std::vector<Problem> problems;  // empty: every setting resolved and valid
};

// Reads the files named by `sources` and the environment, and resolves `registry`.
Loaded load(Registry& registry, const Sources& sources);

// "<program>: invalid configuration (2 problems):\n  workers (env KEEL_WORKERS): expected ...\n ..."
std::string format_problems(const std::string& program, const std::vector<Problem>& problems);

// The effective configuration: one line per setting — name, display value, origin — after a
// header naming the files; or the same as a JSON document.
std::string report_text(const Registry& registry, const Loaded& loaded);
std::string report_json(const Registry& registry, const Loaded& loaded);

// Puts the .env entries into the process environment where a variable is not already set, so
// libraries that read their own variables (libpq's PG*, OTEL_*) see them too.
void export_dotenv(const Loaded& loaded);

}  // namespace keel::config
