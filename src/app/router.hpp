// Method + path-template router. Matching works on raw '/'-separated segments, each
// percent-decoded on its own, so an encoded "%2F" stays inside its segment.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "keel/app.hpp"

namespace keel {

class Router {
 public:
  enum class SegmentKind : unsigned char { kLiteral, kInt, kUuid, kString, kPath };
  struct Segment {
    SegmentKind kind;
    std::string text;  // literal text, or the parameter name
  };
  struct Route {
    std::string method;
    std::string pattern;  // the template: the route label for metrics, spans and logs
    std::vector<Segment> segments;
    Handler handler;
    bool operational = false;  // health and metrics: the application's middleware skips them (by default)
  };
  struct Match {
    const Route* route = nullptr;  // set when status == 200
    int status = 404;              // 200 matched, 400 bad path encoding, 404, 405
    std::string allow;             // for 405 and OPTIONS: "GET, HEAD, OPTIONS"
  };

  // Throws std::invalid_argument naming the pattern when it is malformed or a duplicate. The
  // route returned is valid until the next add().
  Route& add(std::string_view method, std::string_view pattern, Handler handler);

  // Finds the route for method + raw path; on success fills req's route template and params.
  // HEAD falls back to GET routes.
  Match match(std::string_view method, std::string_view raw_path, Request& req) const;

  [[nodiscard]] const std::vector<Route>& routes() const noexcept { return routes_; }
  // Allow value for "OPTIONS *": every method any route answers.
  [[nodiscard]] std::string all_methods() const;

 private:
  template <class Pred>
  std::string allow_list(Pred&& include) const;
  bool match_route(const Route& r, const std::vector<std::string_view>& segs, Request* req) const;
  std::vector<Route> routes_;
};

}  // namespace keel
