// Compiled by ctest (tests/CMakeLists.txt), one form at a time: on a compiler with the co_await
// temporary bug (GCC 12) the unsafe forms must fail with keel's message naming the safe form;
// elsewhere they must compile. The safe forms compile everywhere.
#include <memory>

#include "keel/client.hpp"

keel::Task<int> handler(std::shared_ptr<int> p) {
#if KEEL_FORM == 1  // a temporary lambda with a capture that has a destructor
  int n = co_await keel::offload([p] { return *p; });
#elif KEEL_FORM == 2  // a braced temporary request
  auto r = co_await keel::fetch({.method = "POST", .url = "http://127.0.0.1:1/"});
  int n = r.status;
#elif KEEL_FORM == 3  // a braced aggregate argument with a destructor
  struct Box {
    std::shared_ptr<int> v;
  };
  int n = co_await keel::offload([](Box b) { return *b.v; }, Box{p});
#else                 // the safe forms
  auto work = [p] { return *p; };
  int n = co_await keel::offload(work);
  n += co_await keel::offload([](std::shared_ptr<int> q) { return *q; }, p);
  n += co_await keel::offload([&] { return *p; });
  keel::ClientRequest call{.method = "POST", .url = "http://127.0.0.1:1/"};
  n += (co_await keel::fetch(call)).status;
  co_await keel::sleep(std::chrono::milliseconds(n));
#endif
  co_return n;
}
