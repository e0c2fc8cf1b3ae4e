// Differential libFuzzer target: keel::http::RequestParser against libhttp-parser 2.9 (Debian's
// libhttp-parser-dev, linked only into this target).
//
// The same bytes go to both parsers, request after request (up to kMaxRequests pipelined ones,
// each parser restarted on the bytes after the previous request). For each request the two
// outcomes (incomplete / complete / error) must agree, and for complete requests so must the
// method, the target, the version, the header and trailer fields (names as sent, values with
// leading and trailing SP/HTAB removed), the decoded body, the keep-alive verdict and where the
// next request starts (consumed() against http_parser_execute()'s count at on_message_complete).
//
// keel is deliberately stricter than http-parser in many places (RFC 9112 rules http-parser lets
// through, or request smuggling vectors it tolerates), and laxer in a few (any token is a method).
// classify() lists those differences: each rule names the construct, checks that the input really
// contains it (a witness on the bytes, not only keel's error reason), and says why keel's choice
// is intended. Only a disagreement that no rule explains calls __builtin_trap(), so libFuzzer
// records it. docs/fuzzing.md has the same list.
//
// Environment: FUZZ_DIFF_VERBOSE=1 prints both parses of every request; FUZZ_DIFF_RULES=1 prints
// one "diff-rule: <rule>" line per explained disagreement (scripts/fuzz.sh tallies them).

#include <http_parser.h>

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/strings.hpp"
#include "fuzz_check.hpp"
#include "http/request_parser.hpp"
#include "http_grammar.hpp"
#include "parse_status_name.hpp"

namespace {

using keel::http::ParserLimits;
using keel::http::ParseStatus;
using keel::http::RequestParser;

constexpr int kMaxRequests = 8;

bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' && *v != '0';
}
const bool g_verbose = env_flag("FUZZ_DIFF_VERBOSE");
const bool g_print_rules = env_flag("FUZZ_DIFF_RULES");

using Fields = std::vector<std::pair<std::string, std::string>>;

struct Side {
  ParseStatus status = ParseStatus::kIncomplete;
  std::string error;         // keel: error_reason(); http-parser: the errno name
  std::size_t consumed = 0;  // complete: bytes of the request; http-parser error: bytes before it
  std::string method, target;
  int major = 0, minor = 0;
  Fields headers, trailers;
  std::string body;
  bool keep_alive = false;
  bool upgrade = false;        // http-parser: it stopped parsing HTTP after this request
  bool chunked = false;        // keel, once the head is complete
  bool head_complete = false;  // keel
};

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// ---- keel ----------------------------------------------------------------------------------------

// Limits high enough that no input of -max_len bytes reaches them: the differences they would
// cause are configuration, not parsing. Body sizes are the exception (a Content-Length or chunk
// size can announce any amount): see rule "limit.body".
ParserLimits keel_limits() {
  ParserLimits l;
  l.max_request_line = 1 << 20;
  l.max_header_field = 1 << 20;
  l.max_header_count = 1 << 20;
  l.max_header_block = 1 << 20;
  l.max_body = std::size_t{1} << 40;
  l.max_chunk_line = 1 << 20;
  return l;
}

Side run_keel(std::string_view in) {
  std::vector<char> buf(in.begin(), in.end());
  RequestParser parser(keel_limits());
  Side s;
  s.status = parser.parse(buf.data(), buf.size());
  s.head_complete = parser.head_complete();
  if (s.status == ParseStatus::kError) {
    s.error = std::string(parser.error_reason());
    s.consumed = parser.consumed();
  }
  if (s.status == ParseStatus::kIncomplete && s.head_complete) s.chunked = parser.request().chunked;
  if (s.status != ParseStatus::kComplete) return s;
  const auto& r = parser.request();
  s.consumed = parser.consumed();
  s.method = std::string(r.method);
  s.target = std::string(r.target);
  s.major = 1;
  s.minor = r.version_minor;
  for (const auto& h : r.headers) s.headers.emplace_back(h.name, trim_ows(h.value));
  for (const auto& h : r.trailers) s.trailers.emplace_back(h.name, trim_ows(h.value));
  s.body = std::string(r.body);
  s.keep_alive = r.keep_alive;
  s.chunked = r.chunked;
  return s;
}

// ---- http-parser ---------------------------------------------------------------------------------

struct HpState {
  Side side;
  std::string field, value;
  bool in_value = false, headers_done = false, complete = false;

  void flush_field() {
    if (field.empty() && !in_value) return;
    (headers_done ? side.trailers : side.headers).emplace_back(field, trim_ows(value));
    field.clear();
    value.clear();
    in_value = false;
  }
};

HpState& hp_state(http_parser* p) {
  return *static_cast<HpState*>(p->data);
}

