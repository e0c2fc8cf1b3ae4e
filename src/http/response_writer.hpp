// Serialises responses into a connection's output buffer: status line, Date (cached, refreshed
// once a second), Server, framing headers, handler headers (validated: no response splitting).
#pragma once

#include <ctime>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/http_date.hpp"
#include "keel/response.hpp"

namespace keel::http {

std::string_view reason_phrase(int status) noexcept;

// The IMF-fixdate of the current second; refresh() is called by the loop each iteration and
// reformats only when the second changes.
class DateCache {
 public:
  DateCache() { refresh(); }
  void refresh() noexcept;
  [[nodiscard]] std::string_view get() const noexcept { return {buf_, base::kHttpDateSize}; }

 private:
  std::time_t second_ = -1;
  char buf_[32] = {};
};

struct ResponseContext {
  int version_minor = 1;
  bool head_request = false;   // HEAD: framing headers as for GET, no body
  bool close = false;          // send Connection: close
  bool keep_alive_10 = false;  // HTTP/1.0 keep-alive: send Connection: keep-alive
  std::string_view server;     // empty: no Server header
  std::string_view date;
  std::string_view request_id;  // echoed as X-Request-ID when non-empty
};

// True when every handler-provided header is a token name with a value free of CR, LF and NUL.
bool headers_are_safe(const Response& r) noexcept;

// Appends the head (and body, unless streaming or HEAD) of r to out. For streamed responses the
// head announces Transfer-Encoding: chunked and the caller appends chunks with append_chunk().
void write_response(std::string& out, const Response& r, const ResponseContext& ctx);
void append_chunk(std::string& out, std::string_view data);
// The last chunk, with the response's trailer fields.
void append_last_chunk(std::string& out, const std::vector<std::pair<std::string, std::string>>& trailers = {});

// An RFC 9457 problem+json response.
// extensions: null, or an object whose members are added (HttpError::extensions()).
Response problem_response(int status, std::string_view detail, std::string_view request_id,
                          const nlohmann::json& extensions = nullptr);

}  // namespace keel::http
