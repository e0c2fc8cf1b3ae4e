#include "net/proxy_protocol.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <charconv>
#include <cstdint>
#include <cstring>

#include "net/ip.hpp"

namespace keel::net {
namespace {

constexpr std::string_view kV2Signature{"\r\n\r\n\0\r\nQUIT\n", 12};
constexpr std::string_view kV1Prefix{"PROXY "};

ProxyHeader invalid(int version, std::string_view why) {
  ProxyHeader h;
  h.status = ProxyHeader::Status::kInvalid;
  h.version = version;
  h.error = why;
  return h;
}

// True when data is a prefix of what, or what a prefix of data.
bool starts_compatibly(std::string_view data, std::string_view what) noexcept {
  const std::size_t n = std::min(data.size(), what.size());
  return data.substr(0, n) == what.substr(0, n);
}

// A decimal port of 1-5 digits (0-65535); -1 otherwise.
int v1_port(std::string_view digits) noexcept {
  if (digits.empty() || digits.size() > 5) return -1;
  int n = 0;
  const auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
  if (ec != std::errc() || p != digits.data() + digits.size() || n > 65535) return -1;
  return n;
}

ProxyHeader parse_v1(std::string_view data) {
  const std::size_t end = data.substr(0, kProxyV1MaxLength).find("\r\n");
  if (end == std::string_view::npos) {
    if (data.size() >= kProxyV1MaxLength) return invalid(1, "v1 line longer than 107 bytes");
    // A lone CR or a control character can already be judged.
    for (std::size_t i = 0; i < data.size(); ++i) {
      const char c = data[i];
      if (c == '\r' && i + 1 < data.size()) return invalid(1, "v1 line with a bare CR");
      if (c != '\r' && (c < 0x20 || c > 0x7e)) return invalid(1, "v1 line with a control character");
    }
    return {};
  }
  const std::string_view line = data.substr(kV1Prefix.size(), end - kV1Prefix.size());
  for (char c : line)
    if (c < 0x20 || c > 0x7e) return invalid(1, "v1 line with a control character");
  ProxyHeader h;
  h.version = 1;
  h.length = end + 2;
  // "UNKNOWN" and anything after it up to the CRLF: the receiver keeps the real peer.
  if (line == "UNKNOWN" || line.rfind("UNKNOWN ", 0) == 0) {
    h.status = ProxyHeader::Status::kDone;
    return h;
  }
  // TCP4|TCP6 SP src SP dst SP sport SP dport, single spaces.
  std::string_view fields[5];
  std::size_t count = 0;
  for (std::size_t pos = 0;;) {
    if (count == 5) return invalid(1, "v1 line with extra fields");
    const auto sp = line.find(' ', pos);
    fields[count++] = line.substr(pos, sp == std::string_view::npos ? std::string_view::npos : sp - pos);
    if (sp == std::string_view::npos) break;
    pos = sp + 1;
  }
  if (count != 5) return invalid(1, "v1 line with missing fields");
  const bool tcp4 = fields[0] == "TCP4";
  if (!tcp4 && fields[0] != "TCP6") return invalid(1, "v1 protocol is not TCP4, TCP6 or UNKNOWN");
  // inet_pton's strict forms of the family named; an IPv4-mapped address counts as IPv6.
  const auto family_ok = [tcp4](std::string_view text) {
    if (text.empty()) return false;
    const bool has_colon = text.find(':') != std::string_view::npos;
    return parse_ip(text).has_value() && has_colon != tcp4;
  };
  if (!family_ok(fields[1]) || !family_ok(fields[2])) return invalid(1, "v1 address does not match its family");
  const int sport = v1_port(fields[3]);
  if (sport < 0 || v1_port(fields[4]) < 0) return invalid(1, "v1 port is not 0-65535");
  h.source = format_ip_port(*parse_ip(fields[1]), sport);
  if (sport == 0) h.source += ":0";
  h.status = ProxyHeader::Status::kDone;
  return h;
}

ProxyHeader parse_v2(std::string_view data) {
  if (data.size() < 16) return {};
  const auto* b = reinterpret_cast<const std::uint8_t*>(data.data());
  const int version = b[12] >> 4;
  const int command = b[12] & 0x0f;
  if (version != 2) return invalid(2, "v2 version nibble is not 2");
  if (command > 1) return invalid(2, "v2 command is neither LOCAL nor PROXY");
  const int family = b[13] >> 4;
  const int transport = b[13] & 0x0f;
  if (family > 3 || transport > 2) return invalid(2, "v2 unknown address family or transport");
  const std::size_t len = (static_cast<std::size_t>(b[14]) << 8) | b[15];
  ProxyHeader h;
  h.version = 2;
  h.length = 16 + len;
  if (command == 0 || family == 0 || family == 3) {  // LOCAL, UNSPEC, unix: the real peer stays
    h.status = ProxyHeader::Status::kDone;
    return h;
  }
  const std::size_t need = family == 1 ? 12 : 36;
  if (len < need) return invalid(2, "v2 address block shorter than its family needs");
  if (data.size() < 16 + need) return {};
  const std::uint8_t* a = b + 16;
  IpAddress ip;
  int port = 0;
  if (family == 1) {
    ip.v4 = true;
    std::memcpy(ip.bytes.data(), a, 4);
    port = (a[8] << 8) | a[9];
  } else {
    char text[INET6_ADDRSTRLEN] = {};
    ::inet_ntop(AF_INET6, a, text, sizeof text);
    ip = *parse_ip(text);  // maps ::ffff:a.b.c.d to IPv4, as a dual-stack socket's peer would be
    port = (a[32] << 8) | a[33];
  }
  h.source = format_ip_port(ip, port);
  if (port == 0) h.source += ":0";
  h.status = ProxyHeader::Status::kDone;
  return h;
}

}  // namespace

ProxyHeader parse_proxy_header(std::string_view data) {
  if (data.empty()) return {};
  if (starts_compatibly(data, kV2Signature)) {
    if (data.size() < kV2Signature.size()) return {};
    return parse_v2(data);
  }
  if (starts_compatibly(data, kV1Prefix)) {
    if (data.size() < kV1Prefix.size()) return {};
    return parse_v1(data);
  }
  return invalid(0, "no PROXY protocol header");
}

}  // namespace keel::net
