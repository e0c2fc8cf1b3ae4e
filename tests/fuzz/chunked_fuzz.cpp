// libFuzzer target for chunked body decoding (RFC 9112 §7.1). keel has no separate decoder: the
// request parser decodes chunked bodies in place, so the input is used as the body of a fixed
// "POST ... Transfer-Encoding: chunked" head and driven through keel::http::RequestParser.
//
// Checks, for every input:
//  1. against an independent reference decoder written from the grammar keel documents (chunk-size
//     of 1-16 HEXDIG, chunk-ext = *( BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] )
//     with no trailing whitespace, CRLF everywhere, trailer field lines without obs-fold, body at
//     most max_body): same status (incomplete / complete / error, and the error's status code), and
//     for a complete request the same decoded body, trailers and consumed() (the end of the last
//     CRLF);
//  2. the same bytes fed in 1-8 pieces into a buffer that moves between calls (as a connection's
//     read buffer does when it grows) give the same outcome: the in-place decoding must not depend on
//     where reads end;
//  3. with small limits, the outcome is the unlimited one or a limit error (a limit never changes a
//     successful decode);
//  4. the invariants: consumed() <= len, body <= max_body, the body view inside the buffer.
// Any violation calls __builtin_trap() so libFuzzer records the input as a crash.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fuzz_check.hpp"
#include "http/request_parser.hpp"
#include "http_grammar.hpp"
#include "parse_status_name.hpp"

namespace {

using keel::fuzz::ref_chunk_ext;
using keel::fuzz::ref_field_vchar;
using keel::fuzz::ref_ows;
using keel::fuzz::ref_tchar;
using keel::http::ParserLimits;
using keel::http::ParseStatus;
using keel::http::RequestParser;

constexpr std::string_view kHead = "POST /upload HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n";
constexpr std::size_t kHeadFields = 2;

using Fields = std::vector<std::pair<std::string, std::string>>;

struct Outcome {
  ParseStatus status = ParseStatus::kIncomplete;
  int error_status = 0;
  std::size_t consumed = 0;  // from the start of the head; compared for kComplete only
  std::string body;
  Fields trailers;