int hp_on_url(http_parser* p, const char* at, std::size_t n) {
  hp_state(p).side.target.append(at, n);
  return 0;
}
int hp_on_header_field(http_parser* p, const char* at, std::size_t n) {
  HpState& s = hp_state(p);
  if (s.in_value) s.flush_field();
  s.field.append(at, n);
  return 0;
}
int hp_on_header_value(http_parser* p, const char* at, std::size_t n) {
  HpState& s = hp_state(p);
  s.in_value = true;
  s.value.append(at, n);
  return 0;
}
int hp_on_headers_complete(http_parser* p) {
  HpState& s = hp_state(p);
  s.flush_field();
  s.headers_done = true;
  s.side.method = http_method_str(static_cast<http_method>(p->method));
  s.side.major = p->http_major;
  s.side.minor = p->http_minor;
  return 0;
}
int hp_on_body(http_parser* p, const char* at, std::size_t n) {
  hp_state(p).side.body.append(at, n);
  return 0;
}
int hp_on_message_complete(http_parser* p) {
  HpState& s = hp_state(p);
  s.flush_field();
  s.complete = true;
  s.side.keep_alive = http_should_keep_alive(p) != 0;
  http_parser_pause(p, 1);  // stop right after this request: the count tells where it ended
  return 0;
}

const http_parser_settings kHpSettings = [] {
  http_parser_settings s;
  http_parser_settings_init(&s);
  s.on_url = hp_on_url;
  s.on_header_field = hp_on_header_field;
  s.on_header_value = hp_on_header_value;
  s.on_headers_complete = hp_on_headers_complete;
  s.on_body = hp_on_body;
  s.on_message_complete = hp_on_message_complete;
  return s;
}();

Side run_hp(std::string_view in) {
  http_parser p;
  http_parser_init(&p, HTTP_REQUEST);
  HpState st;
  p.data = &st;
  const std::size_t n = http_parser_execute(&p, &kHpSettings, in.data(), in.size());
  const auto err = HTTP_PARSER_ERRNO(&p);
  Side s = std::move(st.side);
  s.upgrade = p.upgrade != 0;
  if (st.complete) {
    s.status = ParseStatus::kComplete;
    s.consumed = n;
  } else if (err != HPE_OK) {
    s.status = ParseStatus::kError;
    s.error = http_errno_name(err);
    s.consumed = n;
  } else {
    s.status = ParseStatus::kIncomplete;
    s = Side{};
  }
  return s;
}

// ---- reporting -----------------------------------------------------------------------------------

void print_escaped(std::string_view s, std::size_t max = 200) {
  for (std::size_t i = 0; i < s.size() && i < max; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '\r')
      std::fputs("\\r", stderr);
    else if (c == '\n')
      std::fputs("\\n", stderr);
    else if (c == '\\')
      std::fputs("\\\\", stderr);
    else if (c < 0x20 || c >= 0x7f)
      std::fprintf(stderr, "\\x%02x", c);
    else
      std::fputc(c, stderr);
  }
  if (s.size() > max) std::fprintf(stderr, "...(%zu bytes)", s.size());
}

void print_side(const char* label, const Side& s) {
  std::fprintf(stderr, "  %s: %s", label, status_name(s.status));
  if (s.status == ParseStatus::kError) std::fprintf(stderr, " (%s) at %zu", s.error.c_str(), s.consumed);
  if (s.status == ParseStatus::kComplete) {
    std::fprintf(stderr, " consumed=%zu method=", s.consumed);
    print_escaped(s.method);
    std::fputs(" target=", stderr);
    print_escaped(s.target);
    std::fprintf(stderr, " version=%d.%d keep_alive=%d upgrade=%d body=%zu:", s.major, s.minor, s.keep_alive, s.upgrade,
                 s.body.size());
    print_escaped(s.body, 40);
    for (const auto& [n, v] : s.headers) {
      std::fputs("\n    header ", stderr);
      print_escaped(n);
      std::fputs(": ", stderr);
      print_escaped(v);
    }
    for (const auto& [n, v] : s.trailers) {
      std::fputs("\n    trailer ", stderr);
      print_escaped(n);
      std::fputs(": ", stderr);
      print_escaped(v);
    }
  }
  std::fputc('\n', stderr);
}

// ---- witnesses: what the bytes of one request contain ------------------------------------------

// The request as a lenient reader sees it: lines split at LF (a CR before it dropped), the request
// line after any empty lines, then the header field lines up to the first empty line.
struct Shape {
  std::vector<std::string_view> lines;  // every line of the input, CR before LF removed
  std::size_t request_line = 0;         // index in lines
  std::size_t head_end = 0;             // index of the empty line ending the header section
  std::string_view method, target, version;
  int spaces = 0;  // SP/HTAB runs in the request line beyond the two single separators

  std::vector<std::string_view> fields() const {
    std::vector<std::string_view> out;
    for (std::size_t i = request_line + 1; i < head_end && i < lines.size(); ++i) out.push_back(lines[i]);
    return out;
  }
};

