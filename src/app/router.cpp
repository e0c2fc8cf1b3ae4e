#include "app/router.hpp"

#include <algorithm>
#include <charconv>
#include <deque>
#include <stdexcept>

#include "base/strings.hpp"

namespace keel {
namespace {

bool is_int(std::string_view s) {
  if (s.empty()) return false;
  std::int64_t v = 0;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size();
}

bool is_uuid(std::string_view s) {
  if (s.size() != 36) return false;
  for (std::size_t i = 0; i < 36; ++i) {
    const char c = s[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return false;
    } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
      return false;
    }
  }
  return true;
}

// Rank for choosing among several matching routes: more specific segments win.
int rank(Router::SegmentKind k) {
  return static_cast<int>(k);
}

}  // namespace

Router::Route& Router::add(std::string_view method, std::string_view pattern, Handler handler) {
  const std::string where = std::string(method) + " " + std::string(pattern);
  if (method.empty()) throw std::invalid_argument("route " + where + ": empty method");
  if (pattern.empty() || pattern.front() != '/')
    throw std::invalid_argument("route " + where + ": must start with '/'");
  if (!handler) throw std::invalid_argument("route " + where + ": empty handler");
  Route r;
  r.method = std::string(method);
  r.pattern = std::string(pattern);
  r.handler = std::move(handler);
  std::string_view rest = pattern.substr(1);
  for (;;) {
    const auto slash = rest.find('/');
    const std::string_view seg = rest.substr(0, slash);
    if (!r.segments.empty() && r.segments.back().kind == SegmentKind::kPath)
      throw std::invalid_argument("route " + where + ": {name:path} must be the last segment");
    if (seg.size() >= 2 && seg.front() == '{' && seg.back() == '}') {
      const std::string_view inner = seg.substr(1, seg.size() - 2);
      const auto colon = inner.find(':');
      const std::string_view name = inner.substr(0, colon);
      const std::string_view type = colon == std::string_view::npos ? "str" : inner.substr(colon + 1);
      if (name.empty()) throw std::invalid_argument("route " + where + ": parameter without a name");
      SegmentKind kind;
      if (type == "int")
        kind = SegmentKind::kInt;
      else if (type == "uuid")
        kind = SegmentKind::kUuid;
      else if (type == "str")
        kind = SegmentKind::kString;
      else if (type == "path")
        kind = SegmentKind::kPath;
      else
        throw std::invalid_argument("route " + where + ": unknown parameter type '" + std::string(type) +
                                    "' (int, uuid, str, path)");
      for (const auto& s : r.segments)
        if (s.kind != SegmentKind::kLiteral && s.text == name)
          throw std::invalid_argument("route " + where + ": duplicate parameter '" + std::string(name) + "'");
      r.segments.push_back({kind, std::string(name)});
    } else {
      if (seg.find_first_of("{}") != std::string_view::npos)
        throw std::invalid_argument("route " + where + ": malformed parameter segment '" + std::string(seg) + "'");
      r.segments.push_back({SegmentKind::kLiteral, std::string(seg)});
    }
    if (slash == std::string_view::npos) break;
    rest = rest.substr(slash + 1);
  }
  for (const auto& existing : routes_) {
    if (existing.method != r.method || existing.segments.size() != r.segments.size()) continue;
    bool same = true;
    for (std::size_t i = 0; i < r.segments.size() && same; ++i) {
      const auto& a = existing.segments[i];
      const auto& b = r.segments[i];
      same = a.kind == b.kind && (a.kind != SegmentKind::kLiteral || a.text == b.text);
    }
    if (same) throw std::invalid_argument("route " + where + ": duplicate of " + existing.pattern);
  }
  return routes_.emplace_back(std::move(r));
}

