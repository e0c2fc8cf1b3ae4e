// The one libcurl wrapper every HTTP client in keel uses: keel::fetch (client/fetch.cpp), the OTLP
// exporter (trace/otlp_exporter.cpp, through client::Multi), the HTTP GET health check
// (health/builtin_checks.cpp) and the `healthcheck` subcommand (app/healthcheck.cpp).
//
//   client::Easy easy;                                 // curl_global_init once per process
//   easy.setopt(CURLOPT_URL, url.c_str());
//   easy.setopt(CURLOPT_TIMEOUT_MS, 2000L);           // long, not int: checked at compile time
//   easy.keep_body(64 * 1024, client::OverLimit::kTruncate);
//   const client::Response& r = easy.perform();         // r.result, r.error, r.status, r.headers, r.body
//
// An Easy owns its handle, its header list, its error buffer and the Response its callbacks fill,
// and is neither copied nor moved (libcurl keeps pointers to all of them). One Easy is used by one
// thread at a time; keep it to reuse its connections (keep-alive). Fork safety: a handle does not
// survive fork(); create it in the process that uses it.
#pragma once

#include <curl/curl.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace keel::client {

// curl_global_init(CURL_GLOBAL_DEFAULT) the first time; throws std::runtime_error ("curl_global_init:
// <reason>") then and on every later call if it failed. Easy() calls it.
void global_init();

// What a transfer produced. Headers and the status line are the final response's (those of a
// 1xx or of a redirect that was followed are forgotten).
struct Response {
  CURLcode result = CURLE_OK;
  std::string error;        // when result != CURLE_OK: libcurl's error buffer, or curl_easy_strerror
  long status = 0;          // 0: no HTTP response
  long os_errno = 0;        // CURLINFO_OS_ERRNO when result != CURLE_OK (e.g. ECONNREFUSED), else 0
  std::string status_line;  // "HTTP/1.1 404 Not Found"
  std::vector<std::pair<std::string, std::string>> headers;  // name as sent, value without leading OWS
  std::string body;                                          // what keep_body() allows
  bool body_over_limit = false;                              // the body had more than the limit

  // The last header of that name (ASCII case-insensitive), or nullopt.
  std::optional<std::string_view> header(std::string_view name) const;
};

// What keep_body() does with the bytes past its limit.
enum class OverLimit {
  kTruncate,  // drop them, finish the transfer
  kFail,      // abort the transfer (result CURLE_WRITE_ERROR)
};

namespace detail {
// What the write and header callbacks fill (client/curl_easy.cpp).
struct Sink {
  Response* response;
  std::size_t limit = 0;
  OverLimit mode = OverLimit::kTruncate;
};
}  // namespace detail

// An owned curl_slist of header lines ("Name: value", "Name:" to remove a default one).
class HeaderList {
 public:
  HeaderList() = default;
  ~HeaderList();
  HeaderList(HeaderList&& o) noexcept : list_(std::exchange(o.list_, nullptr)) {}
  HeaderList& operator=(HeaderList&& o) noexcept;
  HeaderList(const HeaderList&) = delete;
  HeaderList& operator=(const HeaderList&) = delete;

  // Throws std::runtime_error when libcurl cannot allocate.
  void append(const std::string& line);
  curl_slist* get() const noexcept { return list_; }

 private:
  curl_slist* list_ = nullptr;
};

class Easy {
 public:
  // global_init() and curl_easy_init(); throws std::runtime_error when either fails. The handle
  // starts with NOSIGNAL (no SIGALRM in a multi-threaded server), the error buffer and the
  // response callbacks set, and the body discarded (keep_body(0)).
  Easy();
  ~Easy();
  Easy(const Easy&) = delete;
  Easy& operator=(const Easy&) = delete;

  // curl_easy_setopt with the value type checked: libcurl's is variadic, and an int where it reads
  // a long (or a bool, or a std::string) is undefined behaviour. Throws std::runtime_error
  // ("curl_easy_setopt: <reason>") when libcurl refuses the option.
  template <class T>
  void setopt(CURLoption option, T value) {
    static_assert(
        std::is_same_v<T, long> || std::is_same_v<T, curl_off_t> || std::is_pointer_v<T> || std::is_null_pointer_v<T>,
        "curl_easy_setopt takes a long, a curl_off_t or a pointer (write 1L, not 1 or true)");
    check(curl_easy_setopt(handle_, option, value));
  }

  // Sets CURLOPT_HTTPHEADER to list and keeps it for as long as the handle may use it.
  void set_headers(HeaderList list);

  // Keep at most limit bytes of the response body (by default none: the body is read and dropped).
  void keep_body(std::size_t limit = std::numeric_limits<std::size_t>::max(), OverLimit mode = OverLimit::kTruncate);

  // curl_easy_reset (options back to their defaults, connections and caches kept), then this
  // wrapper's defaults again: NOSIGNAL, the error buffer, the callbacks, the body dropped, no
  // header list.
  void reset();

  // Runs the transfer on this thread (curl_easy_perform) and returns what came back, valid until
  // the next transfer or reset().
  const Response& perform();

  // For client::Multi and other drivers of the multi interface: begin() clears the response before
  // the handle is added to a multi handle, finish(result) completes it with the transfer's result
  // (or `error` when the driver gave up) once the transfer is over. perform() is begin(),
  // curl_easy_perform, finish().
  void begin() noexcept;
  const Response& finish(CURLcode result, std::string error = {});

  Response take_response() noexcept { return std::move(response_); }
  CURL* native() const noexcept { return handle_; }

 private:
  void check(CURLcode rc) const;
  void set_defaults();

  CURL* handle_ = nullptr;
  HeaderList headers_;
  Response response_;
  detail::Sink sink_{&response_};
  char error_[CURL_ERROR_SIZE] = {};
};

// One multi handle driving one Easy at a time, so that another thread can interrupt a transfer in
// flight (wakeup()): the OTLP exporter's shutdown does not wait for a slow collector.
class Multi {
 public:
  using Clock = std::chrono::steady_clock;

  // global_init() and curl_multi_init(); throws std::runtime_error when either fails.
  Multi();
  ~Multi();
  Multi(const Multi&) = delete;
  Multi& operator=(const Multi&) = delete;

  // Runs easy's transfer until it completes, until `deadline`, or until stop() (read each time the
  // loop wakes; wakeup() wakes it at once) has passed. A transfer given up ends with result
  // CURLE_OPERATION_TIMEDOUT and the error "timed out after <timeout_ms> ms", or "interrupted by
  // shutdown (deadline reached)" when stop() came first. The caller sets CURLOPT_TIMEOUT_MS itself
  // (timeout_ms is only named in that message).
  const Response& perform(Easy& easy, Clock::time_point deadline, const std::function<Clock::time_point()>& stop,
                          long timeout_ms);

  // Makes a perform() waiting in another thread look at stop() now. Thread-safe.
  void wakeup() noexcept;

 private:
  CURLM* handle_ = nullptr;
};

}  // namespace keel::client