Shape shape_of(std::string_view in) {
  Shape sh;
  std::size_t start = 0;
  while (start < in.size()) {
    std::size_t lf = in.find('\n', start);
    if (lf == std::string_view::npos) lf = in.size();
    std::string_view line = in.substr(start, lf - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    sh.lines.push_back(line);
    start = lf + 1;
  }
  while (sh.request_line < sh.lines.size() && sh.lines[sh.request_line].empty()) ++sh.request_line;
  sh.head_end = sh.request_line + 1;
  while (sh.head_end < sh.lines.size() && !sh.lines[sh.head_end].empty()) ++sh.head_end;
  if (sh.request_line < sh.lines.size()) {
    const std::string_view rl = sh.lines[sh.request_line];
    const std::size_t sp1 = rl.find(' ');
    sh.method = rl.substr(0, sp1);
    if (sp1 != std::string_view::npos) {
      std::size_t t = sp1 + 1;
      while (t < rl.size() && rl[t] == ' ') ++t, ++sh.spaces;
      const std::size_t sp2 = rl.find(' ', t);
      sh.target = rl.substr(t, sp2 == std::string_view::npos ? std::string_view::npos : sp2 - t);
      if (sp2 != std::string_view::npos) {
        std::size_t v = sp2 + 1;
        while (v < rl.size() && rl[v] == ' ') ++v, ++sh.spaces;
        sh.version = rl.substr(v);
      }
    }
  }
  return sh;
}

using keel::base::iequals;

// Field lines of the head named `name` (case-insensitive), values trimmed.
std::vector<std::string_view> field_values(const Shape& sh, std::string_view name) {
  std::vector<std::string_view> out;
  for (const std::string_view line : sh.fields()) {
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    if (iequals(trim_ows(line.substr(0, colon)), name)) out.push_back(trim_ows(line.substr(colon + 1)));
  }
  return out;
}

bool contains(std::string_view hay, std::string_view needle) {
  return hay.find(needle) != std::string_view::npos;
}

// ---- the documented exceptions -------------------------------------------------------------------

bool is_tchar(char c) {
  const auto u = static_cast<unsigned char>(c);
  return (u >= '0' && u <= '9') || ((u | 0x20) >= 'a' && (u | 0x20) <= 'z') ||
         (u != 0 && std::strchr("!#$%&'*+-.^_`|~", u) != nullptr);
}

// The line starting at pos, with its LF (keel stops at the start of the line it rejects).
std::string_view line_at(std::string_view in, std::size_t pos) {
  if (pos >= in.size()) return {};
  const std::size_t lf = in.find('\n', pos);
  return in.substr(pos, lf == std::string_view::npos ? std::string_view::npos : lf + 1 - pos);
}
// The same without CRLF / LF.
std::string_view content_of(std::string_view line) {
  if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

bool ends_with_bare_lf(std::string_view line) {
  return !line.empty() && line.back() == '\n' && (line.size() == 1 || line[line.size() - 2] != '\r');
}

bool is_hp_method(std::string_view m) {
  static constexpr const char* kMethods[] = {
#define XX(num, name, string) #string,
      HTTP_METHOD_MAP(XX)
#undef XX
  };
  for (const char* known : kMethods)
    if (m == known) return true;
  return false;
}

// A CR followed by something other than LF (http-parser's non-strict build ends a line there).
bool has_bare_cr(std::string_view s) {
  for (std::size_t i = 0; i + 1 < s.size(); ++i)
    if (s[i] == '\r' && s[i + 1] != '\n') return true;
  return false;
}

// The input completed into a request with as little change as possible, so that keel judges the
// bytes already there: an unfinished request line gets the parts it lacks (" / HTTP/1.1", the rest
// of "HTTP/1.1"), an unfinished line its CRLF, an unfinished head a Host field if it has none and
// the empty line. Bytes keel rejects stay rejected; nothing keel would reject is added.
std::string complete(std::string_view in) {
  std::string c(in);
  const std::size_t start = in.find_first_not_of("\r\n");
  if (start == std::string_view::npos) return c + "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  const std::size_t rl_end = in.find('\n', start);
  if (rl_end == std::string_view::npos) {  // in the request line
    const std::string_view rl = in.substr(start);
    const std::size_t sp1 = rl.find(' ');
    const std::size_t sp2 = sp1 == std::string_view::npos ? sp1 : rl.find(' ', sp1 + 1);
    // A CR can only be followed by LF: the line ends here, whatever it holds.
    if (c.ends_with('\r')) return c + "\nHost: x\r\n\r\n";
    if (sp1 == std::string_view::npos) {
      c += " / HTTP/1.1";
    } else if (sp2 == std::string_view::npos) {
      c += " HTTP/1.1";
    } else {
      const std::string_view version = rl.substr(sp2 + 1);
      if (std::string_view("HTTP/1.1").starts_with(version)) c += std::string_view("HTTP/1.1").substr(version.size());
    }
    return c + "\r\nHost: x\r\n\r\n";
  }
  if (c.ends_with('\r'))
    c += '\n';
  else if (!c.ends_with('\n'))
    c += "\r\n";
  const Shape sh = shape_of(c);
  if (sh.head_end >= sh.lines.size()) {  // the head has not ended: no empty line yet
    if (field_values(sh, "host").empty()) c += "Host: x\r\n";
    c += "\r\n";
  }
  return c;
}

// The comma-separated elements of every field `name`, OWS trimmed, empty ones dropped
// (RFC 9110 §5.6.1).
std::vector<std::string_view> list_elements(const Shape& sh, std::string_view name) {
  std::vector<std::string_view> out;
  for (const std::string_view v : field_values(sh, name)) {
    std::size_t i = 0;
    while (i <= v.size()) {
      std::size_t comma = v.find(',', i);
      if (comma == std::string_view::npos) comma = v.size();
      if (const std::string_view e = trim_ows(v.substr(i, comma - i)); !e.empty()) out.push_back(e);
      i = comma + 1;
    }
  }
  return out;
}

bool is_token(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), is_tchar);
}

