// libFuzzer target for keel::Router (src/app/router.cpp): route patterns and request matching.
//
// The input is a list of lines. A router starts with a fixed set of routes (literals, {name},
// {id:int}, {id:uuid}, {rest:path}, HEAD/GET, several methods on one path); then each line
//   "+METHOD PATTERN"  adds a route: Router::add() must succeed exactly when an independent
//                      validity check of the pattern says so (starts with '/', parameters
//                      {name[:int|uuid|str|path]} with a name, no other '{' or '}', {x:path} last,
//                      no duplicate parameter name, no route with the same method and shape), and
//                      otherwise throw std::invalid_argument and leave the routes unchanged;
//   "METHOD PATH"      matches: the result is checked against a reference single-route matcher
//                      (segments split on raw '/', each percent-decoded on its own):
//                      - 400 exactly when a segment has a bad escape or decodes to NUL;
//                      - 200: the chosen route matches, has the method (or GET for a HEAD without
//                        HEAD route), no other matching route of that method is strictly more
//                        specific (literal < int < uuid < str < path, segment by segment), and the
//                        request's route() and params (param(), param_int()) agree with the path;
//                      - 405: some route matches the path but none for the method, and Allow lists
//                        exactly those routes' methods (+HEAD for GET, +OPTIONS), sorted, unique;
//                      - 404: no route matches the path (or the path does not start with '/').
// Anything else escaping add() or match() (another exception type, a crash) is a finding.

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "app/router.hpp"
#include "fuzz_check.hpp"
#include "keel/app.hpp"

namespace {

using keel::Router;
using Kind = Router::SegmentKind;

constexpr std::size_t kMaxAddedRoutes = 48;
constexpr std::size_t kMaxMatches = 64;

struct RefSegment {
  Kind kind;
  std::string text;
};

// Independent pattern check; fills segs when valid.
bool ref_parse_pattern(std::string_view pattern, std::vector<RefSegment>& segs) {
  segs.clear();
  if (pattern.empty() || pattern[0] != '/') return false;
  std::set<std::string> names;
  std::size_t start = 1;
  for (;;) {
    std::size_t slash = pattern.find('/', start);
    if (slash == std::string_view::npos) slash = pattern.size();
    const std::string_view seg = pattern.substr(start, slash - start);
    if (!segs.empty() && segs.back().kind == Kind::kPath) return false;  // path must be last
    if (seg.size() >= 2 && seg.front() == '{' && seg.back() == '}') {
      const std::string_view inner = seg.substr(1, seg.size() - 2);
      const std::size_t colon = inner.find(':');
      const std::string name(inner.substr(0, colon));
      const std::string_view type = colon == std::string_view::npos ? std::string_view("str") : inner.substr(colon + 1);
      if (name.empty()) return false;
      Kind kind;
      if (type == "int")
        kind = Kind::kInt;
      else if (type == "uuid")
        kind = Kind::kUuid;
      else if (type == "str")
        kind = Kind::kString;
      else if (type == "path")
        kind = Kind::kPath;
      else
        return false;
      if (!names.insert(name).second) return false;
      segs.push_back({kind, name});
    } else {
      if (seg.find('{') != std::string_view::npos || seg.find('}') != std::string_view::npos) return false;
      segs.push_back({Kind::kLiteral, std::string(seg)});
    }
    if (slash == pattern.size()) break;
    start = slash + 1;
  }
  return true;
}

bool same_shape(const std::vector<Router::Segment>& a, const std::vector<RefSegment>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].kind != b[i].kind) return false;
    if (a[i].kind == Kind::kLiteral && a[i].text != b[i].text) return false;
  }
  return true;
}

int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Splits a raw path on '/' after the leading one and percent-decodes each segment; false on a bad
// escape or an escaped NUL.
bool ref_segments(std::string_view path, std::vector<std::string>& out) {
  out.clear();
  std::size_t start = 1;
  for (;;) {
    std::size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) slash = path.size();
    std::string seg;
    for (std::size_t i = start; i < slash; ++i) {
      if (path[i] != '%') {
        seg += path[i];
        continue;
      }
      if (slash - i < 3) return false;
      const int hi = hexval(path[i + 1]), lo = hexval(path[i + 2]);
      if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) return false;
      seg += static_cast<char>(hi * 16 + lo);
      i += 2;
    }
    out.push_back(std::move(seg));
    if (slash == path.size()) break;
    start = slash + 1;
  }
  return true;
}

