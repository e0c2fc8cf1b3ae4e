#include "http/request_parser.hpp"

#include <algorithm>
#include <array>
#include <cstring>

#include "base/strings.hpp"

namespace keel::http {
namespace {

using base::hex_value;
using base::iequals;

// Character classes of RFC 9110 §5.6.2 (tchar) and §5.5 (field-vchar, obs-text, SP, HTAB).
constexpr std::array<bool, 256> make_tchar() {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] = true;
  return t;
}
constexpr std::array<bool, 256> make_value_char() {
  std::array<bool, 256> t{};
  t['\t'] = true;
  for (int c = 0x20; c <= 0x7e; ++c) t[c] = true;
  for (int c = 0x80; c <= 0xff; ++c) t[c] = true;
  return t;
}
// Bytes allowed in a request-target: visible ASCII and obs-text; never CTLs, SP, DEL or '#'.
constexpr std::array<bool, 256> make_target_char() {
  std::array<bool, 256> t{};
  for (int c = 0x21; c <= 0x7e; ++c) t[c] = true;
  for (int c = 0x80; c <= 0xff; ++c) t[c] = true;
  t['#'] = false;
  return t;
}
// unreserved / sub-delims of RFC 3986 §2: the bytes of a reg-name besides pct-encoded.
constexpr std::array<bool, 256> make_reg_name_char() {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] = true;
  for (char c : std::string_view("-._~!$&'()*+,;=")) t[static_cast<unsigned char>(c)] = true;
  return t;
}
constexpr auto kTchar = make_tchar();
constexpr auto kRegNameChar = make_reg_name_char();
constexpr auto kValueChar = make_value_char();
constexpr auto kTargetChar = make_target_char();

inline bool is_tchar(char c) {
  return kTchar[static_cast<unsigned char>(c)];
}
inline bool is_ows(char c) {
  return c == ' ' || c == '\t';
}

// uri-host [ ":" port ] (RFC 9110 §7.2 Host, RFC 9112 §3.2.3 authority-form, RFC 3986 §3.2.2):
// an IP-literal in brackets, or a non-empty reg-name / IPv4address (unreserved, pct-encoded,
// sub-delims), then an optional port of digits (required when require_port). Anything else -- a
// second colon, userinfo, '/', backslash, quotes, whitespace, obs-text -- is an invalid value that a
// server MUST answer with 400 (RFC 9112 §3.2): intermediaries would disagree on what it names.
bool valid_host_port(std::string_view v, bool require_port) {
  std::size_t i = 0;
  const std::size_t n = v.size();
  if (n > 0 && v[0] == '[') {
    const std::size_t close = v.find(']');
    if (close == std::string_view::npos || close == 1) return false;
    // IPv6address / IPvFuture (RFC 3986) and a zone id ("%25eth0", RFC 6874): hex digits, '.',
    // ':', unreserved, sub-delims and '%'. The exact address syntax is left to whoever uses it.
    for (std::size_t j = 1; j < close; ++j)
      if (!kRegNameChar[static_cast<unsigned char>(v[j])] && v[j] != ':' && v[j] != '%') return false;
    i = close + 1;
  } else {
    while (i < n && v[i] != ':') {
      if (v[i] == '%') {
        if (i + 2 >= n || hex_value(v[i + 1]) < 0 || hex_value(v[i + 2]) < 0) return false;
        i += 3;
        continue;
      }
      if (!kRegNameChar[static_cast<unsigned char>(v[i])]) return false;
      ++i;
    }
    if (i == 0) return false;  // empty host (RFC 9110 §4.2.1: an http URI MUST NOT have one)
  }
  if (i == n) return !require_port;
  if (v[i] != ':') return false;
  for (++i; i < n; ++i)
    if (v[i] < '0' || v[i] > '9') return false;
  return true;
}

