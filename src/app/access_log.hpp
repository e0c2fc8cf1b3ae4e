// The access log: one `request_handled` line per request (method, path, route, status,
// duration_ms, bytes_in, bytes_out, client_ip, user_agent, request_id — the last ones from the
// request's log context), through the asynchronous logger. Health and metrics requests are left
// out unless asked (probes every second would drown the rest).
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
