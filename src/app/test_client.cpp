#include "keel/testing.hpp"

#include <stdexcept>

#include "app/dispatcher.hpp"
#include "app/router.hpp"
#include "base/strings.hpp"
#include "http/handler.hpp"
#include "http/request_parser.hpp"
#include "http/response_writer.hpp"
#include "keel/app.hpp"
#include "net/ip.hpp"
#include "runtime/event_loop.hpp"
#include "runtime/thread_pool.hpp"

namespace keel::testing {
namespace {

// One request handed to the dispatcher as the HTTP/1 connection would, its answer kept.
class LocalExchange final : public http::Exchange {
 public:
  // trusted: the options' forwarded_allow_ips when proxy headers are read from this peer.
  LocalExchange(const http::ParsedRequest& parsed, std::size_t size, runtime::EventLoop& loop,
                const net::AddressSet* trusted)
      : size_(size), loop_(loop) {
    set_peer_address("127.0.0.1:0");
    begin_request(parsed);
    if (trusted != nullptr) apply_proxy_headers(*trusted);
  }
  bool peer_gone() const noexcept override { return false; }
  http::Delivery respond(Response& response) override {
    out_.status = response.status();
    if (!response.content_type().empty()) out_.headers.emplace_back("Content-Type", response.content_type());
    for (const auto& h : response.headers()) out_.headers.push_back(h);
    if (!request_id_if_any().empty()) out_.headers.emplace_back(Request::id_header(), request_id_if_any());
    out_.body = response.body();
    if (response.producer()) {  // a streamed body, read to its end
      std::string piece;
      for (bool more = true; more;) {
        piece.clear();
        more = response.producer()(piece);
        out_.body += piece;
      }
    }
    if (request_.method() == "HEAD") out_.body.clear();
    return {true, size_, out_.body.size()};
  }
  void finish() noexcept override {
    end_request();
    finished_ = true;
    loop_.stop();
  }
  [[nodiscard]] bool finished() const noexcept { return finished_; }
  TestResponse take() { return std::move(out_); }

 private:
  std::size_t size_;
  runtime::EventLoop& loop_;
  TestResponse out_;
  bool finished_ = false;
};

}  // namespace

std::optional<std::string> TestResponse::header(std::string_view name) const {
  for (const auto& [n, v] : headers)
    if (base::iequals(n, name)) return v;
  return std::nullopt;
}

struct TestClient::Impl {
  explicit Impl(App& app)
      : options(app.options()),
        dispatcher(app.router(), app.middleware(), 0, app.options().operational_middleware, app.options().root_path),
        pool(app.options().threads, app.options().thread_queue) {
    limits.max_request_line = options.limit_request_line;
    limits.max_header_field = options.limit_request_field_size;
    limits.max_header_count = options.limit_request_fields;
    limits.max_header_block = options.limit_request_header_size;
    limits.max_body = options.limit_request_body;
    // The test client's peer is 127.0.0.1: its proxy headers count as the server would count them.
    forwarded_allow_ips = net::AddressSet::parse(options.forwarded_allow_ips);
    const auto loopback = net::parse_ip("127.0.0.1");
    proxy_headers = options.proxy_headers && forwarded_allow_ips.contains(*loopback);
  }
  ~Impl() { pool.stop(std::chrono::steady_clock::now() + std::chrono::seconds(5)); }

  const ServerOptions& options;
  app::Dispatcher dispatcher;
  runtime::EventLoop loop;
  runtime::ThreadPool pool;
  http::ParserLimits limits;
  net::AddressSet forwarded_allow_ips;
  bool proxy_headers = false;
};

TestClient::TestClient(App& app) : impl_(std::make_unique<Impl>(app)) {}
TestClient::~TestClient() = default;

TestResponse TestClient::request(std::string_view method, std::string_view target, const Headers& headers,
                                 std::string_view body) {
  std::string wire;
  wire.append(method).append(" ").append(target).append(" HTTP/1.1\r\n");
  bool host = false;
  for (const auto& [name, value] : headers) {
    host = host || base::iequals(name, "Host");
    wire.append(name).append(": ").append(value).append("\r\n");
  }
  if (!host) wire.append("Host: testclient\r\n");
  if (!body.empty() || method == "POST" || method == "PUT" || method == "PATCH")
    wire.append("Content-Length: ").append(std::to_string(body.size())).append("\r\n");
  wire.append("\r\n").append(body);

  http::RequestParser parser(impl_->limits);
  const http::ParseStatus st = parser.parse(wire.data(), wire.size());
  if (st != http::ParseStatus::kComplete) {
    // What a server would answer before any handler runs.
    const int status = st == http::ParseStatus::kError ? parser.error_status() : 400;
    const Response r = http::problem_response(
        status, st == http::ParseStatus::kError ? parser.error_reason() : "incomplete request", {});
    TestResponse out;
    out.status = status;
    out.headers.emplace_back("Content-Type", r.content_type());
    out.body = r.body();
    return out;
  }
  LocalExchange exchange(parser.request(), parser.consumed(), impl_->loop,
                         impl_->proxy_headers ? &impl_->forwarded_allow_ips : nullptr);
  runtime::ThreadPool* previous = runtime::ThreadPool::current();
  runtime::ThreadPool::set_current(&impl_->pool);
  // Handled from inside the loop, so a handler that suspends (keel::sleep, keel::offload,
  // keel::fetch) resumes on it; the loop stops when the exchange finishes.
  impl_->loop.post([this, &exchange] { impl_->dispatcher.handle(exchange); });
  impl_->loop.run();
  runtime::ThreadPool::set_current(previous);
  if (!exchange.finished()) throw std::logic_error("keel::testing::TestClient: the request did not finish");
  return exchange.take();
}

namespace {
Headers with_json_type(const Headers& headers) {
  for (const auto& [name, value] : headers)
    if (base::iequals(name, "Content-Type")) return headers;
  Headers h = headers;
  h.emplace_back("Content-Type", "application/json");
  return h;
}
}  // namespace

TestResponse TestClient::post(std::string_view target, std::string_view body, const Headers& headers) {
  return request("POST", target, with_json_type(headers), body);
}
TestResponse TestClient::put(std::string_view target, std::string_view body, const Headers& headers) {
  return request("PUT", target, with_json_type(headers), body);
}
TestResponse TestClient::patch(std::string_view target, std::string_view body, const Headers& headers) {
  return request("PATCH", target, with_json_type(headers), body);
}

}  // namespace keel::testing
