// IP addresses and sets of networks: which peers may speak for their clients (--forwarded-allow-ips),
// and the address forms that proxies write (X-Forwarded-For, Forwarded, the PROXY protocol).
// Parsing is strict (inet_pton's forms only, no hex or octal IPv4, no zone ids) and never throws on
// the request path; an IPv4-mapped IPv6 address (::ffff:a.b.c.d, what a dual-stack socket reports
// for an IPv4 peer) is the IPv4 address.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace keel::net {

struct IpAddress {
  bool v4 = false;
  std::array<std::uint8_t, 16> bytes{};  // network order; IPv4 in the first 4

  // "192.0.2.1", "2001:db8::1" (inet_ntop's canonical form).
  [[nodiscard]] std::string to_string() const;
  friend bool operator==(const IpAddress&, const IpAddress&) = default;
};

// A literal IPv4 ("192.0.2.1") or IPv6 ("2001:db8::1", no brackets) address; nullopt otherwise.
std::optional<IpAddress> parse_ip(std::string_view text) noexcept;

// An address with an optional port, as proxies write a hop: "192.0.2.1", "192.0.2.1:8080",
// "[2001:db8::1]", "[2001:db8::1]:8080" and, without brackets, "2001:db8::1" (no port then).
struct HostPort {
  IpAddress ip;
  int port = 0;  // 0: none given
};
std::optional<HostPort> parse_ip_port(std::string_view text) noexcept;

// The peer forms net::format_address prints ("192.0.2.1:5000", "[::1]:5000") -> the address;
// nullopt for a unix socket peer ("unix", "unix:/path") or anything else.
std::optional<IpAddress> peer_ip(std::string_view peer) noexcept;

// "ip:port" / "[v6]:port" like net::format_address, or without a port when port is 0 ("ip", "[v6]").
std::string format_ip_port(const IpAddress& ip, int port);

// A set of networks: "*" (everything), addresses ("127.0.0.1", "::1") and CIDR blocks
// ("10.0.0.0/8", "2001:db8::/32"). IPv4 entries also match IPv4-mapped IPv6 peers.
class AddressSet {
 public:
  AddressSet() = default;
  // Throws std::invalid_argument quoting the first item that is none of those.
  static AddressSet parse(const std::vector<std::string>& items);
  // The error parse() would throw, or empty: for validating a setting.
  static std::string check(const std::vector<std::string>& items);

  [[nodiscard]] bool contains(const IpAddress& ip) const noexcept;
  [[nodiscard]] bool any() const noexcept { return any_; }
  [[nodiscard]] bool empty() const noexcept { return !any_ && networks_.empty(); }

 private:
  struct Network {
    IpAddress base;  // with the host bits cleared
    int prefix = 0;  // bits
  };
  bool any_ = false;
  std::vector<Network> networks_;
};

}  // namespace keel::net
