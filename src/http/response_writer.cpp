#include "http/response_writer.hpp"

#include "keel/request.hpp"

#include <charconv>
#include <cstdio>

#include "base/http_date.hpp"
#include "keel/json_writer.hpp"

namespace keel::http {

std::string_view reason_phrase(int status) noexcept {
  switch (status) {
    case 100:
      return "Continue";
    case 101:
      return "Switching Protocols";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 206:
      return "Partial Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 304:
      return "Not Modified";
    case 307:
      return "Temporary Redirect";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 406:
      return "Not Acceptable";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 410:
      return "Gone";
    case 411:
      return "Length Required";
    case 412:
      return "Precondition Failed";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 415:
      return "Unsupported Media Type";
    case 417:
      return "Expectation Failed";
    case 418:
      return "I'm a teapot";
    case 422:
      return "Unprocessable Content";
    case 425:
      return "Too Early";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

void DateCache::refresh() noexcept {
  const std::time_t now = std::time(nullptr);
  if (now == second_) return;
  second_ = now;
  base::format_http_date(now, buf_);
}

namespace {
bool is_token(std::string_view s) noexcept {
  if (s.empty()) return false;
  for (char c : s) {
    const bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                    std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    if (!ok) return false;
  }
  return true;
}
bool is_safe_value(std::string_view s) noexcept {
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && u != '\t') || u == 0x7f) return false;
  }
  return true;
}
void append_number(std::string& out, std::size_t n) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, n);
  out.append(buf, r.ptr);
}
}  // namespace

bool headers_are_safe(const Response& r) noexcept {
  if (!is_safe_value(r.content_type())) return false;
  for (const auto& [name, value] : r.headers())
    if (!is_token(name) || !is_safe_value(value)) return false;
  for (const auto& [name, value] : r.trailers())
    if (!is_token(name) || !is_safe_value(value)) return false;
  return true;
}

void write_response(std::string& out, const Response& r, const ResponseContext& ctx) {
  const int status = r.status();
  out += ctx.version_minor == 0 ? "HTTP/1.0 " : "HTTP/1.1 ";
  append_number(out, static_cast<std::size_t>(status));
  out += ' ';
  out += reason_phrase(status);
  out += "\r\n";
  if (!ctx.server.empty()) {
    out += "Server: ";
    out += ctx.server;
    out += "\r\n";
  }
  out += "Date: ";
  out += ctx.date;
  out += "\r\n";
  if (!r.content_type().empty()) {
    out += "Content-Type: ";
    out += r.content_type();
    out += "\r\n";
  }
  for (const auto& [name, value] : r.headers()) {
    out += name;
    out += ": ";
    out += value;
    out += "\r\n";
  }
  if (!ctx.request_id.empty()) {
    out += Request::id_header();
    out += ": ";
    out += ctx.request_id;
    out += "\r\n";
  }
  // 1xx, 204 and 304 carry no body and no framing (RFC 9110 §8.6).
  const bool bodiless = status < 200 || status == 204 || status == 304;
  const bool streamed = static_cast<bool>(r.producer());
  if (!bodiless) {
    if (streamed) {
      if (ctx.version_minor == 1) out += "Transfer-Encoding: chunked\r\n";  // 1.0: ends with close
    } else {
      out += "Content-Length: ";
      append_number(out, r.body().size());
      out += "\r\n";
    }
  }
  if (ctx.close) {
    out += "Connection: close\r\n";
  } else if (ctx.keep_alive_10) {
    out += "Connection: keep-alive\r\n";
  }
  out += "\r\n";
  if (!bodiless && !ctx.head_request && !streamed) out += r.body();
}

void append_chunk(std::string& out, std::string_view data) {
  if (data.empty()) return;  // an empty chunk would end the body
  char buf[20];
  const auto res = std::to_chars(buf, buf + sizeof buf, data.size(), 16);
  out.append(buf, res.ptr);
  out += "\r\n";
  out += data;
  out += "\r\n";
}

void append_last_chunk(std::string& out, const std::vector<std::pair<std::string, std::string>>& trailers) {
  out += "0\r\n";
  for (const auto& [name, value] : trailers) {
    out += name;
    out += ": ";
    out += value;
    out += "\r\n";
  }
  out += "\r\n";
}

Response problem_response(int status, std::string_view detail, std::string_view request_id,
                          const nlohmann::json& extensions) {
  const bool extended = extensions.is_object() && !extensions.empty();
  const auto member = [&](const char* name) -> const nlohmann::json* {
    if (!extended) return nullptr;
    const auto it = extensions.find(name);
    return it != extensions.end() && it->is_string() ? &*it : nullptr;
  };
  JsonWriter w;
  w.begin_object();
  const nlohmann::json* type = member("type");
  const nlohmann::json* title = member("title");
  w.key("type").value(type != nullptr ? type->get_ref<const std::string&>() : std::string_view("about:blank"));
  w.key("title").value(title != nullptr ? std::string_view(title->get_ref<const std::string&>())
                                        : std::string_view(reason_phrase(status)));
  w.key("status").value(status);
  w.key("detail").value(detail);
  if (!request_id.empty()) w.key("request_id").value(request_id);
  if (extended) {
    for (const auto& [name, value] : extensions.items()) {
      if (name == "type" || name == "title" || name == "status" || name == "detail" || name == "request_id") continue;
      w.key(name).raw(value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    }
  }
  w.end_object();
  Response r = Response::json(std::move(w), status);
  r.set_content_type("application/problem+json");
  return r;
}

}  // namespace keel::http