  bool operator==(const Outcome&) const = default;
};

void print_outcome(const char* label, const Outcome& o) {
  std::fprintf(stderr, "  %s: %s error_status=%d consumed=%zu body=%zu trailers=%zu\n", label, status_name(o.status),
               o.error_status, o.consumed, o.body.size(), o.trailers.size());
}

void check_same(const Outcome& expected, const Outcome& actual, const char* what, int line) {
  if (expected == actual) return;
  std::fprintf(stderr, "chunked_fuzz: outcomes differ (%s)\n", what);
  print_outcome("expected", expected);
  print_outcome("actual  ", actual);
  fail_check(what, line);
}

// ---- reference decoder ---------------------------------------------------------------------------

int ref_hex(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Decodes the chunked body s (everything after the head). consumed is relative to s.
Outcome ref_decode(std::string_view s, std::uint64_t max_body) {
  Outcome o;
  const auto error = [&o](int status) {
    o = Outcome{};
    o.status = ParseStatus::kError;
    o.error_status = status;
    return o;
  };
  std::size_t i = 0;
  std::string body;
  for (;;) {  // chunks
    const std::size_t lf = s.find('\n', i);
    if (lf == std::string_view::npos) return o;
    if (lf == i || s[lf - 1] != '\r') return error(400);
    const std::string_view line = s.substr(i, lf - 1 - i);
    std::size_t k = 0;
    std::uint64_t size = 0;
    for (; k < line.size() && ref_hex(static_cast<unsigned char>(line[k])) >= 0; ++k) {
      if (k == 16) return error(400);  // 17th digit
      size = size * 16 + static_cast<std::uint64_t>(ref_hex(static_cast<unsigned char>(line[k])));
    }
    if (k == 0) return error(400);
    if (!ref_chunk_ext(line.substr(k))) return error(400);
    if (size > max_body - body.size()) return error(413);
    i = lf + 1;
    if (size == 0) break;
    if (s.size() - i < size) return o;
    body.append(s.substr(i, static_cast<std::size_t>(size)));
    i += static_cast<std::size_t>(size);
    if (i < s.size() && s[i] != '\r') return error(400);
    if (s.size() - i < 2) return o;
    if (s[i + 1] != '\n') return error(400);
    i += 2;
  }
  Fields trailers;
  for (;;) {  // trailer section
    const std::size_t lf = s.find('\n', i);
    if (lf == std::string_view::npos) return o;
    if (lf == i || s[lf - 1] != '\r') return error(400);
    if (lf - 1 == i) {
      o.status = ParseStatus::kComplete;
      o.consumed = lf + 1;
      o.body = std::move(body);
      o.trailers = std::move(trailers);
      return o;
    }
    const std::string_view line = s.substr(i, lf - 1 - i);
    std::size_t colon = 0;
    while (colon < line.size() && ref_tchar(static_cast<unsigned char>(line[colon]))) ++colon;
    if (colon == 0 || colon == line.size() || line[colon] != ':') return error(400);
    std::string_view value = line.substr(colon + 1);
    for (const char c : value)
      if (!ref_field_vchar(static_cast<unsigned char>(c))) return error(400);
    while (!value.empty() && ref_ows(static_cast<unsigned char>(value.front()))) value.remove_prefix(1);
    while (!value.empty() && ref_ows(static_cast<unsigned char>(value.back()))) value.remove_suffix(1);
    trailers.emplace_back(std::string(line.substr(0, colon)), std::string(value));
    i = lf + 1;
  }
}

// ---- keel ----------------------------------------------------------------------------------------

Outcome observe(RequestParser& parser, ParseStatus status, const char* buf, std::size_t len) {
  Outcome o;
  o.status = status;
  FUZZ_CHECK(parser.consumed() <= len);
  if (status == ParseStatus::kError) {
    o.error_status = parser.error_status();
    FUZZ_CHECK(o.error_status >= 400 && o.error_status <= 599);
    return o;
  }
  FUZZ_CHECK(parser.error_status() == 0);
  if (status == ParseStatus::kIncomplete) return o;
  const auto& r = parser.request();
  FUZZ_CHECK(r.chunked && !r.has_content_length);
  FUZZ_CHECK(r.body.size() <= parser.limits().max_body);
  FUZZ_CHECK(r.body.empty() || (r.body.data() >= buf && r.body.data() + r.body.size() <= buf + parser.consumed()));
  FUZZ_CHECK(r.headers.size() == kHeadFields);
  FUZZ_CHECK(r.headers.size() + r.trailers.size() <= parser.limits().max_header_count);
  o.consumed = parser.consumed();
  o.body = std::string(r.body);
  for (const auto& t : r.trailers) o.trailers.emplace_back(t.name, t.value);
  return o;
}

Outcome keel_one_shot(const ParserLimits& limits, const std::string& msg) {
  std::vector<char> buf(msg.begin(), msg.end());  // exactly sized: ASan sees any overread
  RequestParser parser(limits);
  const ParseStatus st = parser.parse(buf.data(), buf.size());
  return observe(parser, st, buf.data(), buf.size());
}

// The message fed in pieces ending at `ends` (increasing, the last one msg.size()); the buffer is
// reallocated and copied (as the parser left it) at each step.
Outcome keel_pieces(const ParserLimits& limits, const std::string& msg, const std::vector<std::size_t>& ends) {
  RequestParser parser(limits);
  std::vector<char> buf;
  Outcome o;
  for (const std::size_t end : ends) {
    std::vector<char> next(end);
    if (!buf.empty()) std::memcpy(next.data(), buf.data(), buf.size());
    std::memcpy(next.data() + buf.size(), msg.data() + buf.size(), end - buf.size());
    buf.swap(next);
    next = {};
    const ParseStatus st = parser.parse(buf.data(), buf.size());
    o = observe(parser, st, buf.data(), buf.size());
    if (st != ParseStatus::kIncomplete) break;
  }
  return o;
}

ParserLimits unlimited() {
  ParserLimits l;
  l.max_request_line = 1 << 20;
  l.max_header_field = 1 << 20;
  l.max_header_count = 1 << 20;
  l.max_header_block = 1 << 20;
  l.max_body = 1 << 20;
  l.max_chunk_line = 1 << 20;
  return l;
}

ParserLimits small_limits() {
  ParserLimits l;
  l.max_request_line = 64;
  l.max_header_field = 40;
  l.max_header_count = kHeadFields + 3;
  l.max_header_block = kHead.size() + 8;  // the trailer section is measured on its own
  l.max_body = 64;
  l.max_chunk_line = 24;
  return l;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  std::string msg(kHead);
  msg.append(body);

  const ParserLimits big = unlimited();
  Outcome expected = ref_decode(body, big.max_body);
  if (expected.status == ParseStatus::kComplete) expected.consumed += kHead.size();

  // 1. one-shot against the reference.
  const Outcome whole = keel_one_shot(big, msg);
  check_same(expected, whole, "keel vs reference decoder", __LINE__);

  // 2. the same bytes in 1-8 pieces, cut points from an FNV-1a hash of the input.
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (std::size_t i = 0; i < size; ++i) h = (h ^ data[i]) * 0x100000001b3ULL;
  std::vector<std::size_t> ends;
  const std::size_t pieces = 1 + static_cast<std::size_t>(h % 8);
  for (std::size_t p = 1; p < pieces && size > 0; ++p) {
    h = h * 6364136223846793005ULL + 1442695040888963407ULL;
    ends.push_back(kHead.size() + static_cast<std::size_t>((h >> 17) % size));
  }
  ends.push_back(msg.size());
  std::sort(ends.begin(), ends.end());
  ends.erase(std::unique(ends.begin(), ends.end()), ends.end());
  check_same(whole, keel_pieces(big, msg, ends), "pieces vs one-shot", __LINE__);

  // 3. small limits: the unlimited outcome, or an error that a limit explains.
  const ParserLimits small = small_limits();
  const Outcome limited = keel_pieces(small, msg, ends);
  if (limited.status == ParseStatus::kError && whole.status != ParseStatus::kError) {
    FUZZ_CHECK(limited.error_status == 400 || limited.error_status == 413 || limited.error_status == 431);
  } else if (limited.status == ParseStatus::kError) {
    // Both errors: the limit may only have been hit first.
  } else {
    check_same(whole, limited, "small limits vs unlimited", __LINE__);
  }
  return 0;
}