// Calls fn(token) for each element of a comma-separated list of tokens (RFC 9110 §5.6.1; empty
// elements are skipped). Returns false if an element is not a single token.
template <class Fn>
bool for_each_token(std::string_view list, Fn&& fn) {
  std::size_t i = 0;
  const std::size_t n = list.size();
  while (i < n) {
    while (i < n && (is_ows(list[i]) || list[i] == ',')) ++i;
    if (i == n) break;
    const std::size_t start = i;
    while (i < n && is_tchar(list[i])) ++i;
    if (i == start) return false;
    const std::string_view token = list.substr(start, i - start);
    while (i < n && is_ows(list[i])) ++i;
    if (i < n && list[i] != ',') return false;
    fn(token);
  }
  return true;
}

// True when the unterminated line data[start, len) already proves to be longer than max bytes:
// a line of at most max bytes can only continue with CR once max bytes have arrived.
bool line_over_limit(const char* data, std::size_t start, std::size_t len, std::size_t max) {
  const std::size_t avail = len - start;
  return avail > max + 1 || (avail == max + 1 && data[len - 1] != '\r');
}

}  // namespace

const HeaderField* ParsedRequest::find(std::string_view name) const noexcept {
  for (const auto& h : headers)
    if (iequals(h.name, name)) return &h;
  return nullptr;
}

void RequestParser::reset() noexcept {
  phase_ = Phase::kRequestLine;
  pos_ = head_start_ = body_start_ = body_len_ = trailer_start_ = 0;
  chunk_left_ = 0;
  field_count_ = 0;
  empty_lines_ = 0;
  path_is_root_ = false;
  base_ = nullptr;
  method_ = target_ = path_ = query_ = host_ = Span{};
  fields_.clear();
  trailer_fields_.clear();
  req_.headers.clear();
  req_.trailers.clear();
  req_.method = req_.target = req_.path = req_.query = req_.host = req_.body = {};
  req_.version_minor = 1;
  req_.keep_alive = true;
  req_.expect_continue = req_.chunked = req_.has_content_length = false;
  req_.content_length = 0;
  error_status_ = 0;
  error_reason_ = {};
  not_http1_ = false;
}

std::size_t RequestParser::expected_size() const noexcept {
  if (phase_ == Phase::kBody) return body_start_ + static_cast<std::size_t>(req_.content_length);
  return 0;
}

ParseStatus RequestParser::fail(int status, std::string_view reason) noexcept {
  error_status_ = status;
  error_reason_ = reason;
  return ParseStatus::kError;
}

