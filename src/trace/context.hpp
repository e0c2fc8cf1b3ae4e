// W3C Trace Context Level 2 (https://www.w3.org/TR/trace-context-2/): parsing and formatting of the
// traceparent and tracestate request headers, trace/span id generation, and X-Request-ID
// validation and generation.
//
// traceparent (Level 2 section 3.2):
//   - version 00: exactly 55 characters, `00-<32 HEXDIGLC>-<16 HEXDIGLC>-<2 HEXDIGLC>`; anything
//     after the flags (even a `-`) makes it invalid.
//   - every hex digit must be lowercase (the grammar is HEXDIGLC): uppercase anywhere is invalid.
//   - an all-zero trace-id or parent-id is invalid; version ff is invalid.
//   - a higher version (01..fe) is parsed with the version 00 layout ("Versioning of
//     traceparent"): at least 55 characters, and if longer, character 55 must be `-`; whatever
//     follows is an unknown field and is ignored. format_traceparent() downgrades it to 00.
//   - trace-flags: only the bits this level defines are kept, sampled (0x01) and random-trace-id
//     (0x02), both exactly as received (Level 2: an unset random flag MUST stay unset for the same
//     trace-id, a set one says the right-most 7 bytes are random). Other bits are reserved
//     ("vendors MUST set those to zero"): parse clears them, and so does format.
//   - optional whitespace: spaces and tabs before and after the value are ignored (the W3C test
//     suite's "traceparent OWS handling" case; RFC 9110 field values exclude them anyway, and
//     keel's HTTP parser already trims them). Whitespace anywhere inside makes it invalid.
//
// tracestate (Level 2 section 3.3):
//   - several header fields are combined in order as if joined with `,` (RFC 9110 section 5.3).
//   - list members are separated by `,`; spaces and tabs around a member are ignored; empty and
//     whitespace-only members are skipped (and not counted).
//   - key (Level 2 grammar): `( lcalpha / DIGIT ) 0*255( lcalpha / DIGIT / "_" / "-" / "*" / "/" / "@" )`.
//     This is Level 2's grammar, a superset of Level 1's simple-key / multi-tenant-key
//     (`tenant@system`): every Level 1 key is accepted, and so are Level 2 keys such as `1abc`,
//     `a@b@c` or a system part longer than 14 characters.
//   - value: 1 to 256 printable ASCII characters (0x20-0x7E) except `,` and `=`, not ending in a
//     space; leading spaces are part of the value (Level 2: they MUST be preserved).
//   - at most 32 members.
//   - a key that appears more than once (not allowed by the grammar, but what a careless vendor
//     sends): the left-most member with that key is kept, the later ones are dropped, the rest of
//     the tracestate is inherited. The W3C conformance suite (test/test.py, STRICT_LEVEL 2,
//     test_tracestate_duplicated_keys) expects the tracestate "inherited, and the duplicated keys
//     either kept as-is or one of them discarded".
//   - invalid tracestate: a member that breaks the grammar, or more than 32 members (distinct
//     keys), makes parse_tracestate() discard the WHOLE tracestate (return an empty list). The
//     specification leaves it to the vendor ("If the tracestate header cannot be parsed the vendor
//     MAY discard the entire header"); discarding everything is what the W3C suite checks for
//     illegal keys and 33 members. A bad tracestate never affects traceparent.
//   - size: everything valid is kept (at most 32 members of at most 256 + 1 + 256 characters), so
//     the Level 2 "SHOULD propagate at least 512 characters" holds.
//   - the caller MUST NOT parse tracestate when traceparent failed to parse (Level 2 section 3.3).
//
// Ids: new_root()/new_span_id()/new_request_id() use a per-thread xoshiro256++ generator seeded
// from std::random_device (no host/time/pid input, per the privacy section) and re-seeded in the
// child after fork(). Ids are never all zero.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/strings.hpp"
#include "trace/span_data.hpp"