// Leading hex digits of a chunk line, leading zeros not counted.
std::size_t significant_hex_digits(std::string_view text) {
  std::size_t d = 0;
  while (d < text.size() && std::isxdigit(static_cast<unsigned char>(text[d]))) ++d;
  std::size_t z = 0;
  while (z + 1 < d && text[z] == '0') ++z;
  return d - z;
}

// A request-target form keel is right to refuse (RFC 9112 §3.2): not origin-form; asterisk-form
// other than for OPTIONS; authority-form other than for CONNECT or without host:port;
// absolute-form of another scheme than http/https, or with userinfo or an invalid authority.
bool invalid_target_form(std::string_view method, std::string_view target) {
  if (target.empty() || target[0] == '/') return false;
  if (target == "*") return method != "OPTIONS";
  const std::size_t scheme_end = target.find("://");
  if (scheme_end == std::string_view::npos) return method != "CONNECT" || !keel::fuzz::ref_host_port(target, true);
  const std::string_view scheme = target.substr(0, scheme_end);
  if (!iequals(scheme, "http") && !iequals(scheme, "https")) return true;
  const std::size_t auth_start = scheme_end + 3;
  const std::size_t auth_end = std::min(target.find_first_of("/?", auth_start), target.size());
  const std::string_view authority = target.substr(auth_start, auth_end - auth_start);
  return authority.find('@') != std::string_view::npos || !keel::fuzz::ref_host_port(authority, false);
}

bool reason(const Side& k, std::string_view needle) {
  return k.status == ParseStatus::kError && contains(k.error, needle);
}

// Persistence from the Connection lists (RFC 9112 §9.3), computed independently of keel.
bool reference_keep_alive(const Side& k) {
  bool close = false, keep_alive = false;
  for (const auto& [name, value] : k.headers) {
    if (!iequals(name, "connection")) continue;
    std::size_t i = 0;
    while (i <= value.size()) {
      std::size_t comma = value.find(',', i);
      if (comma == std::string::npos) comma = value.size();
      const std::string_view token = trim_ows(std::string_view(value).substr(i, comma - i));
      close = close || iequals(token, "close");
      keep_alive = keep_alive || iequals(token, "keep-alive");
      i = comma + 1;
    }
  }
  if (close) return false;
  return k.minor == 1 || keep_alive;
}

// RFC 9112 §7.1.1: chunk-ext starts with BWS ";" and BWS is SP or HTAB; http-parser 2.9.4 only
// skips SP there and refuses "5\t;x" (HPE_INVALID_CHUNK_SIZE): a bug on its side. Witness: the
// chunk line http-parser refused is HEXDIG+ then blanks with a HTAB then ';'.
bool hp_chunk_htab(std::string_view in, const Side& h) {
  if (h.status != ParseStatus::kError || h.error != "HPE_INVALID_CHUNK_SIZE" || h.consumed > in.size()) return false;
  const std::size_t nl = h.consumed == 0 ? std::string_view::npos : in.rfind('\n', h.consumed - 1);
  const std::string_view line = content_of(line_at(in, nl == std::string_view::npos ? 0 : nl + 1));
  std::size_t i = 0;
  while (i < line.size() && std::isxdigit(static_cast<unsigned char>(line[i]))) ++i;
  const std::size_t digits = i;
  bool tab = false;
  for (; i < line.size() && (line[i] == ' ' || line[i] == '\t'); ++i)
    if (line[i] == '\t') tab = true;
  return digits > 0 && tab && i < line.size() && line[i] == ';';
}