ParseStatus RequestParser::parse(char* data, std::size_t len) {
  if (error_status_ != 0) return ParseStatus::kError;
  for (;;) {
    switch (phase_) {
      case Phase::kRequestLine: {
        // A server SHOULD ignore empty lines before the request line (RFC 9112 §2.2); a few only.
        const std::size_t window_end = std::min(len, head_start_ + limits_.max_request_line + 2);
        const char* nl = static_cast<const char*>(std::memchr(data + pos_, '\n', window_end - pos_));
        if (nl == nullptr) {
          if (line_over_limit(data, head_start_, len, limits_.max_request_line))
            return fail(414, "request line too long");
          pos_ = window_end;
          return ParseStatus::kIncomplete;
        }
        const std::size_t i = static_cast<std::size_t>(nl - data);
        // The length verdict must not depend on whether the LF arrived in the same read.
        if (line_over_limit(data, head_start_, i, limits_.max_request_line)) return fail(414, "request line too long");
        if (i == head_start_ || data[i - 1] != '\r') return fail(400, "bare LF in request line");
        if (i - 1 == head_start_) {
          if (++empty_lines_ > 4) return fail(400, "too many empty lines before request line");
          head_start_ = pos_ = i + 1;
          continue;
        }
        if (const ParseStatus s = parse_request_line(data, i - 1); s == ParseStatus::kError) return s;
        pos_ = i + 1;
        phase_ = Phase::kHeaders;
        continue;
      }
      case Phase::kHeaders:
      case Phase::kTrailers: {
        const bool trailers = phase_ == Phase::kTrailers;
        const std::size_t section_start = trailers ? trailer_start_ : head_start_;
        const std::size_t field_end = pos_ + limits_.max_header_field + 2;
        const std::size_t block_end = section_start + limits_.max_header_block + 2;
        const std::size_t window_end = std::min({len, field_end, block_end});
        const char* nl = static_cast<const char*>(std::memchr(data + pos_, '\n', window_end - pos_));
        if (nl == nullptr) {
          if (window_end == block_end) return fail(431, "header block too large");
          if (window_end == field_end || line_over_limit(data, pos_, len, limits_.max_header_field))
            return fail(431, "header field too large");
          return ParseStatus::kIncomplete;
        }
        const std::size_t i = static_cast<std::size_t>(nl - data);
        if (line_over_limit(data, pos_, i, limits_.max_header_field)) return fail(431, "header field too large");
        if (i == pos_ || data[i - 1] != '\r') return fail(400, "bare LF in header section");
        if (i - 1 == pos_) {  // empty line: end of the section
          pos_ = i + 1;
          if (trailers) {
            phase_ = Phase::kDone;
            continue;
          }
          if (const ParseStatus s = finish_head(data); s == ParseStatus::kError) return s;
          continue;
        }
        if (++field_count_ > limits_.max_header_count) return fail(431, "too many header fields");
        if (const ParseStatus s = parse_field_line(data, pos_, i - 1, trailers ? trailer_fields_ : fields_);
            s == ParseStatus::kError)
          return s;
        pos_ = i + 1;
        continue;
      }
      case Phase::kBody: {
        const std::size_t need = body_start_ + static_cast<std::size_t>(req_.content_length);
        if (len < need) return ParseStatus::kIncomplete;
        body_len_ = static_cast<std::size_t>(req_.content_length);
        pos_ = need;
        phase_ = Phase::kDone;
        continue;
      }
      case Phase::kChunkSize: {
        const std::size_t window_end = std::min(len, pos_ + limits_.max_chunk_line + 2);
        const char* nl = static_cast<const char*>(std::memchr(data + pos_, '\n', window_end - pos_));
        if (nl == nullptr) {
          if (line_over_limit(data, pos_, len, limits_.max_chunk_line)) return fail(400, "chunk size line too long");
          return ParseStatus::kIncomplete;
        }
        const std::size_t i = static_cast<std::size_t>(nl - data);
        if (line_over_limit(data, pos_, i, limits_.max_chunk_line)) return fail(400, "chunk size line too long");
        if (i == pos_ || data[i - 1] != '\r') return fail(400, "chunk size line not ended by CRLF");
        if (const ParseStatus s = parse_chunk_size(data, i - 1); s == ParseStatus::kError) return s;
        pos_ = i + 1;
        continue;
      }
      case Phase::kChunkData: {
        const std::size_t avail = len - pos_;
        const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(avail, chunk_left_));
        const std::size_t dst = body_start_ + body_len_;
        if (dst != pos_ && n > 0) std::memmove(data + dst, data + pos_, n);
        body_len_ += n;
        pos_ += n;
        chunk_left_ -= n;
        if (chunk_left_ > 0) return ParseStatus::kIncomplete;
        phase_ = Phase::kChunkDataEnd;
        continue;
      }
      case Phase::kChunkDataEnd: {
        if (len - pos_ >= 1 && data[pos_] != '\r') return fail(400, "missing CRLF after chunk data");
        if (len - pos_ < 2) return ParseStatus::kIncomplete;
        if (data[pos_ + 1] != '\n') return fail(400, "missing CRLF after chunk data");
        pos_ += 2;
        phase_ = Phase::kChunkSize;
        continue;
      }
      case Phase::kDone:
        materialize(data);
        req_.body = std::string_view(data + body_start_, body_len_);
        return ParseStatus::kComplete;
    }
  }
}

