// Unit tests for the strict incremental HTTP/1.1 request parser (RFC 9112).
//
// Most cases are table-driven: every valid and every invalid request is parsed three ways
//   OneShot         - the whole request in one call;
//   ByteAtATime     - a growing buffer, one byte more per call, copied into a fresh allocation
//                     every step (the parser keeps offsets, never pointers);
//   SplitEverywhere - for every k: the first k bytes, then everything (in a moved buffer).
// and the incremental outcomes must equal the one-shot outcome. Inputs larger than 4 KiB are
// fed at a sample of offsets (all small ones, all near the end, ~256 spread in between).

#include "http/request_parser.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

using keel::http::ParsedRequest;
using keel::http::ParserLimits;
using keel::http::ParseStatus;
using keel::http::RequestParser;
using namespace std::string_literals;

// The case tables leave most members at their defaults (designated initializers, trailing limits);
// GCC 12 and clang warn about each omitted member even though that is the point.
#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#endif

namespace {

using Fields = std::vector<std::pair<std::string, std::string>>;

// Statuses are compared by name so that failures print readably.
std::string status_name(ParseStatus s) {
  switch (s) {
    case ParseStatus::kIncomplete:
      return "kIncomplete";
    case ParseStatus::kComplete:
      return "kComplete";
    case ParseStatus::kError:
      return "kError";
  }
  return "?";
}

std::string escape(std::string_view s, std::size_t max = 160) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (i == max) {
      out += "...(" + std::to_string(s.size()) + " bytes)";
      break;
    }
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '\r') {
      out += "\\r";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\\') {
      out += "\\\\";
    } else if (c < 0x20 || c >= 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

// Everything observable after a parse call, copied out of the buffer.
struct Outcome {
  ParseStatus status = ParseStatus::kIncomplete;
  int error_status = 0;
  std::string error_reason;
  bool head_complete = false;
  std::size_t consumed = 0;
  std::string method, target, path, query, host;
  int version_minor = 0;
  bool keep_alive = false;
  bool expect_continue = false;
  bool chunked = false;
  bool has_content_length = false;
  std::uint64_t content_length = 0;
  Fields headers, trailers;
  std::string body;

  bool operator==(const Outcome&) const = default;
};

void PrintTo(const Outcome& o, std::ostream* os) {
  *os << "{" << status_name(o.status);
  if (o.status == ParseStatus::kError) {
    *os << " " << o.error_status << " \"" << o.error_reason << "\"";
  } else {
    *os << " head_complete=" << o.head_complete << " consumed=" << o.consumed << " method=" << escape(o.method)
        << " target=" << escape(o.target) << " path=" << escape(o.path) << " query=" << escape(o.query)
        << " host=" << escape(o.host) << " minor=" << o.version_minor << " keep_alive=" << o.keep_alive
        << " expect_continue=" << o.expect_continue << " chunked=" << o.chunked << " cl=" << o.has_content_length << "/"
        << o.content_length << " headers=[";
    for (const auto& [n, v] : o.headers) *os << escape(n) << ": " << escape(v) << "; ";
    *os << "] trailers=[";
    for (const auto& [n, v] : o.trailers) *os << escape(n) << ": " << escape(v) << "; ";
    *os << "] body=\"" << escape(o.body, 64) << "\"";
  }
  *os << "}";
}

Fields copy_fields(const std::vector<keel::HeaderField>& in) {
  Fields out;
  for (const auto& f : in) out.emplace_back(std::string(f.name), std::string(f.value));
  return out;
}

Outcome snapshot(const RequestParser& p, ParseStatus s) {
  Outcome o;
  o.status = s;
  o.head_complete = p.head_complete();
  if (s == ParseStatus::kError) {
    o.error_status = p.error_status();
    o.error_reason = std::string(p.error_reason());
    return o;  // partially filled request fields are not part of an error outcome
  }
  if (s != ParseStatus::kComplete) return o;
  const ParsedRequest& r = p.request();
  o.consumed = p.consumed();
  o.method = std::string(r.method);
  o.target = std::string(r.target);
  o.path = std::string(r.path);
  o.query = std::string(r.query);
  o.host = std::string(r.host);
  o.version_minor = r.version_minor;
  o.keep_alive = r.keep_alive;
  o.expect_continue = r.expect_continue;
  o.chunked = r.chunked;
  o.has_content_length = r.has_content_length;
  o.content_length = r.content_length;
  o.headers = copy_fields(r.headers);
  o.trailers = copy_fields(r.trailers);
  o.body = std::string(r.body);
  return o;
}

// ---------------------------------------------------------------------------------------------
// Feeding strategies.

Outcome parse_one_shot(const std::string& in, const ParserLimits& limits) {
  RequestParser p(limits);
  std::vector<char> buf(in.begin(), in.end());
  const ParseStatus s = p.parse(buf.data(), buf.size());
  return snapshot(p, s);
}

// Prefix lengths to feed: all of 1..n for small inputs, a sample for large ones.
std::vector<std::size_t> prefix_lengths(std::size_t n) {
  std::vector<std::size_t> out;
  if (n <= 4096) {
    for (std::size_t k = 1; k <= n; ++k) out.push_back(k);
    return out;
  }
  for (std::size_t k = 1; k <= 64; ++k) out.push_back(k);
  for (std::size_t k = 64; k < n - 64; k += n / 256 + 1) out.push_back(k);
  for (std::size_t k = n - 64; k <= n; ++k) out.push_back(k);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

// Moves the parser's view of the request into a fresh allocation of `len` bytes: the bytes the
// parser already saw (possibly rewritten in place by chunked decoding) followed by new input.
// The old buffer is poisoned but kept alive in `prev`, so stale views read garbage, not freed memory.
void grow(std::vector<char>& buf, std::vector<char>& prev, const std::string& in, std::size_t len) {
  std::vector<char> next(len);
  std::copy(buf.begin(), buf.end(), next.begin());
  std::copy(in.begin() + static_cast<std::ptrdiff_t>(buf.size()), in.begin() + static_cast<std::ptrdiff_t>(len),
            next.begin() + static_cast<std::ptrdiff_t>(buf.size()));
  std::fill(buf.begin(), buf.end(), '\xA5');
  prev = std::move(buf);
  buf = std::move(next);
}

// (a) one byte at a time (or at the sampled lengths for large inputs).
Outcome parse_growing(const std::string& in, const ParserLimits& limits, bool valid) {
  RequestParser p(limits);
  std::vector<char> buf, prev;
  ParseStatus s = ParseStatus::kIncomplete;
  bool errored = false;
  for (const std::size_t len : prefix_lengths(in.size())) {
    grow(buf, prev, in, len);
    s = p.parse(buf.data(), buf.size());
    if (len < in.size()) {
      if (valid) {
        EXPECT_EQ(status_name(s), "kIncomplete") << "after " << len << " of " << in.size() << " bytes";
      } else {
        EXPECT_NE(status_name(s), "kComplete") << "after " << len << " of " << in.size() << " bytes";
      }
    }
    if (errored) {
      EXPECT_EQ(status_name(s), "kError") << "error must be sticky, after " << len << " bytes";
    }
    errored = errored || s == ParseStatus::kError;
  }
  return snapshot(p, s);
}

// (b) the first k bytes, then all of them; compared against `expected` for every k.
void check_split_everywhere(const std::string& in, const ParserLimits& limits, bool valid, const Outcome& expected) {
  for (const std::size_t k : prefix_lengths(in.size())) {
    SCOPED_TRACE("split at " + std::to_string(k) + " of " + std::to_string(in.size()));
    RequestParser p(limits);
    std::vector<char> buf, prev;
    grow(buf, prev, in, k);
    const ParseStatus first = p.parse(buf.data(), buf.size());
    if (k < in.size()) {
      if (valid) {
        EXPECT_EQ(status_name(first), "kIncomplete");
      } else {
        EXPECT_NE(status_name(first), "kComplete");
      }
    }
    grow(buf, prev, in, in.size());
    const ParseStatus second = p.parse(buf.data(), buf.size());
    if (first == ParseStatus::kError) {
      EXPECT_EQ(status_name(second), "kError");
    }
    EXPECT_EQ(snapshot(p, second), expected);
    if (::testing::Test::HasFailure()) return;  // one failing split is enough
  }
}

// ---------------------------------------------------------------------------------------------
// Request builders.

// An HTTP/1.1 GET with "Host: h" followed by `rest` (more header lines, the empty line, body).
std::string get11(std::string_view rest) {
  return "GET / HTTP/1.1\r\nHost: h\r\n" + std::string(rest);
}
// A chunked POST; `rest` starts at the first chunk.
std::string chunked(std::string_view rest) {
  return "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" + std::string(rest);
}
// A POST with a Content-Length header.
std::string with_cl(std::string_view cl, std::string_view body) {
  return "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: " + std::string(cl) + "\r\n\r\n" + std::string(body);
}
// A request line of exactly n bytes (without CRLF): "GET /aaa...a HTTP/1.1".
std::string request_line_of(std::size_t n) {
  return "GET /" + std::string(n - 14, 'a') + " HTTP/1.1";
}
// A header line of exactly n bytes (without CRLF): "X: aaa...a".
std::string field_of(std::size_t n) {
  return "X: " + std::string(n - 3, 'a');
}
// A complete head whose request line + header lines (with their CRLFs, without the final empty
// line) are exactly n bytes; filler fields are at most 8000 bytes each.
std::string head_block_of(std::size_t n) {
  std::string head = "GET / HTTP/1.1\r\nHost: h\r\n";
  for (int i = 0; head.size() < n; ++i) {
    std::size_t left = n - head.size();  // bytes this and later lines must take
    std::size_t line = std::min<std::size_t>(left, 8002);
    if (left - line != 0 && left - line < 8) line -= 8;  // leave room for a minimal last line
    const std::string name = "F" + std::to_string(i) + ": ";
    head += name + std::string(line - 2 - name.size(), 'v') + "\r\n";
  }
  return head + "\r\n";
}
std::string many_fields(std::size_t count) {  // count header lines in total, Host included
  std::string head = "GET / HTTP/1.1\r\nHost: h\r\n";
  for (std::size_t i = 1; i < count; ++i) head += "X-" + std::to_string(i) + ": v\r\n";
  return head + "\r\n";
}

// ---------------------------------------------------------------------------------------------
// Valid requests.

struct Expect {
  std::string method = "GET";
  std::string target = "/";
  std::string path = "/";
  std::string query;
  std::string host = "h";
  int version_minor = 1;
  bool keep_alive = true;
  bool expect_continue = false;
  bool chunked = false;
  bool has_content_length = false;
  std::uint64_t content_length = 0;
  std::string body;
  std::optional<Fields> headers;  // checked when given
  Fields trailers;
};

struct ValidCase {
  std::string name;
  std::string input;
  Expect want;
  ParserLimits limits;
};

void PrintTo(const ValidCase& c, std::ostream* os) {
  *os << c.name << ": \"" << escape(c.input) << "\"";
}

const std::string kBigBody(1024 * 1024, 'b');

std::vector<ValidCase> valid_cases() {
  const std::string many = [] {
    std::string s = "GET /m HTTP/1.1\r\n";
    for (int i = 0; i < 30; ++i) s += "X-Header-" + std::to_string(i) + ": value " + std::to_string(i) + "\r\n";
    return s + "Host: many.example\r\n\r\n";
  }();
  Fields many_headers;
  for (int i = 0; i < 30; ++i) many_headers.emplace_back("X-Header-" + std::to_string(i), "value " + std::to_string(i));
  many_headers.emplace_back("Host", "many.example");
  Fields hundred = {{"Host", "h"}};
  for (int i = 1; i < 100; ++i) hundred.emplace_back("X-" + std::to_string(i), "v");

  return {
      {"simple_get",
       "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
       {.host = "example.com", .headers = Fields{{"Host", "example.com"}}}},
      {"many_headers", many, {.target = "/m", .path = "/m", .host = "many.example", .headers = many_headers}},
      {"ows_trimmed",
       "GET / HTTP/1.1\r\nHost:   h \t \r\nX-A:\t v a\tl \t\r\nX-B:v\r\nX-C:\r\nX-D:  \t \r\n\r\n",
       {.headers = Fields{{"Host", "h"}, {"X-A", "v a\tl"}, {"X-B", "v"}, {"X-C", ""}, {"X-D", ""}}}},
      {"obs_text_in_value",
       get11("X-Name: caf\xC3\xA9 \x80\xFF\r\nX-End: \xFE  \r\n\r\n"),
       {.headers = Fields{{"Host", "h"}, {"X-Name", "caf\xC3\xA9 \x80\xFF"}, {"X-End", "\xFE"}}}},
      {"content_length_body",
       with_cl("11", "hello world"),
       {.method = "POST", .has_content_length = true, .content_length = 11, .body = "hello world"}},
      {"content_length_zero", with_cl("0", ""), {.method = "POST", .has_content_length = true}},
      {"content_length_ows",
       with_cl(" 5 \t", "hello"),
       {.method = "POST", .has_content_length = true, .content_length = 5, .body = "hello"}},
      {"content_length_leading_zeros",
       with_cl("0005", "hello"),
       {.method = "POST", .has_content_length = true, .content_length = 5, .body = "hello"}},
      {"content_length_18_digits",
       with_cl("000000000000000003", "abc"),
       {.method = "POST", .has_content_length = true, .content_length = 3, .body = "abc"}},
      {"chunked_extensions_and_trailers",
       chunked("5;name=value\r\nhello\r\n"
               "6;name=\"quoted \\\" value\"\r\n world\r\n"
               "5 ; a ; b=c\r\n!!!!!\r\n"
               "0\r\nX-Trailer: t1\r\nX-Other:  t2 \r\n\r\n"),
       {.method = "POST",
        .chunked = true,
        .body = "hello world!!!!!",
        .headers = Fields{{"Host", "h"}, {"Transfer-Encoding", "chunked"}},
        .trailers = Fields{{"X-Trailer", "t1"}, {"X-Other", "t2"}}}},
      {"chunked_no_trailers", chunked("3\r\nabc\r\n0\r\n\r\n"), {.method = "POST", .chunked = true, .body = "abc"}},
      {"chunked_empty_body", chunked("0\r\n\r\n"), {.method = "POST", .chunked = true}},
      {"chunked_hex_sizes",
       chunked("A\r\n0123456789\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n"),
       {.method = "POST", .chunked = true, .body = "0123456789abcdefghijklmnopqrstuvwxyz"}},
      {"chunked_many_small_chunks",
       chunked("1\r\na\r\n1\r\nb\r\n1\r\nc\r\n2\r\nde\r\n0\r\n\r\n"),
       {.method = "POST", .chunked = true, .body = "abcde"}},
      {"chunked_16_hex_digits",
       chunked("0000000000000005\r\nhello\r\n0\r\n\r\n"),
       {.method = "POST", .chunked = true, .body = "hello"}},
      {"chunked_ext_on_last_chunk",
       chunked("2\r\nok\r\n0;done=\"y\"\r\n\r\n"),
       {.method = "POST", .chunked = true, .body = "ok"}},
      {"chunked_ext_quoted_with_escapes",
       chunked("2;a=\"x\\\\y\\\"z\";b=tok;c\r\nok\r\n0\r\n\r\n"),
       {.method = "POST", .chunked = true, .body = "ok"}},
      {"chunked_body_contains_crlf",
       chunked("8\r\na\r\n\r\n0\r\n\r\n0\r\n\r\n"),
       {.method = "POST", .chunked = true, .body = "a\r\n\r\n0\r\n"}},
      {"http10_defaults_to_close", "GET / HTTP/1.0\r\n\r\n", {.host = "", .version_minor = 0, .keep_alive = false}},
      {"http10_keep_alive",
       "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
       {.host = "", .version_minor = 0, .keep_alive = true}},
      {"http10_keep_alive_mixed_case",
       "GET / HTTP/1.0\r\nHost: h\r\nconnection: Keep-Alive\r\n\r\n",
       {.version_minor = 0, .keep_alive = true}},
      {"http10_keep_alive_and_close",
       "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
       {.host = "", .version_minor = 0, .keep_alive = false}},
      {"http10_content_length",
       "POST / HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi",
       {.method = "POST",
        .host = "",
        .version_minor = 0,
        .keep_alive = false,
        .has_content_length = true,
        .content_length = 2,
        .body = "hi"}},
      {"http11_keep_alive_default", get11("\r\n"), {.keep_alive = true}},
      {"http11_connection_close", get11("Connection: close\r\n\r\n"), {.keep_alive = false}},
      {"http11_connection_close_upper", get11("Connection: Upgrade, CLOSE\r\n\r\n"), {.keep_alive = false}},
      {"http11_connection_keep_alive", get11("Connection: keep-alive\r\n\r\n"), {.keep_alive = true}},
      {"http11_connection_list_empty_elems", get11("Connection: , ,keep-alive,,\r\n\r\n"), {.keep_alive = true}},
      {"expect_continue_with_body",
       with_cl("3\r\nExpect: 100-continue", "abc"),
       {.method = "POST", .expect_continue = true, .has_content_length = true, .content_length = 3, .body = "abc"}},
      {"expect_continue_case_insensitive",
       with_cl("3\r\nexpect: 100-Continue", "abc"),
       {.method = "POST", .expect_continue = true, .has_content_length = true, .content_length = 3, .body = "abc"}},
      {"expect_continue_chunked",
       "POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
       {.method = "POST", .expect_continue = true, .chunked = true, .body = "x"}},
      {"expect_continue_cl_zero",
       with_cl("0\r\nExpect: 100-continue", ""),
       {.method = "POST", .expect_continue = false, .has_content_length = true}},
      {"expect_continue_no_body", get11("Expect: 100-continue\r\n\r\n"), {.expect_continue = false}},
      // RFC 9110 §10.1.1: "A server that receives a 100-continue expectation in an HTTP/1.0
      // request MUST ignore that expectation."
      {"expect_continue_ignored_in_http10",
       "POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
       {.method = "POST",
        .host = "",
        .version_minor = 0,
        .keep_alive = false,
        .expect_continue = false,
        .has_content_length = true,
        .content_length = 2,
        .body = "hi"}},
      {"absolute_form",
       "GET http://example.com/a/b?x=1 HTTP/1.1\r\nHost: other.org\r\n\r\n",
       {.target = "http://example.com/a/b?x=1",
        .path = "/a/b",
        .query = "x=1",
        .host = "example.com",
        .headers = Fields{{"Host", "other.org"}}}},
      {"absolute_form_host_before_target_host",
       "GET http://example.com/ HTTP/1.1\r\nHost: other.org\r\n\r\n",
       {.target = "http://example.com/", .path = "/", .host = "example.com"}},
      {"absolute_form_at_after_authority",
       "GET http://example.com/p@q?r=s@t HTTP/1.1\r\nHost: example.com\r\n\r\n",
       {.target = "http://example.com/p@q?r=s@t", .path = "/p@q", .query = "r=s@t", .host = "example.com"}},
      {"absolute_form_no_path",
       "GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n",
       {.target = "http://example.com", .path = "/", .host = "example.com"}},
      {"absolute_form_query_no_path",
       "GET http://example.com?x HTTP/1.1\r\nHost: example.com\r\n\r\n",
       {.target = "http://example.com?x", .path = "/", .query = "x", .host = "example.com"}},
      {"absolute_form_https_port_upper_scheme",
       "GET HTTPS://Example.com:8443/p HTTP/1.1\r\nHost: x\r\n\r\n",
       {.target = "HTTPS://Example.com:8443/p", .path = "/p", .host = "Example.com:8443"}},
      {"absolute_form_http10_without_host",
       "GET http://example.com/a HTTP/1.0\r\n\r\n",
       {.target = "http://example.com/a",
        .path = "/a",
        .host = "example.com",
        .version_minor = 0,
        .keep_alive = false}},
      {"options_asterisk", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", {.method = "OPTIONS", .target = "*", .path = "*"}},
      {"connect_authority_form",
       "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
       {.method = "CONNECT", .target = "example.com:443", .path = "example.com:443", .host = "example.com:443"}},
      {"leading_empty_line", "\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", {}},
      {"leading_four_empty_lines", "\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", {}},
      {"query", get11("\r\n").replace(4, 1, "/p?a=1&b=2"), {.target = "/p?a=1&b=2", .path = "/p", .query = "a=1&b=2"}},
      {"query_empty", get11("\r\n").replace(4, 1, "/p?"), {.target = "/p?", .path = "/p", .query = ""}},
      {"query_with_question_marks",
       get11("\r\n").replace(4, 1, "/p?a?b=/c"),
       {.target = "/p?a?b=/c", .path = "/p", .query = "a?b=/c"}},
      {"percent_encoded_path_kept_raw",
       get11("\r\n").replace(4, 1, "/a%20b/%2F?q=%41"),
       {.target = "/a%20b/%2F?q=%41", .path = "/a%20b/%2F", .query = "q=%41"}},
      {"head_request",
       "HEAD /index.html HTTP/1.1\r\nHost: h\r\n\r\n",
       {.method = "HEAD", .target = "/index.html", .path = "/index.html"}},
      {"extension_method",
       "M-SEARCH /x HTTP/1.1\r\nHost: h\r\n\r\n",
       {.method = "M-SEARCH", .target = "/x", .path = "/x"}},
      {"lowercase_content_length",
       "POST / HTTP/1.1\r\nhost: h\r\ncontent-length: 2\r\n\r\nok",
       {.method = "POST", .has_content_length = true, .content_length = 2, .body = "ok"}},
      {"uppercase_transfer_encoding",
       "POST / HTTP/1.1\r\nHOST: h\r\nTRANSFER-ENCODING: Chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
       {.method = "POST", .chunked = true, .body = "ok"}},
      {"transfer_encoding_ows_and_empty_elements",
       get11("Transfer-Encoding:  ,chunked ,\r\n\r\n0\r\n\r\n"),
       {.chunked = true}},
      {"empty_host_header", "GET / HTTP/1.1\r\nHost:\r\n\r\n", {.host = ""}},
      {"host_with_port", "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", {.host = "[::1]:8080"}},
      // uri-host [":" port] (RFC 9110 §7.2, RFC 3986 §3.2.2): every reg-name character class.
      {"host_reg_name_all_classes",
       "GET / HTTP/1.1\r\nHost: a-._~%41!$&'()*+,;=Z9:\r\n\r\n",
       {.host = "a-._~%41!$&'()*+,;=Z9:"}},
      {"host_ipv4_port", "GET / HTTP/1.1\r\nHost: 127.0.0.1:65535\r\n\r\n", {.host = "127.0.0.1:65535"}},
      {"host_ipv6_zone", "GET / HTTP/1.1\r\nHost: [fe80::1%25eth0]\r\n\r\n", {.host = "[fe80::1%25eth0]"}},
      {"absolute_form_ipv6",
       "GET http://[::1]:8080/p HTTP/1.1\r\nHost: x\r\n\r\n",
       {.target = "http://[::1]:8080/p", .path = "/p", .host = "[::1]:8080"}},
      {"tab_inside_value", get11("X: a\tb\r\n\r\n"), {.headers = Fields{{"Host", "h"}, {"X", "a\tb"}}}},
      {"colon_in_value", get11("X: a: b:\r\n\r\n"), {.headers = Fields{{"Host", "h"}, {"X", "a: b:"}}}},
      {"tchar_header_name",
       get11("!#$%&'*+-.^_`|~09azAZ: v\r\n\r\n"),
       {.headers = Fields{{"Host", "h"}, {"!#$%&'*+-.^_`|~09azAZ", "v"}}}},

      // Limits, exactly at the boundary (small values keep the incremental runs fast).
      {"limit_request_line_exact",
       request_line_of(32) + "\r\nHost: h\r\n\r\n",
       {.target = "/" + std::string(18, 'a'), .path = "/" + std::string(18, 'a')},
       {.max_request_line = 32}},
      {"limit_header_field_exact",
       get11(field_of(24) + "\r\n\r\n"),
       {.headers = Fields{{"Host", "h"}, {"X", std::string(21, 'a')}}},
       {.max_header_field = 24}},
      {"limit_header_count_exact", many_fields(4), {}, {.max_header_count = 4}},
      {"limit_header_count_with_trailers_exact",
       chunked("0\r\nA: 1\r\nB: 2\r\n\r\n"),
       {.method = "POST", .chunked = true, .trailers = Fields{{"A", "1"}, {"B", "2"}}},
       {.max_header_count = 4}},
      {"limit_header_block_exact", head_block_of(64), {}, {.max_header_block = 64}},
      {"limit_header_block_after_empty_lines", "\r\n\r\n" + head_block_of(64), {}, {.max_header_block = 64}},
      {"limit_body_content_length_exact",
       with_cl("16", std::string(16, 'x')),
       {.method = "POST", .has_content_length = true, .content_length = 16, .body = std::string(16, 'x')},
       {.max_body = 16}},
      {"limit_body_chunked_exact",
       chunked("a\r\n0123456789\r\n6\r\nabcdef\r\n0\r\n\r\n"),
       {.method = "POST", .chunked = true, .body = "0123456789abcdef"},
       {.max_body = 16}},
      {"limit_chunk_line_exact",
       chunked("2;a=" + std::string(12, 'b') + "\r\nok\r\n0\r\n\r\n"),
       {.method = "POST", .chunked = true, .body = "ok"},
       {.max_chunk_line = 16}},

      // The default limits, exactly at the boundary.
      {"default_request_line_exact",
       request_line_of(8192) + "\r\nHost: h\r\n\r\n",
       {.target = "/" + std::string(8178, 'a'), .path = "/" + std::string(8178, 'a')}},
      {"default_header_field_exact",
       get11(field_of(8192) + "\r\n\r\n"),
       {.headers = Fields{{"Host", "h"}, {"X", std::string(8189, 'a')}}}},
      {"default_header_count_exact", many_fields(100), {.headers = hundred}},
      {"default_header_block_exact", head_block_of(64 * 1024), {}},
      {"default_body_exact",
       with_cl("1048576", kBigBody),
       {.method = "POST", .has_content_length = true, .content_length = 1048576, .body = kBigBody}},
      {"default_chunked_body_exact",
       chunked("80000\r\n" + kBigBody.substr(0, 512 * 1024) + "\r\n80000\r\n" + kBigBody.substr(0, 512 * 1024) +
               "\r\n0\r\n\r\n"),
       {.method = "POST", .chunked = true, .body = kBigBody}},
      {"default_chunk_line_exact",
       chunked("2;a=\"" + std::string(4090, 'q') + "\"\r\nok\r\n0\r\n\r\n"),
       {.method = "POST", .chunked = true, .body = "ok"}},
  };
}

class ParserValid : public ::testing::TestWithParam<ValidCase> {};

void check_expected(const Outcome& got, const Expect& want, std::size_t input_size) {
  ASSERT_EQ(status_name(got.status), "kComplete") << "error " << got.error_status << " " << got.error_reason;
  EXPECT_TRUE(got.head_complete);
  EXPECT_EQ(got.consumed, input_size);
  EXPECT_EQ(got.method, want.method);
  EXPECT_EQ(got.target, want.target);
  EXPECT_EQ(got.path, want.path);
  EXPECT_EQ(got.query, want.query);
  EXPECT_EQ(got.host, want.host);
  EXPECT_EQ(got.version_minor, want.version_minor);
  EXPECT_EQ(got.keep_alive, want.keep_alive);
  EXPECT_EQ(got.expect_continue, want.expect_continue);
  EXPECT_EQ(got.chunked, want.chunked);
  EXPECT_EQ(got.has_content_length, want.has_content_length);
  EXPECT_EQ(got.content_length, want.content_length);
  EXPECT_EQ(got.body.size(), want.body.size());
  EXPECT_TRUE(got.body == want.body) << "body \"" << escape(got.body) << "\" != \"" << escape(want.body) << "\"";
  if (want.headers) {
    EXPECT_EQ(got.headers, *want.headers);
  }
  EXPECT_EQ(got.trailers, want.trailers);
}

TEST_P(ParserValid, OneShot) {
  const ValidCase& c = GetParam();
  check_expected(parse_one_shot(c.input, c.limits), c.want, c.input.size());
}

TEST_P(ParserValid, ByteAtATime) {
  const ValidCase& c = GetParam();
  const Outcome expected = parse_one_shot(c.input, c.limits);
  EXPECT_EQ(parse_growing(c.input, c.limits, /*valid=*/true), expected);
}

TEST_P(ParserValid, SplitEverywhere) {
  const ValidCase& c = GetParam();
  check_split_everywhere(c.input, c.limits, /*valid=*/true, parse_one_shot(c.input, c.limits));
}

INSTANTIATE_TEST_SUITE_P(Requests, ParserValid, ::testing::ValuesIn(valid_cases()),
                         [](const ::testing::TestParamInfo<ValidCase>& param_info) { return param_info.param.name; });

// ---------------------------------------------------------------------------------------------
// Invalid requests: the exact status of error_status().

struct ErrorCase {
  std::string name;
  std::string input;
  int status;
  ParserLimits limits;
};

void PrintTo(const ErrorCase& c, std::ostream* os) {
  *os << c.name << " -> " << c.status << ": \"" << escape(c.input) << "\"";
}

std::vector<ErrorCase> error_cases() {
  const std::string te_cl = "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n";
  return {
      // Framing.
      {"cl_and_te", get11(te_cl), 400, {}},
      {"te_and_cl", get11("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"), 400, {}},
      {"two_content_lengths_equal", get11("Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello"), 400, {}},
      {"two_content_lengths_differ", get11("Content-Length: 5\r\ncontent-length: 6\r\n\r\nhello!"), 400, {}},
      {"cl_plus_sign", with_cl("+5", "hello"), 400, {}},
      {"cl_negative", with_cl("-1", ""), 400, {}},
      {"cl_inner_space", with_cl("5 5", "hello"), 400, {}},
      {"cl_hex", with_cl("0x10", ""), 400, {}},
      {"cl_list", with_cl("1,1", "x"), 400, {}},
      {"cl_list_same", with_cl("5, 5", "hello"), 400, {}},
      {"cl_empty", with_cl("", ""), 400, {}},
      {"cl_only_whitespace", with_cl("   ", ""), 400, {}},
      {"cl_19_digits", with_cl("1234567890123456789", ""), 400, {}},
      {"cl_19_digits_small_value", with_cl("0000000000000000005", "hello"), 400, {}},
      {"cl_overflow", with_cl("99999999999999999999999", ""), 400, {}},
      {"cl_decimal_point", with_cl("5.0", "hello"), 400, {}},
      {"te_gzip", get11("Transfer-Encoding: gzip\r\n\r\n"), 400, {}},
      {"te_gzip_chunked", get11("Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"), 501, {}},
      {"te_gzip_chunked_two_headers", get11("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"), 501, {}},
      {"te_chunked_chunked", get11("Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n"), 400, {}},
      {"te_chunked_twice_two_headers",
       get11("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
       400,
       {}},
      {"te_chunked_gzip", get11("Transfer-Encoding: chunked, gzip\r\n\r\n"), 400, {}},
      {"te_identity", get11("Transfer-Encoding: identity\r\n\r\n"), 400, {}},
      {"te_empty", get11("Transfer-Encoding:\r\n\r\n"), 400, {}},
      {"te_with_parameter", get11("Transfer-Encoding: chunked;q=1\r\n\r\n"), 400, {}},
      {"te_not_a_token", get11("Transfer-Encoding: \"chunked\"\r\n\r\n"), 400, {}},
      {"te_prefixed_chunked", get11("Transfer-Encoding: xchunked\r\n\r\n"), 400, {}},
      {"te_in_http10", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, {}},
      {"te_and_cl_in_http10", "POST / HTTP/1.0\r\n" + te_cl, 400, {}},

      // Chunked body syntax.
      {"chunk_size_not_hex", chunked("zz\r\n"), 400, {}},
      {"chunk_size_empty", chunked("\r\nhello\r\n0\r\n\r\n"), 400, {}},
      {"chunk_size_negative", chunked("-5\r\nhello\r\n0\r\n\r\n"), 400, {}},
      {"chunk_size_0x_prefix", chunked("0x5\r\nhello\r\n0\r\n\r\n"), 400, {}},
      {"chunk_size_leading_space", chunked(" 5\r\nhello\r\n0\r\n\r\n"), 400, {}},
      {"chunk_size_17_hex_digits", chunked("00000000000000005\r\nhello\r\n0\r\n\r\n"), 400, {}},
      {"chunk_size_bare_lf", chunked("5\nhello\r\n0\r\n\r\n"), 400, {}},
      {"chunk_size_bare_lf_empty_line", chunked("\n"), 400, {}},
      {"chunk_data_missing_crlf", chunked("5\r\nhelloX\r\n0\r\n\r\n"), 400, {}},
      {"chunk_data_cr_without_lf", chunked("5\r\nhello\rX0\r\n\r\n"), 400, {}},
      {"chunk_data_bare_lf", chunked("5\r\nhello\n0\r\n\r\n"), 400, {}},
      {"chunk_data_too_long_for_size", chunked("3\r\nhello\r\n0\r\n\r\n"), 400, {}},
      {"chunk_ext_missing_name", chunked("5;\r\nhello\r\n0\r\n\r\n"), 400, {}},
      {"chunk_ext_missing_value", chunked("5;a=\r\nhello\r\n0\r\n\r\n"), 400, {}},
      {"chunk_ext_unterminated_quote", chunked("5;a=\"abc\r\nhello\r\n0\r\n\r\n"), 400, {}},
      {"chunk_ext_garbage_after_name", chunked("5;a b\r\nhello\r\n0\r\n\r\n"), 400, {}},
      {"chunk_ext_garbage_after_value", chunked("5;a=b c\r\nhello\r\n0\r\n\r\n"), 400, {}},
      {"chunk_ext_garbage_after_quoted", chunked("5;a=\"b\"c\r\nhello\r\n0\r\n\r\n"), 400, {}},
      {"chunk_ext_ctl_in_quoted", chunked("5;a=\"\x01\"\r\nhello\r\n0\r\n\r\n"), 400, {}},
      {"chunk_ext_bare_cr", chunked("5;a=b\rc\r\nhello\r\n0\r\n\r\n"), 400, {}},
      {"chunk_ext_bare_cr_in_quoted", chunked("5;a=\"b\rc\"\r\nhello\r\n0\r\n\r\n"), 400, {}},
      // RFC 9112 §7.1.1 chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] ): whitespace
      // may only precede ';' or '=', never end the line.
      {"chunk_size_trailing_whitespace", chunked("5 \r\nhello\r\n0\r\n\r\n"), 400, {}},
      // Same grammar: no trailing whitespace after an extension name.
      {"chunk_ext_trailing_whitespace", chunked("5;a \r\nhello\r\n0\r\n\r\n"), 400, {}},
      // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text ): no control byte after the backslash...
      {"chunk_ext_ctl_in_quoted_pair", chunked("5;a=\"\\\x01\"\r\nhello\r\n0\r\n\r\n"), 400, {}},
      // ...and no bare CR (RFC 9112 §2.2: a bare CR makes the element invalid).
      {"chunk_ext_bare_cr_in_quoted_pair", chunked("5;a=\"\\\r\"\r\nhello\r\n0\r\n\r\n"), 400, {}},
      {"trailer_obs_fold", chunked("0\r\nX: a\r\n b\r\n\r\n"), 400, {}},
      {"trailer_bare_lf", chunked("0\r\nX: a\n\r\n"), 400, {}},
      {"trailer_ctl", chunked("0\r\nX: a\x01\r\n\r\n"), 400, {}},
      {"trailer_bad_name", chunked("0\r\nX Y: a\r\n\r\n"), 400, {}},

      // Header syntax.
      {"space_before_colon", "GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400, {}},
      {"tab_before_colon", get11("X\t: x\r\n\r\n"), 400, {}},
      {"obs_fold_space", get11("X: a\r\n b\r\n\r\n"), 400, {}},
      {"obs_fold_tab", get11("X: a\r\n\tb\r\n\r\n"), 400, {}},
      {"whitespace_before_first_field", "GET / HTTP/1.1\r\n Host: h\r\n\r\n", 400, {}},
      {"bare_cr_in_value", get11("X: a\rb\r\n\r\n"), 400, {}},
      {"bare_cr_at_value_end", get11("X: a\r\r\n\r\n"), 400, {}},
      {"bare_cr_in_name", get11("X\rY: a\r\n\r\n"), 400, {}},
      {"bare_lf_request_line", "GET / HTTP/1.1\nHost: h\r\n\r\n", 400, {}},
      {"bare_lf_header_line", get11("X: a\nY: b\r\n\r\n"), 400, {}},
      {"bare_lf_last_header_line", "GET / HTTP/1.1\r\nHost: h\n\r\n", 400, {}},
      {"bare_lf_end_of_head", get11("\n"), 400, {}},
      {"bare_lf_everywhere", "GET / HTTP/1.1\nHost: h\n\n", 400, {}},
      {"bare_lf_leading_empty_line", "\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400, {}},
      {"nul_in_value", get11("X: a\0b\r\n\r\n"s), 400, {}},
      {"ctl_01_in_value",
       get11("X: a\x01"
             "b\r\n\r\n"),
       400,
       {}},
      {"del_in_value",
       get11("X: a\x7f"
             "b\r\n\r\n"),
       400,
       {}},
      {"escape_in_value", get11("X: \x1b[0m\r\n\r\n"), 400, {}},
      {"nul_in_name", get11("X\0Y: a\r\n\r\n"s), 400, {}},
      {"invalid_method_char", "GE(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400, {}},
      {"invalid_header_name_char", get11("X@Y: 1\r\n\r\n"), 400, {}},
      {"header_name_non_ascii", get11("X\xC3\xA9: 1\r\n\r\n"), 400, {}},
      {"empty_header_name", get11(": v\r\n\r\n"), 400, {}},
      {"header_without_colon", get11("NoColon\r\n\r\n"), 400, {}},
      {"missing_host", "GET / HTTP/1.1\r\n\r\n", 400, {}},
      {"missing_host_absolute_form", "GET http://example.com/ HTTP/1.1\r\n\r\n", 400, {}},
      {"two_hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400, {}},
      {"two_hosts_http10", "GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", 400, {}},
      {"host_with_userinfo", "GET / HTTP/1.1\r\nHost: user@h\r\n\r\n", 400, {}},
      {"host_with_path", "GET / HTTP/1.1\r\nHost: h/x\r\n\r\n", 400, {}},
      {"host_with_inner_space", "GET / HTTP/1.1\r\nHost: h x\r\n\r\n", 400, {}},
      // RFC 9112 §3.2: a Host with an invalid value MUST be answered 400.
      {"host_quoted", "GET / HTTP/1.1\r\nHost: \"h\"\r\n\r\n", 400, {}},
      {"host_angle_brackets", "GET / HTTP/1.1\r\nHost: <h>\r\n\r\n", 400, {}},
      {"host_two_colons", "GET / HTTP/1.1\r\nHost: a:b:c\r\n\r\n", 400, {}},
      {"host_port_not_digits", "GET / HTTP/1.1\r\nHost: h:80x\r\n\r\n", 400, {}},
      {"host_empty_name_with_port", "GET / HTTP/1.1\r\nHost: :80\r\n\r\n", 400, {}},
      {"host_obs_text", "GET / HTTP/1.1\r\nHost: caf\xC3\xA9\r\n\r\n", 400, {}},
      {"host_bad_pct_encoding", "GET / HTTP/1.1\r\nHost: a%4\r\n\r\n", 400, {}},
      {"host_bad_pct_hex", "GET / HTTP/1.1\r\nHost: a%zz\r\n\r\n", 400, {}},
      {"host_unterminated_ip_literal", "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400, {}},
      {"host_empty_ip_literal", "GET / HTTP/1.1\r\nHost: []\r\n\r\n", 400, {}},
      {"host_ip_literal_junk_after", "GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n", 400, {}},
      {"host_backslash", "GET / HTTP/1.1\r\nHost: h\\x\r\n\r\n", 400, {}},
      {"host_invalid_when_absolute_form", "GET http://example.com/ HTTP/1.1\r\nHost: a b\r\n\r\n", 400, {}},
      {"connection_not_a_list", get11("Connection: keep alive\r\n\r\n"), 400, {}},

      // Request line.
      {"empty_method", " / HTTP/1.1\r\nHost: h\r\n\r\n", 400, {}},
      {"method_tab_separator", "GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n", 400, {}},
      {"double_space_before_target", "GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400, {}},
      {"double_space_before_version", "GET /  HTTP/1.1\r\nHost: h\r\n\r\n", 400, {}},
      {"trailing_space_after_version", "GET / HTTP/1.1 \r\nHost: h\r\n\r\n", 400, {}},
      {"missing_version", "GET /\r\nHost: h\r\n\r\n", 400, {}},
      {"version_http_1", "GET / HTTP/1\r\nHost: h\r\n\r\n", 400, {}},
      {"version_trailing_garbage", "GET / HTTP/1.1x\r\nHost: h\r\n\r\n", 400, {}},
      {"version_lowercase", "GET / http/1.1\r\nHost: h\r\n\r\n", 400, {}},
      {"version_two_digit_major", "GET / HTTP/11.1\r\nHost: h\r\n\r\n", 400, {}},
      {"version_no_dot", "GET / HTTP/1-1\r\nHost: h\r\n\r\n", 400, {}},
      {"version_2_0", "GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505, {}},
      {"version_1_2", "GET / HTTP/1.2\r\nHost: h\r\n\r\n", 505, {}},
      {"version_0_9", "GET / HTTP/0.9\r\nHost: h\r\n\r\n", 505, {}},
      {"version_3_0", "GET / HTTP/3.0\r\nHost: h\r\n\r\n", 505, {}},
      {"target_with_space", "GET /a b HTTP/1.1\r\nHost: h\r\n\r\n", 400, {}},
      {"target_with_ctl",
       "GET /a\x01"
       "b HTTP/1.1\r\nHost: h\r\n\r\n",
       400,
       {}},
      {"target_with_del", "GET /a\x7f HTTP/1.1\r\nHost: h\r\n\r\n", 400, {}},
      {"target_with_tab", "GET /a\tb HTTP/1.1\r\nHost: h\r\n\r\n", 400, {}},
      {"target_with_nul", "GET /a\0b HTTP/1.1\r\nHost: h\r\n\r\n"s, 400, {}},
      {"target_with_bare_cr", "GET /a\rb HTTP/1.1\r\nHost: h\r\n\r\n", 400, {}},
      {"target_with_fragment", "GET /a#f HTTP/1.1\r\nHost: h\r\n\r\n", 400, {}},
      {"target_relative", "GET a/b HTTP/1.1\r\nHost: h\r\n\r\n", 400, {}},
      {"target_authority_form_not_connect", "GET example.com:80 HTTP/1.1\r\nHost: h\r\n\r\n", 400, {}},
      {"target_asterisk_not_options", "GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400, {}},
      {"target_unsupported_scheme", "GET ftp://example.com/ HTTP/1.1\r\nHost: h\r\n\r\n", 400, {}},
      {"target_empty_authority", "GET http:///a HTTP/1.1\r\nHost: h\r\n\r\n", 400, {}},
      {"target_authority_backslash", "GET http://ho\\st/ HTTP/1.1\r\nHost: h\r\n\r\n", 400, {}},
      {"target_authority_two_colons", "GET http://a:b:c/ HTTP/1.1\r\nHost: h\r\n\r\n", 400, {}},
      {"target_authority_bad_port", "GET http://h:8x/ HTTP/1.1\r\nHost: h\r\n\r\n", 400, {}},
      {"target_authority_empty_host", "GET http://:80/ HTTP/1.1\r\nHost: h\r\n\r\n", 400, {}},
      {"target_authority_quote", "GET http://a\"b/ HTTP/1.1\r\nHost: h\r\n\r\n", 400, {}},
      // RFC 9112 §3.2.3: authority-form = uri-host ":" port.
      {"connect_without_port", "CONNECT example.com HTTP/1.1\r\nHost: h\r\n\r\n", 400, {}},
      {"connect_bad_host", "CONNECT ex\\ample.com:443 HTTP/1.1\r\nHost: h\r\n\r\n", 400, {}},
      {"connect_userinfo", "CONNECT u@example.com:443 HTTP/1.1\r\nHost: h\r\n\r\n", 400, {}},
      {"target_userinfo", "GET http://user@example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n", 400, {}},
      {"target_userinfo_password", "GET http://u:p@example.com HTTP/1.1\r\nHost: example.com\r\n\r\n", 400, {}},
      {"five_leading_empty_lines", "\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400, {}},
      {"leading_whitespace_line", " \r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400, {}},

      // Expectations.
      {"expect_other", with_cl("3\r\nExpect: something-else", "abc"), 417, {}},
      {"expect_other_without_body", get11("Expect: something-else\r\n\r\n"), 417, {}},
      {"expect_list", with_cl("3\r\nExpect: 100-continue, foo", "abc"), 417, {}},

      // Limits (small values).
      {"limit_request_line", request_line_of(33) + "\r\nHost: h\r\n\r\n", 414, {.max_request_line = 32}},
      {"limit_request_line_prefix", "GET /" + std::string(40, 'a'), 414, {.max_request_line = 32}},
      {"limit_request_line_prefix_min", "GET /" + std::string(29, 'a'), 414, {.max_request_line = 32}},
      // A prefix of max+1 bytes whose last byte is not CR can only be a line over the limit.
      {"limit_request_line_prefix_one_over", "GET /" + std::string(28, 'a'), 414, {.max_request_line = 32}},
      {"limit_request_line_after_empty_lines",
       "\r\n\r\n" + request_line_of(33) + "\r\nHost: h\r\n\r\n",
       414,
       {.max_request_line = 32}},
      // An over-long line ended by a bare LF: the verdict (length first) must not depend on
      // whether the LF arrived in the same read (found by the fuzzer).
      {"limit_request_line_bare_lf",
       "GET /" + std::string(28, 'a') + "\nHost: h\r\n\r\n",
       414,
       {.max_request_line = 32}},
      {"limit_header_field_bare_lf", get11(field_of(25) + "\n\r\n"), 431, {.max_header_field = 24}},
      {"limit_chunk_line_bare_lf",
       chunked("2;a=" + std::string(13, 'b') + "\nok\r\n0\r\n\r\n"),
       400,
       {.max_chunk_line = 16}},
      {"limit_header_field", get11(field_of(25) + "\r\n\r\n"), 431, {.max_header_field = 24}},
      {"limit_header_field_prefix", get11(field_of(40)), 431, {.max_header_field = 24}},
      {"limit_header_field_prefix_one_over", get11(field_of(25)), 431, {.max_header_field = 24}},
      {"limit_header_field_trailer", chunked("0\r\n" + field_of(27) + "\r\n\r\n"), 431, {.max_header_field = 26}},
      {"limit_header_count", many_fields(5), 431, {.max_header_count = 4}},
      {"limit_header_count_with_trailers", chunked("0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"), 431, {.max_header_count = 4}},
      {"limit_header_block", head_block_of(65), 431, {.max_header_block = 64}},
      {"limit_header_block_many_fields", many_fields(20), 431, {.max_header_block = 64}},
      {"limit_header_block_prefix", get11("X: " + std::string(80, 'a')), 431, {.max_header_block = 64}},
      {"limit_body_content_length", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 17\r\n\r\n", 413, {.max_body = 16}},
      {"limit_body_chunked_single", chunked("11\r\n"), 413, {.max_body = 16}},
      {"limit_body_chunked_total", chunked("a\r\n0123456789\r\n7\r\nabcdefg\r\n0\r\n\r\n"), 413, {.max_body = 16}},
      {"limit_chunk_line", chunked("2;a=" + std::string(13, 'b') + "\r\nok\r\n0\r\n\r\n"), 400, {.max_chunk_line = 16}},
      {"limit_chunk_line_prefix", chunked("2;a=" + std::string(40, 'b')), 400, {.max_chunk_line = 16}},
      {"limit_chunk_line_prefix_one_over", chunked("2;a=" + std::string(13, 'b')), 400, {.max_chunk_line = 16}},

      // Limits (defaults).
      {"default_request_line", request_line_of(8193) + "\r\nHost: h\r\n\r\n", 414, {}},
      {"default_request_line_prefix", "GET /" + std::string(9000, 'a'), 414, {}},
      {"default_header_field", get11(field_of(8193) + "\r\n\r\n"), 431, {}},
      {"default_header_count", many_fields(101), 431, {}},
      {"default_header_block", head_block_of(64 * 1024 + 1), 431, {}},
      {"default_body_content_length", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1048577\r\n\r\n", 413, {}},
      {"default_body_chunked", chunked("100000\r\n" + kBigBody + "\r\n1\r\n"), 413, {}},
      {"default_chunk_line", chunked("2;a=\"" + std::string(4091, 'q') + "\"\r\nok\r\n0\r\n\r\n"), 400, {}},
  };
}

class ParserInvalid : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(ParserInvalid, OneShot) {
  const ErrorCase& c = GetParam();
  const Outcome got = parse_one_shot(c.input, c.limits);
  ASSERT_EQ(status_name(got.status), "kError") << ::testing::PrintToString(got);
  EXPECT_EQ(got.error_status, c.status) << got.error_reason;
  EXPECT_FALSE(got.error_reason.empty());
}

TEST_P(ParserInvalid, ByteAtATime) {
  const ErrorCase& c = GetParam();
  const Outcome got = parse_growing(c.input, c.limits, /*valid=*/false);
  EXPECT_EQ(got, parse_one_shot(c.input, c.limits));  // the exact status is checked by OneShot
}

TEST_P(ParserInvalid, SplitEverywhere) {
  const ErrorCase& c = GetParam();
  check_split_everywhere(c.input, c.limits, /*valid=*/false, parse_one_shot(c.input, c.limits));
}

INSTANTIATE_TEST_SUITE_P(Requests, ParserInvalid, ::testing::ValuesIn(error_cases()),
                         [](const ::testing::TestParamInfo<ErrorCase>& param_info) { return param_info.param.name; });

// Parses `in` in one call into a buffer that lives as long as the parser (views stay valid).
struct Parsed {
  std::vector<char> buf;
  RequestParser parser;
  ParseStatus status;
  explicit Parsed(std::string_view in, const ParserLimits& limits = {})
      : buf(in.begin(), in.end()), parser(limits), status(parser.parse(buf.data(), buf.size())) {}
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Targeted behaviour.

TEST(RequestParser, DefaultLimits) {
  const ParserLimits d;
  EXPECT_EQ(d.max_request_line, 8u * 1024);
  EXPECT_EQ(d.max_header_field, 8u * 1024);
  EXPECT_EQ(d.max_header_count, 100u);
  EXPECT_EQ(d.max_header_block, 64u * 1024);
  EXPECT_EQ(d.max_body, 1024u * 1024);
  EXPECT_EQ(d.max_chunk_line, 4u * 1024);
  const RequestParser p;
  EXPECT_EQ(p.limits().max_request_line, d.max_request_line);
  EXPECT_EQ(p.limits().max_body, d.max_body);
}

TEST(RequestParser, SetLimitsTakesEffect) {
  RequestParser p;
  p.set_limits({.max_body = 4});
  EXPECT_EQ(p.limits().max_body, 4u);
  std::string in = with_cl("5", "hello");
  EXPECT_EQ(status_name(p.parse(in.data(), in.size())), "kError");
  EXPECT_EQ(p.error_status(), 413);
}

TEST(RequestParser, EmptyInputIsIncomplete) {
  char c = 'G';
  RequestParser p;
  EXPECT_EQ(status_name(p.parse(&c, 0)), "kIncomplete");
  EXPECT_FALSE(p.head_complete());
  EXPECT_EQ(p.error_status(), 0);
  EXPECT_EQ(status_name(p.parse(&c, 1)), "kIncomplete");
}

TEST(RequestParser, ExpectContinueHeadCompleteWhileBodyMissing) {
  const std::string head = "POST /up HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n";
  std::string buf = head;
  RequestParser p;
  EXPECT_EQ(status_name(p.parse(buf.data(), buf.size())), "kIncomplete");
  EXPECT_TRUE(p.head_complete());
  EXPECT_TRUE(p.request().expect_continue);
  EXPECT_EQ(p.request().method, "POST");
  EXPECT_EQ(p.request().path, "/up");
  EXPECT_EQ(p.expected_size(), head.size() + 5);
  buf += "he";
  EXPECT_EQ(status_name(p.parse(buf.data(), buf.size())), "kIncomplete");
  EXPECT_TRUE(p.head_complete());
  buf += "llo";
  ASSERT_EQ(status_name(p.parse(buf.data(), buf.size())), "kComplete");
  EXPECT_TRUE(p.request().expect_continue);
  EXPECT_EQ(p.request().body, "hello");
  EXPECT_EQ(p.consumed(), buf.size());
}

TEST(RequestParser, ExpectContinueChunkedHeadComplete) {
  std::string buf = "POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n";
  RequestParser p;
  EXPECT_EQ(status_name(p.parse(buf.data(), buf.size())), "kIncomplete");
  EXPECT_TRUE(p.head_complete());
  EXPECT_TRUE(p.request().expect_continue);
  EXPECT_TRUE(p.request().chunked);
  EXPECT_EQ(p.expected_size(), 0u);  // unknown for chunked framing
}

TEST(RequestParser, HeadCompleteOnlyAfterEmptyLine) {
  const std::string in = with_cl("3", "abc");
  const std::size_t head_len = in.size() - 3;
  RequestParser p;
  std::string buf;
  for (std::size_t i = 0; i < in.size(); ++i) {
    buf.push_back(in[i]);
    const ParseStatus s = p.parse(buf.data(), buf.size());
    EXPECT_EQ(p.head_complete(), buf.size() >= head_len) << "after " << buf.size() << " bytes";
    EXPECT_EQ(status_name(s), buf.size() == in.size() ? "kComplete" : "kIncomplete");
  }
}

TEST(RequestParser, ExpectedSize) {
  const std::string head = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n";
  std::string buf = head.substr(0, 10);
  RequestParser p;
  EXPECT_EQ(status_name(p.parse(buf.data(), buf.size())), "kIncomplete");
  EXPECT_EQ(p.expected_size(), 0u);  // head not complete yet
  buf = head;
  EXPECT_EQ(status_name(p.parse(buf.data(), buf.size())), "kIncomplete");
  EXPECT_EQ(p.expected_size(), head.size() + 10);
  // Leading empty lines belong to this request too.
  RequestParser q;
  std::string buf2 = "\r\n" + head;
  EXPECT_EQ(status_name(q.parse(buf2.data(), buf2.size())), "kIncomplete");
  EXPECT_EQ(q.expected_size(), buf2.size() + 10);
}

TEST(RequestParser, ContentLengthTooLargeFailsAsSoonAsHeadIsComplete) {
  const std::string head = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n";
  RequestParser p({.max_body = 99});
  std::string buf = head.substr(0, head.size() - 1);
  EXPECT_EQ(status_name(p.parse(buf.data(), buf.size())), "kIncomplete");
  buf = head;  // no body byte yet
  EXPECT_EQ(status_name(p.parse(buf.data(), buf.size())), "kError");
  EXPECT_EQ(p.error_status(), 413);
}

TEST(RequestParser, Pipelining) {
  const std::string first = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n";
  const std::string second = "POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nxyz";
  const std::string third = "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n";
  const std::string fourth = "GET /d?q HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
  std::string all = first + second + third + fourth;
  RequestParser p;
  char* data = all.data();
  std::size_t left = all.size();

  ASSERT_EQ(status_name(p.parse(data, left)), "kComplete");
  EXPECT_EQ(p.consumed(), first.size());
  EXPECT_EQ(p.request().path, "/a");
  EXPECT_TRUE(p.request().body.empty());
  data += p.consumed();
  left -= p.consumed();
  p.reset();

  ASSERT_EQ(status_name(p.parse(data, left)), "kComplete");
  EXPECT_EQ(p.consumed(), second.size());
  EXPECT_EQ(p.request().path, "/b");
  EXPECT_EQ(p.request().body, "xyz");
  data += p.consumed();
  left -= p.consumed();
  p.reset();

  ASSERT_EQ(status_name(p.parse(data, left)), "kComplete");
  EXPECT_EQ(p.consumed(), third.size());
  EXPECT_EQ(p.request().path, "/c");
  EXPECT_EQ(p.request().body, "ab");
  data += p.consumed();
  left -= p.consumed();
  p.reset();

  // In-place chunk decoding of the third request must not have touched the fourth.
  ASSERT_EQ(status_name(p.parse(data, left)), "kComplete");
  EXPECT_EQ(p.consumed(), fourth.size());
  EXPECT_EQ(p.request().path, "/d");
  EXPECT_EQ(p.request().query, "q");
  EXPECT_FALSE(p.request().keep_alive);
  EXPECT_EQ(left, fourth.size());
}

TEST(RequestParser, PipeliningIncremental) {
  // Two requests arrive one byte at a time; the first completes exactly on its last byte.
  const std::string first = chunked("3\r\nabc\r\n0\r\nT: 1\r\n\r\n");
  const std::string second = "GET /two HTTP/1.1\r\nHost: h\r\n\r\n";
  const std::string all = first + second;
  RequestParser p;
  std::vector<char> buf, prev;
  std::size_t start = 0;  // first byte of the current request in `all`
  int completed = 0;
  for (std::size_t len = 1; len <= all.size(); ++len) {
    // The connection keeps the bytes of the current request from its first byte.
    std::vector<char> next(buf.begin(), buf.end());
    next.push_back(all[len - 1]);
    prev = std::move(buf);
    buf = std::move(next);
    const ParseStatus s = p.parse(buf.data(), buf.size());
    if (start + buf.size() == first.size() && completed == 0) {
      ASSERT_EQ(status_name(s), "kComplete");
      EXPECT_EQ(p.consumed(), first.size());
      EXPECT_EQ(p.request().body, "abc");
      ASSERT_EQ(p.request().trailers.size(), 1u);
      EXPECT_EQ(p.request().trailers[0].name, "T");
      ++completed;
      start += p.consumed();
      buf.clear();
      p.reset();
    } else if (len == all.size()) {
      ASSERT_EQ(status_name(s), "kComplete");
      EXPECT_EQ(p.consumed(), second.size());
      EXPECT_EQ(p.request().path, "/two");
      EXPECT_TRUE(p.request().trailers.empty());
      EXPECT_TRUE(p.request().body.empty());
      ++completed;
    } else {
      ASSERT_EQ(status_name(s), "kIncomplete") << "after " << len << " bytes";
    }
  }
  EXPECT_EQ(completed, 2);
}

TEST(RequestParser, DoesNotReadPastTheRequest) {
  std::string in = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
  const std::size_t len = in.size();
  in += "\x01\x02 garbage\n\n";
  RequestParser p;
  ASSERT_EQ(status_name(p.parse(in.data(), in.size())), "kComplete");
  EXPECT_EQ(p.consumed(), len);
  p.reset();
  EXPECT_EQ(status_name(p.parse(in.data() + len, in.size() - len)), "kError");
  EXPECT_EQ(p.error_status(), 400);
}

TEST(RequestParser, ContentLengthBodyStopsAtLength) {
  std::string in = with_cl("3", "abcGET");
  RequestParser p;
  ASSERT_EQ(status_name(p.parse(in.data(), in.size())), "kComplete");
  EXPECT_EQ(p.request().body, "abc");
  EXPECT_EQ(p.consumed(), in.size() - 3);
}

TEST(RequestParser, ErrorIsSticky) {
  std::string bad = "GET / HTTP/1.1\r\nHost : h\r\n\r\n";
  std::string good = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
  RequestParser p;
  ASSERT_EQ(status_name(p.parse(bad.data(), bad.size())), "kError");
  const int status = p.error_status();
  EXPECT_EQ(status, 400);
  EXPECT_EQ(status_name(p.parse(bad.data(), bad.size())), "kError");
  EXPECT_EQ(status_name(p.parse(good.data(), good.size())), "kError");
  EXPECT_EQ(p.error_status(), status);
}

TEST(RequestParser, ResetClearsEverything) {
  RequestParser p;
  std::string bad = "GET / HTTP/2.0\r\n\r\n";
  ASSERT_EQ(status_name(p.parse(bad.data(), bad.size())), "kError");
  EXPECT_EQ(p.error_status(), 505);
  p.reset();
  EXPECT_EQ(p.error_status(), 0);
  EXPECT_TRUE(p.error_reason().empty());
  EXPECT_FALSE(p.head_complete());

  std::string first =
      "POST /x?y HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nConnection: close\r\n"
      "Transfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\nT: v\r\n\r\n";
  ASSERT_EQ(status_name(p.parse(first.data(), first.size())), "kComplete");
  EXPECT_EQ(p.request().trailers.size(), 1u);
  p.reset();
  EXPECT_FALSE(p.head_complete());
  EXPECT_EQ(p.consumed(), 0u);

  std::string second = "\r\nGET / HTTP/1.0\r\n\r\n";
  ASSERT_EQ(status_name(p.parse(second.data(), second.size())), "kComplete");
  const ParsedRequest& r = p.request();
  EXPECT_EQ(r.method, "GET");
  EXPECT_EQ(r.path, "/");
  EXPECT_EQ(r.query, "");
  EXPECT_EQ(r.host, "");
  EXPECT_EQ(r.version_minor, 0);
  EXPECT_FALSE(r.keep_alive);
  EXPECT_FALSE(r.expect_continue);
  EXPECT_FALSE(r.chunked);
  EXPECT_FALSE(r.has_content_length);
  EXPECT_EQ(r.content_length, 0u);
  EXPECT_TRUE(r.headers.empty());
  EXPECT_TRUE(r.trailers.empty());
  EXPECT_TRUE(r.body.empty());
  EXPECT_EQ(p.consumed(), second.size());

  // Four empty lines are allowed again after reset().
  p.reset();
  std::string third = "\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";
  EXPECT_EQ(status_name(p.parse(third.data(), third.size())), "kComplete");
}

TEST(RequestParser, ViewsPointIntoTheCallersBuffer) {
  Parsed r(chunked("3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"));
  ASSERT_EQ(status_name(r.status), "kComplete");
  const char* begin = r.buf.data();
  const char* end = begin + r.buf.size();
  const ParsedRequest& req = r.parser.request();
  auto inside = [&](std::string_view v) { return v.data() >= begin && v.data() + v.size() <= end; };
  EXPECT_TRUE(inside(req.method));
  EXPECT_TRUE(inside(req.target));
  EXPECT_TRUE(inside(req.host));
  for (const auto& h : req.headers) EXPECT_TRUE(inside(h.name) && inside(h.value));
  // The chunked body is decoded in place, contiguously, right after the head.
  EXPECT_EQ(req.body, "abcdefg");
  EXPECT_TRUE(inside(req.body));
  const std::string_view head = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
  EXPECT_EQ(req.body.data(), begin + head.size());
}

TEST(RequestParser, TrailersAreNotHeaders) {
  Parsed r(chunked("1\r\nx\r\n0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n"));
  ASSERT_EQ(status_name(r.status), "kComplete");
  const ParsedRequest& req = r.parser.request();
  EXPECT_EQ(req.find("X-Checksum"), nullptr);
  EXPECT_EQ(req.headers.size(), 2u);
  ASSERT_EQ(req.trailers.size(), 2u);
  EXPECT_EQ(req.trailers[0].name, "X-Checksum");
  EXPECT_EQ(req.trailers[0].value, "abc");
  EXPECT_EQ(req.trailers[1].name, "X-Other");
  EXPECT_EQ(req.trailers[1].value, "1");
}

TEST(ParsedRequestFind, CaseInsensitiveFirstMatch) {
  Parsed r(get11("Content-Type: text/plain\r\nX-Dup: first\r\nx-dup: second\r\n\r\n"));
  ASSERT_EQ(status_name(r.status), "kComplete");
  const ParsedRequest& req = r.parser.request();
  const keel::HeaderField* f = req.find("content-type");
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->name, "Content-Type");
  EXPECT_EQ(f->value, "text/plain");
  ASSERT_NE(req.find("CONTENT-TYPE"), nullptr);
  ASSERT_NE(req.find("HOST"), nullptr);
  EXPECT_EQ(req.find("HOST")->value, "h");
  ASSERT_NE(req.find("X-DUP"), nullptr);
  EXPECT_EQ(req.find("X-DUP")->value, "first");
  EXPECT_EQ(req.find("X-DUP"), &req.headers[2]);
  EXPECT_EQ(req.find("Content-Typ"), nullptr);
  EXPECT_EQ(req.find("Content-Types"), nullptr);
  EXPECT_EQ(req.find(""), nullptr);
  EXPECT_EQ(ParsedRequest{}.find("Host"), nullptr);
}
