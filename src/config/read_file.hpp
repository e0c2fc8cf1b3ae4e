// One way to read a configuration source file whole (config file, .env, NAME_FILE secrets).
#pragma once

#include <string>

namespace keel::config {

// Returns 0 or the errno that stopped the read. POSIX read(2) rather than ifstream, so that a
// directory (which opens fine) is reported as EISDIR instead of reading as an empty file.
int read_whole_file(const std::string& path, std::string& out);

}  // namespace keel::config
