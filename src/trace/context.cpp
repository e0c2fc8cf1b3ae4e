#include "trace/context.hpp"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <random>
#include <utility>

namespace keel::trace {
namespace {

bool all_zero(std::span<const std::uint8_t> bytes) {
  return std::all_of(bytes.begin(), bytes.end(), [](std::uint8_t b) { return b == 0; });
}

// ---- random ids -----------------------------------------------------------------------------

// Bumped in the child by fork(): a thread whose generator was seeded under an older generation
// re-seeds. (Cheaper than comparing getpid(), a ~100 ns system call with glibc 2.36, on every id;
// pthread_atfork handlers run for every fork() made through libc.)
std::atomic<std::uint64_t> g_fork_generation{1};

std::uint64_t fork_generation() {
  static const bool registered = [] {
    ::pthread_atfork(nullptr, nullptr, [] { g_fork_generation.fetch_add(1, std::memory_order_relaxed); });
    return true;
  }();
  static_cast<void>(registered);
  return g_fork_generation.load(std::memory_order_relaxed);
}

// xoshiro256++ (Blackman and Vigna): fast, 256 bits of state, uniform 64-bit outputs.
class Xoshiro256pp {
 public:
  void seed() {
    std::random_device rd;
    do {
      for (std::uint64_t& word : s_) word = static_cast<std::uint64_t>(rd()) << 32 ^ static_cast<std::uint64_t>(rd());
    } while (s_[0] == 0 && s_[1] == 0 && s_[2] == 0 && s_[3] == 0);
  }

  std::uint64_t next() {
    const std::uint64_t result = rotl(s_[0] + s_[3], 23) + s_[0];
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) { return x << k | x >> (64 - k); }
  std::uint64_t s_[4] = {};
};

struct ThreadRng {
  Xoshiro256pp rng;
  std::uint64_t generation = 0;  // g_fork_generation starts at 1: the first use seeds
};

Xoshiro256pp& thread_rng() {
  thread_local ThreadRng state;
  const std::uint64_t generation = fork_generation();
  if (state.generation != generation) {
    state.rng.seed();
    state.generation = generation;
  }
  return state.rng;
}

// Fills `out` with random bytes, drawing again while they are all zero.
void fill_nonzero(std::span<std::uint8_t> out) {
  Xoshiro256pp& rng = thread_rng();
  do {
    for (std::size_t i = 0; i < out.size(); i += 8) {
      const std::uint64_t word = rng.next();
      std::memcpy(out.data() + i, &word, std::min<std::size_t>(8, out.size() - i));
    }
  } while (all_zero(out));
}

}  // namespace

// ---- traceparent ----------------------------------------------------------------------------

std::optional<TraceParent> parse_traceparent(std::span<const std::string_view> header_values) {
  if (header_values.size() != 1) return std::nullopt;  // none, or several fields: no parent
  return parse_traceparent(header_values.front());
}

std::optional<TraceParent> parse_traceparent(std::string_view value) {
  const std::string_view s = base::trim(value);
  // Layout (every version): vv-<32>-<16>-ff at offsets 0, 2, 3, 35, 36, 52, 53, 55.
  if (s.size() < kTraceParentSize) return std::nullopt;
  const int v_hi = base::lower_hex_value(s[0]);
  const int v_lo = base::lower_hex_value(s[1]);
  if (v_hi < 0 || v_lo < 0 || s[2] != '-') return std::nullopt;
  const int version = v_hi << 4 | v_lo;
  if (version == 0xff) return std::nullopt;
  if (version == 0x00) {
    if (s.size() != kTraceParentSize) return std::nullopt;
  } else if (s.size() > kTraceParentSize && s[kTraceParentSize] != '-') {
    return std::nullopt;  // a higher version: its flags must end the value or be followed by a dash
  }
  if (s[35] != '-' || s[52] != '-') return std::nullopt;
  TraceParent tp;
  std::uint8_t flags[1];
  if (!base::decode_lower_hex(s.substr(3, 32), tp.trace_id) ||
      !base::decode_lower_hex(s.substr(36, 16), tp.parent_id) || !base::decode_lower_hex(s.substr(53, 2), flags))
    return std::nullopt;
  if (all_zero(tp.trace_id) || all_zero(tp.parent_id)) return std::nullopt;
  tp.flags = flags[0] & kKnownFlags;
  return tp;
}

std::string format_traceparent(const TraceParent& tp) {
  std::string out;
  out.reserve(kTraceParentSize);
  out += "00-";
  base::append_hex(out, tp.trace_id);
  out.push_back('-');
  base::append_hex(out, tp.parent_id);
  out.push_back('-');
  const std::uint8_t flags[1] = {static_cast<std::uint8_t>(tp.flags & kKnownFlags)};
  base::append_hex(out, flags);
  return out;
}

// ---- tracestate -----------------------------------------------------------------------------

bool valid_tracestate_key(std::string_view key) {
  if (key.empty() || key.size() > kMaxTraceStateKey) return false;
  const auto lc_or_digit = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!lc_or_digit(key[0])) return false;
  return std::all_of(key.begin() + 1, key.end(), [&](char c) {
    return lc_or_digit(c) || c == '_' || c == '-' || c == '*' || c == '/' || c == '@';
  });
}

