#include "base/strings.hpp"

namespace keel::base {
namespace {

// keel::percent_decode and form_decode: an escape that is not '%' and two hex digits stays as
// written, and so does "%00" unless decode_nul.
std::string decode_lenient(std::string_view in, bool plus_is_space, bool decode_nul) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (plus_is_space && in[i] == '+') {
      out += ' ';
      continue;
    }
    if (in[i] == '%' && i + 2 < in.size()) {
      const int hi = hex_value(in[i + 1]);
      const int lo = hex_value(in[i + 2]);
      if (hi >= 0 && lo >= 0 && (decode_nul || (hi | lo) != 0)) {
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
        continue;
      }
    }
    out += in[i];
  }
  return out;
}

}  // namespace
}  // namespace keel::base

namespace keel {

std::string percent_decode(std::string_view text) {
  return base::decode_lenient(text, false, true);
}

}  // namespace keel

namespace keel::base {

std::string to_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = ascii_lower(c);
  return out;
}

char* hex_into(std::span<const std::uint8_t> bytes, char* out) noexcept {
  for (const std::uint8_t b : bytes) {
    *out++ = kHexDigits[b >> 4];
    *out++ = kHexDigits[b & 0x0f];
  }
  return out;
}

void append_hex(std::string& out, std::span<const std::uint8_t> bytes) {
  const std::size_t at = out.size();
  out.resize(at + 2 * bytes.size());
  hex_into(bytes, out.data() + at);
}

std::string to_hex(std::span<const std::uint8_t> bytes) {
  std::string out;
  append_hex(out, bytes);
  return out;
}

bool decode_lower_hex(std::string_view hex, std::span<std::uint8_t> out) noexcept {
  if (hex.size() < 2 * out.size()) return false;
  for (std::size_t i = 0; i < out.size(); ++i) {
    const int hi = lower_hex_value(hex[2 * i]);
    const int lo = lower_hex_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<std::uint8_t>(hi << 4 | lo);
  }
  return true;
}

bool percent_decode_strict(std::string_view in, std::string& out) {
  out.clear();
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size()) return false;
      const int hi = hex_value(in[i + 1]);
      const int lo = hex_value(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      c = static_cast<char>(hi * 16 + lo);
      if (c == '\0') return false;
      i += 2;
    }
    out.push_back(c);
  }
  return true;
}

std::string form_decode(std::string_view in) {
  return decode_lenient(in, true, false);
}

std::string_view client_ip(std::string_view peer) noexcept {
  if (!peer.empty() && peer.front() == '[') {
    const auto close = peer.find(']');
    return peer.substr(1, close == std::string_view::npos ? std::string_view::npos : close - 1);
  }
  const auto colon = peer.rfind(':');
  return colon == std::string_view::npos ? peer : peer.substr(0, colon);
}

}  // namespace keel::base
