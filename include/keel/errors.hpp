// Typed errors: throw from a handler to answer with an RFC 9457 problem+json response.
#pragma once

#include <stdexcept>
#include <string>

namespace keel {

class HttpError : public std::runtime_error {
 public:
  HttpError(int status, std::string detail) : std::runtime_error(std::move(detail)), status_(status) {}
  [[nodiscard]] int status() const noexcept { return status_; }
  [[nodiscard]] std::string_view detail() const noexcept { return what(); }

 private:
  int status_;
};

}  // namespace keel
