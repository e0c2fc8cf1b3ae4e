#include "config/settings.hpp"

#include <algorithm>
#include <regex>
#include <stdexcept>

#include "config/read_file.hpp"
#include "config/values.hpp"

namespace keel::config {
namespace {

bool valid_name(std::string_view n) {
  if (n.empty() || !(n[0] >= 'a' && n[0] <= 'z')) return false;
  for (char c : n)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  return true;
}

// The variables Kubernetes injects for every Service in the namespace (service links): a Service
// named "keel-demo" yields KEEL_DEMO_SERVICE_HOST, KEEL_DEMO_SERVICE_PORT, KEEL_DEMO_PORT,
// KEEL_DEMO_PORT_8000_TCP_ADDR, ... They share our prefix by accident and are not settings. A
// *_PORT* variable counts as one only when its *_SERVICE_HOST sibling is there too, so that a
// mistyped KEEL_PORT outside Kubernetes is still reported.
bool kubernetes_service_link(const std::string& var, const std::vector<std::string>& all) {
  static const std::regex service("[A-Z0-9_]+_SERVICE_(HOST|PORT(_[A-Z0-9_]+)?)");
  static const std::regex port("([A-Z0-9_]+)_PORT(_[0-9]+_(TCP|UDP|SCTP)(_(ADDR|PORT|PROTO))?)?");
  if (std::regex_match(var, service)) return true;
  std::smatch m;
  if (!std::regex_match(var, m, port)) return false;
  return std::find(all.begin(), all.end(), m[1].str() + "_SERVICE_HOST") != all.end();
}

std::optional<std::string> read_secret_file(const std::string& path) {
  std::string text;
  if (read_whole_file(path, text) != 0) return std::nullopt;
  return text;
}

}  // namespace

std::string Problem::to_string() const {
  std::string out = setting.empty() ? std::string() : setting;
  if (!origin.empty()) out += (out.empty() ? "" : " ") + std::string("(") + origin + ")";
  return out + (out.empty() ? "" : ": ") + message;
}

std::string UnknownVariable::message() const {
  return "unknown variable " + name + (suggestion.empty() ? "" : " (did you mean " + suggestion + "?)");
}

const Registry::Placement& Registry::placement(const Spec& s) const {
  return placements_[static_cast<std::size_t>(&s - specs_.data())];
}

std::string Registry::env_name(const Spec& s) const {
  if (!s.env.empty()) return s.env;
  const auto i = static_cast<std::size_t>(&s - specs_.data());
  return to_env_name(i < placements_.size() ? placements_[i].env_prefix : prefix_, s.name);
}

std::string Registry::file_key(const Spec& s) const {
  const std::string& section = placement(s).file_section;
  return section.empty() ? s.name : section + "." + s.name;
}

std::optional<std::string> Registry::check(const Spec& spec, const std::string& text) const {
  auto fail = [&](auto&& parsed) -> std::optional<std::string> {
    if (parsed.ok()) return std::nullopt;
    // A secret's rejected value must not leak into logs or terminals.
    return spec.secret ? "expected " + parsed.expected + " (the value is secret and not shown)" : parsed.message();
  };
  // Range of a duration (ms) or size (bytes): the parser accepts any amount.
  auto in_range = [&](double v, const std::string& unit) -> std::optional<std::string> {
    if ((spec.min && v < *spec.min) || (spec.max && v > *spec.max)) {
      std::string range = spec.min && spec.max
                              ? "from " + std::to_string(static_cast<std::int64_t>(*spec.min)) + unit + " to " +
                                    std::to_string(static_cast<std::int64_t>(*spec.max)) + unit
                          : spec.min ? "at least " + std::to_string(static_cast<std::int64_t>(*spec.min)) + unit
                                     : "at most " + std::to_string(static_cast<std::int64_t>(*spec.max)) + unit;
      return "expected a value " + range + ", got '" + (spec.secret ? std::string("(secret)") : text) + "'";
    }
    return std::nullopt;
  };
  std::optional<std::string> err;
  switch (spec.type) {
    case Type::kString:
      break;
    case Type::kInt:
      err = fail(parse_int(text, spec.min ? static_cast<std::int64_t>(*spec.min) : INT64_MIN,
                           spec.max ? static_cast<std::int64_t>(*spec.max) : INT64_MAX));
      break;
    case Type::kFloat:
      err = fail(parse_float(text, spec.min.value_or(std::numeric_limits<double>::lowest()),
                             spec.max.value_or(std::numeric_limits<double>::max())));
      break;
    case Type::kBool:
      err = fail(parse_bool(text));
      break;
    case Type::kDuration: {
      const auto d = parse_duration(text);
      err = d ? in_range(static_cast<double>(d.value->count()), "ms") : fail(d);
      break;
    }
    case Type::kSize: {
      const auto n = parse_size(text);
      err = n ? in_range(static_cast<double>(*n.value), " bytes") : fail(n);
      break;
    }
    case Type::kList:
      err = fail(parse_list(text));
      break;
    case Type::kEnum: {
      std::vector<std::string_view> allowed(spec.choices.begin(), spec.choices.end());
      auto r = parse_enum(text, allowed);
      if (!r.ok()) {
        const std::string hint = suggest(text, allowed);
        if (!hint.empty() && !spec.secret) return r.message() + " (did you mean '" + hint + "'?)";
      }
      err = fail(r);
      break;
    }
    case Type::kUrl: {
      std::vector<std::string_view> schemes(spec.schemes.begin(), spec.schemes.end());
      err = fail(parse_url(text, schemes));
      break;
    }
  }
  if (err) return err;
  if (!spec.pattern.empty() && !std::regex_match(text, std::regex(spec.pattern, std::regex::ECMAScript)))
    return "expected text matching /" + spec.pattern + "/" +
           (spec.secret ? std::string(" (the value is secret and not shown)") : ", got '" + text + "'");
  if (spec.validate) {
    std::string why = spec.validate(text);
    if (!why.empty()) return why;
  }
  return std::nullopt;
}

void Registry::add(Spec spec) {
  add(std::move(spec), Placement{prefix_});
}

void Registry::add(Spec spec, Placement placement) {
  if (!valid_name(spec.name)) throw std::invalid_argument("setting name '" + spec.name + "' must be snake_case");
  for (const auto& s : specs_)
    if (s.name == spec.name) throw std::invalid_argument("setting '" + spec.name + "' is defined twice");
  if (!spec.pattern.empty()) {
    try {
      (void)std::regex(spec.pattern, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      throw std::invalid_argument("setting '" + spec.name + "': invalid pattern: " + e.what());
    }
  }
  if (spec.default_value)
    if (const auto err = check(spec, *spec.default_value))
      throw std::invalid_argument("setting '" + spec.name + "': invalid default: " + *err);
  specs_.push_back(std::move(spec));
  placements_.push_back(std::move(placement));
}

std::vector<Problem> Registry::resolve(const Layers& layers) {
  std::vector<Problem> problems;
  values_.clear();
  unknown_env_.clear();

  // Unknown keys: reported with a suggestion instead of silently ignored (a typo must not fall
  // back to a default without a word).
  for (const auto& e : layers.file.errors)
    problems.push_back({"", layers.file_name + (e.line > 0 ? ":" + std::to_string(e.line) : ""), e.message});
  for (const auto& e : layers.dotenv.errors)
    problems.push_back({"", layers.dotenv_name + (e.line > 0 ? ":" + std::to_string(e.line) : ""), e.message});
  std::vector<std::string> keys;
  for (const auto& s : specs_) keys.push_back(file_key(s));
  std::vector<std::string_view> key_views(keys.begin(), keys.end());
  for (const auto& e : layers.file.entries) {
    bool known = false;
    for (const auto& k : keys) known = known || k == e.key;
    if (known) continue;
    const std::string hint = suggest(e.key, key_views);
    problems.push_back({"", layers.file_name + ":" + std::to_string(e.line),
                        "unknown key '" + e.key + "'" + (hint.empty() ? "" : " (did you mean '" + hint + "'?)")});
  }
  std::vector<std::string> env_names_known;
  for (const auto& s : specs_) {
    env_names_known.push_back(env_name(s));
    env_names_known.push_back(env_name(s) + "_FILE");
  }
  std::vector<std::string_view> env_known_views(env_names_known.begin(), env_names_known.end());
  std::vector<std::string> prefixes;
  for (const auto& p : placements_)
    if (!p.env_prefix.empty() && std::find(prefixes.begin(), prefixes.end(), p.env_prefix) == prefixes.end())
      prefixes.push_back(p.env_prefix);
  auto check_unknown_env = [&](const std::string& var, const std::string& origin) {
    bool prefixed = false;
    for (const auto& p : prefixes) prefixed = prefixed || var.rfind(p, 0) == 0;
    if (!prefixed) return;
    for (const auto& k : env_names_known)
      if (k == var) return;
    for (const auto& k : allowed_env_)
      if (k == var) return;
    unknown_env_.push_back({var, origin, suggest(var, env_known_views)});
  };
  for (const auto& e : layers.dotenv.entries)
    check_unknown_env(e.key, layers.dotenv_name + ":" + std::to_string(e.line));
  for (const auto& var : layers.env_names)
    if (!kubernetes_service_link(var, layers.env_names)) check_unknown_env(var, "env " + var);

  const auto read_file = layers.read_file ? layers.read_file : read_secret_file;
  for (const auto& spec : specs_) {
    std::optional<Resolved> v;
    if (spec.default_value) v = Resolved{*spec.default_value, "default"};
    const std::string key = file_key(spec);
    for (const auto& e : layers.file.entries)
      if (e.key == key) v = Resolved{e.value, layers.file_name + ":" + std::to_string(e.line)};
    const std::string env = env_name(spec);
    for (const auto& e : layers.dotenv.entries)
      if (e.key == env) v = Resolved{e.value, layers.dotenv_name + ":" + std::to_string(e.line)};
    const std::optional<std::string> direct = layers.env ? layers.env(env) : std::nullopt;
    const std::optional<std::string> file_var = layers.env ? layers.env(env + "_FILE") : std::nullopt;
    if (direct && file_var) {
      problems.push_back({spec.name, "env " + env, "both " + env + " and " + env + "_FILE are set; keep one"});
    } else if (direct) {
      v = Resolved{*direct, "env " + env};
    } else if (!file_var) {
      for (const auto& alias : placement(spec).env_aliases) {
        if (auto value = layers.env ? layers.env(alias.name) : std::nullopt) {
          v = Resolved{alias.prefix + *value, "env " + alias.name};
          break;
        }
      }
    } else if (file_var) {
      // Docker/Kubernetes secrets and Vault agent files end with a newline that is not part of
      // the value.
      if (auto content = read_file(*file_var)) {
        while (!content->empty() && (content->back() == '\n' || content->back() == '\r')) content->pop_back();
        v = Resolved{*content, "env " + env + "_FILE (" + *file_var + ")"};
      } else {
        problems.push_back({spec.name, "env " + env + "_FILE", "cannot read " + *file_var});
      }
    }
    for (const auto& [name, value] : layers.flags)
      if (name == spec.name) v = Resolved{value, "flag " + to_flag_name(spec.name)};
    if (!v) {
      if (spec.optional) continue;
      problems.push_back(
          {spec.name, "",
           "required, but not set (file key " + key + ", env " + env + ", flag " + to_flag_name(spec.name) + ")"});
      continue;
    }
    if (const auto err = check(spec, v->text)) {
      problems.push_back({spec.name, v->origin, *err});
      continue;
    }
    values_.emplace(spec.name, std::move(*v));
  }
  return problems;
}

const Resolved* Registry::find(std::string_view name) const {
  const auto it = values_.find(name);
  return it == values_.end() ? nullptr : &it->second;
}

std::string Registry::display(std::string_view name) const {
  const Resolved* r = find(name);
  for (const auto& s : specs_)
    if (s.name == name && s.secret) return r ? "********" : "(unset)";
  if (r == nullptr) return "(unset)";
  // Not only kUrl settings hold URLs (the OTLP endpoints are strings with a URL check, an app may
  // keep a list of them): any URL-shaped value, or list item, has its password masked.
  if (r->text.find("://") == std::string::npos) return r->text;
  for (const auto& s : specs_) {
    if (s.name != name || s.type != Type::kList) continue;
    std::string out;
    std::size_t pos = 0;
    while (true) {
      const std::size_t comma = r->text.find(',', pos);
      out += redact_url(
          std::string_view(r->text).substr(pos, comma == std::string::npos ? std::string::npos : comma - pos));
      if (comma == std::string::npos) return out;
      out += ',';
      pos = comma + 1;
    }
  }
  return redact_url(r->text);
}

}  // namespace keel::config
