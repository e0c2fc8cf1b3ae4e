// libFuzzer target for keel::http::RequestParser.
//
// For each input, and for two sets of limits (small ones that the fuzzer can exceed within
// -max_len, and the defaults):
//  1. one-shot: the whole input in one exactly-sized buffer;
//  2. split: the same bytes fed in 2-3 pieces (split points derived from the first input bytes and
//     the length) into a growing buffer that is copied to a new allocation at each step, as a
//     connection does when its read buffer grows; the outcome must equal the one-shot outcome;
//  3. self-delimiting: a completed request parsed from exactly its consumed() bytes gives the same
//     outcome, and one byte less is still incomplete;
//  4. pipelining: complete requests are peeled off the front (reset() and continue with the rest),
//     and each one parsed by the reset parser must equal a parse by a fresh parser.
// Invariants checked on every parse: consumed() <= len, body <= max_body, error status only with
// kError, kError sticky, the views of a complete request inside its consumed() bytes, an
// expected_size() announced while incomplete equal to the final consumed(), find() and
// percent_decode_strict() on the parsed request.
// Any violation calls __builtin_trap() so libFuzzer records the input as a crash.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/strings.hpp"
#include "fuzz_check.hpp"
#include "http/request_parser.hpp"
#include "parse_status_name.hpp"

namespace {

using keel::http::ParsedRequest;
using keel::http::ParserLimits;
using keel::http::ParseStatus;
using keel::http::RequestParser;

constexpr int kMaxPipelined = 16;

// Everything observable about one parse, with the views copied out (the buffers get mutated by
// in-place chunked decoding and freed).
struct Outcome {
  ParseStatus status = ParseStatus::kIncomplete;
  int error_status = 0;
  std::string error_reason;
  std::size_t consumed = 0;
  bool head_complete = false;
  std::size_t expected_size = 0;
  std::string method, target, path, query, host, body;
  int version_minor = 0;
  bool keep_alive = false, expect_continue = false, chunked = false, has_content_length = false;
  std::uint64_t content_length = 0;
  std::vector<std::pair<std::string, std::string>> headers, trailers;

