#include "config/loader.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <string_view>

#include "config/values.hpp"

extern char** environ;  // NOLINT: POSIX

namespace keel::config {
namespace {

// Variables export_dotenv put into the environment: they are the .env layer, not the environment
// layer, when the configuration is read again (HUP), so an edited .env still takes effect.
std::set<std::string, std::less<>>& exported() {
  static std::set<std::string, std::less<>> names;
  return names;
}

std::optional<std::string> getenv_opt(std::string_view name) {
  if (exported().contains(name)) return std::nullopt;
  const char* v = std::getenv(std::string(name).c_str());
  return v ? std::optional<std::string>(v) : std::nullopt;
}

std::set<std::string, std::less<>>& internal_env() {
  static std::set<std::string, std::less<>> names;
  return names;
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

const char* type_name(Type t) {
  switch (t) {
    case Type::kString:
      return "string";
    case Type::kInt:
      return "int";
    case Type::kFloat:
      return "float";
    case Type::kBool:
      return "bool";
    case Type::kDuration:
      return "duration";
    case Type::kSize:
      return "size";
    case Type::kList:
      return "list";
    case Type::kEnum:
      return "enum";
    case Type::kUrl:
      return "url";
  }
  return "string";
}

}  // namespace

void add_internal_env(std::string name) {
  internal_env().insert(std::move(name));
}

bool is_internal_env(std::string_view name) {
  return internal_env().contains(name);
}

bool is_never_from_dotenv(std::string_view name) {
  if (name == "PATH" || name.starts_with("LD_")) return true;
  std::string lower(name);
  for (char& c : lower) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  return lower == "http_proxy" || lower == "https_proxy" || lower == "ftp_proxy" || lower == "all_proxy" ||
         lower == "no_proxy";
}

Loaded load(Registry& registry, const Sources& sources) {
  Loaded out;
  Layers layers;
  registry.allow_env(kConfigFileEnv);
  registry.allow_env(kEnvFileEnv);
  out.config_file = !sources.config_file.empty() ? sources.config_file : getenv_opt(kConfigFileEnv).value_or("");
  if (!out.config_file.empty()) {
    layers.file = load_toml_file(out.config_file);
    layers.file_name = out.config_file;
  }
  // An explicitly named .env must exist; the implicit ./.env is read only when present.
  out.env_file = !sources.env_file.empty() ? sources.env_file : getenv_opt(kEnvFileEnv).value_or("");
  if (out.env_file.empty() && exists(".env")) out.env_file = ".env";
  if (!out.env_file.empty()) {
    out.dotenv = load_dotenv_file(out.env_file, getenv_opt);
    // Hand-over variables and the loader's and shell's own are not configuration: dropped here,
    // so neither the settings nor the environment ever see them.
    std::erase_if(out.dotenv.entries, [&](const DotenvEntry& e) {
      const bool internal = is_internal_env(e.key);
      if (!internal && !is_never_from_dotenv(e.key)) return false;
      out.ignored.push_back({"", out.env_file + ":" + std::to_string(e.line),
                             e.key +
                                 (internal ? " is set only by a keel master for the process it starts"
                                           : " is never taken from a .env file") +
                                 "; ignored"});
      return true;
    });
    layers.dotenv = out.dotenv;
    layers.dotenv_name = out.env_file;
  }
  layers.env = getenv_opt;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const std::string_view entry(*e);
    const std::string_view name = entry.substr(0, entry.find('='));
    if (!exported().contains(name)) layers.env_names.emplace_back(name);
  }
  layers.flags = sources.flags;
  out.problems = registry.resolve(layers);
  // Unknown prefixed variables: warnings, unless strict_env asks for today's exit 78.
  const Resolved* strict = registry.find(kStrictEnvSetting);
  if (strict != nullptr && parse_bool(strict->text).value.value_or(false)) {
    for (const auto& v : registry.unknown_variables()) out.problems.push_back({"", v.origin, v.message()});
  } else {
    out.unknown_env = registry.unknown_variables();
  }
  std::set<std::string, std::less<>> settings_env;
  for (const auto& s : registry.specs()) {
    settings_env.insert(registry.env_name(s));
    settings_env.insert(registry.env_name(s) + "_FILE");
  }
  for (const auto& e : out.dotenv.entries)
    if (settings_env.contains(e.key)) out.exportable.push_back(e);
  return out;
}

std::string format_problems(const std::string& program, const std::vector<Problem>& problems) {
  std::string out = program + ": invalid configuration (" + std::to_string(problems.size()) +
                    (problems.size() == 1 ? " problem" : " problems") + "):\n";
  for (const auto& p : problems) out += "  " + p.to_string() + "\n";
  return out;
}

std::string report_text(const Registry& registry, const Loaded& loaded) {
  std::string out = "# config file: " + (loaded.config_file.empty() ? "(none)" : loaded.config_file) +
                    "\n# env file:    " + (loaded.env_file.empty() ? "(none)" : loaded.env_file) + "\n";
  std::size_t name_width = 0, value_width = 0;
  for (const auto& s : registry.specs()) {
    name_width = std::max(name_width, s.name.size());
    value_width = std::max(value_width, std::min<std::size_t>(registry.display(s.name).size(), 40));
  }
  for (const auto& s : registry.specs()) {
    const Resolved* r = registry.find(s.name);
    std::string value = registry.display(s.name);
    std::string line = s.name + std::string(name_width - s.name.size(), ' ') + " = " + value;
    if (value.size() < value_width) line += std::string(value_width - value.size(), ' ');
    line += "  # " + (r ? r->origin : std::string("unset")) + ", env " + registry.env_name(s);
    for (const auto& p : loaded.problems)
      if (p.setting == s.name) line += "  <-- ERROR: " + p.message;
    out += line + "\n";
  }
  return out;
}

std::string report_json(const Registry& registry, const Loaded& loaded) {
  nlohmann::json settings = nlohmann::json::array();
  for (const auto& s : registry.specs()) {
    const Resolved* r = registry.find(s.name);
    nlohmann::json item = {{"name", s.name},
                           {"value", r ? nlohmann::json(registry.display(s.name)) : nlohmann::json(nullptr)},
                           {"origin", r ? r->origin : "unset"},
                           {"type", type_name(s.type)},
                           {"env", registry.env_name(s)},
                           {"file_key", registry.file_key(s)},
                           {"secret", s.secret}};
    for (const auto& p : loaded.problems)
      if (p.setting == s.name) item["error"] = p.message;
    settings.push_back(std::move(item));
  }
  nlohmann::json doc = {
      {"config_file", loaded.config_file.empty() ? nlohmann::json(nullptr) : nlohmann::json(loaded.config_file)},
      {"env_file", loaded.env_file.empty() ? nlohmann::json(nullptr) : nlohmann::json(loaded.env_file)},
      {"settings", std::move(settings)}};
  return doc.dump(2) + "\n";
}

void export_dotenv(const Loaded& loaded) {
  for (const auto& e : loaded.exportable) {
    if (std::getenv(e.key.c_str()) != nullptr && !exported().contains(e.key)) continue;  // the environment wins
    ::setenv(e.key.c_str(), e.value.c_str(), 1);
    exported().insert(e.key);
  }
}

}  // namespace keel::config
