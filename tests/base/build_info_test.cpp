#include "base/build_info.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <string_view>

namespace {

TEST(BuildInfo, VersionAndCommitComeFromCMake) {
  const std::string_view version = keel::base::keel_version();
  // CMake's project() version: digits and dots, never the "unknown" fallback in this build.
  EXPECT_NE(version, "unknown");
  EXPECT_FALSE(version.empty());
  EXPECT_TRUE(std::all_of(version.begin(), version.end(), [](char c) { return (c >= '0' && c <= '9') || c == '.'; }))
      << version;
  const std::string_view commit = keel::base::keel_commit();
  EXPECT_FALSE(commit.empty());  // a hash, or "unknown" outside a git checkout
}

}  // namespace
