// Settings of keel::fetch that come from the configuration (set once per worker at startup,
// before any request, by the composition root).
#pragma once

#include <cstdint>

namespace keel::detail {

// The largest response body keel::fetch accepts (limit_fetch_response; default 8 MiB).
std::uint64_t& fetch_response_limit() noexcept;

}  // namespace keel::detail