ParseStatus RequestParser::parse_request_line(const char* base, std::size_t line_end) {
  const char* p = base + head_start_;
  const char* end = base + line_end;
  // method = token
  const char* m = p;
  while (p < end && is_tchar(*p)) ++p;
  if (p == m || p == end || *p != ' ') return fail(400, "invalid method");
  method_ = {static_cast<std::uint32_t>(m - base), static_cast<std::uint32_t>(p - m)};
  ++p;
  // request-target
  const char* t = p;
  while (p < end && kTargetChar[static_cast<unsigned char>(*p)]) ++p;
  if (p == t) return fail(400, "empty request target");
  if (p == end || *p != ' ') return fail(400, "invalid character in request target");
  target_ = {static_cast<std::uint32_t>(t - base), static_cast<std::uint32_t>(p - t)};
  ++p;
  // HTTP-version = "HTTP/" DIGIT "." DIGIT
  if (end - p != 8 || std::memcmp(p, "HTTP/", 5) != 0 || p[5] < '0' || p[5] > '9' || p[6] != '.' || p[7] < '0' ||
      p[7] > '9') {
    // Neither a method of RFC 9110 (or PATCH) nor the HTTP-name: whoever sent this line does
    // not speak HTTP/1 at all (a broken HTTP/2 preface, another protocol).
    const std::string_view method(m, method_.len);
    bool known_method = false;
    for (std::string_view k : {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})
      known_method = known_method || method == k;
    not_http1_ = !known_method && (end - p < 4 || !base::iequals(std::string_view(p, 4), "HTTP"));
    return fail(400, "invalid HTTP version");
  }
  if (p[5] != '1' || (p[7] != '0' && p[7] != '1')) return fail(505, "HTTP version not supported");
  req_.version_minor = p[7] - '0';

  // Target forms (RFC 9112 §3.2).
  const std::string_view target(t, static_cast<std::size_t>(target_.len));
  const std::string_view method(m, method_.len);
  std::size_t path_off = 0;
  if (target[0] == '/') {
    path_off = 0;
  } else if (target == "*") {
    if (method != "OPTIONS") return fail(400, "asterisk-form is only valid for OPTIONS");
    path_ = target_;
    return ParseStatus::kComplete;
  } else {
    const std::size_t scheme_end = target.find("://");
    if (scheme_end == std::string_view::npos) {
      if (method == "CONNECT") {  // authority-form; keel serves no tunnels, the connection answers 405
        // authority-form = uri-host ":" port (RFC 9112 §3.2.3)
        if (!valid_host_port(target, true)) return fail(400, "invalid authority-form target");
        path_ = target_;
        host_ = target_;
        return ParseStatus::kComplete;
      }
      return fail(400, "invalid request target");
    }
    const std::string_view scheme = target.substr(0, scheme_end);
    if (!iequals(scheme, "http") && !iequals(scheme, "https")) return fail(400, "unsupported URI scheme");
    const std::size_t auth_start = scheme_end + 3;
    std::size_t auth_end = target.find_first_of("/?", auth_start);
    if (auth_end == std::string_view::npos) auth_end = target.size();
    const std::string_view authority = target.substr(auth_start, auth_end - auth_start);
    if (authority.find('@') != std::string_view::npos) return fail(400, "userinfo in absolute-form target");
    if (!valid_host_port(authority, false)) return fail(400, "invalid authority in absolute-form target");
    host_ = {static_cast<std::uint32_t>(target_.off + auth_start), static_cast<std::uint32_t>(authority.size())};
    path_off = auth_end;
    if (auth_end == target.size() || target[auth_end] == '?') path_is_root_ = true;
  }
  const std::size_t q = target.find('?', path_off);
  const std::size_t path_end = q == std::string_view::npos ? target.size() : q;
  path_ = {static_cast<std::uint32_t>(target_.off + path_off), static_cast<std::uint32_t>(path_end - path_off)};
  if (q != std::string_view::npos)
    query_ = {static_cast<std::uint32_t>(target_.off + q + 1), static_cast<std::uint32_t>(target.size() - q - 1)};
  return ParseStatus::kComplete;
}

