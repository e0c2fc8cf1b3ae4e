#include "config/toml_source.hpp"

#include <gtest/gtest.h>

namespace {

using keel::config::parse_toml;

TEST(ConfigToml, FlattensScalarsTablesAndArrays) {
  const auto r = parse_toml(R"(# keel's own settings at the top level
workers = 4
graceful_timeout = "45s"
reuse_port = true
ratio = 0.25
bind = ["127.0.0.1:8000", "unix:/run/app.sock"]

[app]
database_url = "sqlite:./demo.db"
)",
                            "keel.toml");
  ASSERT_TRUE(r.errors.empty()) << r.errors[0].message;
  ASSERT_EQ(r.entries.size(), 6u);
  // Value and line by key; a missing key reads as "<missing>" / -1 (never a null pointer to
  // dereference, which GCC 12 rightly flags at -O3 with -Wnull-dereference).
  auto value = [&](std::string_view key) -> std::string {
    for (const auto& e : r.entries)
      if (e.key == key) return e.value;
    return "<missing>";
  };
  auto line = [&](std::string_view key) -> long {
    for (const auto& e : r.entries)
      if (e.key == key) return static_cast<long>(e.line);
    return -1;
  };
  EXPECT_EQ(value("workers"), "4");
  EXPECT_EQ(line("workers"), 2);
  EXPECT_EQ(value("graceful_timeout"), "45s");
  EXPECT_EQ(value("reuse_port"), "true");
  EXPECT_EQ(value("ratio"), "0.25");
  EXPECT_EQ(value("bind"), "127.0.0.1:8000,unix:/run/app.sock");
  EXPECT_EQ(value("app.database_url"), "sqlite:./demo.db");
  EXPECT_EQ(line("app.database_url"), 9);
}

TEST(ConfigToml, SyntaxErrorNamesTheLine) {
  const auto r = parse_toml("workers = 4\ngraceful_timeout = \"45s\nkeep_alive = 5\n", "bad.toml");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].line, 2);
  EXPECT_FALSE(r.errors[0].message.empty());
}

TEST(ConfigToml, UnsupportedValuesAreErrorsNamingTheKey) {
  const auto r = parse_toml("when = 1979-05-27\n[[servers]]\nname = \"a\"\nnested = [[1, 2], [3]]\n", "x.toml");
  ASSERT_GE(r.errors.size(), 2u);
  bool when = false, servers = false;
  for (const auto& e : r.errors) {
    when = when || e.message.find("'when'") != std::string::npos;
    servers = servers || e.message.find("'servers'") != std::string::npos;
  }
  EXPECT_TRUE(when);
  EXPECT_TRUE(servers);
}

// TOML forbids defining a key twice; toml++ lets a dotted key and a quoted key with a dot both
// through, and they would flatten to the same setting with an arbitrary winner.
TEST(ConfigToml, AKeyDefinedTwiceThroughDottedAndQuotedFormsIsAnErrorNamingBothLines) {
  const auto r = parse_toml("[app]\nx.y = 1\nworkers = 2\n\"x.y\" = 2\n", "keel.toml");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].line, 4);
  EXPECT_EQ(r.errors[0].message, "key 'app.x.y' is defined twice (lines 2 and 4)");
  ASSERT_EQ(r.entries.size(), 2u) << "the first definition is kept, the rest reported";
}

TEST(ConfigToml, UnreadableFile) {
  const auto r = keel::config::load_toml_file("/nonexistent/keel.toml");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].line, 0);
  EXPECT_NE(r.errors[0].message.find("/nonexistent/keel.toml"), std::string::npos);
}

}  // namespace
