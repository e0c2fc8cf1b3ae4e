// gzip for what is worth compressing (metrics scrapes, OTLP batches), and Accept-Encoding parsing.
#pragma once

#include <string>
#include <string_view>

namespace keel::base {

// True when Accept-Encoding allows gzip: "gzip" or "*" listed with a q-value above 0.
bool accepts_gzip(std::string_view accept_encoding);

// The gzip member (RFC 1952) of `data`.
std::string gzip(std::string_view data, int level = 6);

}  // namespace keel::base
