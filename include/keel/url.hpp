// keel::percent_decode: the lenient percent-decoding (RFC 3986 §2.1) of text keel does not decode
// itself: W3C Baggage-style header values, the userinfo or a parameter of a connection URL.
//
//   keel::percent_decode("p%40ss%2Fword") == "p@ss/word"
//
// A request's path parameters and query parameters are already decoded (Request::param,
// Request::query_param, where '+' in a query is a space).
#pragma once

#include <string>
#include <string_view>

namespace keel {

// "a%20b" -> "a b". A '%' not followed by two hex digits (either case) stays as written, '+' stays
// '+', and "%00" decodes to a NUL byte. Never throws except std::bad_alloc.
std::string percent_decode(std::string_view text);

}  // namespace keel