ParseStatus RequestParser::parse_field_line(const char* base, std::size_t line_start, std::size_t line_end,
                                            std::vector<FieldSpan>& out) {
  const char* p = base + line_start;
  const char* end = base + line_end;
  if (is_ows(*p)) return fail(400, "obsolete line folding or whitespace before field name");
  const char* n = p;
  while (p < end && is_tchar(*p)) ++p;
  if (p == end || *p != ':') {
    if (p < end && is_ows(*p)) return fail(400, "whitespace between header name and colon");
    return fail(400, "invalid character in header name");
  }
  if (p == n) return fail(400, "empty header name");
  const Span name{static_cast<std::uint32_t>(n - base), static_cast<std::uint32_t>(p - n)};
  ++p;
  while (p < end && is_ows(*p)) ++p;
  const char* v = p;
  const char* last = p;  // one past the last non-whitespace byte
  for (; p < end; ++p) {
    const unsigned char c = static_cast<unsigned char>(*p);
    if (!kValueChar[c]) return fail(400, c == '\r' ? "bare CR in header value" : "control character in header value");
    if (!is_ows(*p)) last = p + 1;
  }
  out.push_back({name, {static_cast<std::uint32_t>(v - base), static_cast<std::uint32_t>(last - v)}});
  return ParseStatus::kComplete;
}

void RequestParser::materialize(const char* base) {
  auto view = [base](Span s) { return std::string_view(base + s.off, s.len); };
  if (!trailer_fields_.empty()) {
    req_.trailers.clear();
    for (const auto& f : trailer_fields_) req_.trailers.push_back({view(f.name), view(f.value)});
  }
  if (base == base_) return;
  base_ = base;
  req_.method = view(method_);
  req_.target = view(target_);
  req_.path = path_is_root_ ? std::string_view("/") : view(path_);
  req_.query = view(query_);
  req_.host = view(host_);
  req_.headers.clear();
  for (const auto& f : fields_) req_.headers.push_back({view(f.name), view(f.value)});
}

ParseStatus RequestParser::finish_head(const char* base) {
  materialize(base);
  int host_count = 0, cl_count = 0;
  bool has_te = false, te_chunked_final = false, te_chunked_repeated = false, te_other = false;
  bool conn_close = false, conn_keep_alive = false;
  const bool absolute_host = host_.len != 0;
  for (std::size_t idx = 0; idx < req_.headers.size(); ++idx) {
    const HeaderField& h = req_.headers[idx];
    const std::string_view name = h.name;
    switch (name.size()) {
      case 4:
        if (iequals(name, "host")) {
          if (++host_count > 1) return fail(400, "several Host headers");
          // An empty value is what a client sends when the target URI has no authority (RFC 9112 §3.2).
          if (!h.value.empty() && !valid_host_port(h.value, false)) return fail(400, "invalid Host header");
          if (!absolute_host) host_ = fields_[idx].value;
        }
        break;
      case 6:
        if (iequals(name, "expect")) {
          if (!iequals(h.value, "100-continue")) return fail(417, "unsupported expectation");
          // An HTTP/1.0 client cannot understand 100 Continue: ignore it (RFC 9110 §10.1.1).
          req_.expect_continue = req_.version_minor == 1;
        }
        break;
      case 10:
        if (iequals(name, "connection")) {
          const bool ok = for_each_token(h.value, [&](std::string_view tok) {
            if (iequals(tok, "close"))
              conn_close = true;
            else if (iequals(tok, "keep-alive"))
              conn_keep_alive = true;
          });
          if (!ok) return fail(400, "invalid Connection header");
        }
        break;
      case 14:
        if (iequals(name, "content-length")) {
          if (++cl_count > 1) return fail(400, "several Content-Length headers");
          const std::string_view v = h.value;
          if (v.empty() || v.size() > 18) return fail(400, "invalid Content-Length");
          std::uint64_t n = 0;
          for (char c : v) {
            if (c < '0' || c > '9') return fail(400, "invalid Content-Length");
            n = n * 10 + static_cast<std::uint64_t>(c - '0');
          }
          req_.has_content_length = true;
          req_.content_length = n;
        }
        break;
      case 17:
        if (iequals(name, "transfer-encoding")) {
          has_te = true;
          const bool ok = for_each_token(h.value, [&](std::string_view tok) {
            if (iequals(tok, "chunked")) {
              if (te_chunked_final) te_chunked_repeated = true;
              te_chunked_final = true;
            } else {
              if (te_chunked_final) te_chunked_repeated = true;  // chunked applied before another coding
              te_chunked_final = false;
              te_other = true;
            }
          });
          if (!ok) return fail(400, "invalid Transfer-Encoding");
        }
        break;
      default:
        break;
    }
  }
  req_.host = std::string_view(base + host_.off, host_.len);
  if (req_.version_minor == 1 && host_count == 0) return fail(400, "missing Host header");
  if (has_te) {
    if (req_.version_minor == 0) return fail(400, "Transfer-Encoding in an HTTP/1.0 request");
    if (cl_count > 0) return fail(400, "both Content-Length and Transfer-Encoding");
    if (!te_chunked_final) return fail(400, "final transfer coding is not chunked");
    if (te_chunked_repeated) return fail(400, "chunked applied more than once");
    if (te_other) return fail(501, "unsupported transfer coding");
    req_.chunked = true;
  }
  if (req_.has_content_length && req_.content_length > limits_.max_body) return fail(413, "body too large");
  req_.keep_alive = req_.version_minor == 1 ? !conn_close : (conn_keep_alive && !conn_close);
  body_start_ = pos_;
  if (req_.chunked) {
    phase_ = Phase::kChunkSize;
  } else if (req_.content_length > 0) {
    phase_ = Phase::kBody;
  } else {
    req_.expect_continue = false;  // nothing to wait for
    phase_ = Phase::kDone;
  }
  return ParseStatus::kComplete;
}

