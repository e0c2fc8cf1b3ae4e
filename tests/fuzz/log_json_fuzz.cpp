// libFuzzer target for the JSON escaping of log lines: keel::append_json_escaped()
// (src/base/json_writer.cpp), which src/log/log.cpp uses for every string of a JSON log line, the
// log line formatting itself, and keel::JsonWriter.
//
// Each input is used three ways:
//  1. the whole input escaped with append_json_escaped(): the output has no raw control byte and
//     is valid UTF-8; quoted, it is a JSON string that nlohmann::json::parse accepts and decodes
//     to the input with every byte that does not start a well-formed UTF-8 sequence (Unicode
//     table 3-7) replaced by U+FFFD, as an independent reference sanitiser computes it; valid text
//     without '"', '\' or control characters comes out unchanged;
//  2. a real log line: keel::log::write() in synchronous mode into a temporary file, with the event, logger,
//     request context (request id, trace/span ids, bound fields) and typed fields all taken from
//     the input, read back: the line ends with its only '\n', nlohmann::json parses it (SAX) and
//     every member is the expected one, in order, with the expected (sanitised) value; every
//     other input also writes the console format once, which must be one line of printable UTF-8;
//  3. a JsonWriter driven by operations taken from the input: until the first std::logic_error,
//     a finished document (depth 0) is valid JSON.
// Any violation calls __builtin_trap() so libFuzzer records the input as a crash.

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fuzzer/FuzzedDataProvider.h>
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "fuzz_check.hpp"
#include "keel/json_writer.hpp"
#include "log/log.hpp"