bool valid_tracestate_value(std::string_view value) {
  if (value.empty() || value.size() > kMaxTraceStateValue || value.back() == ' ') return false;
  return std::all_of(value.begin(), value.end(), [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return c >= 0x20 && c <= 0x7e && c != ',' && c != '=';
  });
}

TraceState parse_tracestate(std::span<const std::string_view> header_values) {
  TraceState out;
  // Splitting each field at its commas is the same as splitting the comma-joined fields.
  for (const std::string_view field : header_values) {
    std::size_t pos = 0;
    while (true) {
      const std::size_t comma = field.find(',', pos);
      const std::string_view member =
          base::trim(field.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos));
      if (!member.empty()) {
        const std::size_t eq = member.find('=');
        if (eq == std::string_view::npos) return {};
        const std::string_view key = member.substr(0, eq);
        const std::string_view value = member.substr(eq + 1);
        if (!valid_tracestate_key(key) || !valid_tracestate_value(value)) return {};
        // A key seen before: the left-most member (the most recent vendor's) stays, this one goes.
        if (std::none_of(out.begin(), out.end(), [&](const TraceStateMember& m) { return m.key == key; })) {
          if (out.size() == kMaxTraceStateMembers) return {};
          out.push_back({std::string(key), std::string(value)});
        }
      }
      if (comma == std::string_view::npos) break;
      pos = comma + 1;
    }
  }
  return out;
}

TraceState parse_tracestate(std::string_view header_value) {
  return parse_tracestate(std::span<const std::string_view>(&header_value, 1));
}

std::string format_tracestate(const TraceState& members) {
  std::size_t size = 0;
  for (const TraceStateMember& m : members) size += m.key.size() + 1 + m.value.size() + 1;
  std::string out;
  out.reserve(size);
  for (const TraceStateMember& m : members) {
    if (!out.empty()) out.push_back(',');
    out += m.key;
    out.push_back('=');
    out += m.value;
  }
  return out;
}

bool update_tracestate(TraceState& list, std::string_view key, std::string_view value) {
  if (!valid_tracestate_key(key) || !valid_tracestate_value(value)) return false;
  TraceState out;
  out.reserve(std::min(list.size() + 1, kMaxTraceStateMembers));
  out.push_back({std::string(key), std::string(value)});
  for (TraceStateMember& m : list) {
    if (out.size() == kMaxTraceStateMembers) break;  // the right-most members go
    if (m.key != key) out.push_back(std::move(m));
  }
  list = std::move(out);
  return true;
}

// ---- ids ------------------------------------------------------------------------------------

TraceIdBytes new_trace_id() {
  TraceIdBytes id;
  fill_nonzero(id);
  return id;
}

SpanIdBytes new_span_id() {
  SpanIdBytes id;
  fill_nonzero(id);
  return id;
}

TraceParent new_root(bool sampled) {
  TraceParent tp;
  tp.trace_id = new_trace_id();
  tp.parent_id = new_span_id();
  tp.flags = static_cast<std::uint8_t>(kFlagRandom | (sampled ? kFlagSampled : 0));
  return tp;
}

bool valid_request_id(std::string_view id) {
  if (id.empty() || id.size() > kMaxRequestId) return false;
  return std::all_of(id.begin(), id.end(), [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return c >= 0x21 && c <= 0x7e;
  });
}

std::string new_request_id() {
  return to_hex(new_trace_id());
}

bool from_hex(std::string_view hex, std::uint8_t* out, std::size_t n) noexcept {
  return hex.size() == n * 2 && base::decode_lower_hex(hex, {out, n});
}

}  // namespace keel::trace