// RFC 9110 §5.6.1 / §7.6.1: Transfer-Encoding is a list: "chunked" may come with OWS around it,
// empty list elements (", chunked") or be split over several fields; keel parses the list.
// http-parser 2.9.4 only recognises a value ending in "chunked" with optional SPs, and refuses
// e.g. "chunked\t" or ",chunked" (HPE_INVALID_TRANSFER_ENCODING): a bug on its side.
const char* te_list_rule(const Side& k, const Side& h) {
  if (h.status != ParseStatus::kError || h.error != "HPE_INVALID_TRANSFER_ENCODING") return nullptr;
  if (k.status == ParseStatus::kError || !k.chunked) return nullptr;
  return "hp-bug.te-list-syntax";
}

// http-parser matches header names by prefix: a field *named* "Transfer-Encoding<more>" (say
// "Transfer-Encodingx") sets its Transfer-Encoding flag, and the request is refused for lacking
// chunked (or for having a Content-Length too). A bug on its side: keel treats it as the unrelated
// field it is. Witness: such a field and no real Transfer-Encoding field.
const char* te_name_prefix_rule(const Shape& sh, const Side& h) {
  if (h.status != ParseStatus::kError ||
      (h.error != "HPE_INVALID_TRANSFER_ENCODING" && h.error != "HPE_UNEXPECTED_CONTENT_LENGTH"))
    return nullptr;
  bool prefixed = false;
  for (const std::string_view line : sh.fields()) {
    const std::string_view name = line.substr(0, line.find(':'));
    if (iequals(name, "transfer-encoding")) return nullptr;
    prefixed = prefixed || (name.size() > 17 && iequals(name.substr(0, 17), "transfer-encoding"));
  }
  return prefixed ? "hp-bug.te-name-prefix" : nullptr;
}

// RFC 9110 §5.5: OWS (SP / HTAB) around a field value is not part of it. http-parser 2.9.4 only
// allows SP after the Content-Length digits and refuses "Content-Length: 5\t"
// (HPE_INVALID_CONTENT_LENGTH): a bug on its side. Witness: a single Content-Length field whose
// value is plain digits once OWS is trimmed, with a HTAB around it.
const char* content_length_htab_rule(const Shape& sh, const Side& h) {
  if (h.status != ParseStatus::kError || h.error != "HPE_INVALID_CONTENT_LENGTH") return nullptr;
  for (const std::string_view line : sh.fields()) {
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos || !iequals(line.substr(0, colon), "content-length")) continue;
    const std::string_view raw = line.substr(colon + 1);
    const std::string_view v = trim_ows(raw);
    if (!v.empty() && v.size() <= 18 && std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
        raw.find('\t') != std::string_view::npos && field_values(sh, "content-length").size() == 1)
      return "hp-bug.content-length-htab";
  }
  return nullptr;
}

