// keel-demo: the demo service. Today it serves the TechEmpower benchmark routes; the users API
// joins it with the demo issue.
#include "keel/keel.hpp"

int main(int argc, char** argv) {
  keel::App app;
  app.get("/plaintext", [](keel::Request&) { return keel::Response::text("Hello, World!"); });
  app.get("/json", [](keel::Request&) {
    keel::JsonWriter w;  // serialised per request (TechEmpower rule), without a DOM
    w.begin_object().key("message").value("Hello, World!").end_object();
    return keel::Response::json(std::move(w));
  });
  return app.run(argc, argv);
}
