#include <keel/keel.hpp>

int main(int argc, char** argv) {
  keel::App app;
  app.get("/hello/{name}", [](keel::Request& req) {
    const std::string name(req.param("name"));  // percent-decoded
    return keel::Response::text("Hello, " + name + "!");
  });
  app.get("/slow", [](keel::Request&) -> keel::Task<keel::Response> {
    co_await keel::sleep(std::chrono::milliseconds(20));    // never blocks the worker
    auto n = co_await keel::offload([] { return 6 * 7; });  // blocking work on the pool
    co_return keel::Response::json({{"answer", n}});
  });
  return app.run(argc, argv);  // --bind, --workers, --keep-alive, --limit-concurrency, ...
}
