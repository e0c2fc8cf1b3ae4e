// What this build of keel is: the version from CMake's project() and the git commit the tree was
// configured from. Only build_info.cpp sees the KEEL_VERSION / KEEL_COMMIT definitions, so a new
// commit recompiles one file.
#pragma once

#include <string_view>

namespace keel::base {

// "0.1.0"; "unknown" when built without CMake's definitions.
std::string_view keel_version() noexcept;
// The short commit hash ("3315d61c0a2b"); "unknown" outside a git checkout.
std::string_view keel_commit() noexcept;

}  // namespace keel::base