  bool operator==(const Outcome&) const = default;
};

void print_outcome(const char* label, const Outcome& o) {
  std::fprintf(stderr, "  %s: %s error_status=%d reason=\"%s\" consumed=%zu head_complete=%d expected_size=%zu\n",
               label, status_name(o.status), o.error_status, o.error_reason.c_str(), o.consumed, o.head_complete,
               o.expected_size);
  if (o.status != ParseStatus::kComplete) return;
  std::fprintf(stderr, "    method=%zu:%s target=%zu path=%zu query=%zu host=%zu body=%zu headers=%zu trailers=%zu\n",
               o.method.size(), o.method.c_str(), o.target.size(), o.path.size(), o.query.size(), o.host.size(),
               o.body.size(), o.headers.size(), o.trailers.size());
}

// Traps when two outcomes differ, after printing both. Not compared: error_reason() (a diagnostic;
// the status is the contract) and, after kError, consumed(): it is part of the contract only for
// kComplete (and stays the same for kIncomplete); after kError it is where the parser stood, which
// for a bad request line depends on how the bytes arrived (it has advanced over the partial line
// while waiting for the LF).
void check_same(const Outcome& expected, const Outcome& actual, const char* what, int line) {
  Outcome a = expected, b = actual;
  a.error_reason = b.error_reason = {};
  if (a.status == ParseStatus::kError && b.status == ParseStatus::kError) a.consumed = b.consumed = 0;
  if (a == b) return;
  std::fprintf(stderr, "request_parser_fuzz: outcomes differ (%s)\n", what);
  print_outcome("expected", expected);
  print_outcome("actual  ", actual);
  fail_check(what, line);
}

bool inside(std::string_view v, const char* buf, std::size_t len) {
  if (v.empty()) return v.data() == nullptr || (v.data() >= buf && v.data() <= buf + len);
  return v.data() >= buf && v.size() <= len && v.data() <= buf + (len - v.size());
}

// Runs parser.parse(buf, len), checks the invariants and returns the outcome.
Outcome parse_checked(RequestParser& parser, char* buf, std::size_t len) {
  const ParseStatus status = parser.parse(buf, len);
  const ParserLimits& limits = parser.limits();
  Outcome o;
  o.status = status;
  o.error_status = parser.error_status();
  o.error_reason = std::string(parser.error_reason());
  o.consumed = parser.consumed();
  o.head_complete = parser.head_complete();
  o.expected_size = parser.expected_size();
  FUZZ_CHECK(o.consumed <= len);
  switch (status) {
    case ParseStatus::kIncomplete:
      FUZZ_CHECK(o.error_status == 0);
      // Content-Length framing: the size is announced once the head is complete, and more is needed.
      if (o.expected_size != 0) FUZZ_CHECK(o.head_complete && o.expected_size > len);
      break;
    case ParseStatus::kError:
      FUZZ_CHECK(o.error_status >= 400 && o.error_status <= 599);
      FUZZ_CHECK(!o.error_reason.empty());
      FUZZ_CHECK(parser.parse(buf, len) == ParseStatus::kError);  // sticky
      FUZZ_CHECK(parser.error_status() == o.error_status);
      break;
    case ParseStatus::kComplete: {
      FUZZ_CHECK(o.error_status == 0);
      FUZZ_CHECK(o.head_complete);
      FUZZ_CHECK(o.consumed > 0);
      const ParsedRequest& r = parser.request();
      FUZZ_CHECK(r.body.size() <= limits.max_body);
      FUZZ_CHECK(r.version_minor == 0 || r.version_minor == 1);
      FUZZ_CHECK(!r.method.empty() && !r.target.empty());
      FUZZ_CHECK(inside(r.method, buf, o.consumed));
      FUZZ_CHECK(inside(r.target, buf, o.consumed));
      FUZZ_CHECK(inside(r.query, buf, o.consumed));
      FUZZ_CHECK(inside(r.host, buf, o.consumed));
      FUZZ_CHECK(inside(r.body, buf, o.consumed));
      // An absolute-form target with an empty path reports the static "/".
      FUZZ_CHECK(inside(r.path, buf, o.consumed) || (r.path == "/" && r.target[0] != '/'));
      FUZZ_CHECK(r.headers.size() + r.trailers.size() <= limits.max_header_count);
      if (!r.chunked && r.has_content_length) FUZZ_CHECK(r.body.size() == r.content_length);
      if (r.chunked) FUZZ_CHECK(!r.has_content_length);
      for (const auto& h : r.headers) {
        FUZZ_CHECK(inside(h.name, buf, o.consumed) && inside(h.value, buf, o.consumed));
        FUZZ_CHECK(!h.name.empty());
      }
      if (!r.headers.empty()) {  // find() returns the first field of that name
        const keel::HeaderField* f = r.find(r.headers.back().name);
        FUZZ_CHECK(f != nullptr && f <= &r.headers.back() && keel::base::iequals(f->name, r.headers.back().name));
      }
      if (std::string decoded; keel::base::percent_decode_strict(r.path, decoded))
        FUZZ_CHECK(decoded.size() <= r.path.size() && decoded.find('\0') == std::string::npos);
      for (const auto& h : r.trailers) {
        FUZZ_CHECK(inside(h.name, buf, o.consumed) && inside(h.value, buf, o.consumed));
        FUZZ_CHECK(!h.name.empty());
      }
      o.method = std::string(r.method);
      o.target = std::string(r.target);
      o.path = std::string(r.path);
      o.query = std::string(r.query);
      o.host = std::string(r.host);
      o.body = std::string(r.body);
      o.version_minor = r.version_minor;
      o.keep_alive = r.keep_alive;
      o.expect_continue = r.expect_continue;
      o.chunked = r.chunked;
      o.has_content_length = r.has_content_length;
      o.content_length = r.content_length;
      for (const auto& h : r.headers) o.headers.emplace_back(h.name, h.value);
      for (const auto& h : r.trailers) o.trailers.emplace_back(h.name, h.value);
      break;
    }
  }
  return o;
}

// One parse of data[0, len) in a fresh, exactly-sized buffer (ASan sees any read past len).
Outcome parse_one_shot(const ParserLimits& limits, const char* data, std::size_t len) {
  std::vector<char> buf(data, data + len);
  RequestParser parser(limits);
  return parse_checked(parser, buf.data(), buf.size());
}

// The same bytes in pieces ending at the given offsets (the last one is len). Each step copies the
// buffer so far (as the parser left it: chunked bodies are decoded in place) and the new bytes into
// a new exactly-sized allocation, so the data always moves between calls.
Outcome parse_split(const ParserLimits& limits, const char* data, std::size_t len, const std::size_t* ends,
                    std::size_t n_ends) {
  FUZZ_CHECK(n_ends > 0 && ends[n_ends - 1] == len);
  RequestParser parser(limits);
  std::vector<char> buf;
  Outcome o;
  std::size_t announced = 0;  // expected_size() seen on an earlier kIncomplete
  for (std::size_t i = 0; i < n_ends; ++i) {
    const std::size_t end = ends[i];
    std::vector<char> next(end);
    if (!buf.empty()) std::memcpy(next.data(), buf.data(), buf.size());
    std::memcpy(next.data() + buf.size(), data + buf.size(), end - buf.size());
    buf.swap(next);
    next = {};  // free the old buffer now: views into it must not be used any more
    o = parse_checked(parser, buf.data(), buf.size());
    if (o.status != ParseStatus::kIncomplete) break;
    if (o.expected_size != 0) announced = o.expected_size;
  }
  if (announced != 0 && o.status == ParseStatus::kComplete) FUZZ_CHECK(o.consumed == announced);
  return o;
}

std::uint64_t mix(const std::uint8_t* data, std::size_t size) {
  std::uint64_t h = 0xcbf29ce484222325ULL ^ size;  // FNV-1a over the first bytes, seeded with the size
  for (std::size_t i = 0; i < size && i < 8; ++i) h = (h ^ data[i]) * 0x100000001b3ULL;
  return h ^ (h >> 29);
}

void check_input(const ParserLimits& limits, const std::uint8_t* bytes, std::size_t size) {
  const char* data = reinterpret_cast<const char*>(bytes);

  // (a) one-shot.
  const Outcome whole = parse_one_shot(limits, data, size);

  // (b) 2 or 3 pieces; split points in [1, size-1] so that no step has an empty buffer.
  if (size >= 2) {
    const std::uint64_t h = mix(bytes, size);
    std::size_t ends[3];
    std::size_t n = 0;
    const std::size_t a = 1 + static_cast<std::size_t>(h % (size - 1));
    const std::size_t b = 1 + static_cast<std::size_t>((h >> 20) % (size - 1));
    if ((h >> 60) & 1U && a != b) {
      ends[n++] = a < b ? a : b;
      ends[n++] = a < b ? b : a;
    } else {
      ends[n++] = a;
    }
    ends[n++] = size;
    const Outcome pieces = parse_split(limits, data, size, ends, n);
    check_same(whole, pieces, "split feed vs one-shot", __LINE__);
  }

  // (c) complete requests are self-delimiting: their own bytes give the same outcome, one fewer
  // byte is incomplete.
  if (whole.status == ParseStatus::kComplete) {
    check_same(whole, parse_one_shot(limits, data, whole.consumed), "request parsed from its own consumed() bytes",
               __LINE__);
    if (whole.consumed > 1)
      FUZZ_CHECK(parse_one_shot(limits, data, whole.consumed - 1).status == ParseStatus::kIncomplete);
  }

  // (d) pipelined requests: one parser, reset() between requests, the buffer advancing by
  // consumed(); each result must equal that of a fresh parser on the remaining bytes.
  std::vector<char> buf(data, data + size);
  RequestParser parser(limits);
  std::size_t off = 0;
  for (int i = 0; i < kMaxPipelined && off < size; ++i) {
    const std::size_t rest = size - off;
    // Compare against a fresh parser before the reused one decodes chunked bodies in place.
    const Outcome fresh = parse_one_shot(limits, buf.data() + off, rest);
    const Outcome reused = parse_checked(parser, buf.data() + off, rest);
    check_same(fresh, reused, "reset() parser vs fresh parser", __LINE__);
    if (reused.status != ParseStatus::kComplete) break;
    off += reused.consumed;
    parser.reset();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  ParserLimits small;
  small.max_request_line = 96;
  small.max_header_field = 128;
  small.max_header_count = 8;
  small.max_header_block = 512;
  small.max_body = 256;
  small.max_chunk_line = 48;
  check_input(small, data, size);
  check_input(ParserLimits{}, data, size);
  return 0;
}
