// The typed settings registry: one schema for keel's own options and the application's, resolved
// from layered sources — defaults < config file (TOML) < .env < process environment (including
// NAME_FILE secrets) < command-line flags — with every problem reported at once, each naming the
// setting, where the value came from, and what was expected. Secret values never appear in a
// message or a printout.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/dotenv.hpp"
#include "config/toml_source.hpp"
#include "keel/settings.hpp"

namespace keel::config {

using Type = SettingType;
using Spec = Setting;

// A conventional variable consulted when the setting's own is unset (WEB_CONCURRENCY for workers,
// PORT for bind); the value is prefix + the variable's value ("0.0.0.0:" + $PORT).
struct EnvAlias {
  std::string name;
  std::string prefix{};
};

struct Resolved {
  std::string text;    // the winning raw value
  std::string origin;  // "default", "keel.toml:12", ".env:3", "env KEEL_WORKERS", "flag --workers", ...
};

struct Problem {
  std::string setting;  // empty for unknown keys
  std::string origin;
  std::string message;
  [[nodiscard]] std::string to_string() const;  // "graceful_timeout (env KEEL_GRACEFUL_TIMEOUT): expected ..."
};

// A prefixed variable (environment or .env) that names no setting: a warning, or a problem when
// strict_env is on.
struct UnknownVariable {
  std::string name;                           // "APP_ENV"
  std::string origin;                         // "env APP_ENV", ".env:3"
  std::string suggestion;                     // the known variable it is closest to, empty when none is close
  [[nodiscard]] std::string message() const;  // "unknown variable APP_ENV (did you mean APP_ENVS?)"
};

// What the sources hold; each may be empty.
struct Layers {
  FileResult file;
  std::string file_name;  // for origins: "keel.toml"
  DotenvResult dotenv;
  std::string dotenv_name;
  std::function<std::optional<std::string>(std::string_view)> env;  // the process environment
  std::vector<std::string> env_names;                      // every variable name in the environment (unknown-key check)
  std::vector<std::pair<std::string, std::string>> flags;  // setting name -> value, in command-line order
  // Reads a NAME_FILE secret; default: the file's content. Returns nullopt when unreadable.
  std::function<std::optional<std::string>(const std::string&)> read_file;
};

class Registry {
 public:
  // env_prefix: the default environment prefix ("KEEL_" for keel's options).
  explicit Registry(std::string env_prefix) : prefix_(std::move(env_prefix)) {}

  // How a setting is found outside the command line.
  struct Placement {
    std::string env_prefix;               // prefix for a spec without `env`; also marks unknown-variable checks
    std::string file_section{};           // "" : top-level key; "app": key "app.NAME"
    std::vector<EnvAlias> env_aliases{};  // lower-precedence conventional variables
  };

  // Throws std::invalid_argument for a malformed or duplicate name or an invalid default.
  void add(Spec spec);  // the default prefix, a top-level key
  void add(Spec spec, Placement placement);
  // A prefixed variable that is not a setting but is expected (KEEL_CONFIG, KEEL_LISTEN_FDS, ...).
  void allow_env(std::string name) { allowed_env_.push_back(std::move(name)); }

  // Resolves every setting; returns all problems (empty: every value is valid). Unknown file
  // keys are problems too, with a did-you-mean. Unknown prefixed variables (environment, .env)
  // are not: platforms set APP_ENV and the like; they are in unknown_variables().
  std::vector<Problem> resolve(const Layers& layers);
  [[nodiscard]] const std::vector<UnknownVariable>& unknown_variables() const noexcept { return unknown_env_; }

  [[nodiscard]] const Resolved* find(std::string_view name) const;
  // The value for printing: secrets as "********" (or "(unset)"); the password of any URL in the
  // value (or in each list item) as "***", whatever the setting's type.
  [[nodiscard]] std::string display(std::string_view name) const;
  [[nodiscard]] const std::vector<Spec>& specs() const noexcept { return specs_; }
  [[nodiscard]] std::string env_name(const Spec& s) const;
  [[nodiscard]] std::string file_key(const Spec& s) const;
  // The message for an invalid value (secrets never echoed), nullopt when valid.
  [[nodiscard]] std::optional<std::string> check(const Spec& spec, const std::string& text) const;

 private:
  [[nodiscard]] const Placement& placement(const Spec& s) const;
  std::string prefix_;
  std::vector<Spec> specs_;
  std::vector<Placement> placements_;  // parallel to specs_
  std::vector<std::string> allowed_env_;
  std::map<std::string, Resolved, std::less<>> values_;
  std::vector<UnknownVariable> unknown_env_;
};

}  // namespace keel::config
