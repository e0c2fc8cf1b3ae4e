// What a trusted proxy says about the request it forwards: X-Forwarded-For / -Proto / -Host /
// -Port and RFC 7239 Forwarded. Only ever consulted for a peer in --forwarded-allow-ips (the
// connection decides that once); these functions read header values, never trust them blindly:
// a malformed value changes nothing (the peer, the connection's scheme and the Host header stay).
//
// The rules (docs/proxies.md):
// - X-Forwarded-* win: when any X-Forwarded-For/-Proto/-Host/-Port field is present, Forwarded
//   is ignored; Forwarded is read only when none is (nearly every proxy manages X-Forwarded-* and
//   passes a client's Forwarded through untouched).
// - The client is found from the right: hops whose address is trusted are skipped, the first one
//   that is not is the client (the rightmost untrusted address); when every hop is trusted, the
//   leftmost. A hop that is not an address (garbage, "unknown", an obfuscated "_name") ends the
//   walk without naming a client: the peer stays the client address.
// - Scheme, host and port come from the same hop: X-Forwarded-Proto/-Host/-Port lists are read at
//   the position of the client's hop counted from the right (clamped to the leftmost entry, for
//   proxies that overwrite instead of appending); a Forwarded element carries its own.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "keel/request.hpp"
#include "net/ip.hpp"

namespace keel::http {

// A comma-separated list gathered over a field's lines, keeping its last kCapacity elements (a
// walk from the right needs no more; a longer chain of trusted hops ends the walk unnamed).
class HopList {
 public:
  static constexpr std::size_t kCapacity = 32;
  void push(std::string_view element) noexcept {
    items_[total_ % kCapacity] = element;
    ++total_;
  }
  void clear() noexcept { total_ = 0; }
  [[nodiscard]] std::size_t size() const noexcept { return total_ < kCapacity ? total_ : kCapacity; }
  [[nodiscard]] bool truncated() const noexcept { return total_ > kCapacity; }
  // i = 0: the rightmost element.
  [[nodiscard]] std::string_view from_right(std::size_t i) const noexcept {
    return items_[(total_ - 1 - i) % kCapacity];
  }

 private:
  std::array<std::string_view, kCapacity> items_{};
  std::size_t total_ = 0;
};

// Splits one X-Forwarded-* line at commas (empty elements are skipped) onto list.
void split_plain_list(std::string_view line, HopList& list);
// Splits one Forwarded line into its elements at the commas outside quoted strings.
void split_forwarded(std::string_view line, HopList& list);

// One forwarded-element (RFC 7239 §4) with the parameters keel reads; values unquoted.
struct ForwardedElement {
  std::string_view for_node;  // "192.0.2.1", "[2001:db8::1]:4711", "unknown", "_hidden"
  std::string_view proto;
  std::string_view host;
  bool has_for = false;
};
// nullopt: not a valid element (a pair without '=', a name or token with other characters, an
// unterminated quote, a parameter given twice, an escaped character in for/proto/host).
std::optional<ForwardedElement> parse_forwarded_element(std::string_view element) noexcept;

// A host as X-Forwarded-Host / Forwarded host= may carry it: reg-name, IPv4 or [IPv6], with an
// optional :port. No spaces, slashes, '@' or control characters; at most 255 bytes.
bool valid_forwarded_host(std::string_view host) noexcept;

// What the proxy headers established. Each part is set only when a valid value said so.
struct ForwardedInfo {
  std::optional<net::HostPort> client;  // the client's address (and port, when given)
  std::string_view scheme;              // "http" or "https" (static text), or empty
  std::string_view host;                // a valid host[:port] (a view into a header), or empty
  int port = 0;                         // X-Forwarded-Port, or 0
};

// Reads the proxy headers of a request from a trusted peer.
ForwardedInfo resolve_forwarded(const std::vector<HeaderField>& headers, const net::AddressSet& trusted);

// The host a request names after a forwarded port: `host` with its port replaced by `port`, or
// dropped when `port` is the scheme's default (80 for http, 443 for https).
std::string host_with_port(std::string_view host, int port, std::string_view scheme);

}  // namespace keel::http
