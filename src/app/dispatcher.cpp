#include "app/dispatcher.hpp"

#include <cxxabi.h>

#include <cstdlib>
#include <optional>
#include <typeinfo>

#include "app/router.hpp"
#include "base/strings.hpp"
#include "http/response_writer.hpp"
#include "keel/async.hpp"
#include "keel/errors.hpp"
#include "runtime/detached.hpp"

namespace keel::app {

Dispatcher::Dispatcher(const Router& router, const std::vector<Middleware>& middleware, std::size_t limit_concurrency,
                       bool operational_middleware, std::string root_path)
    : router_(router),
      middleware_(middleware),
      limit_concurrency_(limit_concurrency),
      operational_middleware_(operational_middleware),
      root_path_(std::move(root_path)) {
  while (!root_path_.empty() && root_path_.back() == '/') root_path_.pop_back();  // "/api/" is "/api", "/" none
  for (const Middleware& m : middleware_) has_around_ = has_around_ || static_cast<bool>(m.around);
}

namespace {
const std::vector<Middleware> kNoMiddleware;
}  // namespace

// A scope still out belongs to a handler suspended at shutdown: it is left to the process's end
// rather than freed under the coroutine.
Dispatcher::~Dispatcher() = default;

Dispatcher::Scope* Dispatcher::take_scope() {
  if (spare_.empty()) return new Scope;
  Scope* s = spare_.back().release();
  spare_.pop_back();
  return s;
}

void Dispatcher::handle(http::Exchange& exchange) noexcept {
  Scope& s = *take_scope();
  s.exchange = &exchange;
  s.middleware_ran = 0;
  s.counted = false;
  Request& request = exchange.request();
  // --root-path: a proxy that mounts the application under a prefix may pass it on or strip it;
  // either way the routes see the path after it, and root_path() says what it is.
  if (!root_path_.empty()) {
    request.root_path_ = root_path_;
    const std::string_view path = request.path_;
    if (path.size() >= root_path_.size() && path.compare(0, root_path_.size(), root_path_) == 0) {
      if (path.size() == root_path_.size())
        request.path_ = path.substr(0, 1);  // "/api" is the application's "/"
      else if (path[root_path_.size()] == '/')
        request.path_ = path.substr(root_path_.size());
    }
  }
  // Every request has an id (the client's X-Request-ID when valid): logs, error bodies and the
  // response carry it.
  log::Context& lc = s.log_context;
  lc.request_id = request.request_id();
  lc.trace_id.clear();
  lc.span_id.clear();
  lc.trace_state.clear();
  lc.trace_flags = 0;
  lc.fields.clear();
  lc.client_ip = base::client_ip(request.client_address());
  lc.route = {};
  if (trace::Tracer* t = trace::tracer()) t->begin_request(request, s.trace, lc);
  log::ScopedContext scoped(&lc);
  if (observer_ != nullptr) {
    s.started = std::chrono::steady_clock::now();
    s.protocol = http::protocol_of(request.http_version());
    observer_->request_started(s.protocol);
  }
  if (limit_concurrency_ > 0) {
    if (in_flight_ >= limit_concurrency_) {
      if (observer_ != nullptr) observer_->rejected(http::Rejection::kConcurrencyLimit);
      Response r = http::problem_response(503, "concurrency limit reached", request.request_id());
      finish(s, r);
      return;
    }
    ++in_flight_;
    s.counted = true;
  }
  route_and_run(s);
}

// Drives a coroutine handler's task to its end, then finishes the exchange. Runs inline until the
// handler first suspends.
runtime::Detached Dispatcher::run_async(Dispatcher* self, Scope* scope, Task<Response> task) {
  Response r;
  try {
    r = co_await std::move(task);
  } catch (...) {
    r = self->error_response(*scope, std::current_exception());
  }
  log::ScopedContext scoped(&scope->log_context);
  self->finish(*scope, r);
}

void Dispatcher::route_and_run(Scope& s) {
  Request& request = s.exchange->request();
  // Route first, so middleware sees the route template (auth rules, labels).
  Router::Match match = router_.match(request.method(), request.path(), request);
  s.log_context.route = request.route();
  s.route = match.route;
  s.match_status = match.status;
  s.allow = std::move(match.allow);
  // Health and metrics answer whatever the application's middleware would say (an API key
  // check must not fail a liveness probe), unless asked otherwise.
  const bool operational = match.route != nullptr && match.route->operational && !operational_middleware_;
  if (has_around_ && !operational) {
    run_async(this, &s, run_chain(&s, 0));
    return;
  }
  const std::vector<Middleware>& middleware = operational ? kNoMiddleware : middleware_;
  std::optional<Response> early;
  try {
    for (const Middleware& m : middleware) {
      if (m.before) {
        early = m.before(request);
        if (early) break;
      }
      ++s.middleware_ran;
    }
  } catch (...) {
    early = error_response(s, std::current_exception());
  }
  if (early) {
    finish(s, *early);
    return;
  }
  if (s.route == nullptr) {
    Response r = unmatched(s);
    finish(s, r);
    return;
  }
  const Handler& h = s.route->handler;
  if (h.sync()) {
    Response r;
    try {
      r = h.sync()(request);
    } catch (...) {
      r = error_response(s, std::current_exception());
    }
    finish(s, r);
    return;
  }
  std::optional<Task<Response>> task;
  try {
    task.emplace(h.async()(request));
  } catch (...) {
    Response r = error_response(s, std::current_exception());
    finish(s, r);
    return;
  }
  run_async(this, &s, std::move(*task));
}

Response Dispatcher::unmatched(Scope& s) {
  const Request& request = s.exchange->request();
  const std::string_view method = request.method();
  const std::string_view path = request.path();
  // CONNECT in authority-form asks for a tunnel, which keel never opens (RFC 9110 §9.3.6).
  const bool connect_tunnel = method == "CONNECT" && (path.empty() || path.front() != '/');
  Response r;
  if (method == "OPTIONS" && path == "*") {
    r = Response(204);
    r.add_header("Allow", router_.all_methods());
  } else if (connect_tunnel) {
    // The empty Allow: no method applies to a tunnel target (RFC 9110 §10.2.1).
    r = http::problem_response(405, "CONNECT is not supported", request.request_id());
    r.add_header("Allow", "");
  } else if (s.match_status == 405 && method == "OPTIONS") {
    r = Response(204);
    r.add_header("Allow", s.allow);
  } else if (s.match_status == 405) {
    r = http::problem_response(405, "method not allowed", request.request_id());
    r.add_header("Allow", s.allow);
  } else if (s.match_status == 400) {
    r = http::problem_response(400, "malformed percent-encoding in path", request.request_id());
  } else {
    r = http::problem_response(404, "no route matches this path", request.request_id());
  }
  return r;
}

// Middleware i, around the rest of the chain. Never throws: errors become problem responses, so
// every `after` and `around` sees an answer.
Task<Response> Dispatcher::run_chain(Scope* s, std::size_t i) {
  if (i == middleware_.size()) co_return co_await run_route(s);
  Request& request = s->exchange->request();
  const Middleware& m = middleware_[i];
  Response r;
  if (m.around) {
    Next next;
    next.call_ = &Dispatcher::call_next;
    next.owner_ = this;
    next.state_ = s;
    next.index_ = i + 1;
    try {
      r = co_await m.around(request, next);
    } catch (...) {
      r = error_response(*s, std::current_exception());
    }
    co_return r;
  }
  std::optional<Response> early;
  if (m.before) {
    try {
      early = m.before(request);
    } catch (...) {
      early = error_response(*s, std::current_exception());
    }
  }
  if (early) co_return std::move(*early);  // a short-circuit: its own `after` does not run
  r = co_await run_chain(s, i + 1);
  if (m.after) {
    try {
      m.after(request, r);
    } catch (...) {
      r = error_response(*s, std::current_exception());
    }
  }
  co_return r;
}

Task<Response> Dispatcher::run_route(Scope* s) {
  if (s->route == nullptr) co_return unmatched(*s);
  Request& request = s->exchange->request();
  const Handler& h = s->route->handler;
  Response r;
  try {
    if (h.sync())
      r = h.sync()(request);
    else
      r = co_await h.async()(request);
  } catch (...) {
    r = error_response(*s, std::current_exception());
  }
  co_return r;
}

Task<Response> Dispatcher::call_next(const Next& next, Request&) {
  return static_cast<Dispatcher*>(next.owner_)->run_chain(static_cast<Scope*>(next.state_), next.index_);
}

// Runs the `after` middleware, hands the answer to the protocol, reports the request, and ends
// the exchange.
void Dispatcher::finish(Scope& s, Response& response) {
  http::Exchange& exchange = *s.exchange;
  Request& request = exchange.request();
  const bool gone = exchange.peer_gone();
  if (!gone) {
    for (std::size_t i = s.middleware_ran; i-- > 0;) {
      if (!middleware_[i].after) continue;
      try {
        middleware_[i].after(request, response);
      } catch (...) {
        response = error_response(s, std::current_exception());
      }
    }
  }
  if (s.counted) {
    --in_flight_;
    s.counted = false;
  }
  const http::Delivery sent = exchange.respond(response);
  // nginx's 499: the client closed the connection before the answer.
  const int status = sent.delivered ? response.status() : 499;
  trace::Tracer* tracer = trace::tracer();
  if (observer_ != nullptr) {
    http::RequestRecord record;
    record.request = &request;
    record.protocol = s.protocol;
    record.method = request.method();
    record.route = request.route();
    record.status = status;
    record.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - s.started).count();
    record.bytes_in = sent.bytes_in;
    record.bytes_out = sent.bytes_out;
    if (sent.delivered && s.trace.active && s.trace.context.sampled() && tracer != nullptr && tracer->exporting())
      record.trace_id = s.trace.context.trace_id.data();
    observer_->request_finished(record);
  }
  if (tracer != nullptr) tracer->end_request(s.trace, request, request.route(), status);
  s.exchange = nullptr;
  spare_.emplace_back(&s);
  exchange.finish();  // may start the next pipelined request at once
}

