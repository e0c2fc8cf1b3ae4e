#include "client/curl_easy.hpp"

#include <algorithm>
#include <mutex>
#include <stdexcept>

#include "base/strings.hpp"

namespace keel::client {
namespace {

std::once_flag g_init_once;
CURLcode g_init = CURLE_OK;

[[noreturn]] void fail(const char* what, const char* reason) {
  throw std::runtime_error(std::string(what) + ": " + reason);
}

extern "C" std::size_t keel_curl_on_body(char* data, std::size_t size, std::size_t n, void* user) {
  auto* sink = static_cast<detail::Sink*>(user);
  std::string& body = sink->response->body;
  const std::size_t bytes = size * n;
  const std::size_t room = sink->limit - std::min(sink->limit, body.size());
  if (bytes > room) {
    sink->response->body_over_limit = true;
    if (sink->mode == OverLimit::kFail) return 0;  // not the number given: CURLE_WRITE_ERROR
  }
  body.append(data, std::min(bytes, room));
  return bytes;
}

extern "C" std::size_t keel_curl_on_header(char* data, std::size_t size, std::size_t n, void* user) {
  Response& r = *static_cast<detail::Sink*>(user)->response;
  const std::size_t bytes = size * n;
  const std::string_view line = base::trim_right(std::string_view(data, bytes), "\r\n");
  if (line.rfind("HTTP/", 0) == 0) {
    // A new response (after a 1xx, or a redirect that is followed): forget the previous one's.
    r.status_line = std::string(line);
    r.headers.clear();
  } else if (const auto colon = line.find(':'); colon != std::string_view::npos) {
    r.headers.emplace_back(std::string(line.substr(0, colon)), std::string(base::trim_left(line.substr(colon + 1))));
  }
  return bytes;
}

}  // namespace

void global_init() {
  std::call_once(g_init_once, [] { g_init = curl_global_init(CURL_GLOBAL_DEFAULT); });
  if (g_init != CURLE_OK) fail("curl_global_init", curl_easy_strerror(g_init));
}

std::optional<std::string_view> Response::header(std::string_view name) const {
  for (auto it = headers.rbegin(); it != headers.rend(); ++it)
    if (base::iequals(it->first, name)) return it->second;
  return std::nullopt;
}

HeaderList::~HeaderList() {
  curl_slist_free_all(list_);
}

HeaderList& HeaderList::operator=(HeaderList&& o) noexcept {
  std::swap(list_, o.list_);
  return *this;
}

void HeaderList::append(const std::string& line) {
  curl_slist* next = curl_slist_append(list_, line.c_str());
  if (next == nullptr) throw std::runtime_error("curl_slist_append failed");
  list_ = next;
}

Easy::Easy() {
  global_init();
  handle_ = curl_easy_init();
  if (handle_ == nullptr) throw std::runtime_error("curl_easy_init failed");
  try {
    set_defaults();
  } catch (...) {
    curl_easy_cleanup(handle_);
    throw;
  }
}

Easy::~Easy() {
  curl_easy_cleanup(handle_);  // before headers_ goes: the handle may still point at the list
}

void Easy::check(CURLcode rc) const {
  if (rc != CURLE_OK) fail("curl_easy_setopt", curl_easy_strerror(rc));
}

void Easy::set_defaults() {
  sink_.limit = 0;
  sink_.mode = OverLimit::kTruncate;
  setopt(CURLOPT_NOSIGNAL, 1L);
  setopt(CURLOPT_ERRORBUFFER, static_cast<char*>(error_));
  setopt(CURLOPT_WRITEFUNCTION, &keel_curl_on_body);
  setopt(CURLOPT_WRITEDATA, static_cast<void*>(&sink_));
  setopt(CURLOPT_HEADERFUNCTION, &keel_curl_on_header);
  setopt(CURLOPT_HEADERDATA, static_cast<void*>(&sink_));
}

void Easy::set_headers(HeaderList list) {
  setopt(CURLOPT_HTTPHEADER, list.get());
  headers_ = std::move(list);  // the old list is freed only once the handle points at the new one
}

void Easy::keep_body(std::size_t limit, OverLimit mode) {
  sink_.limit = limit;
  sink_.mode = mode;
}

void Easy::reset() {
  curl_easy_reset(handle_);
  headers_ = HeaderList();
  set_defaults();
}

void Easy::begin() noexcept {
  response_ = Response{};
  error_[0] = '\0';
}

const Response& Easy::finish(CURLcode result, std::string error) {
  response_.result = result;
  if (result == CURLE_OK) {
    curl_easy_getinfo(handle_, CURLINFO_RESPONSE_CODE, &response_.status);
    return response_;
  }
  response_.status = 0;
  curl_easy_getinfo(handle_, CURLINFO_OS_ERRNO, &response_.os_errno);
  response_.error = !error.empty()      ? std::move(error)
                    : error_[0] != '\0' ? std::string(error_)
                                        : std::string(curl_easy_strerror(result));
  return response_;
}

const Response& Easy::perform() {
  begin();
  return finish(curl_easy_perform(handle_));
}

Multi::Multi() {
  global_init();
  handle_ = curl_multi_init();
  if (handle_ == nullptr) throw std::runtime_error("curl_multi_init failed");
}

Multi::~Multi() {
  curl_multi_cleanup(handle_);
}

void Multi::wakeup() noexcept {
  curl_multi_wakeup(handle_);
}

const Response& Multi::perform(Easy& easy, Clock::time_point deadline, const std::function<Clock::time_point()>& stop,
                               long timeout_ms) {
  using std::chrono::milliseconds;
  easy.begin();
  if (const CURLMcode mc = curl_multi_add_handle(handle_, easy.native()); mc != CURLM_OK)
    return easy.finish(CURLE_FAILED_INIT, std::string("curl_multi_add_handle: ") + curl_multi_strerror(mc));
  bool done = false;
  CURLcode result = CURLE_OK;
  std::string multi_error;
  while (!done) {
    int running = 0;
    if (const CURLMcode mc = curl_multi_perform(handle_, &running); mc != CURLM_OK) {
      multi_error = std::string("curl_multi_perform: ") + curl_multi_strerror(mc);
      break;
    }
    int queued = 0;
    while (CURLMsg* m = curl_multi_info_read(handle_, &queued)) {
      if (m->msg == CURLMSG_DONE && m->easy_handle == easy.native()) {
        result = m->data.result;
        done = true;
      }
    }
    if (done) break;
    const auto until = std::min(deadline, stop());
    const auto left = until - Clock::now();
    if (left <= Clock::duration::zero()) {
      multi_error = stop() <= deadline ? "interrupted by shutdown (deadline reached)"
                                       : "timed out after " + std::to_string(timeout_ms) + " ms";
      result = CURLE_OPERATION_TIMEDOUT;
      break;
    }
    const auto wait_ms = std::clamp<std::int64_t>(std::chrono::duration_cast<milliseconds>(left).count() + 1, 1, 1000);
    if (const CURLMcode mc = curl_multi_poll(handle_, nullptr, 0, static_cast<int>(wait_ms), nullptr); mc != CURLM_OK) {
      multi_error = std::string("curl_multi_poll: ") + curl_multi_strerror(mc);
      break;
    }
  }
  if (!done && result == CURLE_OK) result = CURLE_FAILED_INIT;
  const Response& r = easy.finish(result, std::move(multi_error));
  curl_multi_remove_handle(handle_, easy.native());  // also aborts an unfinished transfer
  return r;
}

}  // namespace keel::client
