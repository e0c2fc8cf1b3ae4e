// libFuzzer target for keel::trace (W3C Trace Context: traceparent, tracestate, X-Request-ID).
//
// Each input is used three ways:
//  1. the whole input as a traceparent value: the result must equal an independent reference parser
//     (split at '-', field by field); a parsed value has non-zero ids and only the known flag bits,
//     formats to 55 characters of version 00 that re-parse to the same value and format again to
//     the same string (parse -> format -> parse round trip), with the input's own id digits;
//  2. the input split at '\n' as the field values of several tracestate headers: the result must
//     equal an independent reference parser and the parse of the comma-joined fields (a duplicated
//     key keeps its left-most member); it has at most 32 valid members with unique keys;
//     format -> parse gives the same members, and format again
//     the same string; update_tracestate() puts our member first, keeps the others in order and at
//     most 32 members, and its output re-parses;
//  3. the whole input as an X-Request-ID: valid_request_id() must agree with the definition.
// Any violation calls __builtin_trap() so libFuzzer records the input as a crash.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.hpp"
#include "trace/context.hpp"

namespace {

using keel::trace::TraceParent;
using keel::trace::TraceState;
using keel::trace::TraceStateMember;

constexpr std::string_view kLowerHex = "0123456789abcdef";

std::string_view trim_sp_htab(std::string_view s) {
  const std::size_t first = s.find_first_not_of(" \t");
  if (first == std::string_view::npos) return {};
  const std::size_t last = s.find_last_not_of(" \t");
  return s.substr(first, last - first + 1);
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  while (true) {
    const std::size_t at = s.find(sep);
    out.push_back(s.substr(0, at));
    if (at == std::string_view::npos) return out;
    s.remove_prefix(at + 1);
  }
}

// Reference decoding of a lowercase hex field into bytes; false on any other character.
template <std::size_t N>
bool ref_hex(std::string_view text, std::array<std::uint8_t, N>& out) {
  if (text.size() != 2 * N) return false;
  for (std::size_t i = 0; i < N; ++i) {
    const std::size_t hi = kLowerHex.find(text[2 * i]);
    const std::size_t lo = kLowerHex.find(text[2 * i + 1]);
    if (hi == std::string_view::npos || lo == std::string_view::npos) return false;
    out[i] = static_cast<std::uint8_t>(hi * 16 + lo);
  }
  return true;
}

// Reference traceparent parser: the value split into its '-'-separated fields.
std::optional<TraceParent> ref_parse_traceparent(std::string_view value) {
  const std::vector<std::string_view> parts = split(trim_sp_htab(value), '-');
  if (parts.size() < 4) return std::nullopt;
  std::array<std::uint8_t, 1> version{};
  if (!ref_hex(parts[0], version) || version[0] == 0xff) return std::nullopt;
  if (version[0] == 0 && parts.size() != 4) return std::nullopt;  // later fields: only future versions
  TraceParent tp;
  std::array<std::uint8_t, 1> flags{};
  if (!ref_hex(parts[1], tp.trace_id) || !ref_hex(parts[2], tp.parent_id) || !ref_hex(parts[3], flags))
    return std::nullopt;
  if (tp.trace_id == keel::trace::TraceIdBytes{} || tp.parent_id == keel::trace::SpanIdBytes{}) return std::nullopt;
  tp.flags = static_cast<std::uint8_t>(flags[0] & 0x03);
  return tp;
}

bool ref_valid_key(std::string_view key) {
  constexpr std::string_view first = "abcdefghijklmnopqrstuvwxyz0123456789";
  constexpr std::string_view rest = "abcdefghijklmnopqrstuvwxyz0123456789_-*/@";
  return !key.empty() && key.size() <= 256 && first.find(key[0]) != std::string_view::npos &&
         key.find_first_not_of(rest) == std::string_view::npos;
}

bool ref_valid_value(std::string_view value) {
  if (value.empty() || value.size() > 256 || value.back() == ' ') return false;
  for (const char ch : value) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c > 0x7e || ch == ',' || ch == '=') return false;
  }
  return true;
}

// Reference tracestate parser: comma-join the fields, split, validate; any problem discards all.
TraceState ref_parse_tracestate(const std::vector<std::string_view>& fields) {
  std::string joined;
  for (std::size_t i = 0; i < fields.size(); ++i) {
    if (i > 0) joined += ',';
    joined += fields[i];
  }
  TraceState out;
  std::set<std::string_view> keys;
  for (const std::string_view raw : split(joined, ',')) {
    const std::string_view member = trim_sp_htab(raw);
    if (member.empty()) continue;
    const std::size_t eq = member.find('=');
    if (eq == std::string_view::npos) return {};
    const std::string_view key = member.substr(0, eq);
    const std::string_view value = member.substr(eq + 1);
    if (!ref_valid_key(key) || !ref_valid_value(value)) return {};
    if (!keys.insert(key).second) continue;  // a duplicated key: the left-most member stays
    out.push_back({std::string(key), std::string(value)});
  }
  if (out.size() > 32) return {};
  return out;
}

