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

namespace keel::config {

enum class Type { kString, kInt, kFloat, kBool, kDuration, kSize, kList, kEnum, kUrl };

struct Spec {
  std::string name{};  // snake_case: "graceful_timeout" (file key, flag --graceful-timeout)
  Type type = Type::kString;
  std::optional<std::string> default_value{};  // nullopt: required
  std::string help{};
  bool secret = false;                 // never printed; its NAME_FILE variable is honoured
  std::optional<double> min{}, max{};  // kInt, kFloat
  std::vector<std::string> choices{};  // kEnum
  std::vector<std::string> schemes{};  // kUrl (empty: any)
  std::string env{};                   // environment name; default: prefix + NAME
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
  // env_prefix: "KEEL_" for keel's options, an app-chosen one ("APP_") for the application's.
  explicit Registry(std::string env_prefix) : prefix_(std::move(env_prefix)) {}

  // Throws std::invalid_argument for a malformed or duplicate name or an invalid default.
  void add(Spec spec);

  // Resolves every setting; returns all problems (empty: every value is valid). Unknown file
  // keys and unknown prefixed environment variables are problems too, with a did-you-mean.
  std::vector<Problem> resolve(const Layers& layers);

  [[nodiscard]] const Resolved* find(std::string_view name) const;
  // The value for printing: secrets as "********" (or "(unset)").
  [[nodiscard]] std::string display(std::string_view name) const;
  [[nodiscard]] const std::vector<Spec>& specs() const noexcept { return specs_; }
  [[nodiscard]] std::string env_name(const Spec& s) const;

 private:
  std::optional<std::string> check(const Spec& spec, const std::string& text) const;  // error message
  std::string prefix_;
  std::vector<Spec> specs_;
  std::map<std::string, Resolved, std::less<>> values_;
};

}  // namespace keel::config
