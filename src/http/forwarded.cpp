#include "http/forwarded.hpp"

#include <algorithm>
#include <charconv>

#include "base/strings.hpp"
#include "http/handler.hpp"

namespace keel::http {
namespace {

// RFC 9110 §5.6.2 tchar.
constexpr bool is_tchar(char c) noexcept {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
      return true;
    default:
      return false;
  }
}

// RFC 3986 reg-name characters (unreserved, sub-delims but ',', and '%' of pct-encoded).
constexpr bool is_reg_name_char(char c) noexcept {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  switch (c) {
    case '-':
    case '.':
    case '_':
    case '~':
    case '!':
    case '$':
    case '&':
    case '\'':
    case '(':
    case ')':
    case '*':
    case '+':
    case ';':
    case '=':
    case '%':
      return true;
    default:
      return false;
  }
}

// A port of 1-5 digits, 1-65535; 0 otherwise.
int parse_port(std::string_view digits) noexcept {
  if (digits.empty() || digits.size() > 5) return 0;
  int n = 0;
  const auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
  if (ec != std::errc() || p != digits.data() + digits.size() || n < 1 || n > 65535) return 0;
  return n;
}

// Which proxy header a field name is (bits), cheaply: most fields start with neither 'x' nor 'f'.
constexpr unsigned kXFor = 1, kXProto = 2, kXHost = 4, kXPort = 8, kForwarded = 16;
unsigned header_kind(std::string_view name) noexcept {
  if (name.size() < 9) return 0;
  const char first = base::ascii_lower(name.front());
  if (first == 'f') return base::iequals(name, "forwarded") ? kForwarded : 0;
  if (first != 'x' || name.size() < 15 || !base::iequals(name.substr(0, 12), "x-forwarded-")) return 0;
  const std::string_view rest = name.substr(12);
  if (base::iequals(rest, "for")) return kXFor;
  if (base::iequals(rest, "proto")) return kXProto;
  if (base::iequals(rest, "host")) return kXHost;
  if (base::iequals(rest, "port")) return kXPort;
  return 0;
}

std::string_view scheme_of(std::string_view value) noexcept {
  if (base::iequals(value, "https")) return "https";
  if (base::iequals(value, "http")) return "http";
  return {};
}

// A Forwarded node (RFC 7239 §6): IPv4, "[IPv6]", "unknown" or "_obfuscated", with an optional
// port, numeric or obfuscated. The address when it is one.
std::optional<net::HostPort> parse_node(std::string_view node) noexcept {
  // An obfuscated port ("_abc") says nothing keel can use: the address without it.
  const auto colon = node.rfind(':');
  if (colon != std::string_view::npos && colon + 1 < node.size() && node[colon + 1] == '_' &&
      (node.front() != '[' || node.rfind(']') < colon))
    node = node.substr(0, colon);
  // A bare IPv6 address is not a node (it must be bracketed).
  if (node.empty() || (node.front() != '[' && node.find(':') != node.rfind(':'))) return std::nullopt;
  return net::parse_ip_port(node);
}

// Walks an address list from the right (docs: forwarded.hpp). hop: the index from the right of
// the client's hop (where the walk stopped).
std::optional<net::HostPort> walk_addresses(const HopList& list, const net::AddressSet& trusted, std::size_t& hop) {
  hop = 0;
  const std::size_t n = list.size();
  for (std::size_t i = 0; i < n; ++i) {
    hop = i;
    const auto hp = net::parse_ip_port(list.from_right(i));
    if (!hp) return std::nullopt;  // not an address: nobody named
    if (!trusted.contains(hp->ip)) return hp;
    if (i + 1 == n) return list.truncated() ? std::nullopt : hp;  // every hop trusted: the leftmost
  }
  return std::nullopt;
}

void gather(const std::vector<HeaderField>& headers, unsigned kind, HopList& list) {
  for (const HeaderField& h : headers)
    if (header_kind(h.name) == kind) split_plain_list(h.value, list);
}

// The entry of a per-hop list at the client's hop, clamped to the leftmost.
std::string_view at_hop(const HopList& list, std::size_t hop) noexcept {
  if (list.size() == 0) return {};
  return list.from_right(hop < list.size() ? hop : list.size() - 1);
}

ForwardedInfo resolve_x_forwarded(const std::vector<HeaderField>& headers, const net::AddressSet& trusted,
                                  unsigned seen) {
  ForwardedInfo out;
  std::size_t hop = 0;
  HopList list;
  if ((seen & kXFor) != 0) {
    gather(headers, kXFor, list);
    out.client = walk_addresses(list, trusted, hop);
  }
  if ((seen & kXProto) != 0) {
    list.clear();
    gather(headers, kXProto, list);
    out.scheme = scheme_of(at_hop(list, hop));
  }
  if ((seen & kXHost) != 0) {
    list.clear();
    gather(headers, kXHost, list);
    if (const std::string_view host = at_hop(list, hop); valid_forwarded_host(host)) out.host = host;
  }
  if ((seen & kXPort) != 0) {
    list.clear();
    gather(headers, kXPort, list);
    out.port = parse_port(at_hop(list, hop));
  }
  return out;
}

ForwardedInfo resolve_rfc7239(const std::vector<HeaderField>& headers, const net::AddressSet& trusted) {
  ForwardedInfo out;
  HopList list;
  for (const HeaderField& h : headers)
    if (header_kind(h.name) == kForwarded) split_forwarded(h.value, list);
  const std::size_t n = list.size();
  for (std::size_t i = 0; i < n; ++i) {
    const auto element = parse_forwarded_element(list.from_right(i));
    if (!element) return out;  // malformed where the walk stands: nothing from it
    const auto node = element->has_for ? parse_node(element->for_node) : std::nullopt;
    const bool trusted_hop = node && trusted.contains(node->ip);
    if (trusted_hop && i + 1 < n) continue;
    if (trusted_hop && list.truncated()) return out;
    out.client = node;  // unknown / obfuscated / absent: nobody named, the peer stays
    out.scheme = scheme_of(element->proto);
    if (valid_forwarded_host(element->host)) out.host = element->host;
    return out;
  }
  return out;
}

}  // namespace

