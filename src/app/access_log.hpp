// The access log: one `request_handled` line per request (method, path, protocol, status,
// duration_ms, bytes_in, bytes_out, user_agent; over HTTP/2 stream_id, over TLS the TLS fields;
// route, client_ip and request_id from the request's log context), through the asynchronous
// logger. Health and metrics requests are left out unless asked (probes every second would drown
// the rest).
#pragma once

#include <string>
#include <vector>

#include "http/observer.hpp"

namespace keel::app {

class AccessLog final : public http::Observer {
 public:
  explicit AccessLog(std::vector<std::string> excluded_paths) : excluded_(std::move(excluded_paths)) {}
  void request_started(http::Protocol) noexcept override {}
  void request_finished(const http::RequestRecord& r) noexcept override;
  void rejected(http::Rejection) noexcept override {}
  void connection_opened() noexcept override {}
  void connection_closed() noexcept override {}
  std::chrono::steady_clock::time_point tick(std::chrono::steady_clock::time_point) noexcept override {
    return std::chrono::steady_clock::time_point::max();
  }

 private:
  std::vector<std::string> excluded_;
};

}  // namespace keel::app
