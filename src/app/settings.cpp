#include "keel/settings.hpp"

#include <stdexcept>

#include "config/settings.hpp"
#include "config/values.hpp"

namespace keel {

Settings& Settings::env_prefix(std::string prefix) {
  prefix_ = std::move(prefix);
  return *this;
}

std::string Settings::prefix_for(std::string_view program_name) {
  std::string out;
  for (const char c : program_name) {
    if (c >= 'a' && c <= 'z') {
      out += static_cast<char>(c - 'a' + 'A');
    } else if ((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
      out += c;
    } else if (!out.empty() && out.back() != '_') {
      out += '_';
    }
  }
  while (!out.empty() && out.back() == '_') out.pop_back();
  if (out.empty() || (out[0] >= '0' && out[0] <= '9')) return "APP_";
  return out + "_";
}

Settings& Settings::add(Setting setting) {
  for (const auto& s : declared_)
    if (s.name == setting.name) throw std::invalid_argument("setting '" + setting.name + "' is declared twice");
  // Name, pattern and default are checked by the registry that resolves them; check early so a
  // mistake shows where it was made, not at run().
  config::Registry probe(prefix_);
  probe.add(setting);
  declared_.push_back(std::move(setting));
  return *this;
}

void Settings::assign(std::map<std::string, std::string, std::less<>> values) {
  values_ = std::move(values);
  resolved_ = true;
}

const Setting& Settings::find(std::string_view name, SettingType expected) const {
  for (const auto& s : declared_) {
    if (s.name != name) continue;
    if (!resolved_) throw std::logic_error("setting '" + s.name + "' read before the configuration was resolved");
    if (s.type != expected && !(expected == SettingType::kString))
      throw std::logic_error("setting '" + s.name + "' is not of the type it is read as");
    return s;
  }
  throw std::out_of_range("no setting named '" + std::string(name) + "' is declared");
}

bool Settings::has(std::string_view name) const {
  (void)find(name, SettingType::kString);
  return values_.contains(name);
}

std::string Settings::string(std::string_view name) const {
  (void)find(name, SettingType::kString);
  const auto it = values_.find(name);
  return it == values_.end() ? std::string() : it->second;
}

std::int64_t Settings::integer(std::string_view name) const {
  (void)find(name, SettingType::kInt);
  const auto it = values_.find(name);
  return it == values_.end() ? 0 : config::parse_int(it->second).value.value_or(0);
}

double Settings::number(std::string_view name) const {
  (void)find(name, SettingType::kFloat);
  const auto it = values_.find(name);
  return it == values_.end() ? 0.0 : config::parse_float(it->second).value.value_or(0.0);
}

bool Settings::boolean(std::string_view name) const {
  (void)find(name, SettingType::kBool);
  const auto it = values_.find(name);
  return it != values_.end() && config::parse_bool(it->second).value.value_or(false);
}

std::chrono::milliseconds Settings::duration(std::string_view name) const {
  (void)find(name, SettingType::kDuration);
  const auto it = values_.find(name);
  return it == values_.end() ? std::chrono::milliseconds{0}
                             : config::parse_duration(it->second).value.value_or(std::chrono::milliseconds{0});
}

std::uint64_t Settings::bytes(std::string_view name) const {
  (void)find(name, SettingType::kSize);
  const auto it = values_.find(name);
  return it == values_.end() ? 0 : config::parse_size(it->second).value.value_or(0);
}

std::vector<std::string> Settings::list(std::string_view name) const {
  (void)find(name, SettingType::kList);
  const auto it = values_.find(name);
  return it == values_.end() ? std::vector<std::string>{}
                             : config::parse_list(it->second).value.value_or(std::vector<std::string>{});
}

}  // namespace keel
