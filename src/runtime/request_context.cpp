#include "runtime/request_context.hpp"

namespace keel::runtime {
namespace {
thread_local RequestContext* t_context = nullptr;
}  // namespace

RequestContext* current_request() noexcept {
  return t_context;
}

ScopedRequestContext::ScopedRequestContext(RequestContext* context) noexcept : previous_(t_context) {
  t_context = context;
}

ScopedRequestContext::~ScopedRequestContext() {
  t_context = previous_;
}

}  // namespace keel::runtime
