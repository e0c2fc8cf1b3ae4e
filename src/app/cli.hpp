// Command-line flags for ServerOptions, named like gunicorn/uvicorn's where they exist.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "keel/app.hpp"

namespace keel::cli {

// "500ms", "30s", "5m", "1h", or a bare number of seconds ("2.5"). nullopt when malformed.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);

// "512", "64KiB", "1MB", "2GiB" (KB/MB/GB are powers of 1000, KiB/MiB/GiB of 1024). nullopt when
// malformed or overflowing.
std::optional<std::uint64_t> parse_size(std::string_view text);

// Parses argv into options. On --help prints usage and returns 0; on a bad flag prints a message
// naming it and returns 78 (EX_CONFIG); returns -1 when the server should run.
int parse(int argc, char** argv, ServerOptions& options);

}  // namespace keel::cli
