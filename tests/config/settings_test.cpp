#include "config/settings.hpp"
#include "keel/settings.hpp"

#include <gtest/gtest.h>

#include <map>

namespace {

using keel::config::Layers;
using keel::config::Registry;
using keel::config::Spec;
using keel::config::Type;

struct ConfigSettings : ::testing::Test {
  Registry reg{"KEEL_"};
  std::map<std::string, std::string> env;
  std::map<std::string, std::string> files;
  Layers layers;

  void SetUp() override {
    reg.add({.name = "workers", .type = Type::kInt, .default_value = "1", .min = 1, .max = 64});
    reg.add({.name = "graceful_timeout", .type = Type::kDuration, .default_value = "30s"});
    reg.add({.name = "log_level", .type = Type::kEnum, .default_value = "info", .choices = {"debug", "info", "error"}});
    reg.add({.name = "secret_key", .type = Type::kString, .secret = true});
    reg.add({.name = "database_url", .type = Type::kUrl, .default_value = "sqlite:./app.db", .env = "DATABASE_URL"});
    layers.file_name = "keel.toml";
    layers.dotenv_name = ".env";
  }
  std::vector<keel::config::Problem> resolve() {
    layers.env = [this](std::string_view n) -> std::optional<std::string> {
      const auto it = env.find(std::string(n));
      return it == env.end() ? std::nullopt : std::optional<std::string>(it->second);
    };
    layers.env_names.clear();
    for (const auto& [k, v] : env) layers.env_names.push_back(k);
    layers.read_file = [this](const std::string& p) -> std::optional<std::string> {
      const auto it = files.find(p);
      return it == files.end() ? std::nullopt : std::optional<std::string>(it->second);
    };
    return reg.resolve(layers);
  }
  static std::string all(const std::vector<keel::config::Problem>& ps) {
    std::string out;
    for (const auto& p : ps) out += p.to_string() + "\n";
    return out;
  }
};

TEST_F(ConfigSettings, PrecedenceDefaultsFileDotenvEnvFlag) {
  env["KEEL_SECRET_KEY"] = "s3cret";
  ASSERT_TRUE(resolve().empty());
  EXPECT_EQ(reg.find("workers")->text, "1");
  EXPECT_EQ(reg.find("workers")->origin, "default");

  layers.file = keel::config::parse_toml("workers = 2\n", "keel.toml");
  ASSERT_TRUE(resolve().empty());
  EXPECT_EQ(reg.find("workers")->text, "2");
  EXPECT_EQ(reg.find("workers")->origin, "keel.toml:1");

  layers.dotenv = keel::config::parse_dotenv("# comment\nKEEL_WORKERS=3\n", {});
  ASSERT_TRUE(resolve().empty());
  EXPECT_EQ(reg.find("workers")->origin, ".env:2");

  env["KEEL_WORKERS"] = "4";
  ASSERT_TRUE(resolve().empty());
  EXPECT_EQ(reg.find("workers")->text, "4");
  EXPECT_EQ(reg.find("workers")->origin, "env KEEL_WORKERS");

  layers.flags = {{"workers", "5"}};
  ASSERT_TRUE(resolve().empty());
  EXPECT_EQ(reg.find("workers")->text, "5");
  EXPECT_EQ(reg.find("workers")->origin, "flag --workers");
}

TEST_F(ConfigSettings, EveryProblemAtOnceWithOrigins) {
  layers.file = keel::config::parse_toml("workers = 0\ngracefull_timeout = \"5s\"\n", "keel.toml");
  env["KEEL_GRACEFUL_TIMEOUT"] = "soon";
  env["KEEL_LOG_LEVL"] = "debug";
  env["KEEL_LOG_LEVEL"] = "debgu";
  const auto problems = resolve();
  const std::string text = all(problems);
  EXPECT_NE(text.find("workers (keel.toml:1): expected an integer from 1 to 64, got '0'"), std::string::npos) << text;
  EXPECT_NE(text.find("unknown key 'gracefull_timeout' (did you mean 'graceful_timeout'?)"), std::string::npos) << text;
  EXPECT_NE(text.find("graceful_timeout (env KEEL_GRACEFUL_TIMEOUT): expected a duration"), std::string::npos) << text;
  EXPECT_EQ(text.find("KEEL_LOG_LEVL"), std::string::npos) << text;  // a warning, not a problem
  ASSERT_EQ(reg.unknown_variables().size(), 1u);
  EXPECT_EQ(reg.unknown_variables()[0].message(), "unknown variable KEEL_LOG_LEVL (did you mean KEEL_LOG_LEVEL?)");
  EXPECT_NE(text.find("did you mean 'debug'?"), std::string::npos) << text;
  EXPECT_NE(text.find("secret_key: required, but not set"), std::string::npos) << text;
  EXPECT_EQ(problems.size(), 5u) << text;
}

TEST_F(ConfigSettings, SecretsFromFilesAreTrimmedAndNeverShown) {
  env["KEEL_SECRET_KEY_FILE"] = "/run/secrets/key";
  files["/run/secrets/key"] = "hunter2\n";
  ASSERT_TRUE(resolve().empty()) << all(resolve());
  EXPECT_EQ(reg.find("secret_key")->text, "hunter2");
  EXPECT_EQ(reg.find("secret_key")->origin, "env KEEL_SECRET_KEY_FILE (/run/secrets/key)");
  EXPECT_EQ(reg.display("secret_key"), "********");

  env["KEEL_SECRET_KEY"] = "other";
  const std::string both = all(resolve());
  EXPECT_NE(both.find("both KEEL_SECRET_KEY and KEEL_SECRET_KEY_FILE are set"), std::string::npos) << both;
  EXPECT_EQ(both.find("other"), std::string::npos);
  EXPECT_EQ(both.find("hunter2"), std::string::npos);

  env.erase("KEEL_SECRET_KEY");
  files.erase("/run/secrets/key");
  EXPECT_NE(all(resolve()).find("cannot read /run/secrets/key"), std::string::npos);
}

TEST_F(ConfigSettings, InvalidSecretValueIsNotEchoed) {
  Registry r("APP_");
  r.add({.name = "api_token", .type = Type::kInt, .secret = true});
  layers.env = [](std::string_view n) -> std::optional<std::string> {
    if (n == "APP_API_TOKEN") return std::string("tok-abc123");
    return std::nullopt;
  };
  const auto problems = r.resolve(layers);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].to_string().find("tok-abc123"), std::string::npos) << problems[0].to_string();
  EXPECT_NE(problems[0].to_string().find("not shown"), std::string::npos);
}

