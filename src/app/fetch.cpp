#include "keel/client.hpp"

#include <algorithm>

#include "app/fetch.hpp"
#include "base/strings.hpp"
#include "client/curl_easy.hpp"
#include "keel/async.hpp"
#include "keel/request.hpp"
#include "log/log.hpp"
#include "trace/semconv.hpp"
#include "trace/tracer.hpp"

namespace keel {

std::uint64_t& detail::fetch_response_limit() noexcept {
  static std::uint64_t limit = 8u << 20;  // the setting's default, until a worker sets it
  return limit;
}

namespace {

// One handle per pool thread: libcurl keeps its connections alive between calls.
client::Easy& thread_handle() {
  thread_local client::Easy easy;
  easy.reset();
  return easy;
}

// The URL's scheme, lower-cased ("" when it has none).
std::string scheme_of(std::string_view url) {
  const auto colon = url.find("://");
  if (colon == std::string_view::npos || colon == 0) return {};
  std::string scheme = base::to_lower(url.substr(0, colon));
  const bool token = std::all_of(scheme.begin(), scheme.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.';
  });
  return token ? scheme : std::string();
}

ClientResponse perform(const ClientRequest& req, const std::vector<std::string>& extra_headers,
                       std::uint64_t max_response) {
  ClientResponse out;
  try {
    client::Easy& easy = thread_handle();
    client::HeaderList list;
    for (const auto& [k, v] : req.headers) list.append(k + ": " + v);
    for (const auto& h : extra_headers) list.append(h);
    list.append("Expect:");
    easy.set_headers(std::move(list));
    easy.setopt(CURLOPT_URL, req.url.c_str());
    easy.setopt(CURLOPT_CUSTOMREQUEST, req.method.c_str());
    easy.setopt(CURLOPT_TIMEOUT_MS, static_cast<long>(req.timeout.count()));
    // Only HTTP: no file://, gopher://, dict://, ... whatever this libcurl was built with (also if
    // a redirect were ever followed).
    easy.setopt(CURLOPT_PROTOCOLS_STR, "http,https");
    easy.setopt(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    easy.keep_body(max_response, client::OverLimit::kFail);
    // A larger Content-Length fails early.
    easy.setopt(CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(max_response));
    if (!req.body.empty() || req.method == "POST" || req.method == "PUT" || req.method == "PATCH") {
      easy.setopt(CURLOPT_POSTFIELDS, req.body.data());
      easy.setopt(CURLOPT_POSTFIELDSIZE, static_cast<long>(req.body.size()));
    }
    if (req.method == "HEAD") easy.setopt(CURLOPT_NOBODY, 1L);
    easy.perform();
    client::Response r = easy.take_response();
    out.headers = std::move(r.headers);  // also those that came before a failure
    if (r.result != CURLE_OK) {
      out.error = r.body_over_limit || r.result == CURLE_FILESIZE_EXCEEDED
                      ? "response body larger than " + std::to_string(max_response) +
                            " bytes (the limit_fetch_response setting)"
                      : std::move(r.error);
      return out;
    }
    out.status = static_cast<int>(r.status);
    out.body = std::move(r.body);
  } catch (const std::exception& e) {  // libcurl could not start, or refused an option
    out = ClientResponse{};
    out.error = e.what();
  }
  return out;
}

// "http://host:8080/path" -> host, port.
void split_url(std::string_view url, std::string& host, std::int64_t& port) {
  port = url.rfind("https://", 0) == 0 ? 443 : 80;
  const auto scheme = url.find("://");
  std::string_view rest = scheme == std::string_view::npos ? url : url.substr(scheme + 3);
  rest = rest.substr(0, rest.find_first_of("/?#"));
  if (const auto at = rest.rfind('@'); at != std::string_view::npos) rest = rest.substr(at + 1);
  if (!rest.empty() && rest.front() == '[') {
    const auto close = rest.find(']');
    host = std::string(rest.substr(1, close - 1));
    if (close + 1 < rest.size() && rest[close + 1] == ':')
      port = std::atoll(std::string(rest.substr(close + 2)).c_str());
    return;
  }
  const auto colon = rest.rfind(':');
  host = std::string(rest.substr(0, colon));
  if (colon != std::string_view::npos) port = std::atoll(std::string(rest.substr(colon + 1)).c_str());
}

}  // namespace

Task<ClientResponse> detail::fetch_owned(ClientRequest request) {
  if (const std::string scheme = scheme_of(request.url); scheme != "http" && scheme != "https") {
    ClientResponse refused;  // no request is made
    refused.error = scheme.empty() ? "not an absolute http:// or https:// URL"
                                   : "URL scheme '" + scheme + "' is not allowed (http and https only)";
    co_return refused;
  }
  const std::uint64_t max_response = fetch_response_limit();
  std::vector<std::string> extra;
  trace::SpanData span;
  bool recording = false;
  if (log::Context* ctx = log::current()) {
    if (!ctx->request_id.empty()) extra.push_back(Request::id_header() + ": " + std::string(ctx->request_id));
    if (!ctx->trace_id.empty()) {
      trace::from_hex(ctx->trace_id, span.trace_id.data(), span.trace_id.size());
      trace::from_hex(ctx->span_id, span.parent_span_id.data(), span.parent_span_id.size());
      span.span_id = trace::new_span_id();
      span.flags = ctx->trace_flags;
      trace::TraceParent tp;
      tp.trace_id = span.trace_id;
      tp.parent_id = span.span_id;  // the callee's parent: our CLIENT span
      tp.flags = ctx->trace_flags;
      extra.push_back("traceparent: " + trace::format_traceparent(tp));
      if (!ctx->trace_state.empty()) extra.push_back("tracestate: " + ctx->trace_state);
      recording = (ctx->trace_flags & trace::kFlagSampled) != 0 && trace::tracer() != nullptr;
    }
  }
  span.start_unix_nano = trace::now_unix_nano();
  ClientResponse response = co_await offload([&] { return perform(request, extra, max_response); });
  if (recording) {
    std::string host;
    std::int64_t port = 80;
    split_url(request.url, host, port);
    const trace::HttpMethod method = trace::http_method(request.method);
    span.kind = trace::SpanKind::kClient;
    span.name = std::string(method.span_name());  // OTel: "{method}" for a client span without a url template
    span.end_unix_nano = trace::now_unix_nano();
    span.attributes = {{"http.request.method", std::string(method.value)}};
    if (!method.known) span.attributes.push_back({"http.request.method_original", request.method});
    // No credentials in url.full: userinfo as REDACTED:REDACTED, signature query values REDACTED.
    span.attributes.push_back({"url.full", trace::redact_url_full(request.url)});
    if (!host.empty()) {
      span.attributes.push_back({"server.address", host});
      span.attributes.push_back({"server.port", port});
    }
    if (response.status != 0) {
      span.attributes.push_back({"http.response.status_code", static_cast<std::int64_t>(response.status)});
      if (response.status >= 400) {
        span.status = trace::StatusCode::kError;
        span.attributes.push_back({"error.type", std::to_string(response.status)});
      }
    } else {
      span.status = trace::StatusCode::kError;
      span.status_message = response.error;
      span.attributes.push_back({"error.type", std::string("connection")});
    }
    trace::tracer()->end_span(std::move(span));
  }
  co_return response;
}

}  // namespace keel
