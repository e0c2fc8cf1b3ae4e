// The loader's .env handling: a .env sets settings, nothing else reaches the process environment
// (an exported LD_PRELOAD would run in every master executed on USR2 or `upgrade`), and keel's
// hand-over variables are never taken from it.
#include "config/loader.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace {

using keel::config::Registry;
using keel::config::Type;

struct DotenvExport : ::testing::Test {
  std::filesystem::path dir;
  const std::vector<std::string> variables{"LD_PRELOAD",      "LD_LIBRARY_PATH",   "https_proxy",
                                           "HTTP_PROXY",      "NOT_A_SETTING",     "KEEL_WORKERS",
                                           "KEEL_TOKEN_FILE", "KEEL_UPGRADE_FROM", "KEEL_GENERATION"};

  void SetUp() override {
    dir = std::filesystem::temp_directory_path() / ("keel-loader-test-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    for (const auto& v : variables) ::unsetenv(v.c_str());
  }
  void TearDown() override {
    for (const auto& v : variables) ::unsetenv(v.c_str());
    std::filesystem::remove_all(dir);
  }
  std::string write(const std::string& text) {
    const auto path = dir / ".env";
    std::ofstream(path) << text;
    return path.string();
  }
};

TEST_F(DotenvExport, OnlyRegisteredSettingsAreExportedAndHandOverVariablesAreIgnored) {
  Registry reg("KEEL_");
  reg.add({.name = "workers", .type = Type::kInt, .default_value = "1"});
  reg.add({.name = "token", .type = Type::kString, .default_value = "", .secret = true});
  keel::config::add_internal_env("KEEL_UPGRADE_FROM");
  keel::config::add_internal_env("KEEL_GENERATION");
  reg.allow_env("KEEL_UPGRADE_FROM");
  reg.allow_env("KEEL_GENERATION");
  const std::string env_file = write(
      "LD_PRELOAD=/tmp/evil.so\n"           // 1
      "KEEL_WORKERS=3\n"                    // 2
      "NOT_A_SETTING=x\n"                   // 3
      "KEEL_UPGRADE_FROM=1\n"               // 4
      "PATH=/tmp/evil\n"                    // 5
      "https_proxy=http://evil:3128\n"      // 6
      "KEEL_TOKEN_FILE=/run/secrets/tok\n"  // 7
      "KEEL_GENERATION=7\n"                 // 8
      "LD_LIBRARY_PATH=/tmp\n"              // 9
      "HTTP_PROXY=http://evil:3128\n"       // 10
      "COPY=${NOT_A_SETTING}\n");           // 11: still usable for expansion inside the file
  const std::string path_before = std::getenv("PATH") != nullptr ? std::getenv("PATH") : "";

  const keel::config::Loaded loaded = keel::config::load(reg, {.flags = {}, .config_file = "", .env_file = env_file});
  EXPECT_TRUE(loaded.problems.empty()) << loaded.problems.front().to_string();
  std::vector<std::string> ignored;
  for (const auto& p : loaded.ignored) ignored.push_back(p.origin + " " + p.message);
  const std::string f = env_file + ":";
  EXPECT_EQ(ignored, (std::vector<std::string>{
                         f + "1 LD_PRELOAD is never taken from a .env file; ignored",
                         f + "4 KEEL_UPGRADE_FROM is set only by a keel master for the process it starts; ignored",
                         f + "5 PATH is never taken from a .env file; ignored",
                         f + "6 https_proxy is never taken from a .env file; ignored",
                         f + "8 KEEL_GENERATION is set only by a keel master for the process it starts; ignored",
                         f + "9 LD_LIBRARY_PATH is never taken from a .env file; ignored",
                         f + "10 HTTP_PROXY is never taken from a .env file; ignored",
                     }));
  ASSERT_NE(reg.find("workers"), nullptr);
  EXPECT_EQ(reg.find("workers")->text, "3");

  keel::config::export_dotenv(loaded);
  EXPECT_STREQ(std::getenv("KEEL_WORKERS"), "3");
  EXPECT_STREQ(std::getenv("KEEL_TOKEN_FILE"), "/run/secrets/tok");  // a setting's NAME_FILE form
  for (const char* never : {"LD_PRELOAD", "LD_LIBRARY_PATH", "https_proxy", "HTTP_PROXY", "NOT_A_SETTING", "COPY",
                            "KEEL_UPGRADE_FROM", "KEEL_GENERATION"})
    EXPECT_EQ(std::getenv(never), nullptr) << never << " was exported from the .env";
  EXPECT_EQ(std::getenv("PATH") != nullptr ? std::getenv("PATH") : "", path_before);
  ::unsetenv("COPY");
}

TEST(DotenvNeverTaken, LoaderShellAndProxyVariables) {
  for (const char* name : {"PATH", "LD_PRELOAD", "LD_AUDIT", "http_proxy", "HTTPS_PROXY", "no_proxy", "ALL_PROXY"})
    EXPECT_TRUE(keel::config::is_never_from_dotenv(name)) << name;
  for (const char* name : {"PATHS", "KEEL_PATH", "MY_LD_X", "PROXY", "KEEL_HTTP_PROXY"})
    EXPECT_FALSE(keel::config::is_never_from_dotenv(name)) << name;
}

}  // namespace
