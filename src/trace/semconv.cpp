#include "trace/semconv.hpp"

#include <algorithm>
#include <array>

namespace keel::trace {
namespace {

constexpr std::array<std::string_view, 9> kKnownMethods = {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS",
                                                           "PATCH",   "POST",   "PUT", "TRACE"};
constexpr std::array<std::string_view, 4> kCredentialParams = {"AWSAccessKeyId", "Signature", "sig",
                                                               "X-Goog-Signature"};

}  // namespace

HttpMethod http_method(std::string_view method) noexcept {
  for (const std::string_view m : kKnownMethods)
    if (m == method) return {m, true};
  return {"_OTHER", false};
}

std::string redact_query(std::string_view query) {
  std::string out;
  out.reserve(query.size());
  std::size_t pos = 0;
  while (true) {
    const std::size_t amp = query.find('&', pos);
    const std::string_view pair = query.substr(pos, amp == std::string_view::npos ? std::string_view::npos : amp - pos);
    const std::size_t eq = pair.find('=');
    if (eq != std::string_view::npos &&
        std::find(kCredentialParams.begin(), kCredentialParams.end(), pair.substr(0, eq)) != kCredentialParams.end()) {
      out.append(pair.substr(0, eq + 1));
      out.append("REDACTED");
    } else {
      out.append(pair);
    }
    if (amp == std::string_view::npos) break;
    out.push_back('&');
    pos = amp + 1;
  }
  return out;
}

std::string redact_url_full(std::string_view url) {
  std::string out;
  out.reserve(url.size() + 18);
  std::string_view rest = url;
  if (const std::size_t scheme_end = url.find("://"); scheme_end != std::string_view::npos) {
    const std::size_t auth_start = scheme_end + 3;
    const std::size_t auth_end = std::min(url.find_first_of("/?#", auth_start), url.size());
    const std::string_view authority = url.substr(auth_start, auth_end - auth_start);
    out.append(url.substr(0, auth_start));
    // The last '@' ends the userinfo (a raw '@' in a password is common enough).
    if (const std::size_t at = authority.rfind('@'); at != std::string_view::npos) {
      out.append("REDACTED:REDACTED@");
      out.append(authority.substr(at + 1));
    } else {
      out.append(authority);
    }
    rest = url.substr(auth_end);
  }
  const std::size_t q = rest.find_first_of("?#");
  if (q == std::string_view::npos || rest[q] == '#') {
    out.append(rest);
    return out;
  }
  const std::size_t hash = rest.find('#', q);
  out.append(rest.substr(0, q + 1));
  out.append(redact_query(rest.substr(q + 1, hash == std::string_view::npos ? std::string_view::npos : hash - q - 1)));
  if (hash != std::string_view::npos) out.append(rest.substr(hash));
  return out;
}

}  // namespace keel::trace
