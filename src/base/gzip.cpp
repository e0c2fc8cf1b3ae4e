#include "base/gzip.hpp"

#include <zlib.h>

#include <stdexcept>

#include "base/strings.hpp"

namespace keel::base {
namespace {

// The q-value of one list element's parameters ("q=0.5"); 1 when absent, 0 when malformed.
double q_value(std::string_view params) {
  while (!params.empty()) {
    const auto semi = params.find(';');
    const std::string_view p = trim(params.substr(0, semi));
    params = semi == std::string_view::npos ? std::string_view{} : params.substr(semi + 1);
    if (p.size() >= 2 && (p[0] == 'q' || p[0] == 'Q') && p[1] == '=') {
      const std::string_view v = p.substr(2);
      if (v.empty() || v.size() > 5) return 0;
      double q = 0;
      double scale = 1;
      bool dot = false;
      for (char c : v) {
        if (c == '.' && !dot) {
          dot = true;
        } else if (c >= '0' && c <= '9') {
          if (dot) {
            scale /= 10;
            q += (c - '0') * scale;
          } else {
            q = q * 10 + (c - '0');
          }
        } else {
          return 0;
        }
      }
      return q > 1 ? 0 : q;
    }
  }
  return 1;
}

}  // namespace

bool accepts_gzip(std::string_view header) {
  double gzip_q = -1, star_q = -1;
  while (!header.empty()) {
    const auto comma = header.find(',');
    std::string_view item = header.substr(0, comma);
    header = comma == std::string_view::npos ? std::string_view{} : header.substr(comma + 1);
    const auto semi = item.find(';');
    const std::string_view coding = trim(item.substr(0, semi));
    const double q = semi == std::string_view::npos ? 1.0 : q_value(item.substr(semi + 1));
    if (iequals(coding, "gzip") || iequals(coding, "x-gzip")) gzip_q = q;
    if (coding == "*") star_q = q;
  }
  return gzip_q >= 0 ? gzip_q > 0 : star_q > 0;
}

std::string gzip(std::string_view data, int level) {
  z_stream zs{};
  // windowBits 15 + 16: a gzip header and trailer instead of zlib's.
  if (deflateInit2(&zs, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    throw std::runtime_error("deflateInit2 failed");
  std::string out;
  out.resize(deflateBound(&zs, static_cast<uLong>(data.size())));
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&zs, Z_FINISH);
  const std::size_t produced = out.size() - zs.avail_out;
  deflateEnd(&zs);
  if (rc != Z_STREAM_END) throw std::runtime_error("deflate failed");
  out.resize(produced);
  return out;
}

}  // namespace keel::base