TEST_F(ConfigSettings, UrlsAreRedactedForDisplay) {
  env["KEEL_SECRET_KEY"] = "x";
  env["DATABASE_URL"] = "postgresql://app:pw@db:5432/app";
  ASSERT_TRUE(resolve().empty()) << all(resolve());
  EXPECT_EQ(reg.display("database_url"), "postgresql://app:***@db:5432/app");
}

TEST_F(ConfigSettings, UrlShapedStringsAndListsAreRedactedForDisplay) {
  // The OTLP endpoints are kString settings with a URL check: printed in clear before.
  reg.add({.name = "otlp_endpoint", .type = Type::kString, .optional = true});
  reg.add({.name = "mirrors", .type = Type::kList, .optional = true});
  reg.add({.name = "motto", .type = Type::kString, .optional = true});
  env["KEEL_SECRET_KEY"] = "x";
  env["KEEL_OTLP_ENDPOINT"] = "https://tenant:t0ken@collector:4318";
  env["KEEL_MIRRORS"] = "http://a:pw1@m1/,http://m2/,https://b:pw2@m3";
  env["KEEL_MOTTO"] = "a:b@c";  // not URL-shaped: as it is
  ASSERT_TRUE(resolve().empty()) << all(resolve());
  EXPECT_EQ(reg.display("otlp_endpoint"), "https://tenant:***@collector:4318");
  EXPECT_EQ(reg.display("mirrors"), "http://a:***@m1/,http://m2/,https://b:***@m3");
  EXPECT_EQ(reg.display("motto"), "a:b@c");
}

TEST_F(ConfigSettings, FileAndDotenvSyntaxErrorsAreReportedWithLines) {
  env["KEEL_SECRET_KEY"] = "x";
  layers.file = keel::config::parse_toml("workers = \n", "keel.toml");
  layers.dotenv = keel::config::parse_dotenv("GOOD=1\nBAD LINE\n", {});
  const std::string text = all(resolve());
  EXPECT_NE(text.find("(keel.toml:1)"), std::string::npos) << text;
  EXPECT_NE(text.find("(.env:2)"), std::string::npos) << text;
}

TEST(ConfigSettingsSchema, RejectsBadSpecs) {
  Registry r("KEEL_");
  EXPECT_THROW(r.add({.name = "Bad-Name"}), std::invalid_argument);
  r.add({.name = "workers", .type = Type::kInt, .default_value = "1"});
  EXPECT_THROW(r.add({.name = "workers"}), std::invalid_argument);
  EXPECT_THROW(r.add({.name = "timeout", .type = Type::kDuration, .default_value = "forever"}), std::invalid_argument);
}

TEST(AppSettingsPrefix, DerivedFromTheProgramName) {
  EXPECT_EQ(keel::Settings::prefix_for("keel-demo"), "KEEL_DEMO_");
  EXPECT_EQ(keel::Settings::prefix_for("users-api"), "USERS_API_");
  EXPECT_EQ(keel::Settings::prefix_for("my..app2"), "MY_APP2_");
  EXPECT_EQ(keel::Settings::prefix_for("-svc-"), "SVC_");
  EXPECT_EQ(keel::Settings::prefix_for("2fa"), "APP_");
  EXPECT_EQ(keel::Settings::prefix_for("---"), "APP_");
  EXPECT_EQ(keel::Settings::prefix_for(""), "APP_");
}

}  // namespace