void check_traceparent(std::string_view input) {
  const std::optional<TraceParent> tp = keel::trace::parse_traceparent(input);
  FUZZ_CHECK(tp == ref_parse_traceparent(input));
  if (!tp) return;
  FUZZ_CHECK(tp->trace_id != keel::trace::TraceIdBytes{});
  FUZZ_CHECK(tp->parent_id != keel::trace::SpanIdBytes{});
  FUZZ_CHECK((tp->flags & ~keel::trace::kKnownFlags) == 0);
  const std::string formatted = keel::trace::format_traceparent(*tp);
  FUZZ_CHECK(formatted.size() == keel::trace::kTraceParentSize);
  FUZZ_CHECK(formatted.compare(0, 3, "00-") == 0);
  FUZZ_CHECK(formatted.find_first_not_of("0123456789abcdef-") == std::string::npos);
  // The ids are the input's own digits.
  const std::string_view trimmed = trim_sp_htab(input);
  FUZZ_CHECK(trimmed.substr(2, 51) == std::string_view(formatted).substr(2, 51));
  const std::optional<TraceParent> again = keel::trace::parse_traceparent(formatted);
  FUZZ_CHECK(again.has_value() && *again == *tp);
  FUZZ_CHECK(keel::trace::format_traceparent(*again) == formatted);
}

void check_tracestate(std::string_view input) {
  const std::vector<std::string_view> fields = split(input, '\n');
  const TraceState ts = keel::trace::parse_tracestate(std::span<const std::string_view>(fields));
  FUZZ_CHECK(ts == ref_parse_tracestate(fields));
  FUZZ_CHECK(ts.size() <= keel::trace::kMaxTraceStateMembers);
  std::set<std::string_view> keys;
  for (const TraceStateMember& m : ts) {
    FUZZ_CHECK(keel::trace::valid_tracestate_key(m.key));
    FUZZ_CHECK(keel::trace::valid_tracestate_value(m.value));
    FUZZ_CHECK(keys.insert(m.key).second);
  }
  if (fields.size() > 1) {  // combining the fields is joining them with commas
    std::string joined;
    for (std::size_t i = 0; i < fields.size(); ++i) {
      if (i > 0) joined += ',';
      joined += fields[i];
    }
    FUZZ_CHECK(keel::trace::parse_tracestate(std::string_view(joined)) == ts);
  }
  const std::string formatted = keel::trace::format_tracestate(ts);
  const TraceState again = keel::trace::parse_tracestate(std::string_view(formatted));
  FUZZ_CHECK(again == ts);
  FUZZ_CHECK(keel::trace::format_tracestate(again) == formatted);

  // Our own entry first: the others keep their order, at most 32 in all.
  TraceState updated = ts;
  FUZZ_CHECK(keel::trace::update_tracestate(updated, "keel", "00f067aa0ba902b7"));
  FUZZ_CHECK(!updated.empty() && updated.size() <= keel::trace::kMaxTraceStateMembers);
  FUZZ_CHECK(updated.front() == (TraceStateMember{"keel", "00f067aa0ba902b7"}));
  TraceState others;
  for (const TraceStateMember& m : ts)
    if (m.key != "keel" && others.size() < keel::trace::kMaxTraceStateMembers - 1) others.push_back(m);
  FUZZ_CHECK(TraceState(updated.begin() + 1, updated.end()) == others);
  FUZZ_CHECK(keel::trace::parse_tracestate(std::string_view(keel::trace::format_tracestate(updated))) == updated);
  // An invalid member is refused without touching the list.
  TraceState unchanged = ts;
  FUZZ_CHECK(!keel::trace::update_tracestate(unchanged, "Keel", "1") && unchanged == ts);
}

void check_request_id(std::string_view input) {
  const bool expected = !input.empty() && input.size() <= 128 && std::all_of(input.begin(), input.end(), [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return c >= 0x21 && c <= 0x7e;
  });
  FUZZ_CHECK(keel::trace::valid_request_id(input) == expected);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  check_traceparent(input);
  check_tracestate(input);
  check_request_id(input);
  return 0;
}
