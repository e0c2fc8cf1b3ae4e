// The configuration file source: a TOML document flattened into (key, value, line) entries, the
// same shape as the .env and environment sources, so that one typed layer validates them all.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace keel::config {

struct FileEntry {
  std::string key;    // "graceful_timeout"; keys in tables are dotted: "app.database_url"
  std::string value;  // scalars as text; arrays of scalars joined with ','
  int line = 0;       // 1-based
};

struct FileError {
  int line = 0;  // 0 when the error concerns the whole file
  std::string message;
};

struct FileResult {
  std::vector<FileEntry> entries;
  std::vector<FileError> errors;
};

// Parses TOML text. A syntax error is one error with its line; unsupported values (arrays of
// tables, nested arrays, inline tables inside arrays) are errors naming the key.
FileResult parse_toml(std::string_view text, std::string_view source_name);

// Reads and parses a file; an unreadable file is one error with line 0.
FileResult load_toml_file(const std::string& path);

}  // namespace keel::config
