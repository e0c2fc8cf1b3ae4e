// child_span: spans of the handler's own work, nested under the SERVER span keel records for the
// request, and exported with it over OTLP. "build report" is a child of the request's span;
// "SELECT orders", opened on the worker's thread pool (keel::offload), is a child of "build report".
// Log lines written while a span is open carry its span_id.
//
//   OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 ./child_span
//   curl http://127.0.0.1:8000/reports/7
#include <keel/keel.hpp>
#include <keel/trace.hpp>

#include <chrono>
#include <cstdint>
#include <thread>

namespace {

const keel::Logger logger("example.reports");

// Blocking work, as a database query would be: run on the thread pool, its span still nests.
std::int64_t count_orders(std::int64_t customer) {
  keel::Span span("SELECT orders", keel::SpanKind::kClient);  // a call to a database server
  span.set_attribute("db.system.name", "postgresql")
      .set_attribute("db.operation.name", "SELECT")
      .set_attribute("db.collection.name", "orders");
  std::this_thread::sleep_for(std::chrono::milliseconds(5));  // the query
  return customer * 3;
}

}  // namespace

int main(int argc, char** argv) {
  keel::App app;
  app.name("child-span").description("child spans under the request's span (keel example)");
  app.get("/reports/{customer:int}", [](keel::Request& req) -> keel::Task<keel::Response> {
    const std::int64_t customer = req.param_int("customer");
    keel::Span span("build report");  // INTERNAL, a child of the request's SERVER span
    span.set_attribute("report.customer", customer);
    // count_orders is a named function, customer a named value: safe inside co_await on GCC 12.
    const std::int64_t orders = co_await keel::offload(count_orders, customer);
    span.set_attribute("report.orders", orders).add_event("orders counted");
    if (orders == 0) span.set_error("no orders");
    logger.info("report_built", {{"customer", customer}, {"orders", orders}});  // carries the span's span_id
    co_return keel::Response::json({{"customer", customer}, {"orders", orders}});
  });
  return app.run(argc, argv);
}
