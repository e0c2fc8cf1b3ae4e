#include "trace/tracer.hpp"

#include <array>
#include <charconv>
#include <cstring>

#include "base/strings.hpp"
#include "keel/request.hpp"
#include "trace/semconv.hpp"

namespace keel::trace {
namespace {

std::unique_ptr<Tracer> g_tracer;

// port: the one the host names, else default_port (the scheme's).
std::string_view host_without_port(std::string_view host, std::int64_t default_port, std::int64_t& port) {
  port = default_port;
  if (!host.empty() && host.front() == '[') {
    const auto close = host.find(']');
    if (close != std::string_view::npos && close + 2 < host.size() && host[close + 1] == ':')
      port = std::atoll(std::string(host.substr(close + 2)).c_str());
    return host.substr(1, close == std::string_view::npos ? std::string_view::npos : close - 1);
  }
  const auto colon = host.rfind(':');
  if (colon == std::string_view::npos) return host;
  port = std::atoll(std::string(host.substr(colon + 1)).c_str());
  return host.substr(0, colon);
}

// "203.0.113.7:51234" / "[2001:db8::1]:51234" -> the address and port; empty for a unix socket
// peer ("unix", "unix:/path") or anything else that is not ip:port.
std::string_view peer_address(std::string_view peer, std::int64_t& port) {
  port = 0;
  if (peer.rfind("unix", 0) == 0) return {};
  std::string_view ip;
  std::string_view digits;
  if (!peer.empty() && peer.front() == '[') {
    const auto close = peer.find(']');
    if (close == std::string_view::npos || close + 1 >= peer.size() || peer[close + 1] != ':') return {};
    ip = peer.substr(1, close - 1);
    digits = peer.substr(close + 2);
  } else {
    const auto colon = peer.rfind(':');
    if (colon == std::string_view::npos) return {};
    ip = peer.substr(0, colon);
    digits = peer.substr(colon + 1);
  }
  std::int64_t n = 0;
  const auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
  if (ec == std::errc() && ptr == digits.data() + digits.size() && n > 0 && n <= 65535) port = n;
  return ip;
}

}  // namespace

std::optional<Sampler> parse_sampler(std::string_view n) {
  if (n == "always_on") return Sampler::kAlwaysOn;
  if (n == "always_off") return Sampler::kAlwaysOff;
  if (n == "traceidratio") return Sampler::kTraceIdRatio;
  if (n == "parentbased_always_on") return Sampler::kParentAlwaysOn;
  if (n == "parentbased_always_off") return Sampler::kParentAlwaysOff;
  if (n == "parentbased_traceidratio") return Sampler::kParentTraceIdRatio;
  return std::nullopt;
}

std::uint64_t now_unix_nano() noexcept {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
}

Tracer::Tracer(TracerOptions options) : options_(std::move(options)) {
  if (options_.exporter) exporter_ = std::make_unique<BatchExporter>(*options_.exporter);
}

Tracer::~Tracer() = default;

// TraceIdRatioBased as OTel specifies it: the lower 8 bytes of the trace id, compared with the
// ratio scaled to 2^63 — the same decision on every service for the same trace.
bool Tracer::sampled_root(const TraceIdBytes& id) const noexcept {
  switch (options_.sampler) {
    case Sampler::kAlwaysOn:
    case Sampler::kParentAlwaysOn:
      return true;
    case Sampler::kAlwaysOff:
    case Sampler::kParentAlwaysOff:
      return false;
    case Sampler::kTraceIdRatio:
    case Sampler::kParentTraceIdRatio: {
      if (options_.ratio >= 1.0) return true;
      if (options_.ratio <= 0.0) return false;
      std::uint64_t low = 0;
      for (std::size_t i = 8; i < 16; ++i) low = (low << 8) | id[i];
      low >>= 1;  // 63 bits
      return static_cast<double>(low) < options_.ratio * 9223372036854775808.0;
    }
  }
  return true;
}

void Tracer::begin_request(const Request& request, RequestTrace& trace, log::Context& context) {
  trace = RequestTrace{};
  trace.active = true;
  trace.start_unix_nano = now_unix_nano();
  // Exactly one traceparent field: several are invalid, a new trace (as parse_traceparent(span)
  // decides; counted here without building a list on every request).
  std::string_view traceparent;
  int traceparents = 0;
  for (const auto& h : request.headers()) {
    if (base::iequals(h.name, "traceparent") && traceparents++ == 0) traceparent = h.value;
  }
  const std::optional<TraceParent> parent =
      traceparents == 1 ? parse_traceparent(traceparent) : std::optional<TraceParent>();
  const bool parent_based = options_.sampler == Sampler::kParentAlwaysOn ||
                            options_.sampler == Sampler::kParentAlwaysOff ||
                            options_.sampler == Sampler::kParentTraceIdRatio;
  if (parent) {
    trace.context.trace_id = parent->trace_id;
    trace.parent = parent->parent_id;
    const bool sampled = parent_based ? parent->sampled() : sampled_root(parent->trace_id);
    trace.context.flags = static_cast<std::uint8_t>((parent->flags & kFlagRandom) | (sampled ? kFlagSampled : 0));
    // tracestate only travels with a valid traceparent; a malformed one is dropped whole.
    std::vector<std::string_view> values;
    for (const auto& h : request.headers())
      if (base::iequals(h.name, "tracestate")) values.push_back(h.value);
    if (!values.empty()) trace.trace_state = format_tracestate(parse_tracestate(values));
  } else {
    const TraceParent root = new_root(false);
    trace.context.trace_id = root.trace_id;
    trace.context.flags = static_cast<std::uint8_t>(kFlagRandom | (sampled_root(root.trace_id) ? kFlagSampled : 0));
  }
  trace.context.parent_id = new_span_id();  // our SERVER span
  for (const auto& p : options_.untraced_paths)
    if (request.path() == p) trace.recording = false;
  // In place: the dispatcher reuses its contexts, so after the first requests no allocation.
  context.trace_id.clear();
  base::append_hex(context.trace_id, trace.context.trace_id);
  context.span_id.clear();
  base::append_hex(context.span_id, trace.context.parent_id);
  context.trace_flags = trace.context.flags;
  context.trace_state = trace.trace_state;
}

void Tracer::end_request(RequestTrace& trace, const Request& request, std::string_view route, int status) {
  if (!trace.active) return;
  trace.active = false;
  if (!trace.context.sampled() || !exporter_ || !trace.recording) return;
  SpanData s;
  s.trace_id = trace.context.trace_id;
  s.span_id = trace.context.parent_id;
  s.parent_span_id = trace.parent;
  s.trace_state = trace.trace_state;
  s.flags = trace.context.flags;
  s.kind = SpanKind::kServer;
  s.start_unix_nano = trace.start_unix_nano;
  s.end_unix_nano = now_unix_nano();
  // Attributes as the stable HTTP semantic conventions name them (semconv v1.23+).
  const HttpMethod method = http_method(request.method());
  // "GET /api/users/{id:int}"; without a route just the method (never the raw path: cardinality).
  s.name = std::string(method.span_name());
  if (route != "unmatched") s.name += " " + std::string(route);
  s.attributes.reserve(16);
  s.attributes.push_back({"http.request.method", std::string(method.value)});
  if (!method.known) s.attributes.push_back({"http.request.method_original", std::string(request.method())});
  // The path the client asked for: under --root-path, the prefix the proxy mounts the app at too.
  if (request.root_path().empty())
    s.attributes.push_back({"url.path", std::string(request.path())});
  else
    s.attributes.push_back({"url.path", std::string(request.root_path()) + std::string(request.path())});
  // url.query when a query was received (even an empty one: "/x?").
  if (request.target().find('?') != std::string_view::npos)
    s.attributes.push_back({"url.query", redact_query(request.query())});
  s.attributes.push_back({"url.scheme", std::string(request.scheme())});
  s.attributes.push_back({"http.response.status_code", static_cast<std::int64_t>(status)});
  // server.address from Host (or an absolute-form target, or what a trusted proxy forwarded);
  // none at all (HTTP/1.0 without Host): no server.address and no server.port rather than an
  // empty one.
  std::int64_t port = 80;
  const std::string_view host = host_without_port(request.host(), request.scheme() == "https" ? 443 : 80, port);
  if (!host.empty()) {
    s.attributes.push_back({"server.address", std::string(host)});
    s.attributes.push_back({"server.port", port});
  }
  // client.address: the client a trusted proxy named, else the peer; network.peer.*: the peer.
  const std::string_view peer = request.peer_address();
  std::int64_t peer_port = 0;
  const std::string_view peer_ip = peer_address(peer, peer_port);
  s.attributes.push_back({"client.address", std::string(base::client_ip(request.client_address()))});  // or "unix"
  if (!peer_ip.empty()) {
    s.attributes.push_back({"network.peer.address", std::string(peer_ip)});
    if (peer_port > 0) s.attributes.push_back({"network.peer.port", peer_port});
  }
  // "http" and "1.0" / "1.1" / "2" (HTTP/2 streams say 2, not their version_minor() 0).
  s.attributes.push_back({"network.protocol.name", std::string("http")});
  s.attributes.push_back({"network.protocol.version", std::string(request.http_version())});
  if (route != "unmatched") s.attributes.push_back({"http.route", std::string(route)});
  if (const TlsInfo* tls = request.tls()) {  // OpenTelemetry's tls.* semantic conventions
    s.attributes.push_back({"tls.protocol.name", std::string("tls")});
    const std::string_view v = tls->version;  // "TLSv1.3" -> "1.3"
    s.attributes.push_back(
        {"tls.protocol.version", std::string(v.substr(v.find('v') == std::string_view::npos ? 0 : v.find('v') + 1))});
    s.attributes.push_back({"tls.cipher", tls->cipher});
    s.attributes.push_back({"tls.resumed", tls->resumed});
    if (!tls->server_name.empty()) s.attributes.push_back({"tls.client.server_name", tls->server_name});
    if (!tls->alpn.empty()) s.attributes.push_back({"tls.next_protocol", tls->alpn});
    if (!tls->client_subject.empty()) s.attributes.push_back({"tls.client.subject", tls->client_subject});
  }
  if (const auto ua = request.header("User-Agent")) s.attributes.push_back({"user_agent.original", std::string(*ua)});
  if (status >= 500) {
    s.status = StatusCode::kError;
    s.attributes.push_back(
        {"error.type", trace.exception_type.empty() ? std::to_string(status) : trace.exception_type});
  }
  if (!trace.exception_type.empty()) {
    s.events.push_back({"exception",
                        s.end_unix_nano,
                        {{"exception.type", trace.exception_type}, {"exception.message", trace.exception_message}}});
  }
  exporter_->enqueue(std::move(s));
}

void Tracer::end_span(SpanData span) {
  if (exporter_ && (span.flags & kFlagSampled) != 0) exporter_->enqueue(std::move(span));
}

std::uint64_t Tracer::dropped() const noexcept {
  return exporter_ ? exporter_->dropped() : 0;
}

void Tracer::shutdown(std::chrono::steady_clock::time_point deadline) {
  if (exporter_) exporter_->shutdown(deadline);
}

Tracer* tracer() noexcept {
  return g_tracer.get();
}

void set_tracer(std::unique_ptr<Tracer> t) {
  g_tracer = std::move(t);
}

}  // namespace keel::trace
