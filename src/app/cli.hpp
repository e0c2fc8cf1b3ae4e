// Command-line flags for ServerOptions, named like gunicorn/uvicorn's where they exist.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "keel/app.hpp"

namespace keel::cli {

// "500ms", "30s", "5m", "1h", or a bare number of seconds ("2.5"). nullopt when malformed.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);

// Parses argv into options. On --help prints usage and returns 0; on a bad flag prints a message
// naming it and returns 78 (EX_CONFIG); returns -1 when the server should run.
int parse(int argc, char** argv, ServerOptions& options);

}  // namespace keel::cli