// Returns the rule explaining why keel and http-parser disagree on this request, or nullptr.
// `in` starts at the request; `k` and `h` are the two outcomes. Each rule: the construct, its
// witness in the bytes, and why keel's behaviour is the intended one.
const char* classify(std::string_view in, const Side& k, const Side& h, int depth = 0) {
  const Shape sh = shape_of(in);
  const std::string_view line = line_at(in, k.consumed);  // keel's failing line
  const std::string_view text = content_of(line);

  // RFC 9110 §9.3.6: CONNECT has no content. After a CONNECT http-parser switches to the tunnel
  // right after the head; keel reads a Content-Length or chunked body like for any request (it may
  // wait for it, or reject it), answers and closes the connection after any CONNECT, whatever its
  // target form (src/http/connection.cpp): nothing after the head is ever parsed as a request.
  // (Until this was found here, an origin-form CONNECT kept the connection open.)
  if (h.status == ParseStatus::kComplete && h.upgrade && h.method == "CONNECT" && k.head_complete)
    return "upgrade.connect-closes";

  if (k.status == ParseStatus::kError && h.status != ParseStatus::kError) {
    // keel rejects what http-parser accepts (or is still reading).

    // RFC 9112 §2.2: a recipient MAY accept a bare LF as a line terminator. keel does not: a
    // front end and keel that disagree on where lines end disagree on the whole framing.
    if ((reason(k, "bare LF") || reason(k, "not ended by CRLF")) && ends_with_bare_lf(line)) return "strict.bare-lf";
    // RFC 9112 §2.2: a bare CR must be rejected or replaced by SP; http-parser (non-strict build)
    // takes CR + any byte as a line end, the classic smuggling vector. keel rejects the line.
    if (text.find('\r') != std::string_view::npos) return "strict.bare-cr";
    // RFC 9110 §5.5: a field value is VCHAR / obs-text / SP / HTAB; NUL, CR and LF MUST be
    // rejected (or replaced), keel rejects every CTL. http-parser 2.9.4 never checks the first
    // byte of a value ("Host:\x00x" passes): a bug on its side.
    if (reason(k, "control character in header value")) {
      const std::size_t colon = text.find(':');
      if (colon != std::string_view::npos)
        for (const char c : text.substr(colon + 1))
          if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f) return "strict.field-value-ctl";
    }
    // RFC 9112 §5.2: obs-fold; a server MUST reject it (or unfold it). keel rejects.
    if (reason(k, "obsolete line folding") && !text.empty() && (text[0] == ' ' || text[0] == '\t'))
      return "strict.obs-fold";
    // RFC 9112 §5.1: no whitespace between field name and colon; a server MUST reject it (400).
    if (reason(k, "whitespace between header name and colon")) {
      const std::size_t colon = text.find(':');
      const std::size_t ws = text.find_first_of(" \t");
      if (ws != std::string_view::npos && (colon == std::string_view::npos || ws < colon))
        return "strict.ws-before-colon";
    }
    // RFC 9110 §5.1: a field name is a token. http-parser's non-strict table lets more through.
    if (reason(k, "header name")) {
      const std::size_t colon = text.find(':');
      const std::string_view name = text.substr(0, colon);
      if (colon == std::string_view::npos || name.empty() || !std::all_of(name.begin(), name.end(), is_tchar))
        return "strict.field-name";
    }

    // Request line (keel stopped at its start).
    const std::string_view rl = text;
    if (reason(k, "method") || reason(k, "target") || reason(k, "HTTP version") || reason(k, "asterisk-form") ||
        reason(k, "URI scheme") || reason(k, "authority")) {
      // RFC 9112 §3: exactly one SP between the three parts; http-parser skips extra spaces.
      if (rl.find("  ") != std::string_view::npos) return "strict.request-line-spaces";
      // RFC 9112 §3: a request line always has an HTTP-version; HTTP/0.9 ("GET /") is long gone.
      if (h.major == 0 && h.minor == 9) return "strict.http09";
      const std::size_t sp1 = rl.find(' ');
      const std::size_t sp2 = sp1 == std::string_view::npos ? sp1 : rl.find(' ', sp1 + 1);
      const std::string_view target =
          sp1 == std::string_view::npos ? std::string_view() : rl.substr(sp1 + 1, sp2 - sp1 - 1);
      const std::string_view version = sp2 == std::string_view::npos ? std::string_view() : rl.substr(sp2 + 1);
      // RFC 9112 §3.2: the target has no fragment; '#' never appears in a request-target.
      if (target.find('#') != std::string_view::npos) return "strict.target-fragment";
      // RFC 9112 §3.2/RFC 3986: no CTLs (http-parser's non-strict build allows HTAB and FF).
      for (const char c : target)
        if (static_cast<unsigned char>(c) < 0x21 || c == 0x7f) return "strict.target-ctl";
      // RFC 9112 §3.2: origin-form, absolute-form (http/https), authority-form only for CONNECT,
      // asterisk-form only for OPTIONS; no userinfo in the authority (RFC 9110 §4.2.4).
      if (invalid_target_form(rl.substr(0, sp1), target)) return "strict.target-form";
      // RFC 9112 §2.3: HTTP-version is HTTP/DIGIT.DIGIT, and keel speaks 1.0 and 1.1 only (505).
      if (version != "HTTP/1.0" && version != "HTTP/1.1") return "strict.version";
    }

    // Header section checks made once the head is complete (keel stopped after it).
    // RFC 9112 §3.2: Host is required in HTTP/1.1 and must appear once (400).
    if (reason(k, "missing Host header") && field_values(sh, "host").empty()) return "strict.host-missing";
    if (reason(k, "several Host headers") && field_values(sh, "host").size() > 1) return "strict.host-repeated";
    // RFC 9110 §7.2 / RFC 9112 §3.2: Host is uri-host [":" port] (RFC 3986), and a server MUST
    // answer an invalid one with 400; http-parser does not look at it.
    if (reason(k, "invalid Host header")) {
      for (const std::string_view v : field_values(sh, "host"))
        if (!v.empty() && !keel::fuzz::ref_host_port(v, false)) return "strict.host-invalid";
    }
    // RFC 9110 §10.1.1: an Expect other than 100-continue may be answered 417.
    if (reason(k, "unsupported expectation")) {
      for (const std::string_view v : field_values(sh, "expect"))
        if (!iequals(v, "100-continue")) return "strict.expect";
    }
    // RFC 9110 §7.6.1: Connection is a list of tokens.
    if (reason(k, "invalid Connection header")) {
      for (const std::string_view e : list_elements(sh, "connection"))
        if (!is_token(e)) return "strict.connection-syntax";
    }
    // RFC 9112 §6.3: a Content-Length that is not a single 1*DIGIT is unrecoverable framing (400).
    if (reason(k, "Content-Length")) {
      const auto cl = field_values(sh, "content-length");
      bool plain = cl.size() == 1 && !cl[0].empty() && cl[0].size() <= 18;
      for (const auto& v : cl)
        for (const char c : v) plain = plain && c >= '0' && c <= '9';
      if (!plain || !field_values(sh, "transfer-encoding").empty()) return "strict.content-length";
    }
    // RFC 9112 §6.1: chunked must be final and applied once, and TE is HTTP/1.1 only; keel
    // implements no other coding (501).
    // Witness: the codings are not exactly one "chunked" token in an HTTP/1.1 request without
    // Content-Length.
    if (reason(k, "Transfer-Encoding") || reason(k, "transfer coding") || reason(k, "chunked applied")) {
      const auto codings = list_elements(sh, "transfer-encoding");
      const bool chunked_only = codings.size() == 1 && iequals(codings[0], "chunked");
      if (!field_values(sh, "transfer-encoding").empty() &&
          (!chunked_only || sh.version == "HTTP/1.0" || !field_values(sh, "content-length").empty()))
        return "strict.transfer-encoding";
    }
    // RFC 9112 §2.2: keel skips at most 4 empty lines before a request line.
    if (reason(k, "too many empty lines") && in.starts_with("\r\n\r\n\r\n\r\n\r\n"))
      return "strict.leading-empty-lines";

    // Chunked framing (keel stopped at the start of the chunk line / after the chunk data).
    // RFC 9112 §7.1: chunk-size = 1*HEXDIG. http-parser 2.9.4 reads any byte >= 0x80 in the size
    // as the digit 0 ("3\x80" is 0x30 bytes): a bug on its side; keel rejects the line.
    if (reason(k, "chunk")) {
      std::size_t d = 0;
      while (d < text.size() && std::isxdigit(static_cast<unsigned char>(text[d]))) ++d;
      if (d < text.size() && static_cast<unsigned char>(text[d]) >= 0x80) return "hp-bug.chunk-size-high-byte";
      // RFC 9112 §7.1: recipients must guard against overflowing chunk sizes; keel takes at most
      // 16 hex digits, leading zeros included (http-parser counts the value, not the digits).
      if (reason(k, "chunk size overflow") && d > 16) return "strict.chunk-size-digits";
    }
    // RFC 9112 §7.1.1: chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] ); http-parser
    // skips anything up to the line end.
    if (reason(k, "chunk extension")) {
      std::size_t d = 0;
      while (d < text.size() && std::isxdigit(static_cast<unsigned char>(text[d]))) ++d;
      if (!keel::fuzz::ref_chunk_ext(text.substr(d))) return "strict.chunk-ext";
    }
    // RFC 9112 §7.1: chunk-data is followed by CRLF; http-parser does not check those two bytes.
    if (reason(k, "missing CRLF after chunk data") && !line.starts_with("\r\n")) return "strict.chunk-data-crlf";
    // Limit: keel's max_body (2^40 here); http-parser waits for the announced bytes.
    // Witness: a Content-Length or a chunk size above it.
    if (reason(k, "body too large")) {
      const std::uint64_t max = keel_limits().max_body;
      for (const std::string_view v : field_values(sh, "content-length"))
        if (v.size() > 13 || (v.size() == 13 && std::strtoull(std::string(v).c_str(), nullptr, 10) > max))
          return "limit.body";
      const std::size_t digits = significant_hex_digits(text);
      if (digits > 11 ||
          (digits == 11 &&
           std::strtoull(std::string(text.substr(0, text.find_first_of(" \t;"))).c_str(), nullptr, 16) + 8192 > max))
        return "limit.body";
    }
    return nullptr;
  }

  if (h.status == ParseStatus::kError && k.status == ParseStatus::kComplete) {
    // keel accepts what http-parser rejects.
    // RFC 9110 §9.1: a method is any token; http-parser only knows its fixed list (and its case).
    if (h.error == "HPE_INVALID_METHOD" && !is_hp_method(k.method)) return "lax.method-token";
    if (const char* rule = te_name_prefix_rule(sh, h)) return rule;
    if (const char* rule = content_length_htab_rule(sh, h)) return rule;
    if (const char* rule = te_list_rule(k, h)) return rule;
    if (k.chunked && hp_chunk_htab(in, h)) return "hp-bug.chunk-ext-htab";
    // RFC 9110 §6.5: trailer fields are not framing; keel keeps them apart (request.trailers) and
    // never reads Content-Length or Transfer-Encoding there. http-parser parses trailers like
    // headers and rejects, say, a malformed Content-Length trailer.
    if (k.chunked && (h.error == "HPE_INVALID_CONTENT_LENGTH" || h.error == "HPE_UNEXPECTED_CONTENT_LENGTH" ||
                      h.error == "HPE_INVALID_TRANSFER_ENCODING")) {
      for (const auto& [name, value] : k.trailers)
        if (iequals(name, "content-length") || iequals(name, "transfer-encoding")) return "lax.trailer-framing-fields";
    }
    return nullptr;
  }

  if (k.status == ParseStatus::kIncomplete && h.status == ParseStatus::kError) {
    if (k.head_complete) {
      if (const char* rule = te_name_prefix_rule(sh, h)) return rule;
      if (const char* rule = content_length_htab_rule(sh, h)) return rule;
      if (const char* rule = content_length_htab_rule(sh, h)) return rule;
    }
    // http-parser validates byte by byte, keel a line at a time (and the framing fields once the
    // head is complete): http-parser rejects something keel has not judged yet. The input is cut
    // after the line http-parser rejected and completed as plausibly as possible (see complete());
    // both parsers rejecting that is agreement, reached at different times. If keel accepts it,
    // the disagreement is real, and only the other rules can explain it.
    const std::size_t lf = in.find('\n', h.consumed);
    std::string c = complete(in.substr(0, lf == std::string_view::npos ? lf : lf + 1));
    Side k2 = run_keel(c);
    // In a trailer section (or after the last chunk): end it too.
    for (int i = 0; i < 2 && k2.status == ParseStatus::kIncomplete && k2.chunked; ++i) {
      c += "\r\n";
      k2 = run_keel(c);
    }
    const Side h2 = run_hp(c);
    if (g_verbose) {
      std::fputs("  completed: ", stderr);
      print_escaped(c, 160);
      std::fputc('\n', stderr);
      print_side("keel", k2);
      print_side("http-parser", h2);
    }
    if (k2.status == ParseStatus::kError && h2.status == ParseStatus::kError) return "timing.early-reject";
    if (const char* rule = te_list_rule(k2, h2)) return rule;
    if (k2.status != ParseStatus::kError && k2.chunked && hp_chunk_htab(in, h)) return "hp-bug.chunk-ext-htab";
    if (depth == 0 && k2.status != h2.status) return classify(c, k2, h2, depth + 1);
    return nullptr;
  }

  if (k.status == ParseStatus::kComplete && h.status == ParseStatus::kComplete && k.keep_alive != h.keep_alive) {
    // RFC 9112 §9.3: a "close" option ends the connection whatever else is listed; otherwise
    // HTTP/1.1 persists and HTTP/1.0 only with "keep-alive". Connection is a comma list with OWS
    // and empty elements (RFC 9110 §5.6.1). http-parser keeps an HTTP/1.0 connection open on
    // "close, keep-alive" and loses tokens in lists with empty elements or odd tokens: bugs on its
    // side. Explained when keel's verdict is the one this reading of the lists gives.
    if (k.keep_alive == reference_keep_alive(k)) return "hp-bug.connection-list";
    return nullptr;
  }

  if (k.status != ParseStatus::kComplete && h.status == ParseStatus::kComplete) {
    // The bare CR of "strict.bare-cr" before keel has seen the LF that ends the line: http-parser
    // already took the CR as a line end, keel rejects the line once it is complete.
    if (has_bare_cr(in.substr(0, h.consumed)) && run_keel(complete(in)).status == ParseStatus::kError)
      return "strict.bare-cr";
    return nullptr;
  }
  return nullptr;
}

