// Incremental, strict HTTP/1.1 request parser (RFC 9112).
//
// The parser works on the connection's read buffer in place: the caller keeps the bytes of the
// current request contiguous from its first byte and calls parse() again with a longer span when
// more bytes arrive (the buffer may have moved in between: the parser keeps offsets, not
// pointers). Chunked bodies are decoded in place, so the finished body is one contiguous view.
// Nothing is copied or allocated per request once the header vector has grown to its working size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "keel/request.hpp"

namespace keel::http {

struct ParserLimits {
  std::size_t max_request_line = 8 * 1024;   // 414 beyond
  std::size_t max_header_field = 8 * 1024;   // one "name: value" line, 431 beyond
  std::size_t max_header_count = 100;        // 431 beyond (trailers count too)
  std::size_t max_header_block = 64 * 1024;  // request line + all header lines, 431 beyond
  std::size_t max_body = 1024 * 1024;        // 413 beyond (checked against Content-Length first)
  std::size_t max_chunk_line = 4 * 1024;     // chunk-size line with extensions, 400 beyond
};

using keel::HeaderField;

enum class ParseStatus { kIncomplete, kComplete, kError };

// Everything the parser learned about one request. Views point into the caller's buffer and are
// valid until the buffer moves or the parser is reset.
struct ParsedRequest {
  std::string_view method;
  std::string_view target;      // as sent
  std::string_view path;        // raw (still percent-encoded) path; for absolute-form, the path part
  std::string_view query;       // after '?', without it; empty when absent
  std::string_view host;        // Host header, or the authority of an absolute-form target
  int version_major = 1;        // 2: an HTTP/2 stream (http2/), which fills these fields itself
  int version_minor = 1;        // HTTP/1.<minor>; only 0 and 1 are accepted (0 for HTTP/2)
  std::uint32_t stream_id = 0;  // HTTP/2 stream id; 0 over HTTP/1
  bool keep_alive = true;       // after applying version default and Connection tokens
  bool expect_continue = false;
  bool chunked = false;
  bool has_content_length = false;
  std::uint64_t content_length = 0;
  std::vector<HeaderField> headers;   // in arrival order, trailers not included
  std::vector<HeaderField> trailers;  // chunked trailer fields
  std::string_view body;              // decoded body

  // Case-insensitive lookup of the first field with this name.
  [[nodiscard]] const HeaderField* find(std::string_view name) const noexcept;
};

class RequestParser {
 public:
  explicit RequestParser(const ParserLimits& limits = {}) : limits_(limits) {}

  // Parses the request starting at data[0]; len is everything received so far for it.
  // kIncomplete: call again with more bytes. kComplete: request() is ready and consumed() tells
  // how many bytes of data belong to this request. kError: error_status()/error_reason() say why;
  // the connection must answer and close (the framing can no longer be trusted).
  ParseStatus parse(char* data, std::size_t len);

  // True once the request line and header block are complete (the body may still be missing):
  // the connection uses it to answer "Expect: 100-continue".
  [[nodiscard]] bool head_complete() const noexcept { return phase_ > Phase::kHeaders; }
  [[nodiscard]] const ParsedRequest& request() const noexcept { return req_; }
  [[nodiscard]] std::size_t consumed() const noexcept { return pos_; }
  [[nodiscard]] int error_status() const noexcept { return error_status_; }
  [[nodiscard]] std::string_view error_reason() const noexcept { return error_reason_; }
  // The error is a request line whose version field is not HTTP at all ("PREFACE"): the peer may
  // be an HTTP/2 client with a broken connection preface, to which HTTP/1 has nothing to say.
  [[nodiscard]] bool not_http1() const noexcept { return not_http1_; }
  // Total size of this request in bytes when Content-Length framing makes it known before the
  // body arrives (the connection grows its buffer to it once); else 0.
  [[nodiscard]] std::size_t expected_size() const noexcept;

  // Prepares for the next request on the same connection; keeps vector capacity.
  void reset() noexcept;

  [[nodiscard]] const ParserLimits& limits() const noexcept { return limits_; }
  void set_limits(const ParserLimits& limits) noexcept { limits_ = limits; }

 private:
  enum class Phase : std::uint8_t {
    kRequestLine,
    kHeaders,
    kBody,
    kChunkSize,
    kChunkData,
    kChunkDataEnd,
    kTrailers,
    kDone
  };
  struct Span {
    std::uint32_t off = 0, len = 0;
  };
  struct FieldSpan {
    Span name, value;
  };

  ParseStatus fail(int status, std::string_view reason) noexcept;
  ParseStatus parse_request_line(const char* base, std::size_t line_end);
  ParseStatus parse_field_line(const char* base, std::size_t line_start, std::size_t line_end,
                               std::vector<FieldSpan>& out);
  ParseStatus finish_head(const char* base);
  ParseStatus parse_chunk_size(const char* base, std::size_t line_end);
  void materialize(const char* base);

  ParserLimits limits_;
  Phase phase_ = Phase::kRequestLine;
  std::size_t pos_ = 0;           // next unparsed byte
  std::size_t head_start_ = 0;    // first byte of the request line (after skipped empty lines)
  std::size_t body_start_ = 0;    // first body byte
  std::size_t body_len_ = 0;      // decoded body bytes so far (at body_start_)
  std::uint64_t chunk_left_ = 0;  // bytes left in the current chunk
  std::size_t field_count_ = 0;
  std::size_t trailer_start_ = 0;  // first byte of the trailer section
  int empty_lines_ = 0;            // CRLFs skipped before the request line
  bool path_is_root_ = false;      // absolute-form target with an empty path means "/"
  const char* base_ = nullptr;     // buffer the views in req_ were made from
  Span method_, target_, path_, query_, host_;
  std::vector<FieldSpan> fields_;
  std::vector<FieldSpan> trailer_fields_;
  ParsedRequest req_;
  int error_status_ = 0;
  bool not_http1_ = false;
  std::string_view error_reason_;
};

}  // namespace keel::http
