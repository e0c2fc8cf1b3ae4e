#include "keel/client.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <mutex>

#include "keel/async.hpp"
#include "keel/request.hpp"
#include "log/log.hpp"
#include "trace/fetch_limits.hpp"
#include "trace/semconv.hpp"
#include "trace/tracer.hpp"

namespace keel {

std::uint64_t& detail::fetch_response_limit() noexcept {
  static std::uint64_t limit = 8u << 20;  // the setting's default, until a worker sets it
  return limit;
}

namespace {

std::once_flag g_curl_init;

struct Handle {
  CURL* curl = nullptr;
  Handle() : curl(curl_easy_init()) {}
  ~Handle() {
    if (curl != nullptr) curl_easy_cleanup(curl);
  }
};

// One easy handle per pool thread: libcurl keeps its connections alive between calls.
CURL* thread_handle() {
  thread_local Handle h;
  if (h.curl != nullptr) curl_easy_reset(h.curl);
  return h.curl;
}

// The response body, bounded: past `limit` the transfer is aborted (CURLE_WRITE_ERROR).
struct BodySink {
  std::string* body;
  std::uint64_t limit;
  bool exceeded = false;
};

extern "C" std::size_t on_body(char* data, std::size_t size, std::size_t n, void* user) {
  auto* sink = static_cast<BodySink*>(user);
  if (sink->body->size() + size * n > sink->limit) {
    sink->exceeded = true;
    return 0;  // not the number given: libcurl stops with CURLE_WRITE_ERROR
  }
  sink->body->append(data, size * n);
  return size * n;
}

extern "C" std::size_t on_header(char* data, std::size_t size, std::size_t n, void* user) {
  auto* headers = static_cast<std::vector<std::pair<std::string, std::string>>*>(user);
  std::string_view line(data, size * n);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  if (line.rfind("HTTP/", 0) == 0) {
    headers->clear();  // a new response (after 100 Continue or a redirect)
  } else if (const auto colon = line.find(':'); colon != std::string_view::npos) {
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    headers->emplace_back(std::string(line.substr(0, colon)), std::string(value));
  }
  return size * n;
}

template <class T>
void set(CURL* c, CURLoption o, T v) {
  curl_easy_setopt(c, o, v);
}

// The URL's scheme, lower-cased ("" when it has none).
std::string scheme_of(std::string_view url) {
  const auto colon = url.find("://");
  if (colon == std::string_view::npos || colon == 0) return {};
  std::string scheme(url.substr(0, colon));
  for (char& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const bool token = std::all_of(scheme.begin(), scheme.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '+' || c == '-' || c == '.';
  });
  return token ? scheme : std::string();
}

ClientResponse perform(const ClientRequest& req, const std::vector<std::string>& extra_headers,
                       std::uint64_t max_response) {
  std::call_once(g_curl_init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  ClientResponse out;
  CURL* c = thread_handle();
  if (c == nullptr) {
    out.error = "curl_easy_init failed";
    return out;
  }
  curl_slist* list = nullptr;
  for (const auto& [k, v] : req.headers) list = curl_slist_append(list, (k + ": " + v).c_str());
  for (const auto& h : extra_headers) list = curl_slist_append(list, h.c_str());
  list = curl_slist_append(list, "Expect:");
  char error[CURL_ERROR_SIZE] = {};
  set(c, CURLOPT_URL, req.url.c_str());
  set(c, CURLOPT_CUSTOMREQUEST, req.method.c_str());
  set(c, CURLOPT_NOSIGNAL, 1L);
  set(c, CURLOPT_TIMEOUT_MS, static_cast<long>(req.timeout.count()));
  set(c, CURLOPT_HTTPHEADER, list);
  set(c, CURLOPT_ERRORBUFFER, static_cast<char*>(error));
  // Only HTTP: no file://, gopher://, dict://, ... whatever this libcurl was built with (also if
  // a redirect were ever followed).
  set(c, CURLOPT_PROTOCOLS_STR, "http,https");
  set(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  BodySink sink{&out.body, max_response};
  set(c, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(max_response));  // a larger Content-Length fails early
  set(c, CURLOPT_WRITEFUNCTION, &on_body);
  set(c, CURLOPT_WRITEDATA, &sink);
  set(c, CURLOPT_HEADERFUNCTION, &on_header);
  set(c, CURLOPT_HEADERDATA, &out.headers);
  if (!req.body.empty() || req.method == "POST" || req.method == "PUT" || req.method == "PATCH") {
    set(c, CURLOPT_POSTFIELDS, req.body.data());
    set(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(req.body.size()));
  }
  if (req.method == "HEAD") set(c, CURLOPT_NOBODY, 1L);
  const CURLcode rc = curl_easy_perform(c);
  curl_slist_free_all(list);
  if (rc != CURLE_OK) {
    out.error = error[0] != '\0' ? error : curl_easy_strerror(rc);
    if (sink.exceeded || rc == CURLE_FILESIZE_EXCEEDED)
      out.error =
          "response body larger than " + std::to_string(max_response) + " bytes (the limit_fetch_response setting)";
    out.status = 0;
    out.body.clear();
    out.body.shrink_to_fit();
    return out;
  }
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  out.status = static_cast<int>(status);
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