// ---- comparison ----------------------------------------------------------------------------------

// The first difference between two complete parses, or nullptr.
const char* compare_complete(const Side& k, const Side& h) {
  if (k.method != h.method) return "method";
  if (k.target != h.target) return "target";
  if (k.major != h.major || k.minor != h.minor) return "version";
  if (k.headers != h.headers) return "headers";
  if (k.trailers != h.trailers) return "trailers";
  if (k.body != h.body) return "body";
  if (k.consumed != h.consumed) return "next request start";
  if (k.keep_alive != h.keep_alive) return "keep-alive";
  return nullptr;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  for (int n = 0; n < kMaxRequests && !rest.empty(); ++n) {
    const Side k = run_keel(rest);
    const Side h = run_hp(rest);
    if (g_verbose) {
      std::fprintf(stderr, "request %d: ", n);
      print_escaped(rest, 120);
      std::fputc('\n', stderr);
      print_side("keel", k);
      print_side("http-parser", h);
    }
    const char* diff = nullptr;
    if (k.status != h.status)
      diff = "outcome";
    else if (k.status == ParseStatus::kComplete)
      diff = compare_complete(k, h);
    // After CONNECT http-parser hands the connection to the tunnel; keel never tunnels and closes
    // the connection after any CONNECT (src/http/connection.cpp): the classifier explains it.
    if (diff == nullptr && h.upgrade && k.method == "CONNECT" && k.target.starts_with('/')) diff = "CONNECT tunnel";
    if (diff != nullptr) {
      const char* rule = classify(rest, k, h);
      if (rule == nullptr) {
        std::fprintf(stderr, "parser_differential_fuzz: unexplained disagreement (%s) on request %d\n", diff, n);
        if (!g_verbose) {
          print_side("keel", k);
          print_side("http-parser", h);
        }
        fail_check("keel and http-parser agree, or a documented rule explains why not", __LINE__);
      }
      if (g_print_rules) std::fprintf(stderr, "diff-rule: %s\n", rule);
      return 0;  // after an explained disagreement the framing of what follows differs
    }
    if (k.status != ParseStatus::kComplete || h.upgrade) return 0;
    FUZZ_CHECK(k.consumed > 0 && k.consumed <= rest.size());
    rest.remove_prefix(k.consumed);
  }
  return 0;
}