void split_plain_list(std::string_view line, HopList& list) {
  while (!line.empty()) {
    const auto comma = line.find(',');
    const std::string_view item = base::trim(line.substr(0, comma));
    if (!item.empty()) list.push(item);
    if (comma == std::string_view::npos) break;
    line.remove_prefix(comma + 1);
  }
}

void split_forwarded(std::string_view line, HopList& list) {
  std::size_t start = 0;
  bool quoted = false;
  for (std::size_t i = 0;; ++i) {
    if (i < line.size()) {
      const char c = line[i];
      if (quoted) {
        if (c == '\\')
          ++i;  // the escaped character cannot end the string
        else if (c == '"')
          quoted = false;
        continue;
      }
      if (c == '"') {
        quoted = true;
        continue;
      }
      if (c != ',') continue;
    }
    // A comma outside quotes, or the end (an unterminated quote runs to it: one malformed element).
    const std::size_t end = std::min(i, line.size());
    const std::string_view item = base::trim(line.substr(start, end - start));
    if (!item.empty()) list.push(item);
    if (end == line.size()) break;
    start = i + 1;
  }
}

std::optional<ForwardedElement> parse_forwarded_element(std::string_view e) noexcept {
  ForwardedElement out;
  bool seen_by = false, seen_proto = false, seen_host = false;
  std::size_t i = 0;
  const std::size_t n = e.size();
  const auto skip_ows = [&] {
    while (i < n && (e[i] == ' ' || e[i] == '\t')) ++i;
  };
  for (;;) {
    skip_ows();
    if (i == n) break;
    if (e[i] == ';') {  // an empty pair
      ++i;
      continue;
    }
    const std::size_t name_start = i;
    while (i < n && is_tchar(e[i])) ++i;
    const std::string_view name = e.substr(name_start, i - name_start);
    if (name.empty() || i == n || e[i] != '=') return std::nullopt;
    ++i;
    std::string_view value;
    bool escaped = false;
    if (i < n && e[i] == '"') {
      const std::size_t value_start = ++i;
      for (;; ++i) {
        if (i >= n) return std::nullopt;  // unterminated
        if (e[i] == '\\') {
          escaped = true;
          ++i;
          continue;
        }
        if (e[i] == '"') break;
        if (static_cast<unsigned char>(e[i]) < 0x20 && e[i] != '\t') return std::nullopt;
      }
      value = e.substr(value_start, i - value_start);
      ++i;
    } else {
      const std::size_t value_start = i;
      while (i < n && is_tchar(e[i])) ++i;
      value = e.substr(value_start, i - value_start);
      if (value.empty()) return std::nullopt;
    }
    bool* seen = nullptr;
    std::string_view* slot = nullptr;
    if (base::iequals(name, "for")) {
      seen = &out.has_for;
      slot = &out.for_node;
    } else if (base::iequals(name, "proto")) {
      seen = &seen_proto;
      slot = &out.proto;
    } else if (base::iequals(name, "host")) {
      seen = &seen_host;
      slot = &out.host;
    } else if (base::iequals(name, "by")) {
      seen = &seen_by;
    }
    if (seen != nullptr) {
      if (*seen) return std::nullopt;  // a parameter occurs at most once per element
      *seen = true;
    }
    if (slot != nullptr) {
      if (escaped) return std::nullopt;  // no valid node, scheme or host needs an escape
      *slot = value;
    }
    skip_ows();
    if (i == n) break;
    if (e[i] != ';') return std::nullopt;
    ++i;
  }
  return out;
}