bool ref_is_int(std::string_view s) {  // what std::int64_t holds: optional '-', digits, no overflow
  std::size_t i = s.starts_with('-') ? 1 : 0;
  if (i == s.size()) return false;
  for (std::size_t k = i; k < s.size(); ++k)
    if (s[k] < '0' || s[k] > '9') return false;
  std::string_view digits = s.substr(i);
  while (digits.size() > 1 && digits[0] == '0') digits.remove_prefix(1);
  const std::string_view limit = i == 1 ? "9223372036854775808" : "9223372036854775807";
  return digits.size() < limit.size() || (digits.size() == limit.size() && digits <= limit);
}

bool ref_is_uuid(std::string_view s) {
  if (s.size() != 36) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (s[i] != '-') return false;
    } else if (hexval(s[i]) < 0) {
      return false;
    }
  }
  return true;
}

bool ref_matches(const std::vector<Router::Segment>& ps, const std::vector<std::string>& segs) {
  const bool tail = !ps.empty() && ps.back().kind == Kind::kPath;
  if (tail ? segs.size() < ps.size() : segs.size() != ps.size()) return false;
  for (std::size_t i = 0; i < ps.size(); ++i) {
    const std::string& s = segs[i];
    switch (ps[i].kind) {
      case Kind::kLiteral:
        if (s != ps[i].text) return false;
        break;
      case Kind::kInt:
        if (!ref_is_int(s)) return false;
        break;
      case Kind::kUuid:
        if (!ref_is_uuid(s)) return false;
        break;
      case Kind::kString:
        if (s.empty()) return false;
        break;
      case Kind::kPath:
        break;
    }
  }
  return true;
}

// a is strictly more specific than b: at the first differing segment kind (over the common length).
bool more_specific(const Router::Route& a, const Router::Route& b) {
  for (std::size_t i = 0; i < std::min(a.segments.size(), b.segments.size()); ++i) {
    const auto ka = static_cast<int>(a.segments[i].kind), kb = static_cast<int>(b.segments[i].kind);
    if (ka != kb) return ka < kb;
  }
  return false;
}

keel::Handler handler() {
  return [](keel::Request&) { return keel::Response(204); };
}

void add_route(Router& router, std::string_view method, std::string_view pattern) {
  std::vector<RefSegment> ref;
  bool valid = !method.empty() && ref_parse_pattern(pattern, ref);
  if (valid) {
    for (const auto& r : router.routes())
      if (r.method == method && same_shape(r.segments, ref)) valid = false;  // duplicate
  }
  const std::size_t before = router.routes().size();
  bool added = true;
  try {
    router.add(method, pattern, handler());
  } catch (const std::invalid_argument& e) {
    added = false;
    FUZZ_CHECK(std::string_view(e.what()).find("route ") == 0);
  }
  if (added != valid) {
    std::fprintf(stderr, "router_fuzz: add(\"%.*s\", \"%.*s\") %s, expected %s\n", static_cast<int>(method.size()),
                 method.data(), static_cast<int>(pattern.size()), pattern.data(), added ? "succeeded" : "threw",
                 valid ? "success" : "std::invalid_argument");
  }
  FUZZ_CHECK(added == valid);
  FUZZ_CHECK(router.routes().size() == before + (added ? 1 : 0));
  if (!added) return;
  const Router::Route& r = router.routes().back();
  FUZZ_CHECK(r.method == method && r.pattern == pattern && static_cast<bool>(r.handler));
  FUZZ_CHECK(r.segments.size() == ref.size());
  for (std::size_t i = 0; i < ref.size(); ++i)
    FUZZ_CHECK(r.segments[i].kind == ref[i].kind && r.segments[i].text == ref[i].text);
}

std::string expected_allow(const Router& router, const std::vector<std::string>* segs) {
  std::vector<std::string> methods{"OPTIONS"};
  for (const auto& r : router.routes()) {
    if (segs != nullptr && !ref_matches(r.segments, *segs)) continue;
    methods.push_back(r.method);
    if (r.method == "GET") methods.emplace_back("HEAD");
  }
  std::sort(methods.begin(), methods.end());
  methods.erase(std::unique(methods.begin(), methods.end()), methods.end());
  std::string out;
  for (const auto& m : methods) out += (out.empty() ? "" : ", ") + m;
  return out;
}

