// api_key: asynchronous ("around") middleware. Every request to the API needs an X-API-Key the
// key store knows; the check co_awaits the lookup (on the thread pool here, as a cache or database
// call would), then runs the rest of the chain with `co_await next(req)` and tags the answer.
// An unknown key is answered 403 with a problem+json body, a missing one 401 with
// WWW-Authenticate. keel's health endpoints skip the application's middleware, so probes need
// no key (the operational_middleware setting would run it there too).
//
//   ./api_key --bind 127.0.0.1:8000 --api-keys key-1,key-2
//   curl -H 'X-API-Key: key-1' http://127.0.0.1:8000/reports
#include <keel/keel.hpp>

#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace {

// What a real service keeps in Redis or a database; here a set behind a mutex, read from the
// worker's thread pool (blocking calls never run on the event loop).
class KeyStore {
 public:
  void load(const std::vector<std::string>& keys) {
    std::lock_guard lock(mutex_);
    keys_.insert(keys.begin(), keys.end());
  }
  [[nodiscard]] bool valid(const std::string& key) const {
    std::lock_guard lock(mutex_);
    return keys_.count(key) != 0;
  }

 private:
  mutable std::mutex mutex_;
  std::set<std::string> keys_;
};

}  // namespace

int main(int argc, char** argv) {
  keel::App app;
  app.name("api-key").description("an API key checked by async middleware (keel example)");  // prefix API_KEY_
  // Required (no default): the service does not start without keys. Secret: never printed; the
  // file form API_KEY_API_KEYS_FILE works too.
  app.settings().add({.name = "api_keys",
                      .type = keel::SettingType::kList,
                      .help = "the API keys accepted, comma-separated",
                      .secret = true});
  KeyStore store;
  app.on_startup([&] { store.load(app.settings().list("api_keys")); });

  app.use({.around = [&store](keel::Request& req, keel::Next next) -> keel::Task<keel::Response> {
    const auto key = req.header("X-API-Key");
    if (!key) throw keel::HttpError(401, "an X-API-Key header is required").with_header("WWW-Authenticate", "ApiKey");
    // A named callable (not a lambda temporary inside co_await): docs/api.md "Compilers".
    auto lookup = [&store, k = std::string(*key)] { return store.valid(k); };
    const bool known = co_await keel::offload(lookup);
    if (!known) throw keel::HttpError(403, "unknown API key");
    keel::Response res = co_await next(req);
    res.add_header("X-Authenticated", "api-key");
    co_return res;
  }});

  app.get("/reports", [](keel::Request&) { return nlohmann::json::array({"daily", "weekly"}); });
  app.get("/reports/{name}", [](keel::Request& req) -> keel::Task<nlohmann::json> {
    co_await keel::sleep(std::chrono::milliseconds(5));  // a coroutine handler behind the middleware
    co_return nlohmann::json{{"report", std::string(req.param("name"))}, {"rows", 3}};
  });
  return app.run(argc, argv);
}
