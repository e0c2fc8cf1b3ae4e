// Moved to base/gzip.hpp (issue 15 step 3). This forwarding header only keeps app/app.cpp
// compiling while the dispatcher split edits that file; delete it once app.cpp includes
// base/gzip.hpp.
#pragma once

#include "base/gzip.hpp"

namespace keel::http {
using base::accepts_gzip;
using base::gzip;
}  // namespace keel::http
