// Routes of keel-testapp that run every documented coroutine pattern, for
// tests/process/test_coroutines.py (a concurrent stress run, under ASan in CI with GCC 12 and with
// clang 14). Every object a pattern creates is counted (Tracked) and every shared_ptr it copies
// comes from one per-worker Counter: after the run /coro/live must be 0 and /coro/refs 1. A
// destructor run twice (the GCC 12 co_await bug) shows as a negative count, a wrong reference
// count, an ASan report or a dead worker.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <utility>

#include "keel/client.hpp"
#include "keel/keel.hpp"

namespace {

std::atomic<long> g_live{0};  // Tracked objects alive in this worker

// A user type with a non-trivial destructor (it owns a heap string, too).
struct Tracked {
  explicit Tracked(std::string v) : value(std::move(v)) { ++g_live; }
  Tracked(const Tracked& o) : value(o.value) { ++g_live; }
  Tracked(Tracked&& o) noexcept : value(std::move(o.value)) { ++g_live; }
  Tracked& operator=(const Tracked&) = delete;
  Tracked& operator=(Tracked&&) = delete;
  ~Tracked() { --g_live; }
  std::string value;
};

// An aggregate with owning members: the form GCC 12 miscompiles as a temporary in co_await.
struct Order {
  std::string item;
  Tracked tag;
};

struct Counter {
  std::atomic<long> calls{0};
};
std::shared_ptr<Counter>& shared_counter() {
  static auto c = std::make_shared<Counter>();
  return c;
}

keel::Task<std::string> leaf(Tracked t, std::chrono::milliseconds d) {
  co_await keel::sleep(d);
  co_return t.value;
}

keel::Task<std::string> middle(Tracked t) {
  auto p = shared_counter();
  // A named callable (safe everywhere) and arguments passed by value.
  auto work = [p, t] { return p->calls.fetch_add(1) >= 0 ? t.value : std::string(); };
  std::string a = co_await keel::offload(work);
  std::string b =
      co_await keel::offload([](std::shared_ptr<Counter> q, Tracked u) { return q ? u.value : ""; }, p, Tracked("arg"));
  // A nested Task whose argument is a constructed temporary of a user type.
  std::string c = co_await leaf(Tracked(a + b), std::chrono::milliseconds(1));
  co_return c;
}

keel::Task<std::size_t> order_size(Order o) {
  co_await keel::sleep(std::chrono::milliseconds(1));
  co_return o.item.size() + o.tag.value.size();
}

std::string param(keel::Request& req, std::string_view name, std::string fallback) {
  const auto v = req.query_param(name);
  return v ? std::string(*v) : fallback;
}

}  // namespace

void add_coroutine_pattern_routes(keel::App& app) {
  // offload: temporary lambdas where the compiler allows them, named ones and arguments always.
  app.get("/coro/offload", [](keel::Request& req) -> keel::Task<keel::Response> {
    auto p = shared_counter();
    const std::string word = param(req, "word", "offloaded");
#if KEEL_COAWAIT_TEMPORARY_BUG
    auto work = [p, word] { return word + ":" + std::to_string(p->calls.fetch_add(1) >= 0); };
    std::string got = co_await keel::offload(work);
#else
    std::string got = co_await keel::offload([p, word] { return word + ":" + std::to_string(p->calls.fetch_add(1) >= 0); });
#endif
    const long n = co_await keel::offload([](std::shared_ptr<Counter> q) { return q.use_count(); }, p);
    co_return keel::Response::text(got + (n >= 2 ? " ok" : " bad-count"));
  });
  // keel::fetch of this server's own /coro/echo, with a braced temporary where allowed.
  app.get("/coro/fetch", [](keel::Request& req) -> keel::Task<keel::Response> {
    const std::string url = "http://127.0.0.1:" + param(req, "port", "80") + "/coro/echo";
    const std::string body = param(req, "word", "fetched");
#if KEEL_COAWAIT_TEMPORARY_BUG
    keel::ClientRequest call{.method = "POST", .url = url, .body = body};
    keel::ClientResponse r = co_await keel::fetch(call);
#else
    keel::ClientResponse r = co_await keel::fetch({.method = "POST", .url = url, .body = body});
#endif
    co_return keel::Response::text(std::to_string(r.status) + ":" + r.body + r.error);
  });
  app.post("/coro/echo", [](keel::Request& req) { return keel::Response::text(std::string(req.body())); });
  // sleep with a computed duration; a nested Task chain with user-type temporaries.
  app.get("/coro/nested", [](keel::Request& req) -> keel::Task<keel::Response> {
    co_await keel::sleep(std::chrono::milliseconds(std::stoi(param(req, "ms", "1"))));
    std::string s = co_await middle(Tracked(param(req, "word", "nested")));
    std::size_t n = 0;
#if KEEL_COAWAIT_TEMPORARY_BUG
    Order order{.item = "tea", .tag = Tracked("x")};
    n = co_await order_size(std::move(order));
#else
    n = co_await order_size(Order{.item = "tea", .tag = Tracked("x")});
#endif
    co_return keel::Response::text(s + ":" + std::to_string(n));
  });
  app.get("/coro/live", [](keel::Request&) {
    return keel::Response::text(std::to_string(g_live.load()) + " " + std::to_string(shared_counter().use_count()) +
                                " " + std::to_string(::getpid()));
  });
}
