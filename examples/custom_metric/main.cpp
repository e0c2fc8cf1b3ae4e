// custom_metric: a counter and a histogram of the service's own, served with keel's built-in ones
// on /metrics (Prometheus text, or OpenMetrics when the scraper asks for it) and summed over every
// worker process.
//
//   ./custom_metric --workers 2
//   curl -X POST -H 'Content-Type: application/json' -d '{"payment":"card","amount":12.5}' http://127.0.0.1:8000/orders
//   curl -s http://127.0.0.1:8000/metrics | grep shop_
#include <keel/keel.hpp>

#include <string>

int main(int argc, char** argv) {
  keel::App app;
  app.name("custom-metric").description("a counter and a histogram on /metrics (keel example)");

  // Families are registered before App::run() forks the workers (later registrations throw).
  // Label values are a small fixed set: each value is one more time series.
  keel::Counter& orders = keel::metrics().counter("shop_orders_total", "Orders placed.", {"payment"});
  keel::Histogram& amounts =
      keel::metrics().histogram("shop_order_amount_dollars", "Amount of each order.", {}, {5, 20, 100, 500});
  // Look the children up once: every update after that takes no lock and allocates nothing.
  keel::CounterChild& card = orders.labels({"card"});
  keel::CounterChild& invoice = orders.labels({"invoice"});
  keel::HistogramChild& amount = amounts.labels({});

  app.post("/orders", [&](keel::Request& req) {
    if (!req.header("Content-Type")) throw keel::HttpError(415, "send the body as Content-Type: application/json");
    const nlohmann::json body = req.json();
    const auto payment = body.is_object() ? body.value("payment", std::string()) : std::string();
    if (payment != "card" && payment != "invoice") throw keel::HttpError(422, "payment: \"card\" or \"invoice\"");
    const auto value = body.find("amount");
    if (value == body.end() || !value->is_number() || value->get<double>() <= 0)
      throw keel::HttpError(422, "amount: a positive number is required");
    (payment == "card" ? card : invoice).inc();
    amount.observe(value->get<double>());
    return keel::Response::json({{"payment", payment}, {"amount", value->get<double>()}}, 201);
  });
  return app.run(argc, argv);
}
