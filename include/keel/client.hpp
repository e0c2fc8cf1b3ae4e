// An HTTP client for service-to-service calls from handlers. The call runs on the worker's
// thread pool (libcurl; connections are kept alive per pool thread), so co_await never blocks the
// event loop. It propagates the request's trace context (traceparent with a new CLIENT span id,
// tracestate) and X-Request-ID, and records a CLIENT span with the HTTP attributes.
//
//   keel::ClientRequest call{.method = "POST", .url = "http://inventory:8000/reserve",
//                            .body = payload.dump(), .timeout = 2s};
//   auto r = co_await keel::fetch(call);
//   if (r.status != 200) ...
//
// Name the request as above: `co_await keel::fetch({...})` with a braced temporary is
// miscompiled by GCC 12 (its strings are freed twice, see keel/async.hpp) and is rejected at
// compile time there; clang accepts it.
#pragma once

#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "keel/async.hpp"
#include "keel/task.hpp"

namespace keel {

struct ClientRequest {
  std::string method = "GET";
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers{};
  std::string body{};
  std::chrono::milliseconds timeout{10000};  // the whole exchange
};

struct ClientResponse {
  int status = 0;  // 0 when no response arrived (error says why)
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string error;  // connection refused, timed out, ...
};

namespace detail {
Task<ClientResponse> fetch_owned(ClientRequest request);
}  // namespace detail

// Never throws for HTTP or network failures (see status/error); throws keel::PoolSaturated when
// the thread pool's queue is full, like keel::offload. The request is copied before fetch
// returns, so the Task may be awaited later.
inline Task<ClientResponse> fetch(const ClientRequest& request) {
  return detail::fetch_owned(ClientRequest(request));
}

#if KEEL_COAWAIT_TEMPORARY_BUG
// Chosen for temporaries (`fetch({...})`, `fetch(std::move(call))`); the call is an error on GCC 12.
[[gnu::error(
    "keel::fetch of a temporary ClientRequest: GCC 12 frees its strings twice inside co_await "
    "(a compiler bug; clang is not affected). Name it: keel::ClientRequest call{...}; "
    "co_await keel::fetch(call); (see docs/api.md, 'Compilers')")]] Task<ClientResponse>
fetch(ClientRequest&& request);
#else
inline Task<ClientResponse> fetch(ClientRequest&& request) {
  return detail::fetch_owned(std::move(request));
}
#endif

}  // namespace keel