bool valid_forwarded_host(std::string_view host) noexcept {
  if (host.empty() || host.size() > 255) return false;
  std::size_t i = 0;
  if (host.front() == '[') {
    const auto close = host.find(']');
    if (close == std::string_view::npos) return false;
    const std::string_view inside = host.substr(1, close - 1);
    if (inside.find(':') == std::string_view::npos || !net::parse_ip(inside)) return false;
    i = close + 1;
  } else {
    while (i < host.size() && host[i] != ':') {
      if (!is_reg_name_char(host[i])) return false;
      ++i;
    }
    if (i == 0) return false;
  }
  if (i == host.size()) return true;
  return host[i] == ':' && parse_port(host.substr(i + 1)) != 0;
}

ForwardedInfo resolve_forwarded(const std::vector<HeaderField>& headers, const net::AddressSet& trusted) {
  unsigned seen = 0;
  for (const HeaderField& h : headers) seen |= header_kind(h.name);
  if (seen == 0) return {};
  if ((seen & (kXFor | kXProto | kXHost | kXPort)) != 0) return resolve_x_forwarded(headers, trusted, seen);
  return resolve_rfc7239(headers, trusted);
}

std::string host_with_port(std::string_view host, int port, std::string_view scheme) {
  std::string_view name = host;
  if (!name.empty() && name.front() == '[') {
    const auto close = name.find(']');
    if (close != std::string_view::npos) name = name.substr(0, close + 1);
  } else {
    name = name.substr(0, name.find(':'));
  }
  std::string out(name);
  const int default_port = scheme == "https" ? 443 : 80;
  if (port > 0 && port != default_port) {
    out += ':';
    out += std::to_string(port);
  }
  return out;
}

void Exchange::apply_proxy_headers(const net::AddressSet& trusted) {
  const ForwardedInfo f = resolve_forwarded(request_.parsed_->headers, trusted);
  if (f.client) {
    request_.forwarded_client_ = net::format_ip_port(f.client->ip, f.client->port);
    request_.client_address_ = request_.forwarded_client_;
  }
  if (!f.scheme.empty()) request_.scheme_ = f.scheme;
  if (f.port != 0) {
    const std::string_view host = f.host.empty() ? request_.parsed_->host : f.host;
    if (!host.empty()) {
      request_.forwarded_host_ = host_with_port(host, f.port, request_.scheme());
      request_.host_ = request_.forwarded_host_;
    }
  } else if (!f.host.empty()) {
    request_.host_ = f.host;
  }
}

}  // namespace keel::http