ParseStatus RequestParser::parse_chunk_size(const char* base, std::size_t line_end) {
  const char* p = base + pos_;
  const char* end = base + line_end;
  std::uint64_t size = 0;
  int digits = 0;
  for (; p < end; ++p) {
    const int v = hex_value(*p);
    if (v < 0) break;
    if (++digits > 16) return fail(400, "chunk size overflow");
    size = (size << 4) | static_cast<std::uint64_t>(v);
  }
  if (digits == 0) return fail(400, "invalid chunk size");
  // chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )  (RFC 9112 §7.1.1)
  while (p < end) {
    // BWS is allowed only before ';' or '=', never at the end of the line.
    while (p < end && is_ows(*p)) ++p;
    if (p == end || *p != ';') return fail(400, "invalid chunk extension");
    ++p;
    while (p < end && is_ows(*p)) ++p;
    const char* n = p;
    while (p < end && is_tchar(*p)) ++p;
    if (p == n) return fail(400, "invalid chunk extension name");
    const char* after_name = p;
    while (p < end && is_ows(*p)) ++p;
    if (p < end && *p != '=' && *p != ';') return fail(400, "invalid chunk extension");
    if (p == end && p != after_name) return fail(400, "whitespace at the end of a chunk extension");
    if (p < end && *p == '=') {
      ++p;
      while (p < end && is_ows(*p)) ++p;
      if (p < end && *p == '"') {
        ++p;
        bool closed = false;
        while (p < end) {
          const char c = *p++;
          if (c == '"') {
            closed = true;
            break;
          }
          if (c == '\\') {  // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
            if (p == end) break;
            if (!kValueChar[static_cast<unsigned char>(*p)]) return fail(400, "invalid chunk extension value");
            ++p;
          } else if (!kValueChar[static_cast<unsigned char>(c)]) {
            return fail(400, "invalid chunk extension value");
          }
        }
        if (!closed) return fail(400, "unterminated quoted chunk extension value");
      } else {
        const char* v = p;
        while (p < end && is_tchar(*p)) ++p;
        if (p == v) return fail(400, "invalid chunk extension value");
      }
    }
  }
  if (size > limits_.max_body || body_len_ + size > limits_.max_body) return fail(413, "body too large");
  if (size == 0) {
    trailer_start_ = line_end + 2;
    phase_ = Phase::kTrailers;
  } else {
    chunk_left_ = size;
    phase_ = Phase::kChunkData;
  }
  return ParseStatus::kComplete;
}

}  // namespace keel::http
