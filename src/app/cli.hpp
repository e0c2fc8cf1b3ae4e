// Command-line flags for ServerOptions, named like gunicorn/uvicorn's where they exist.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "keel/app.hpp"

namespace keel::cli {

// Parses argv into options. On --help prints usage and returns 0; on a bad flag prints a message
// naming it and returns 78 (EX_CONFIG); returns -1 when the server should run.
int parse(int argc, char** argv, ServerOptions& options);

}  // namespace keel::cli