Response Dispatcher::error_response(Scope& s, std::exception_ptr error) {
  const Request& request = s.exchange->request();
  try {
    std::rethrow_exception(error);
  } catch (const HttpError& err) {
    Response r = http::problem_response(err.status(), err.detail(), request.request_id(), err.extensions());
    for (const auto& [name, value] : err.headers()) r.add_header(name, value);
    return r;
  } catch (const PoolSaturated&) {
    if (observer_ != nullptr) observer_->rejected(http::Rejection::kThreadPoolFull);
    return http::problem_response(503, "server is overloaded", request.request_id());
  } catch (const std::exception& err) {
    log::write(log::Level::kError, "keel.http", "handler_exception",
               {{"route", request.route()}, {"request_id", request.request_id()}, {"error", err.what()}});
    if (s.trace.active) {
      int status = 0;
      char* name = abi::__cxa_demangle(typeid(err).name(), nullptr, nullptr, &status);
      s.trace.exception_type = status == 0 && name != nullptr ? name : typeid(err).name();
      std::free(name);
      s.trace.exception_message = err.what();
    }
  } catch (...) {
    log::write(log::Level::kError, "keel.http", "handler_exception",
               {{"route", request.route()}, {"request_id", request.request_id()}, {"error", "unknown exception"}});
  }
  return http::problem_response(500, "internal server error", request.request_id());
}

}  // namespace keel::app
