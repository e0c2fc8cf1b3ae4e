// The response a handler returns. The server adds Date, Server, Content-Length (or
// Transfer-Encoding: chunked for streamed bodies) and Connection itself.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "keel/json_writer.hpp"

namespace keel {

class Response {
 public:
  // Produces the next piece of a streamed body into out; returns false when the body is complete
  // (out may still hold a last piece). Called on the event loop as the client drains its socket.
  using BodyProducer = std::function<bool(std::string& out)>;

  Response() = default;
  explicit Response(int status) : status_(status) {}

  static Response text(std::string body, int status = 200) {
    Response r(status);
    r.content_type_ = "text/plain; charset=utf-8";
    r.body_ = std::move(body);
    return r;
  }
  static Response json(const nlohmann::json& value, int status = 200) {
    Response r(status);
    r.content_type_ = "application/json";
    r.body_ = value.dump();
    return r;
  }
  // The fast path for hot endpoints: a document built with JsonWriter.
  static Response json(JsonWriter&& writer, int status = 200) {
    Response r(status);
    r.content_type_ = "application/json";
    r.body_ = std::move(writer).take();
    return r;
  }
  // Chunked streaming: the body is produced piece by piece, with backpressure.
  static Response stream(BodyProducer producer, std::string content_type = "application/octet-stream",
                         int status = 200) {
    Response r(status);
    r.content_type_ = std::move(content_type);
    r.producer_ = std::move(producer);
    return r;
  }

  [[nodiscard]] int status() const noexcept { return status_; }
  Response& set_status(int status) noexcept {
    status_ = status;
    return *this;
  }
  [[nodiscard]] const std::string& body() const noexcept { return body_; }
  Response& set_body(std::string body) {
    body_ = std::move(body);
    return *this;
  }
  [[nodiscard]] const std::string& content_type() const noexcept { return content_type_; }
  Response& set_content_type(std::string ct) {
    content_type_ = std::move(ct);
    return *this;
  }
  // Adds a header. Names must be tokens and values must not contain CR, LF or NUL: a response
  // with an invalid header is never sent (the server answers 500 instead), so handler bugs
  // cannot split responses.
  Response& add_header(std::string name, std::string value) {
    headers_.emplace_back(std::move(name), std::move(value));
    return *this;
  }
  [[nodiscard]] const std::vector<std::pair<std::string, std::string>>& headers() const noexcept { return headers_; }
  [[nodiscard]] const BodyProducer& producer() const noexcept { return producer_; }
  // A trailer field, sent after the body (gRPC's status, a checksum of a streamed body): over
  // HTTP/2 always, over HTTP/1.1 with a streamed (chunked) body; an HTTP/1.0 client or a body
  // with a Content-Length over HTTP/1.1 gets none. Same rules as add_header.
  Response& add_trailer(std::string name, std::string value) {
    trailers_.emplace_back(std::move(name), std::move(value));
    return *this;
  }
  [[nodiscard]] const std::vector<std::pair<std::string, std::string>>& trailers() const noexcept { return trailers_; }
  // Asks the server to close the connection after this response.
  Response& close_connection(bool close = true) noexcept {
    close_ = close;
    return *this;
  }
  [[nodiscard]] bool closes_connection() const noexcept { return close_; }

 private:
  int status_ = 200;
  bool close_ = false;
  std::string content_type_;
  std::string body_;
  std::vector<std::pair<std::string, std::string>> headers_;
  std::vector<std::pair<std::string, std::string>> trailers_;
  BodyProducer producer_;
};

}  // namespace keel
