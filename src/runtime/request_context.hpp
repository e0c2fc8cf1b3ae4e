// The context of the request being handled on this thread: its ids, trace and bound fields. Set
// by the application's dispatcher for the whole handling of a request — across co_await (the
// loop resumes a coroutine with it) and into offloaded work — and read by the log (every line
// carries it), the tracer and keel::fetch (propagation). It lives here, below all of them.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace keel::runtime {

struct RequestContext {
  std::string_view request_id;
  // Written as "client_ip" and "route" when a log line is (views into the request, valid while it
  // is handled): nothing is formatted for a request that logs nothing.
  std::string_view client_ip;
  std::string_view route;
  std::string trace_id;                                     // 32 hex, empty when there is none
  std::string span_id;                                      // 16 hex
  std::string trace_state;                                  // W3C tracestate to forward on outgoing calls
  std::uint8_t trace_flags = 0;                             // W3C flags of the trace (bit 0: sampled)
  std::vector<std::pair<std::string, std::string>> fields;  // bound by the application (bind_log_field)
};

// The context of this thread, or null outside a request.
RequestContext* current_request() noexcept;

// Makes `context` current for the scope (nesting restores the previous one).
class ScopedRequestContext {
 public:
  explicit ScopedRequestContext(RequestContext* context) noexcept;
  ~ScopedRequestContext();
  ScopedRequestContext(const ScopedRequestContext&) = delete;
  ScopedRequestContext& operator=(const ScopedRequestContext&) = delete;

 private:
  RequestContext* previous_;
};

}  // namespace keel::runtime
