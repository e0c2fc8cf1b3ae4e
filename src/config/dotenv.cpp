#include "config/dotenv.hpp"

#include "config/read_file.hpp"

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <map>
#include <utility>

namespace keel::config {
namespace {

// ${A:-${B:-...}} recurses once per level; bounding it keeps a hostile file from exhausting the
// stack. Real files nest one or two levels.
constexpr int kMaxNesting = 16;

inline bool is_blank(char c) {
  return c == ' ' || c == '\t';
}
inline bool is_name_start(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}
// $NAME stops at '.', so "$HOST.example" expands HOST; ${a.b} may name any key.
inline bool is_name_char(char c) {
  return is_name_start(c) || (c >= '0' && c <= '9');
}
inline bool is_key_char(char c) {
  return is_name_char(c) || c == '.';
}

bool is_valid_key(std::string_view key) {
  return !key.empty() && is_name_start(key[0]) && std::all_of(key.begin(), key.end(), is_key_char);
}

// A lone '\r' can survive CRLF normalization only at the very end of the text; trimming it with
// the blanks keeps "A=b\r" at EOF equal to "A=b".
std::string_view trim_right(std::string_view s) {
  while (!s.empty() && (is_blank(s.back()) || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// Drops a UTF-8 BOM and turns CRLF into LF, so the grammar only ever sees '\n' and a line break
// inside a quoted value is "\n" whatever editor wrote the file.
std::string normalize(std::string_view text) {
  if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\r' && i + 1 < text.size() && text[i + 1] == '\n') continue;
    out += text[i];
  }
  return out;
}

// Escapes are shown the way the user typed them unless the byte after the backslash would not
// print (a line break, a control byte).
std::string describe_escape(char c) {
  if (c == '\n') return "backslash at the end of a line";
  if (c >= 0x21 && c <= 0x7e) return std::string("unknown escape sequence \\") + c;
  char hex[8];
  std::snprintf(hex, sizeof hex, "%02X", static_cast<unsigned>(static_cast<unsigned char>(c)));
  return std::string("unknown escape sequence: backslash followed by byte 0x") + hex;
}

struct Problem {
  std::size_t offset;  // into the normalized text; determines the reported line
  std::string message;
};

class Parser {
 public:
  Parser(std::string_view text, const DotenvLookup& lookup) : text_(normalize(text)), lookup_(lookup) {}

  DotenvResult run() {
    int line = 1;
    while (pos_ < text_.size()) {
      unit_start_ = pos_;
      unit_line_ = line;
      std::size_t end = 0;
      std::optional<DotenvEntry> entry;
      std::optional<Problem> problem = parse_unit(pos_, end, entry);
      const std::size_t next = end < text_.size() ? end + 1 : end;
      // A NUL byte means a binary or UTF-16 file, whatever the rest of the line looked like.
      if (const std::size_t nul = view(unit_start_, next).find('\0'); nul != std::string_view::npos)
        problem = Problem{unit_start_ + nul, "NUL byte (is this a text file?)"};
      if (problem) {
        result_.errors.push_back({line_of(problem->offset), std::move(problem->message)});
      } else if (entry) {
        entry->line = line;
        define(std::move(*entry));
      }
      line += newlines(unit_start_, next);
      pos_ = next;
    }
    // Entries redefined later were only marked dead so that indexes stay stable while parsing.
    std::size_t kept = 0;
    for (std::size_t i = 0; i < result_.entries.size(); ++i) {
      if (!live_[i]) continue;
      if (kept != i) result_.entries[kept] = std::move(result_.entries[i]);  // never self-move
      ++kept;
    }
    result_.entries.resize(kept);
    return std::move(result_);
  }

 private:
  // Parses the unit starting at `start`: a blank line, a comment, or an entry, which spans lines
  // when its quoted value does. Sets `end` to the end of the unit's last line (its '\n' or the end
  // of the text). On failure `end` still covers what was consumed, so parsing resumes after it;
  // an unterminated quote consumes only its own line, so the lines after it are still checked.
  std::optional<Problem> parse_unit(std::size_t start, std::size_t& end, std::optional<DotenvEntry>& entry) {
    end = line_end(start);
    std::size_t i = start;
    while (i < end && is_blank(text_[i])) ++i;
    if (i == end || text_[i] == '#') return std::nullopt;

    // "export KEY=v" as in shell; "export=1" and "export =1" still define a key named export.
    if (text_.compare(i, 6, "export") == 0 && i + 6 < end && is_blank(text_[i + 6])) {
      std::size_t k = i + 6;
      while (k < end && is_blank(text_[k])) ++k;
      if (k < end && text_[k] != '=') i = k;
    }

    const std::size_t eq_in_line = view(i, end).find('=');
    if (eq_in_line == std::string_view::npos) return Problem{i, "expected KEY=VALUE but the line has no '='"};
    const std::size_t eq = i + eq_in_line;
    const std::string_view key = trim_right(view(i, eq));
    if (key.empty()) return Problem{i, "missing key before '='"};
    if (!is_valid_key(key))
      return Problem{i, "invalid key '" + std::string(key) + "' (expected letters, digits, '_' or '.')"};

    std::size_t v = eq + 1;
    while (v < end && is_blank(text_[v])) ++v;
    std::string value;
    std::optional<Problem> problem;
    if (v < end && (text_[v] == '"' || text_[v] == '\'')) {
      const char quote = text_[v];
      const std::size_t close = find_closing_quote(v + 1, quote);
      if (close == std::string::npos)
        return Problem{v, std::string("unterminated ") + (quote == '"' ? "double" : "single") + "-quoted value for " +
                              std::string(key)};
      end = line_end(close);
      std::size_t t = close + 1;
      while (t < end && is_blank(text_[t])) ++t;
      if (t < end && text_[t] != '#')
        return Problem{t, "unexpected characters after the closing quote of " + std::string(key)};
      if (quote == '\'') {
        value.assign(view(v + 1, close));
      } else {
        std::size_t p = v + 1;
        problem = expand(p, close, /*escapes=*/true, /*in_default=*/false, 0, value);
      }
    } else {
      // '#' starts a comment only after a blank (so "A=b#c" is "b#c"), and the blank may be the
      // one after '=': "A= # nothing yet" is empty.
      std::size_t stop = end;
      for (std::size_t k = v; k < end; ++k) {
        if (text_[k] == '#' && k > eq + 1 && is_blank(text_[k - 1])) {
          stop = k;
          break;
        }
      }
      const std::string_view raw = trim_right(view(v, stop));
      std::size_t p = v;
      problem = expand(p, v + raw.size(), /*escapes=*/false, /*in_default=*/false, 0, value);
    }
    if (problem) {
      problem->message += " in the value of " + std::string(key);
      return problem;
    }
    entry = DotenvEntry{std::string(key), std::move(value), 0};
    return std::nullopt;
  }

  // Appends the expansion of text_[pos, end) to out. With in_default it stops at an unnested '}'
  // (pos is left on it; the caller checks that one was found). escapes: double-quoted rules.
  std::optional<Problem> expand(std::size_t& pos, std::size_t end, bool escapes, bool in_default, int depth,
                                std::string& out) const {
    while (pos < end) {
      const char c = text_[pos];
      if (in_default && c == '}') return std::nullopt;
      if (escapes && c == '\\') {
        // find_closing_quote skipped every backslash pair, so one always follows here.
        const char e = pos + 1 < end ? text_[pos + 1] : '\n';
        switch (e) {
          case 'n':
            out += '\n';
            break;
          case 'r':
            out += '\r';
            break;
          case 't':
            out += '\t';
            break;
          case '"':
          case '\\':
          case '$':
            out += e;
            break;
          default:
            return Problem{pos, describe_escape(e)};
        }
        pos += 2;
      } else if (c == '$' && pos + 1 < end && text_[pos + 1] == '{') {
        if (auto problem = expand_braced(pos, end, escapes, depth, out)) return problem;
      } else if (c == '$' && pos + 1 < end && is_name_start(text_[pos + 1])) {
        std::size_t k = pos + 1;
        while (k < end && is_name_char(text_[k])) ++k;
        out += resolve(view(pos + 1, k)).value_or("");
        pos = k;
      } else {
        out += c;  // includes a '$' before anything else: "$5", "$", "$$"
        ++pos;
      }
    }
    return std::nullopt;
  }

  // pos is on "${"; on success it ends just past the closing '}'.
  std::optional<Problem> expand_braced(std::size_t& pos, std::size_t end, bool escapes, int depth,
                                       std::string& out) const {
    const std::size_t open = pos;
    std::size_t k = pos + 2;
    while (k < end && is_key_char(text_[k])) ++k;
    if (k >= end) return Problem{open, "unterminated '${'"};
    const std::string_view name = view(open + 2, k);
    if (is_valid_key(name) && text_[k] == '}') {
      out += resolve(name).value_or("");
      pos = k + 1;
      return std::nullopt;
    }
    if (is_valid_key(name) && k + 1 < end && text_[k] == ':' && text_[k + 1] == '-') {
      if (depth >= kMaxNesting) return Problem{open, "variable defaults nested too deeply"};
      // The default is parsed even when unused, so its errors are reported either way.
      std::size_t d = k + 2;
      std::string fallback;
      if (auto problem = expand(d, end, escapes, /*in_default=*/true, depth + 1, fallback)) return problem;
      if (d >= end) return Problem{open, "unterminated '${'"};
      const std::optional<std::string> current = resolve(name);
      out += current && !current->empty() ? *current : fallback;
      pos = d + 1;
      return std::nullopt;
    }
    // ${}, ${1X}, ${A-x}, ${A:?x}...: shell forms this dialect does not have. Refusing them beats
    // silently expanding to something the author did not mean.
    const std::size_t close = view(k, end).find('}');
    if (close == std::string_view::npos) return Problem{open, "unterminated '${'"};
    return Problem{open, "invalid variable reference '" + std::string(view(open, k + close + 1)) + "'"};
  }

  // Keys defined earlier in the file shadow the lookup (normally the process environment).
  std::optional<std::string> resolve(std::string_view name) const {
    if (const auto it = index_.find(name); it != index_.end()) return result_.entries[it->second].value;
    if (lookup_) return lookup_(name);
    return std::nullopt;
  }

  // The later definition wins and takes the later line; expansions before it saw the earlier one.
  void define(DotenvEntry entry) {
    const auto [it, inserted] = index_.try_emplace(entry.key, result_.entries.size());
    if (!inserted) {
      live_[it->second] = false;
      it->second = result_.entries.size();
    }
    result_.entries.push_back(std::move(entry));
    live_.push_back(true);
  }

  // The closing quote at or after `from`; in double quotes a backslash hides the next byte.
  std::size_t find_closing_quote(std::size_t from, char quote) const {
    for (std::size_t k = from; k < text_.size(); ++k) {
      if (quote == '"' && text_[k] == '\\') {
        ++k;
      } else if (text_[k] == quote) {
        return k;
      }
    }
    return std::string::npos;
  }

  std::size_t line_end(std::size_t from) const {
    const std::size_t nl = text_.find('\n', from);
    return nl == std::string::npos ? text_.size() : nl;
  }

  std::string_view view(std::size_t from, std::size_t to) const {
    return std::string_view(text_).substr(from, to - from);
  }

  int newlines(std::size_t from, std::size_t to) const {
    const std::string_view s = view(from, to);
    return static_cast<int>(std::count(s.begin(), s.end(), '\n'));
  }

  int line_of(std::size_t offset) const { return unit_line_ + newlines(unit_start_, offset); }

  const std::string text_;
  const DotenvLookup& lookup_;
  std::size_t pos_ = 0;
  std::size_t unit_start_ = 0;  // first byte of the unit being parsed
  int unit_line_ = 1;           // its line
  DotenvResult result_;
  std::vector<bool> live_;                                 // per entry: not redefined later
  std::map<std::string, std::size_t, std::less<>> index_;  // key -> its current entry
};

}  // namespace

DotenvResult parse_dotenv(std::string_view text, const DotenvLookup& lookup) {
  return Parser(text, lookup).run();
}

DotenvResult load_dotenv_file(const std::string& path, const DotenvLookup& lookup) {
  std::string text;
  if (const int err = read_whole_file(path, text); err != 0)
    return DotenvResult{{}, {{0, "cannot read " + path + ": " + std::strerror(err)}}};
  return parse_dotenv(text, lookup);
}

}  // namespace keel::config
