#pragma once

#include <string>

#include "keel/app.hpp"

namespace keel::app {

// 0 when the service answers its liveness path with 2xx within 2 s; 1 otherwise (with a message).
int healthcheck(const ServerOptions& options, const std::string& url);

}  // namespace keel::app
