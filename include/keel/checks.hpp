// Built-in health check functions (optional library keel::checks, not part of the core).
//
// Each function is BLOCKING and meant to run on a worker thread pool (e.g. through
// keel::offload). It returns normally when the dependency is healthy and throws
// std::runtime_error with a short, specific reason when it is not, e.g.
//   "connect 127.0.0.1:5432: Connection refused", "timed out after 1000ms", "HTTP 503",
//   "PING answered: ERR unknown command".
// Every function is bounded by its timeout (a non-positive timeout is an error). Passwords never
// appear in a reason: URL passwords are shown as "****" and known secrets are scrubbed.
//
// Name resolution: numeric IPv4/IPv6 addresses never touch DNS. For host names, tcp_connect and
// http_get bound the lookup by the timeout; postgres and redis_ping resolve names with the
// libraries' blocking resolvers, so give them numeric addresses (or names in /etc/hosts) when the
// bound must hold even if DNS hangs.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace keel::checks {

// Opens a TCP connection to host:port (numeric IPv4/IPv6, "[IPv6]", or a name; every resolved
// address is tried in turn within the one deadline) and closes it.
void tcp_connect(const std::string& host, std::uint16_t port, std::chrono::milliseconds timeout);

// GET url with libcurl (http:// or https://, redirects are not followed, the body is discarded).
// Healthy on a 2xx or 3xx status; otherwise the reason is "HTTP <status>".
void http_get(const std::string& url, std::chrono::milliseconds timeout);

// Opens an existing SQLite database read-write (never creates one), reads its header
// (PRAGMA schema_version: SELECT 1 alone would pass on a file that is not a database) and runs
// SELECT 1, with the busy timeout set to the timeout. Accepts "PATH", "sqlite:PATH" or
// "sqlite://PATH".
void sqlite(const std::string& path, std::chrono::milliseconds timeout);

// Connects with libpq and runs SELECT 1, both within the one deadline. Accepts a
// postgresql:// or postgres:// URL or a key=value conninfo string.
void postgres(const std::string& conninfo, std::chrono::milliseconds timeout);

// Connects with hiredis, authenticates when the URL has a password (AUTH [user] password),
// selects the database when the URL names one, and requires PING to answer PONG.
// Accepts "redis://[[user]:password@]host[:port][/db]" or "host[:port]" (port 6379 by default;
// IPv6 addresses in brackets).
void redis_ping(const std::string& url, std::chrono::milliseconds timeout);

}  // namespace keel::checks