void check_match(const Router& router, std::string_view method, std::string_view path) {
  keel::Request req;
  const Router::Match m = router.match(method, path, req);
  std::vector<std::string> segs;
  if (path.empty() || path[0] != '/') {
    FUZZ_CHECK(m.status == 404 && m.route == nullptr && req.route() == "unmatched");
    return;
  }
  if (!ref_segments(path, segs)) {
    FUZZ_CHECK(m.status == 400 && m.route == nullptr);
    return;
  }
  std::vector<const Router::Route*> same_method, get_routes, any_method;
  bool any = false;
  for (const auto& r : router.routes()) {
    if (!ref_matches(r.segments, segs)) continue;
    any = true;
    any_method.push_back(&r);
    if (r.method == method) same_method.push_back(&r);
    if (r.method == "GET") get_routes.push_back(&r);
  }
  const auto& candidates = !same_method.empty() ? same_method : (method == "HEAD" ? get_routes : same_method);
  if (candidates.empty()) {
    FUZZ_CHECK(m.route == nullptr);
    if (!any) {
      FUZZ_CHECK(m.status == 404 && req.route() == "unmatched");
    } else {
      // A 405 is labelled with the template of a route the path has (under another method).
      FUZZ_CHECK(m.status == 405);
      FUZZ_CHECK(m.allow == expected_allow(router, &segs));
      FUZZ_CHECK(std::any_of(any_method.begin(), any_method.end(),
                             [&](const Router::Route* r) { return req.route() == r->pattern; }));
    }
    return;
  }
  FUZZ_CHECK(m.status == 200 && m.route != nullptr);
  FUZZ_CHECK(std::find(candidates.begin(), candidates.end(), m.route) != candidates.end());
  for (const Router::Route* r : candidates) FUZZ_CHECK(!more_specific(*r, *m.route));
  FUZZ_CHECK(req.route() == m.route->pattern);
  const auto& ps = m.route->segments;
  for (std::size_t i = 0; i < ps.size(); ++i) {
    if (ps[i].kind == Kind::kLiteral) continue;
    std::string want = segs[i];
    if (ps[i].kind == Kind::kPath)
      for (std::size_t k = i + 1; k < segs.size(); ++k) want += "/" + segs[k];
    FUZZ_CHECK(req.param(ps[i].text) == want);
    if (ps[i].kind == Kind::kInt) {
      std::int64_t v = 0;
      const auto [p, ec] = std::from_chars(want.data(), want.data() + want.size(), v);
      FUZZ_CHECK(ec == std::errc() && p == want.data() + want.size());
      FUZZ_CHECK(req.param_int(ps[i].text) == v);
    }
  }
}

void add_baseline(Router& router) {
  const char* routes[][2] = {
      {"GET", "/"},
      {"GET", "/health"},
      {"GET", "/api/users"},
      {"POST", "/api/users"},
      {"GET", "/api/users/{id:int}"},
      {"GET", "/api/users/{id:uuid}"},
      {"GET", "/api/users/{name}"},
      {"PUT", "/api/users/{id:int}"},
      {"DELETE", "/api/users/{id:int}"},
      {"GET", "/api/users/me"},
      {"GET", "/api/users/{id:int}/posts/{post}"},
      {"HEAD", "/api/users/{id:int}/posts/{post}"},
      {"GET", "/files/{rest:path}"},
      {"GET", "/files/{dir}/index.html"},
      {"PATCH", "/a/{b}/c/{d:int}"},
      {"GET", "/a%2Fb/{x}"},
      {"GET", "/static/"},
  };
  for (const auto& r : routes) add_route(router, r[0], r[1]);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  Router router;
  add_baseline(router);
  std::size_t added = 0, matched = 0;
  std::size_t start = 0;
  while (start <= input.size()) {
    std::size_t nl = input.find('\n', start);
    if (nl == std::string_view::npos) nl = input.size();
    std::string_view line = input.substr(start, nl - start);
    start = nl + 1;
    const bool add = line.starts_with('+');
    if (add) line.remove_prefix(1);
    const std::size_t sp = line.find(' ');
    const std::string_view method = line.substr(0, sp);
    const std::string_view rest = sp == std::string_view::npos ? std::string_view() : line.substr(sp + 1);
    if (add) {
      if (++added > kMaxAddedRoutes) continue;
      add_route(router, method, rest);
    } else {
      if (++matched > kMaxMatches) continue;
      check_match(router, method, rest);
    }
  }
  FUZZ_CHECK(router.all_methods() == expected_allow(router, nullptr));
  return 0;
}
