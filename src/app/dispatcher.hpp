// The application side of the request seam (http/handler.hpp): routes each exchange, runs the
// middleware and the handler (inline when it is synchronous, as a coroutine otherwise), answers
// what no route does (404, 405, OPTIONS), maps exceptions to problem+json, applies
// --limit-concurrency, and brackets every request with the tracer and the observers. One per
// listener kind and worker: traffic (the application's routes and middleware) and admin.
#pragma once

#include <chrono>
#include <cstddef>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "app/router.hpp"
#include "http/handler.hpp"
#include "http/observer.hpp"
#include "keel/app.hpp"
#include "keel/task.hpp"
#include "log/log.hpp"
#include "runtime/detached.hpp"
#include "trace/tracer.hpp"

namespace keel::app {

class Dispatcher final : public http::RequestHandler {
 public:
  // limit_concurrency: requests handled at once (0: no limit). operational_middleware: the
  // middleware also runs on operational routes (health, metrics). The router and middleware
  // outlive this. root_path: --root-path (empty: none; else "/prefix" without a trailing '/').
  Dispatcher(const Router& router, const std::vector<Middleware>& middleware, std::size_t limit_concurrency,
             bool operational_middleware = false, std::string root_path = {});
  ~Dispatcher() override;
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  // Metrics and the access log; null: none. Set before serving.
  void set_observer(http::Observer* observer) noexcept { observer_ = observer; }
  void handle(http::Exchange& exchange) noexcept override;
  // Requests being handled now (the --limit-concurrency account).
  [[nodiscard]] std::size_t in_flight() const noexcept { return in_flight_; }

 private:
  // What one request carries from start to finish; pooled, so a request allocates nothing here.
  struct Scope {
    http::Exchange* exchange = nullptr;
    log::Context log_context;  // current while the request is handled, across co_await
    trace::RequestTrace trace;
    std::chrono::steady_clock::time_point started{};
    std::size_t middleware_ran = 0;        // their `after` runs, in reverse
    bool counted = false;                  // holds a --limit-concurrency slot
    const Router::Route* route = nullptr;  // the match, or null (then match_status, allow)
    int match_status = 404;
    std::string allow;
    http::Protocol protocol = http::Protocol::kHttp11;  // what observers were told at the start
  };

  Scope* take_scope();
  void route_and_run(Scope& scope);
  void finish(Scope& scope, Response& response);
  Response error_response(Scope& scope, std::exception_ptr error);
  static runtime::Detached run_async(Dispatcher* self, Scope* scope, Task<Response> task);
  // The whole chain as a coroutine (when an `around` middleware is registered), from middleware i.
  Task<Response> run_chain(Scope* scope, std::size_t i);
  Task<Response> run_route(Scope* scope);
  static Task<Response> call_next(const Next& next, Request& request);
  // keel's answer when no route matched (404, 405, OPTIONS, CONNECT).
  Response unmatched(Scope& scope);

  const Router& router_;
  const std::vector<Middleware>& middleware_;
  std::size_t limit_concurrency_;
  bool operational_middleware_;
  std::string root_path_;
  bool has_around_ = false;
  std::size_t in_flight_ = 0;
  http::Observer* observer_ = nullptr;
  std::vector<std::unique_ptr<Scope>> spare_;
};

}  // namespace keel::app
