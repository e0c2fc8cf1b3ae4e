#include <charconv>
#include <random>

#include <unistd.h>
#include <nlohmann/json.hpp>

#include "base/strings.hpp"
#include "http/request_parser.hpp"
#include "keel/errors.hpp"
#include "keel/request.hpp"

namespace keel {

std::string_view Request::method() const noexcept {
  return parsed_->method;
}
std::string_view Request::target() const noexcept {
  return parsed_->target;
}
std::string_view Request::query() const noexcept {
  return parsed_->query;
}
std::string_view Request::host() const noexcept {
  return host_.empty() ? parsed_->host : host_;
}
int Request::version_minor() const noexcept {
  return parsed_->version_minor;
}

std::string_view Request::http_version() const noexcept {
  if (parsed_->version_major == 2) return "2";
  return parsed_->version_minor == 0 ? "1.0" : "1.1";
}

std::uint32_t Request::stream_id() const noexcept {
  return parsed_->stream_id;
}
bool Request::keep_alive() const noexcept {
  return parsed_->keep_alive;
}
const std::vector<HeaderField>& Request::headers() const noexcept {
  return parsed_->headers;
}
const std::vector<HeaderField>& Request::trailers() const noexcept {
  return parsed_->trailers;
}
std::string_view Request::body() const noexcept {
  return parsed_->body;
}

std::optional<std::string_view> Request::header(std::string_view name) const noexcept {
  if (const HeaderField* h = parsed_->find(name)) return h->value;
  return std::nullopt;
}

namespace {

// True when arrays and objects nest deeper than `limit` in a JSON text. A linear scan that skips
// strings; the parser then never sees such a document, so neither it nor anything that walks the
// result (copies, dump(), destructors) can recurse deeper than the limit.
bool nested_deeper_than(std::string_view text, std::size_t limit) {
  std::size_t depth = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // the escaped character cannot end the string
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limit) return true;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return false;
}

}  // namespace

std::size_t& Request::json_max_depth() {
  static std::size_t depth = 64;
  return depth;
}

nlohmann::json Request::json() const {
  if (const auto ct = header("Content-Type")) {
    const std::string_view media = ct->substr(0, ct->find(';'));
    const bool is_json = base::iequals(media, "application/json") ||
                         (media.size() > 5 && base::iequals(media.substr(media.size() - 5), "+json"));
    if (!is_json) throw HttpError(415, "expected Content-Type application/json");
  }
  if (const std::size_t limit = json_max_depth(); nested_deeper_than(parsed_->body, limit))
    throw HttpError(400, "JSON body nests arrays and objects deeper than " + std::to_string(limit) +
                             " levels (the limit_json_depth setting)");
  try {
    return nlohmann::json::parse(parsed_->body);
  } catch (const nlohmann::json::parse_error& e) {
    // In keel's words: the library's message ("[json.exception.parse_error.101] ...") describes
    // its parser's internals, not the request.
    if (e.byte > parsed_->body.size())
      throw HttpError(400, "malformed JSON body: unexpected end at byte " + std::to_string(parsed_->body.size()));
    throw HttpError(400, "malformed JSON body at byte " + std::to_string(e.byte));
  } catch (const nlohmann::json::exception&) {
    throw HttpError(400, "malformed JSON body");
  }
}

std::optional<std::string> Request::query_param(std::string_view name) const {
  std::string_view q = parsed_->query;
  while (!q.empty()) {
    const auto amp = q.find('&');
    const std::string_view pair = q.substr(0, amp);
    const auto eq = pair.find('=');
    const std::string_view key = pair.substr(0, eq);
    if (base::form_decode(key) == name)
      return eq == std::string_view::npos ? std::string() : base::form_decode(pair.substr(eq + 1));
    if (amp == std::string_view::npos) break;
    q = q.substr(amp + 1);
  }
  return std::nullopt;
}

std::string_view Request::param(std::string_view name) const {
  for (const auto& [k, v] : params_)
    if (k == name) return v;
  throw std::out_of_range("route " + std::string(route_) + " has no parameter '" + std::string(name) + "'");
}

std::int64_t Request::param_int(std::string_view name) const {
  const std::string_view v = param(name);
  std::int64_t out = 0;
  const auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (ec != std::errc() || p != v.data() + v.size())
    throw HttpError(400, "path parameter '" + std::string(name) + "' is not an integer");
  return out;
}

std::string& Request::id_header() {
  static std::string name = "X-Request-ID";
  return name;
}

std::string_view Request::request_id() const {
  if (!request_id_.empty()) return request_id_;
  if (const auto given = header(id_header()); given && !given->empty() && given->size() <= 128) {
    bool visible = true;
    for (char c : *given) visible = visible && c > 0x20 && c < 0x7f;
    if (visible) {
      request_id_ = std::string(*given);
      return request_id_;
    }
  }
  thread_local std::mt19937_64 rng{std::random_device{}() ^ (static_cast<std::uint64_t>(::getpid()) << 32)};
  request_id_.resize(32);
  for (int half = 0; half < 2; ++half) {
    std::uint64_t v = rng();
    for (int i = 0; i < 16; ++i, v >>= 4)
      request_id_[static_cast<std::size_t>(half * 16 + i)] = base::kHexDigits[v & 0xf];
  }
  return request_id_;
}

}  // namespace keel
