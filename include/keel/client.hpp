// An HTTP client for service-to-service calls from handlers. The call runs on the worker's
// thread pool (libcurl; connections are kept alive per pool thread), so co_await never blocks the
// event loop. It propagates the request's trace context (traceparent with a new CLIENT span id,
// tracestate) and X-Request-ID, and records a CLIENT span with the HTTP attributes.
//
//   auto r = co_await keel::fetch({.method = "POST", .url = "http://inventory:8000/reserve",
//                                  .body = payload.dump(), .timeout = 2s});
//   if (r.status != 200) ...
#pragma once

#include <chrono>
#include <string>
#include <utility>
#include <vector>

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

// Never throws for HTTP or network failures (see status/error); throws keel::PoolSaturated when
// the thread pool's queue is full, like keel::offload.
Task<ClientResponse> fetch(ClientRequest request);

}  // namespace keel
