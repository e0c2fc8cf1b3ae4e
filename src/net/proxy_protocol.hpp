// The HAProxy PROXY protocol (https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt): the
// header a load balancer writes at the start of a connection to say whose connection it is.
// Version 1 is a text line ("PROXY TCP4 192.0.2.1 198.51.100.1 51234 443\r\n", at most 107
// bytes); version 2 a binary block (a 16-byte head, then the addresses and TLVs). Both are read
// here from the bytes received so far, without consuming anything: the caller peeks, parses, and
// then takes exactly `length` bytes off the socket, so whatever follows (a TLS ClientHello, an
// HTTP request) is left for the next reader.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace keel::net {

struct ProxyHeader {
  enum class Status { kIncomplete, kInvalid, kDone };
  Status status = Status::kIncomplete;
  // kDone: the header's size on the wire (version 2: with its TLVs, which may not all have been
  // in the bytes parsed; they are skipped unread).
  std::size_t length = 0;
  // kDone: the client's address as net::format_address prints a peer ("192.0.2.1:51234",
  // "[2001:db8::1]:51234"); empty for LOCAL (the balancer's own health check), UNKNOWN / UNSPEC
  // and unix addresses: the connection's own peer stays.
  std::string source;
  int version = 0;         // 1 or 2, once known
  std::string_view error;  // kInvalid: why, in a few words (static text)
};

// Bytes worth peeking before parsing: version 2's 16-byte head with the largest address block
// (two unix paths); more than version 1's longest line.
inline constexpr std::size_t kProxyHeaderPeek = 16 + 216;
inline constexpr std::size_t kProxyV1MaxLength = 107;

// Parses the start of a connection. kIncomplete: the bytes so far are a valid beginning, more
// are needed (at most kProxyHeaderPeek in all before a verdict). kInvalid: not a PROXY header, or
// a malformed one.
ProxyHeader parse_proxy_header(std::string_view data);

}  // namespace keel::net
