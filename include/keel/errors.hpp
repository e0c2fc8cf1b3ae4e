// Typed errors: throw from a handler (or middleware) to answer with an RFC 9457 problem+json
// response:
//
//   throw keel::HttpError(404, "no user with id 7");
//   throw keel::HttpError(422, "the request has invalid fields",
//                         {{"errors", {{{"field", "email"}, {"message", "must contain @"}}}}});
//
// answers {"type":"about:blank","title":"Unprocessable Content","status":422,"detail":"the request
// has invalid fields","request_id":"...","errors":[{"field":"email","message":"must contain @"}]}.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace keel {

class HttpError : public std::runtime_error {
 public:
  HttpError(int status, std::string detail) : std::runtime_error(std::move(detail)), status_(status) {}
  // extensions: an object whose members are added to the problem document (RFC 9457 §3.2), such
  // as a list of field errors. "type" and "title" replace the defaults (about:blank, the status's
  // reason phrase); "status", "detail" and "request_id" are keel's and are not replaced.
  HttpError(int status, std::string detail, nlohmann::json extensions)
      : std::runtime_error(std::move(detail)), status_(status), extensions_(std::move(extensions)) {}
  [[nodiscard]] int status() const noexcept { return status_; }
  [[nodiscard]] std::string_view detail() const noexcept { return what(); }
  [[nodiscard]] const nlohmann::json& extensions() const noexcept { return extensions_; }
  // A header for the answer (Retry-After on a 503, WWW-Authenticate on a 401):
  //   throw keel::HttpError(503, "warming up").with_header("Retry-After", "1");
  HttpError& with_header(std::string name, std::string value) {
    headers_.emplace_back(std::move(name), std::move(value));
    return *this;
  }
  [[nodiscard]] const std::vector<std::pair<std::string, std::string>>& headers() const noexcept { return headers_; }

 private:
  int status_;
  nlohmann::json extensions_;  // null or an object
  std::vector<std::pair<std::string, std::string>> headers_;
};

}  // namespace keel
