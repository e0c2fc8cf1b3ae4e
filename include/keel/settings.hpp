// Typed settings for the application, resolved together with keel's own server settings from the
// same layered sources: defaults < config file (TOML, under [app]) < .env < environment (with
// NAME_FILE secrets) < command-line flags. Declare them before App::run(); read them in startup
// hooks and handlers.
//
//   app.settings().add({.name = "database_url", .type = keel::SettingType::kUrl,
//                       .default_value = "sqlite:./app.db", .env = "DATABASE_URL"});
//   app.settings().add({.name = "secret_key", .secret = true, .env = "SECRET_KEY"});  // required
//   ...
//   const std::string url = app.settings().string("database_url");
//
// One name per setting, used everywhere: flag --database-url, file key app.database_url, and the
// environment variable `env` (default: the app prefix + NAME, e.g. USERS_API_DATABASE_URL for a
// program named users-api).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace keel {

enum class SettingType { kString, kInt, kFloat, kBool, kDuration, kSize, kList, kEnum, kUrl };

struct Setting {
  std::string name{};  // snake_case: "graceful_timeout" (flag --graceful-timeout, file key graceful_timeout)
  SettingType type = SettingType::kString;
  std::optional<std::string> default_value{};  // nullopt: required (startup fails when unset) ...
  bool optional = false;                       // ... unless optional: then has() is false when unset
  std::string help{};
  bool secret = false;                 // never printed or echoed; NAME_FILE is read for it
  std::optional<double> min{}, max{};  // kInt, kFloat; kDuration in milliseconds, kSize in bytes
  std::vector<std::string> choices{};  // kEnum
  std::vector<std::string> schemes{};  // kUrl (empty: any)
  std::string pattern{};               // ECMAScript regex the whole text must match (empty: any)
  std::string env{};                   // environment name; empty: prefix + NAME
  // Extra validation after the type check: returns an error message ("must be ..."), empty when valid.
  std::function<std::string(std::string_view)> validate{};
};

// The application's settings: declarations, then resolved values.
class Settings {
 public:
  // Environment prefix of settings declared without `env`. Unset (empty), App::run() derives it
  // from the application's name: prefix_for("keel-demo") == "KEEL_DEMO_".
  Settings& env_prefix(std::string prefix);
  [[nodiscard]] const std::string& env_prefix() const noexcept { return prefix_; }
  // The prefix for a program name: upper case, every run of other characters than A-Z and 0-9 one
  // '_', none at either end, then '_' ("users-api" -> "USERS_API_", "my.app2" -> "MY_APP2_"). A
  // name that leaves nothing, or starts with a digit, gives "APP_".
  [[nodiscard]] static std::string prefix_for(std::string_view program_name);

  // Declares a setting. Throws std::invalid_argument for a malformed or duplicate name or a
  // default that fails its own validation.
  Settings& add(Setting setting);
  [[nodiscard]] const std::vector<Setting>& declared() const noexcept { return declared_; }

  // Resolved values; throw std::out_of_range for an undeclared name and std::logic_error when
  // read before the configuration was resolved or as the wrong type. A setting without a value
  // (optional, no default) reads as empty / 0 / false; has() tells them apart.
  [[nodiscard]] bool has(std::string_view name) const;
  [[nodiscard]] std::string string(std::string_view name) const;  // any type, as text
  [[nodiscard]] std::int64_t integer(std::string_view name) const;
  [[nodiscard]] double number(std::string_view name) const;
  [[nodiscard]] bool boolean(std::string_view name) const;
  [[nodiscard]] std::chrono::milliseconds duration(std::string_view name) const;
  [[nodiscard]] std::uint64_t bytes(std::string_view name) const;
  [[nodiscard]] std::vector<std::string> list(std::string_view name) const;

  // Set by the configuration loader (and again by a reload): name -> resolved text.
  void assign(std::map<std::string, std::string, std::less<>> values);

 private:
  const Setting& find(std::string_view name, SettingType expected) const;
  std::string prefix_;
  std::vector<Setting> declared_;
  std::map<std::string, std::string, std::less<>> values_;
  bool resolved_ = false;
};

}  // namespace keel