bool Router::match_route(const Route& r, const std::vector<std::string_view>& segs, Request* req) const {
  const auto& ps = r.segments;
  const bool tail = !ps.empty() && ps.back().kind == SegmentKind::kPath;
  if (tail ? segs.size() < ps.size() : segs.size() != ps.size()) return false;
  for (std::size_t i = 0; i < ps.size(); ++i) {
    const Segment& p = ps[i];
    const std::string_view s = segs[i];
    switch (p.kind) {
      case SegmentKind::kLiteral:
        if (s != p.text) return false;
        break;
      case SegmentKind::kInt:
        if (!is_int(s)) return false;
        break;
      case SegmentKind::kUuid:
        if (!is_uuid(s)) return false;
        break;
      case SegmentKind::kString:
        if (s.empty()) return false;
        break;
      case SegmentKind::kPath:
        break;
    }
  }
  if (req != nullptr) {
    req->params_.clear();
    for (std::size_t i = 0; i < ps.size(); ++i) {
      const Segment& p = ps[i];
      if (p.kind == SegmentKind::kLiteral) continue;
      if (p.kind == SegmentKind::kPath) {
        std::string joined;
        for (std::size_t k = i; k < segs.size(); ++k) {
          if (k > i) joined += '/';
          joined += segs[k];
        }
        req->params_.emplace_back(p.text, std::move(joined));
      } else {
        req->params_.emplace_back(p.text, std::string(segs[i]));
      }
    }
    req->route_ = r.pattern;
  }
  return true;
}

Router::Match Router::match(std::string_view method, std::string_view raw_path, Request& req) const {
  Match m;
  req.route_ = "unmatched";
  req.params_.clear();
  if (raw_path.empty() || raw_path.front() != '/') return m;  // "*" and authority-form: no route
  // Split and decode segments. Storage is thread-local to avoid allocating per request; a deque
  // so that growing it never moves the strings earlier views point into.
  thread_local std::deque<std::string> decoded;
  thread_local std::vector<std::string_view> segs;
  segs.clear();
  std::size_t n_decoded = 0;
  std::string_view rest = raw_path.substr(1);
  for (;;) {
    const auto slash = rest.find('/');
    std::string_view seg = rest.substr(0, slash);
    if (seg.find('%') != std::string_view::npos) {
      if (decoded.size() <= n_decoded) decoded.emplace_back();
      if (!base::percent_decode_strict(seg, decoded[n_decoded])) {
        m.status = 400;
        return m;
      }
      seg = decoded[n_decoded++];
    }
    segs.push_back(seg);
    if (slash == std::string_view::npos) break;
    rest = rest.substr(slash + 1);
  }

  const Route* best = nullptr;
  const Route* best_get = nullptr;  // HEAD falls back to GET
  const Route* best_any = nullptr;  // any method: the template a 405 is labelled with
  for (const Route& r : routes_) {
    if (!match_route(r, segs, nullptr)) continue;
    const auto better = [&](const Route* cur) {
      if (cur == nullptr) return true;
      for (std::size_t i = 0; i < std::min(cur->segments.size(), r.segments.size()); ++i) {
        const int a = rank(r.segments[i].kind), b = rank(cur->segments[i].kind);
        if (a != b) return a < b;
      }
      return false;
    };
    if (better(best_any)) best_any = &r;
    if (r.method == method) {
      if (better(best)) best = &r;
    } else if (method == "HEAD" && r.method == "GET") {
      if (better(best_get)) best_get = &r;
    }
  }
  if (best == nullptr) best = best_get;
  if (best != nullptr) {
    match_route(*best, segs, &req);
    m.route = best;
    m.status = 200;
    return m;
  }
  if (best_any == nullptr) return m;
  // The path exists under other methods: 405 with Allow (RFC 9110 §15.5.6), or OPTIONS. Labelled
  // with the route's template, so metrics and logs say which route was called the wrong way.
  req.route_ = best_any->pattern;
  m.allow = allow_list([&](const Route& r) { return match_route(r, segs, nullptr); });
  m.status = 405;
  return m;
}

template <class Pred>
std::string Router::allow_list(Pred&& include) const {
  std::vector<std::string_view> methods;
  for (const Route& r : routes_) {
    if (!include(r)) continue;
    methods.push_back(r.method);
    if (r.method == "GET") methods.push_back("HEAD");
  }
  methods.push_back("OPTIONS");
  std::sort(methods.begin(), methods.end());
  methods.erase(std::unique(methods.begin(), methods.end()), methods.end());
  std::string allow;
  for (const auto mth : methods) {
    if (!allow.empty()) allow += ", ";
    allow += mth;
  }
  return allow;
}

std::string Router::all_methods() const {
  return allow_list([](const Route&) { return true; });
}

}  // namespace keel
