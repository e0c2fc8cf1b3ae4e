// Every setting type through all five sources: each higher source overrides the lower ones, and
// the origin names the source that won.
#include <gtest/gtest.h>

#include <map>

#include "config/settings.hpp"
#include "config/values.hpp"

namespace {

using keel::config::Layers;
using keel::config::Registry;
using keel::config::Type;

struct TypeCase {
  const char* label;
  keel::Setting spec;
  const char* values[5];  // default, file, .env, environment, flag
};

std::string quoted_toml(const std::string& v, Type t) {
  return (t == Type::kInt || t == Type::kFloat || t == Type::kBool) ? v : "\"" + v + "\"";
}

class Precedence : public ::testing::TestWithParam<TypeCase> {};

TEST_P(Precedence, EachSourceOverridesTheOnesBelow) {
  const TypeCase& c = GetParam();
  for (const bool app_section : {false, true}) {
    Registry reg("KEEL_");
    keel::Setting spec = c.spec;
    spec.default_value = c.values[0];
    reg.add(spec, {.env_prefix = app_section ? "APP_" : "KEEL_", .file_section = app_section ? "app" : ""});
    const std::string env = keel::config::to_env_name(app_section ? "APP_" : "KEEL_", spec.name);
    const std::string key = app_section ? "app." + spec.name : spec.name;
    std::map<std::string, std::string> environment;
    Layers layers;
    layers.file_name = "keel.toml";
    layers.dotenv_name = ".env";
    auto resolve = [&] {
      layers.env = [&](std::string_view n) -> std::optional<std::string> {
        const auto it = environment.find(std::string(n));
        return it == environment.end() ? std::nullopt : std::optional<std::string>(it->second);
      };
      layers.env_names.clear();
      for (const auto& [k, v] : environment) layers.env_names.push_back(k);
      const auto problems = reg.resolve(layers);
      for (const auto& p : problems) ADD_FAILURE() << c.label << ": " << p.to_string();
      return reg.find(spec.name);
    };
    const auto* r = resolve();
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(r->text, c.values[0]);
    EXPECT_EQ(r->origin, "default");

    if (app_section) {
      layers.file = keel::config::parse_toml("[app]\n" + spec.name + " = " + quoted_toml(c.values[1], spec.type) + "\n",
                                             "keel.toml");
    } else {
      layers.file =
          keel::config::parse_toml(spec.name + " = " + quoted_toml(c.values[1], spec.type) + "\n", "keel.toml");
    }
    r = resolve();
    EXPECT_EQ(r->text, c.values[1]) << c.label << " " << key;
    EXPECT_EQ(r->origin, app_section ? "keel.toml:2" : "keel.toml:1");

    layers.dotenv = keel::config::parse_dotenv(env + "='" + c.values[2] + "'\n", {});
    r = resolve();
    EXPECT_EQ(r->text, c.values[2]) << c.label;
    EXPECT_EQ(r->origin, ".env:1");

    environment[env] = c.values[3];
    r = resolve();
    EXPECT_EQ(r->text, c.values[3]) << c.label;
    EXPECT_EQ(r->origin, "env " + env);

    layers.flags = {{spec.name, c.values[4]}};
    r = resolve();
    EXPECT_EQ(r->text, c.values[4]) << c.label;
    EXPECT_EQ(r->origin, "flag " + keel::config::to_flag_name(spec.name));
  }
}

INSTANTIATE_TEST_SUITE_P(
    EveryType, Precedence,
    ::testing::Values(
        TypeCase{"string", {.name = "greeting", .type = Type::kString}, {"a", "b", "c", "d", "e"}},
        TypeCase{"int", {.name = "workers", .type = Type::kInt, .min = 1, .max = 64}, {"1", "2", "3", "4", "5"}},
        TypeCase{"float", {.name = "ratio", .type = Type::kFloat}, {"0.1", "0.2", "0.3", "0.4", "0.5"}},
        TypeCase{"bool", {.name = "reuse_port", .type = Type::kBool}, {"false", "true", "false", "true", "false"}},
        TypeCase{"duration", {.name = "keep_alive", .type = Type::kDuration}, {"5s", "500ms", "1m", "2.5", "1h"}},
        TypeCase{"size", {.name = "limit", .type = Type::kSize}, {"1MiB", "64KiB", "1MB", "100", "2GiB"}},
        TypeCase{"list", {.name = "bind", .type = Type::kList}, {"a:1", "b:2,c:3", "d:4", "e:5,f:6", "g:7"}},
        TypeCase{"enum",
                 {.name = "level", .type = Type::kEnum, .choices = {"debug", "info", "warning", "error", "off"}},
                 {"info", "debug", "warning", "error", "off"}},
        TypeCase{"url",
                 {.name = "database_url", .type = Type::kUrl},
                 {"sqlite:./a.db", "postgresql://db/a", "redis://r:6379", "http://x/y", "sqlite:///var/b.db"}},
        TypeCase{"secret", {.name = "token", .type = Type::kString, .secret = true}, {"s0", "s1", "s2", "s3", "s4"}}),
    [](const ::testing::TestParamInfo<TypeCase>& p) { return std::string(p.param.label); });

TEST(ConfigPlacement, AppSettingsLiveUnderTheAppTableAndTheirOwnPrefix) {
  Registry reg("KEEL_");
  reg.add({.name = "workers", .type = Type::kInt, .default_value = "1"});
  reg.add({.name = "database_url", .type = Type::kString, .default_value = "x"},
          {.env_prefix = "APP_", .file_section = "app"});
  Layers layers;
  layers.file_name = "keel.toml";
  // A top-level database_url is keel's namespace: unknown, with the app key suggested.
  layers.file = keel::config::parse_toml("database_url = \"y\"\n[app]\nworkrs = 2\n", "keel.toml");
  layers.env = [](std::string_view) { return std::optional<std::string>(); };
  layers.env_names = {"APP_DATABASE_URLL", "KEEL_WORKERS_FILE", "OTHER_THING"};
  const auto problems = reg.resolve(layers);
  std::string text;
  for (const auto& p : problems) text += p.to_string() + "\n";
  EXPECT_NE(text.find("keel.toml:1): unknown key 'database_url' (did you mean 'app.database_url'?)"), std::string::npos)
      << text;
  EXPECT_NE(text.find("keel.toml:3): unknown key 'app.workrs'"), std::string::npos) << text;
  // Unknown prefixed variables are warnings, not problems (platforms set APP_ENV and the like).
  for (const auto& v : reg.unknown_variables()) text += v.origin + ": " + v.message() + "\n";
  EXPECT_NE(text.find("env APP_DATABASE_URLL: unknown variable APP_DATABASE_URLL (did you mean APP_DATABASE_URL?)"),
            std::string::npos)
      << text;
  EXPECT_EQ(text.find("KEEL_WORKERS_FILE"), std::string::npos) << text;  // NAME_FILE of a setting: known
  EXPECT_EQ(text.find("OTHER_THING"), std::string::npos) << text;        // not our prefix: not ours to judge
  EXPECT_EQ(problems.size(), 2u) << text;
  ASSERT_EQ(reg.unknown_variables().size(), 1u) << text;
}

TEST(ConfigPlacement, KubernetesServiceLinksAreNotUnknownVariables) {
  Registry reg("KEEL_");
  reg.add({.name = "workers", .type = Type::kInt, .default_value = "1"});
  Layers layers;
  layers.env = [](std::string_view) { return std::optional<std::string>(); };
  layers.env_names = {
      "KEEL_DEMO_SERVICE_HOST",  "KEEL_DEMO_SERVICE_PORT",       "KEEL_DEMO_SERVICE_PORT_HTTP",   "KEEL_DEMO_PORT",
      "KEEL_DEMO_PORT_8000_TCP", "KEEL_DEMO_PORT_8000_TCP_ADDR", "KEEL_DEMO_PORT_8000_TCP_PROTO", "KEEL_WORKRS"};
  EXPECT_TRUE(reg.resolve(layers).empty());
  ASSERT_EQ(reg.unknown_variables().size(), 1u);
  EXPECT_EQ(reg.unknown_variables()[0].name, "KEEL_WORKRS");
}

TEST(ConfigPlacement, ConventionalAliasesRankBelowTheSettingsOwnVariable) {
  Registry reg("KEEL_");
  reg.add({.name = "bind", .type = Type::kList, .default_value = "127.0.0.1:8000"},
          {.env_prefix = "KEEL_", .env_aliases = {{"PORT", "0.0.0.0:"}}});
  std::map<std::string, std::string> environment{{"PORT", "5000"}};
  Layers layers;
  layers.env = [&](std::string_view n) -> std::optional<std::string> {
    const auto it = environment.find(std::string(n));
    return it == environment.end() ? std::nullopt : std::optional<std::string>(it->second);
  };
  ASSERT_TRUE(reg.resolve(layers).empty());
  EXPECT_EQ(reg.find("bind")->text, "0.0.0.0:5000");
  EXPECT_EQ(reg.find("bind")->origin, "env PORT");
  environment["KEEL_BIND"] = "unix:/tmp/s";
  ASSERT_TRUE(reg.resolve(layers).empty());
  EXPECT_EQ(reg.find("bind")->text, "unix:/tmp/s");
  layers.flags = {{"bind", "[::1]:9"}};
  ASSERT_TRUE(reg.resolve(layers).empty());
  EXPECT_EQ(reg.find("bind")->origin, "flag --bind");
}

TEST(ConfigValidation, RangesPatternsAndCustomChecks) {
  Registry reg("KEEL_");
  reg.add({.name = "keep_alive", .type = Type::kDuration, .default_value = "5s", .min = 1, .max = 60000});
  reg.add({.name = "body", .type = Type::kSize, .default_value = "1MiB", .max = 1 << 20});
  reg.add({.name = "mode", .default_value = "0660", .pattern = "0?[0-7]{3}"});
  reg.add({.name = "even", .type = Type::kInt, .default_value = "2", .validate = [](std::string_view t) {
             return (t.back() - '0') % 2 == 0 ? std::string() : std::string("must be even");
           }});
  reg.add({.name = "token", .optional = true, .secret = true, .pattern = "[a-z]+"});
  Layers layers;
  layers.flags = {{"keep_alive", "2m"}, {"body", "2MiB"}, {"mode", "999"}, {"even", "3"}, {"token", "SECRET9"}};
  const auto problems = reg.resolve(layers);
  std::string text;
  for (const auto& p : problems) text += p.to_string() + "\n";
  EXPECT_NE(text.find("keep_alive (flag --keep-alive): expected a value from 1ms to 60000ms, got '2m'"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("body (flag --body): expected a value at most 1048576 bytes, got '2MiB'"), std::string::npos)
      << text;
  EXPECT_NE(text.find("mode (flag --mode): expected text matching /0?[0-7]{3}/, got '999'"), std::string::npos) << text;
  EXPECT_NE(text.find("even (flag --even): must be even"), std::string::npos) << text;
  EXPECT_NE(text.find("token (flag --token): expected text matching /[a-z]+/ (the value is secret"), std::string::npos)
      << text;
  EXPECT_EQ(text.find("SECRET9"), std::string::npos) << text;
  EXPECT_EQ(problems.size(), 5u) << text;

  layers.flags.clear();
  ASSERT_TRUE(reg.resolve(layers).empty());
  EXPECT_EQ(reg.find("token"), nullptr);  // optional and unset: no value, no problem
  EXPECT_EQ(reg.display("token"), "(unset)");
  EXPECT_THROW(reg.add({.name = "bad", .pattern = "("}), std::invalid_argument);
  EXPECT_THROW(reg.add({.name = "bad2", .default_value = "x", .pattern = "[0-9]+"}), std::invalid_argument);
}

TEST(ConfigFormat, DurationsAndSizesRoundTrip) {
  using keel::config::format_duration;
  using keel::config::format_size;
  using std::chrono::milliseconds;
  EXPECT_EQ(format_duration(milliseconds{0}), "0s");
  EXPECT_EQ(format_duration(milliseconds{30000}), "30s");
  EXPECT_EQ(format_duration(milliseconds{1500}), "1500ms");
  EXPECT_EQ(format_duration(milliseconds{300000}), "5m");
  EXPECT_EQ(format_duration(milliseconds{7200000}), "2h");
  EXPECT_EQ(format_size(0), "0");
  EXPECT_EQ(format_size(65536), "64KiB");
  EXPECT_EQ(format_size(1000000), "1MB");
  EXPECT_EQ(format_size(1 << 20), "1MiB");
  EXPECT_EQ(format_size(7), "7");
  for (std::int64_t ms : {0LL, 1LL, 999LL, 1000LL, 61000LL, 3600000LL, 86400000LL})
    EXPECT_EQ(*keel::config::parse_duration(format_duration(milliseconds{ms})).value, milliseconds{ms});
  for (std::uint64_t b : {0ULL, 1ULL, 1023ULL, 1024ULL, 1000ULL, 1ULL << 32, 5000000000ULL})
    EXPECT_EQ(*keel::config::parse_size(format_size(b)).value, b);
}

}  // namespace
