// OpenTelemetry semantic conventions (HTTP and URL attributes, stable since semconv v1.23; the
// query redaction of v1.29) that keel's SERVER and CLIENT spans share.
#pragma once

#include <string>
#include <string_view>

namespace keel::trace {

// http.request.method: one of the methods semconv knows (RFC 9110's and PATCH), matched
// case-sensitively, as it is; anything else is "_OTHER" (and the span records
// http.request.method_original, and uses "HTTP" in its name).
struct HttpMethod {
  std::string_view value;  // "GET", ..., or "_OTHER"
  bool known = false;
  // The {method} part of a span name: the method, or "HTTP" for _OTHER.
  [[nodiscard]] std::string_view span_name() const noexcept { return known ? value : std::string_view("HTTP"); }
};
HttpMethod http_method(std::string_view method) noexcept;

// url.query: the query (without '?') with the values of the parameters semconv lists as
// credentials (AWSAccessKeyId, Signature, sig, X-Goog-Signature) replaced by "REDACTED".
std::string redact_query(std::string_view query);

// url.full: the URL with any userinfo replaced by "REDACTED:REDACTED" (semconv: url.full MUST NOT
// carry credentials) and its query redacted as above; the fragment is kept as written.
std::string redact_url_full(std::string_view url);

}  // namespace keel::trace
