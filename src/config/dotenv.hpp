// The .env file source: KEY=VALUE lines in the dialect python-dotenv and docker compose accept,
// parsed into (key, value, line) entries, the same shape as the TOML and environment sources, so
// that one typed layer validates them all.
//
// Grammar, one entry per line (quoted values may span lines):
//   - blank lines and lines whose first non-blank character is '#' are ignored;
//   - [export ]KEY = VALUE, KEY matching [A-Za-z_][A-Za-z0-9_.]*, blanks allowed around '=';
//   - unquoted VALUE: to the end of the line, trailing blanks trimmed; a '#' preceded by a blank
//     starts a comment ("A=b#c" is "b#c"); $VAR and ${VAR} are expanded;
//   - 'single-quoted': literal, no escapes, no expansion;
//   - "double-quoted": escapes \n \r \t \" \\ \$, expansion;
//   - after a closing quote only blanks and a '#' comment may follow;
//   - ${VAR} resolves keys defined earlier in the file first, then the lookup; unknown is empty;
//     ${VAR:-default} takes the default when VAR is unset or empty; a '$' not followed by a name
//     or '{' is literal.
// The parser never stops at the first problem: every malformed entry is reported with its line
// (so a user fixes the file in one round trip) and the well-formed entries are still returned.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace keel::config {

struct DotenvEntry {
  std::string key;
  std::string value;  // after unquoting, unescaping and expansion
  int line = 0;       // 1-based line where the entry starts
};

struct DotenvError {
  int line = 0;         // 1-based; 0 when the error concerns the whole file
  std::string message;  // names what is wrong and, when known, the key
};

struct DotenvResult {
  std::vector<DotenvEntry> entries;  // in file order; a key defined twice appears once, at its last line
  std::vector<DotenvError> errors;   // in file order
};

// Resolves a variable not defined earlier in the file (normally from the process environment);
// nullopt when unknown. An empty function knows no variables.
using DotenvLookup = std::function<std::optional<std::string>(std::string_view)>;

// Parses .env text. A UTF-8 BOM at the start is skipped and CRLF line endings are accepted (a
// line break inside a quoted value becomes "\n").
DotenvResult parse_dotenv(std::string_view text, const DotenvLookup& lookup);

// Reads and parses a file; an unreadable file is one error with line 0 and no entries.
DotenvResult load_dotenv_file(const std::string& path, const DotenvLookup& lookup);

}  // namespace keel::config