namespace {

// ---- reference UTF-8 sanitiser -------------------------------------------------------------------

// Length of the well-formed UTF-8 sequence at s[i] (Unicode 15, table 3-7), 0 if none.
std::size_t wellformed(std::string_view s, std::size_t i) {
  const auto b = [&](std::size_t k) -> unsigned { return k < s.size() ? static_cast<unsigned char>(s[k]) : 0x100; };
  const unsigned c = b(i);
  const auto in = [](unsigned v, unsigned lo, unsigned hi) { return v >= lo && v <= hi; };
  if (c < 0x80) return 1;
  if (in(c, 0xc2, 0xdf)) return in(b(i + 1), 0x80, 0xbf) ? 2 : 0;
  unsigned lo = 0x80, hi = 0xbf;
  std::size_t n = 0;
  if (c == 0xe0) {
    lo = 0xa0, n = 3;
  } else if (in(c, 0xe1, 0xec) || in(c, 0xee, 0xef)) {
    n = 3;
  } else if (c == 0xed) {
    hi = 0x9f, n = 3;
  } else if (c == 0xf0) {
    lo = 0x90, n = 4;
  } else if (in(c, 0xf1, 0xf3)) {
    n = 4;
  } else if (c == 0xf4) {
    hi = 0x8f, n = 4;
  } else {
    return 0;
  }
  if (!in(b(i + 1), lo, hi)) return 0;
  for (std::size_t k = 2; k < n; ++k)
    if (!in(b(i + k), 0x80, 0xbf)) return 0;
  return n;
}

bool valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = wellformed(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

// What a JSON parser must read back: each byte that starts no well-formed sequence -> U+FFFD.
std::string sanitized(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = wellformed(s, i);
    if (n == 0) {
      out += "\xef\xbf\xbd";
      ++i;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
  return out;
}

// ---- 1. append_json_escaped ----------------------------------------------------------------------

void check_escape(std::string_view s) {
  std::string out = "prefix";  // appends, keeping what is there
  keel::append_json_escaped(out, s);
  FUZZ_CHECK(out.starts_with("prefix"));
  const std::string body = out.substr(6);
  for (const char ch : body) FUZZ_CHECK(static_cast<unsigned char>(ch) >= 0x20 && ch != 0x7f);
  FUZZ_CHECK(valid_utf8(body));
  nlohmann::json j;
  try {
    j = nlohmann::json::parse("\"" + body + "\"");
  } catch (const nlohmann::json::exception& e) {
    std::fprintf(stderr, "log_json_fuzz: not a JSON string: %s\n", e.what());
    fail_check("escaped output parses as JSON", __LINE__);
  }
  FUZZ_CHECK(j.is_string() && j.get<std::string>() == sanitized(s));
  bool plain = valid_utf8(s);
  for (const char ch : s)
    plain = plain && static_cast<unsigned char>(ch) >= 0x20 && ch != 0x7f && ch != '"' && ch != '\\';
  if (plain) FUZZ_CHECK(body == s);
}

// ---- 2. log lines --------------------------------------------------------------------------------

// One member of the top-level object: its key and value as read by the SAX parser.
struct Member {
  std::string key;
  enum Type { kString, kInt, kFloat, kBool, kNull, kOther } type = kOther;
  std::string s;
  double number = 0;
  std::int64_t integer = 0;
  bool boolean = false;
};

struct Sax {
  std::vector<Member> members;
  int depth = 0;
  bool error = false;
  std::string message;

  Member* value() { return depth == 1 && !members.empty() ? &members.back() : nullptr; }
  bool null() {
    if (auto* m = value()) m->type = Member::kNull;
    return true;
  }
  bool boolean(bool v) {
    if (auto* m = value()) m->type = Member::kBool, m->boolean = v;
    return true;
  }
  bool number_integer(std::int64_t v) {
    if (auto* m = value()) m->type = Member::kInt, m->integer = v, m->number = static_cast<double>(v);
    return true;
  }
  bool number_unsigned(std::uint64_t v) {
    if (auto* m = value()) {
      m->type = v <= INT64_MAX ? Member::kInt : Member::kFloat;
      m->integer = static_cast<std::int64_t>(v);
      m->number = static_cast<double>(v);
    }
    return true;
  }
  bool number_float(double v, const std::string&) {
    if (auto* m = value()) m->type = Member::kFloat, m->number = v;
    return true;
  }
  bool string(std::string& v) {
    if (auto* m = value()) m->type = Member::kString, m->s = v;
    return true;
  }
  bool binary(nlohmann::json::binary_t&) { return true; }
  bool start_object(std::size_t) {
    ++depth;
    return true;
  }
  bool end_object() {
    --depth;
    return true;
  }
  bool start_array(std::size_t) {
    ++depth;
    return true;
  }
  bool end_array() {
    --depth;
    return true;
  }
  bool key(std::string& k) {
    if (depth == 1) members.emplace_back().key = k;
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::json::exception& e) {
    error = true;
    message = e.what();
    return false;
  }
};

int g_log_fd = -1;
std::string g_path;

void setup_log(keel::log::Format format) {
  keel::log::Options o;
  o.level = keel::log::Level::kDebug;
  o.format = format;
  o.file = g_path;
  keel::log::configure(o);
}

std::string take_written() {
  struct stat st {};
  FUZZ_CHECK(::fstat(g_log_fd, &st) == 0);
  std::string out(static_cast<std::size_t>(st.st_size), '\0');
  if (!out.empty()) FUZZ_CHECK(::pread(g_log_fd, out.data(), out.size(), 0) == static_cast<ssize_t>(out.size()));
  FUZZ_CHECK(::ftruncate(g_log_fd, 0) == 0);
  return out;
}

void write_line(keel::log::Level level, std::string_view logger, std::string_view event,
                const std::vector<keel::log::Field>& f) {
  using keel::log::write;
  switch (f.size()) {
    case 0:
      return write(level, logger, event, {});
    case 1:
      return write(level, logger, event, {f[0]});
    case 2:
      return write(level, logger, event, {f[0], f[1]});
    case 3:
      return write(level, logger, event, {f[0], f[1], f[2]});
    case 4:
      return write(level, logger, event, {f[0], f[1], f[2], f[3]});
    default:
      return write(level, logger, event, {f[0], f[1], f[2], f[3], f[4]});
  }
}

void expect_string(const Member& m, std::string_view key, std::string_view raw) {
  if (m.key != sanitized(key) || m.type != Member::kString || m.s != sanitized(raw)) {
    std::fprintf(stderr, "log_json_fuzz: member \"%s\" (type %d) is not the expected string member\n", m.key.c_str(),
                 m.type);
    fail_check("member", __LINE__);
  }
}

void check_log_line(FuzzedDataProvider& in) {
  std::deque<std::string> keep;  // the views in fields and context point here
  const auto str = [&](std::size_t max) -> std::string_view {
    return keep.emplace_back(in.ConsumeRandomLengthString(max));
  };
  const auto level = static_cast<keel::log::Level>(in.ConsumeIntegralInRange(0, 4));
  const int worker = in.ConsumeIntegralInRange(-1, 3);
  const std::string_view logger = str(40);
  const std::string_view event = str(80);
  const bool with_context = in.ConsumeBool();
  keel::log::Context ctx;
  if (with_context) {
    ctx.request_id = str(40);
    ctx.trace_id = std::string(str(40));
    ctx.span_id = std::string(str(20));
    ctx.client_ip = str(40);
    ctx.route = str(40);
    const int n = in.ConsumeIntegralInRange(0, 3);
    for (int i = 0; i < n; ++i) ctx.fields.emplace_back(std::string(str(20)), std::string(str(60)));
  }
  std::vector<keel::log::Field> fields;
  const int n_fields = in.ConsumeIntegralInRange(0, 5);
  for (int i = 0; i < n_fields; ++i) {
    const std::string_view key = str(20);
    switch (in.ConsumeIntegralInRange(0, 3)) {
      case 0:
        fields.emplace_back(key, str(100));
        break;
      case 1:
        fields.emplace_back(key, in.ConsumeIntegral<std::int64_t>());
        break;
      case 2: {
        double d = 0;
        const auto bits = in.ConsumeIntegral<std::uint64_t>();
        static_assert(sizeof d == sizeof bits);
        std::memcpy(&d, &bits, sizeof d);
        fields.emplace_back(key, d);
        break;
      }
      default:
        fields.emplace_back(key, in.ConsumeBool());
    }
  }
  const bool console = in.ConsumeBool();

  keel::log::set_worker_id(worker);
  {
    keel::log::ScopedContext scope(with_context ? &ctx : nullptr);
    write_line(level, logger, event, fields);
  }
  const std::string line = take_written();
  FUZZ_CHECK(!line.empty() && line.back() == '\n' && line.find('\n') == line.size() - 1);

  Sax sax;
  const bool ok = nlohmann::json::sax_parse(line, &sax);
  if (!ok || sax.error) {
    std::fprintf(stderr, "log_json_fuzz: log line is not JSON (%s): %s", sax.message.c_str(), line.c_str());
    fail_check("log line parses as JSON", __LINE__);
  }
  const std::vector<Member>& m = sax.members;
  std::size_t i = 0;
  const auto next = [&]() -> const Member& {
    FUZZ_CHECK(i < m.size());
    return m[i++];
  };
  {
    const Member& ts = next();
    FUZZ_CHECK(ts.key == "ts" && ts.type == Member::kString && ts.s.size() == 27 && ts.s[10] == 'T' &&
               ts.s.back() == 'Z');
  }
  expect_string(next(), "level", keel::log::level_name(level));
  expect_string(next(), "event", event);
  expect_string(next(), "logger", logger);
  {
    const Member& pid = next();
    FUZZ_CHECK(pid.key == "pid" && pid.type == Member::kInt && pid.integer == ::getpid());
  }
  if (worker >= 0) {
    const Member& w = next();
    FUZZ_CHECK(w.key == "worker" && w.type == Member::kInt && w.integer == worker);
  }
  if (with_context) {
    // Each key once: a field of the call hides the context's, a later bound field an earlier one
    // (and client_ip/route).
    const auto in_call = [&](std::string_view key) {
      return std::any_of(fields.begin(), fields.end(), [&](const keel::log::Field& f) { return f.key == key; });
    };
    const auto bound_from = [&](std::size_t from, std::string_view key) {
      for (std::size_t j = from; j < ctx.fields.size(); ++j)
        if (ctx.fields[j].first == key) return true;
      return false;
    };
    if (!ctx.request_id.empty() && !in_call("request_id")) expect_string(next(), "request_id", ctx.request_id);
    if (!ctx.trace_id.empty()) {
      if (!in_call("trace_id")) expect_string(next(), "trace_id", ctx.trace_id);
      if (!in_call("span_id")) expect_string(next(), "span_id", ctx.span_id);
    }
    if (!ctx.client_ip.empty() && !in_call("client_ip") && !bound_from(0, "client_ip"))
      expect_string(next(), "client_ip", ctx.client_ip);
    if (!ctx.route.empty() && !in_call("route") && !bound_from(0, "route")) expect_string(next(), "route", ctx.route);
    for (std::size_t j = 0; j < ctx.fields.size(); ++j) {
      const auto& [k, v] = ctx.fields[j];
      if (!in_call(k) && !bound_from(j + 1, k)) expect_string(next(), k, v);
    }
  }
  for (const auto& f : fields) {
    if (const auto* s = std::get_if<std::string_view>(&f.value)) {
      expect_string(next(), f.key, *s);
      continue;
    }
    const Member& v = next();
    FUZZ_CHECK(v.key == sanitized(f.key));
    if (const auto* n = std::get_if<std::int64_t>(&f.value)) {
      FUZZ_CHECK(v.type == Member::kInt && v.integer == *n);
    } else if (const auto* d = std::get_if<double>(&f.value)) {
      if (!std::isfinite(*d)) {
        FUZZ_CHECK(v.type == Member::kNull);
      } else {  // printed with %.6g
        FUZZ_CHECK(v.type == Member::kInt || v.type == Member::kFloat);
        FUZZ_CHECK(std::fabs(v.number - *d) <= std::fabs(*d) * 1e-5);
      }
    } else {
      FUZZ_CHECK(v.type == Member::kBool && v.boolean == std::get<bool>(f.value));
    }
  }
  FUZZ_CHECK(i == m.size());

  if (console) {
    setup_log(keel::log::Format::kConsole);
    {
      keel::log::ScopedContext scope(with_context ? &ctx : nullptr);
      write_line(level, logger, event, fields);
    }
    setup_log(keel::log::Format::kJson);
    const std::string text = take_written();
    FUZZ_CHECK(!text.empty() && text.back() == '\n');
    const std::string_view body = std::string_view(text).substr(0, text.size() - 1);
    for (const char ch : body) FUZZ_CHECK(static_cast<unsigned char>(ch) >= 0x20 && ch != 0x7f);
    FUZZ_CHECK(valid_utf8(body));
  }
}

// ---- 3. JsonWriter -------------------------------------------------------------------------------

void check_writer(FuzzedDataProvider& in) {
  keel::JsonWriter w;
  try {
    for (int op = 0; op < 64 && in.remaining_bytes() > 0; ++op) {
      switch (in.ConsumeIntegralInRange(0, 10)) {
        case 0:
          w.begin_object();
          break;
        case 1:
          w.end_object();
          break;
        case 2:
          w.begin_array();
          break;
        case 3:
          w.end_array();
          break;
        case 4:
          w.key(in.ConsumeRandomLengthString(16));
          break;
        case 5:
          w.value(in.ConsumeRandomLengthString(32));
          break;
        case 6:
          w.value(in.ConsumeIntegral<std::int64_t>());
          break;
        case 7:
          w.value(in.ConsumeIntegral<std::uint64_t>());
          break;
        case 8: {
          double d = 0;
          const auto bits = in.ConsumeIntegral<std::uint64_t>();
          std::memcpy(&d, &bits, sizeof d);
          w.value(d);
          break;
        }
        case 9:
          w.value(in.ConsumeBool());
          break;
        default:
          w.null();
      }
    }
  } catch (const std::logic_error&) {
    return;  // misuse is reported; the writer is not meant to be used further
  }
  std::string doc;
  try {
    doc = w.str();
  } catch (const std::logic_error&) {
    return;  // still open
  }
  if (doc.empty()) return;
  if (!nlohmann::json::accept(doc)) {
    std::fprintf(stderr, "log_json_fuzz: JsonWriter produced invalid JSON: %s\n", doc.c_str());
    fail_check("JsonWriter output is JSON", __LINE__);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // A regular file, not /proc/self/fd/N of a memfd: the log refuses to open a symlink (O_NOFOLLOW).
  // The log appends to it by path; this descriptor reads and empties it between inputs.
  char name[] = "/tmp/keel-log-fuzz-XXXXXX";
  g_log_fd = ::mkstemp(name);
  if (g_log_fd < 0) {
    std::perror("mkstemp");
    std::abort();
  }
  g_path = name;
  std::atexit([] { ::unlink(g_path.c_str()); });
  setup_log(keel::log::Format::kJson);
  keel::log::set_synchronous(true);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  check_escape(std::string_view(reinterpret_cast<const char*>(data), size));
  {
    FuzzedDataProvider in(data, size);
    check_log_line(in);
  }
  {
    FuzzedDataProvider in(data, size);
    check_writer(in);
  }
  return 0;
}
