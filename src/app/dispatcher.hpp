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
#include <vector>

#include "app/detached.hpp"
#include "http/handler.hpp"
#include "http/observer.hpp"
#include "keel/app.hpp"
#include "keel/task.hpp"
#include "log/log.hpp"
#include "trace/tracer.hpp"

namespace keel {
class Router;
}

namespace keel::app {

class Dispatcher final : public http::RequestHandler {
 public:
  // limit_concurrency: requests handled at once (0: no limit). The router and middleware outlive this.
  Dispatcher(const Router& router, const std::vector<Middleware>& middleware, std::size_t limit_concurrency);
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
    std::size_t middleware_ran = 0;  // their `after` runs, in reverse
    bool counted = false;            // holds a --limit-concurrency slot
  };

  Scope* take_scope();
  void route_and_run(Scope& scope);
  void finish(Scope& scope, Response& response);
  Response error_response(Scope& scope, std::exception_ptr error);
  static detail::Detached run_async(Dispatcher* self, Scope* scope, Task<Response> task);

  const Router& router_;
  const std::vector<Middleware>& middleware_;
  std::size_t limit_concurrency_;
  std::size_t in_flight_ = 0;
  http::Observer* observer_ = nullptr;
  std::vector<std::unique_ptr<Scope>> spare_;
};

}  // namespace keel::app