namespace keel::trace {

inline constexpr std::uint8_t kFlagSampled = 0x01;  // trace-flags bit 0
inline constexpr std::uint8_t kFlagRandom = 0x02;   // trace-flags bit 1: random trace-id (Level 2)
inline constexpr std::uint8_t kKnownFlags = kFlagSampled | kFlagRandom;

inline constexpr std::size_t kTraceParentSize = 55;  // version 00
inline constexpr std::size_t kMaxTraceStateMembers = 32;
inline constexpr std::size_t kMaxTraceStateKey = 256;
inline constexpr std::size_t kMaxTraceStateValue = 256;
inline constexpr std::size_t kMaxRequestId = 128;

struct TraceParent {
  TraceIdBytes trace_id{};  // never all zero when it comes from parse_traceparent() or new_root()
  SpanIdBytes parent_id{};  // never all zero, idem
  std::uint8_t flags = 0;   // only kKnownFlags bits after parse_traceparent()

  bool sampled() const { return (flags & kFlagSampled) != 0; }
  bool random() const { return (flags & kFlagRandom) != 0; }
  bool operator==(const TraceParent&) const = default;
};

// The traceparent value (see the rules above); nullopt when invalid (the caller then starts a new
// trace and ignores tracestate).
std::optional<TraceParent> parse_traceparent(std::string_view value);
// Every traceparent field value of the request: exactly one is required. Several traceparent
// fields (even identical ones) are invalid, since a field that is not a list cannot be combined
// (RFC 9110 section 5.3; the W3C suite's test_traceparent_duplicated): nullopt, a new trace.
std::optional<TraceParent> parse_traceparent(std::span<const std::string_view> header_values);

// `00-<trace-id>-<parent-id>-<flags>`, lowercase, always 55 characters; flag bits outside
// kKnownFlags are written as 0.
std::string format_traceparent(const TraceParent& tp);

struct TraceStateMember {
  std::string key;
  std::string value;
  bool operator==(const TraceStateMember&) const = default;
};
// In header order: the left-most member belongs to the system that wrote traceparent.
using TraceState = std::vector<TraceStateMember>;

// The Level 2 key and value grammars (see above).
bool valid_tracestate_key(std::string_view key);
bool valid_tracestate_value(std::string_view value);

// Every tracestate field value of the request, in order. Returns the members (unique keys), or an
// empty list when there are none or the tracestate is invalid (discarded as a whole, see above).
TraceState parse_tracestate(std::span<const std::string_view> header_values);
// The same for one field value.
TraceState parse_tracestate(std::string_view header_value);

// `key=value,key=value` (no optional whitespace). The members are expected to be valid, with unique
// keys (as parse_tracestate() and update_tracestate() make them); they are written as they are.
std::string format_tracestate(const TraceState& members);

// Our own entry: removes any member with `key`, puts `key=value` first and drops members from the
// end (right) while there are more than 32 (Level 2 section 3.5). Returns false and leaves `list`
// unchanged when key or value is invalid.
bool update_tracestate(TraceState& list, std::string_view key, std::string_view value);

// A new trace: random trace-id and parent-id, flags = random-trace-id | (sampled ? sampled : 0).
TraceParent new_root(bool sampled);
// 16 random bytes, never all zero.
TraceIdBytes new_trace_id();
// 8 random bytes, never all zero.
SpanIdBytes new_span_id();

// Lowercase hex, two characters per byte.
using base::to_hex;

// An X-Request-ID we accept from a client: 1 to 128 visible ASCII characters (0x21-0x7E).
bool valid_request_id(std::string_view id);
// 32 lowercase hex characters (128 random bits, from the same generator as the trace ids).
std::string new_request_id();

// The inverse of to_hex for exactly n bytes of lowercase hex; false (out unspecified) otherwise.
bool from_hex(std::string_view hex, std::uint8_t* out, std::size_t n) noexcept;

}  // namespace keel::trace
