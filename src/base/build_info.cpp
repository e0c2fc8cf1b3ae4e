#include "base/build_info.hpp"

#ifndef KEEL_VERSION
#define KEEL_VERSION "unknown"
#endif
#ifndef KEEL_COMMIT
#define KEEL_COMMIT "unknown"
#endif

namespace keel::base {

std::string_view keel_version() noexcept {
  return KEEL_VERSION;
}

std::string_view keel_commit() noexcept {
  return KEEL_COMMIT;
}

}  // namespace keel::base
