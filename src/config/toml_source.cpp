#include "config/toml_source.hpp"

#include "config/read_file.hpp"

#include <toml++/toml.h>
#include <algorithm>
#include <cstring>
#include <map>
#include <sstream>

namespace keel::config {
namespace {

int line_of(const toml::node& n) {
  return static_cast<int>(n.source().begin.line);
}

// Scalar to text the way a user would write it in an environment variable.
bool scalar_text(const toml::node& n, std::string& out) {
  if (const auto* s = n.as_string()) {
    out = s->get();
  } else if (const auto* i = n.as_integer()) {
    out = std::to_string(i->get());
  } else if (const auto* f = n.as_floating_point()) {
    std::ostringstream os;
    os << f->get();
    out = os.str();
  } else if (const auto* b = n.as_boolean()) {
    out = b->get() ? "true" : "false";
  } else {
    return false;  // dates and times: no setting type takes them
  }
  return true;
}

void flatten(const toml::table& table, const std::string& prefix, FileResult& out) {
  for (const auto& [k, node] : table) {
    const std::string key = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
    if (const auto* sub = node.as_table()) {
      flatten(*sub, key, out);
    } else if (const auto* arr = node.as_array()) {
      std::string joined;
      bool ok = true;
      for (const auto& item : *arr) {
        std::string text;
        if (!scalar_text(item, text)) {
          ok = false;
          break;
        }
        if (!joined.empty()) joined += ',';
        joined += text;
      }
      if (ok)
        out.entries.push_back({key, joined, line_of(node)});
      else
        out.errors.push_back(
            {line_of(node), "key '" + key + "': only arrays of strings, numbers or booleans are supported"});
    } else {
      std::string text;
      if (scalar_text(node, text))
        out.entries.push_back({key, text, line_of(node)});
      else
        out.errors.push_back({line_of(node), "key '" + key + "': dates and times are not supported values"});
    }
  }
}

// toml++ accepts `a.b = 1` next to `"a.b" = 2` (a table key and a quoted key with a dot); both
// flatten to the name a.b. Which one would win is an accident of table order: name both lines.
void reject_duplicates(FileResult& out) {
  std::map<std::string, int> first_line;
  std::vector<FileEntry> kept;
  for (auto& e : out.entries) {
    const auto [it, inserted] = first_line.emplace(e.key, e.line);
    if (inserted) {
      kept.push_back(std::move(e));
      continue;
    }
    const auto [a, b] = std::minmax(it->second, e.line);
    out.errors.push_back(
        {b, "key '" + e.key + "' is defined twice (lines " + std::to_string(a) + " and " + std::to_string(b) + ")"});
  }
  out.entries = std::move(kept);
}

}  // namespace

FileResult parse_toml(std::string_view text, std::string_view source_name) {
  FileResult out;
  try {
    const toml::table doc = toml::parse(text, source_name);
    flatten(doc, "", out);
    reject_duplicates(out);
  } catch (const toml::parse_error& e) {
    out.errors.push_back({static_cast<int>(e.source().begin.line), std::string(e.description())});
  }
  return out;
}

FileResult load_toml_file(const std::string& path) {
  std::string text;
  if (const int err = read_whole_file(path, text); err != 0)
    return FileResult{{}, {{0, "cannot read " + path + ": " + std::strerror(err)}}};
  return parse_toml(text, path);
}

}  // namespace keel::config
