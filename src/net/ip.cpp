#include "net/ip.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <charconv>
#include <cstring>
#include <stdexcept>

namespace keel::net {
namespace {

constexpr std::array<std::uint8_t, 12> kV4MappedPrefix{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

// A decimal port 0-65535 of 1-5 digits; -1 otherwise.
int parse_port(std::string_view digits) noexcept {
  if (digits.empty() || digits.size() > 5) return -1;
  int n = 0;
  const auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
  if (ec != std::errc() || p != digits.data() + digits.size() || n > 65535) return -1;
  return n;
}

}  // namespace

std::string IpAddress::to_string() const {
  char buf[INET6_ADDRSTRLEN] = {};
  ::inet_ntop(v4 ? AF_INET : AF_INET6, bytes.data(), buf, sizeof buf);
  return buf;
}

std::optional<IpAddress> parse_ip(std::string_view text) noexcept {
  char buf[INET6_ADDRSTRLEN + 1];
  if (text.empty() || text.size() >= sizeof buf) return std::nullopt;
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  IpAddress ip;
  if (text.find(':') == std::string_view::npos) {
    if (::inet_pton(AF_INET, buf, ip.bytes.data()) != 1) return std::nullopt;
    ip.v4 = true;
    return ip;
  }
  if (::inet_pton(AF_INET6, buf, ip.bytes.data()) != 1) return std::nullopt;
  if (std::memcmp(ip.bytes.data(), kV4MappedPrefix.data(), kV4MappedPrefix.size()) == 0) {
    std::memmove(ip.bytes.data(), ip.bytes.data() + 12, 4);
    std::memset(ip.bytes.data() + 4, 0, 12);
    ip.v4 = true;
  }
  return ip;
}

std::optional<HostPort> parse_ip_port(std::string_view text) noexcept {
  HostPort out;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    const std::string_view inside = text.substr(1, close - 1);
    if (inside.find(':') == std::string_view::npos) return std::nullopt;  // [192.0.2.1] is not a form
    const auto ip = parse_ip(inside);
    if (!ip) return std::nullopt;
    out.ip = *ip;
    const std::string_view rest = text.substr(close + 1);
    if (rest.empty()) return out;
    if (rest.front() != ':') return std::nullopt;
    const int port = parse_port(rest.substr(1));
    if (port < 0) return std::nullopt;
    out.port = port;
    return out;
  }
  const auto first_colon = text.find(':');
  if (first_colon != std::string_view::npos && text.find(':', first_colon + 1) != std::string_view::npos) {
    const auto ip = parse_ip(text);  // bare IPv6 (or IPv4-mapped): no port
    if (!ip) return std::nullopt;
    out.ip = *ip;
    return out;
  }
  const auto ip = parse_ip(text.substr(0, first_colon));
  if (!ip || !ip->v4) return std::nullopt;
  out.ip = *ip;
  if (first_colon != std::string_view::npos) {
    const int port = parse_port(text.substr(first_colon + 1));
    if (port < 0) return std::nullopt;
    out.port = port;
  }
  return out;
}

std::optional<IpAddress> peer_ip(std::string_view peer) noexcept {
  if (peer.rfind("unix", 0) == 0) return std::nullopt;
  const auto hp = parse_ip_port(peer);
  if (!hp) return std::nullopt;
  return hp->ip;
}

std::string format_ip_port(const IpAddress& ip, int port) {
  std::string out;
  if (ip.v4) {
    out = ip.to_string();
  } else {
    out = "[" + ip.to_string() + "]";
  }
  if (port > 0) {
    out += ':';
    out += std::to_string(port);
  }
  return out;
}

AddressSet AddressSet::parse(const std::vector<std::string>& items) {
  AddressSet set;
  for (const std::string& raw : items) {
    std::string_view item = raw;
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    if (item == "*") {
      set.any_ = true;
      continue;
    }
    const auto slash = item.find('/');
    const auto ip = parse_ip(item.substr(0, slash));
    if (!ip) throw std::invalid_argument("'" + raw + "' is not an IP address, a CIDR block or *");
    Network n;
    n.base = *ip;
    const int width = ip->v4 ? 32 : 128;
    n.prefix = width;
    if (slash != std::string_view::npos) {
      const std::string_view bits = item.substr(slash + 1);
      int prefix = -1;
      if (!bits.empty() && bits.size() <= 3) {
        const auto [p, ec] = std::from_chars(bits.data(), bits.data() + bits.size(), prefix);
        if (ec != std::errc() || p != bits.data() + bits.size()) prefix = -1;
      }
      // An IPv4-mapped block (::ffff:10.0.0.0/104) is the IPv4 block it maps.
      if (ip->v4 && item.find(':') != std::string_view::npos) prefix -= 96;
      if (prefix < 0 || prefix > width)
        throw std::invalid_argument("'" + raw + "': the prefix length must be 0-" + std::to_string(width));
      n.prefix = prefix;
    }
    for (int bit = n.prefix; bit < width; ++bit)
      n.base.bytes[static_cast<std::size_t>(bit / 8)] &= static_cast<std::uint8_t>(~(0x80U >> (bit % 8)));
    set.networks_.push_back(n);
  }
  return set;
}

std::string AddressSet::check(const std::vector<std::string>& items) {
  try {
    (void)parse(items);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return {};
}

bool AddressSet::contains(const IpAddress& ip) const noexcept {
  if (any_) return true;
  for (const Network& n : networks_) {
    if (n.base.v4 != ip.v4) continue;
    const int whole = n.prefix / 8;
    if (std::memcmp(n.base.bytes.data(), ip.bytes.data(), static_cast<std::size_t>(whole)) != 0) continue;
    const int rest = n.prefix % 8;
    if (rest != 0) {
      const auto mask = static_cast<std::uint8_t>(0xff00U >> rest);
      if ((ip.bytes[static_cast<std::size_t>(whole)] & mask) != n.base.bytes[static_cast<std::size_t>(whole)]) continue;
    }
    return true;
  }
  return false;
}

}  // namespace keel::net
