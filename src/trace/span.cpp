#include "keel/trace.hpp"

#include "log/log.hpp"
#include "trace/tracer.hpp"

namespace keel {
namespace {

// OTLP: attribute keys are unique within a span; setting one again replaces its value.
void put(std::vector<trace::Attribute>& attributes, std::string key, trace::AttributeValue value) {
  for (trace::Attribute& a : attributes) {
    if (a.key == key) {
      a.value = std::move(value);
      return;
    }
  }
  attributes.push_back({std::move(key), std::move(value)});
}

static_assert(static_cast<int>(SpanKind::kInternal) == static_cast<int>(trace::SpanKind::kInternal) &&
              static_cast<int>(SpanKind::kClient) == static_cast<int>(trace::SpanKind::kClient) &&
              static_cast<int>(SpanKind::kProducer) == static_cast<int>(trace::SpanKind::kProducer) &&
              static_cast<int>(SpanKind::kConsumer) == static_cast<int>(trace::SpanKind::kConsumer));

}  // namespace

struct Span::State {
  log::Context* context = nullptr;
  std::string saved_span_id;  // the enclosing span, current again when this one ends
  trace::SpanData data;
};

Span::Span(std::string name) : Span(std::move(name), SpanKind::kInternal) {}

Span::Span(std::string name, SpanKind kind) {
  log::Context* ctx = log::current();
  if (ctx == nullptr || ctx->trace_id.empty()) return;  // outside a request
  state_ = std::make_unique<State>();
  state_->context = ctx;
  state_->saved_span_id = ctx->span_id;
  trace::SpanData& d = state_->data;
  d.name = std::move(name);
  d.kind = static_cast<trace::SpanKind>(static_cast<int>(kind));  // the same OTLP numbers
  d.flags = ctx->trace_flags;
  trace::from_hex(ctx->trace_id, d.trace_id.data(), d.trace_id.size());
  trace::from_hex(ctx->span_id, d.parent_span_id.data(), d.parent_span_id.size());
  d.span_id = trace::new_span_id();
  d.start_unix_nano = trace::now_unix_nano();
  ctx->span_id = trace::to_hex(d.span_id);  // lines logged inside carry this span
}

Span::~Span() {
  if (!state_) return;
  state_->context->span_id = state_->saved_span_id;
  state_->data.end_unix_nano = trace::now_unix_nano();
  if (trace::Tracer* t = trace::tracer(); t != nullptr && recording()) t->end_span(std::move(state_->data));
}

bool Span::recording() const noexcept {
  return state_ && (state_->data.flags & trace::kFlagSampled) != 0;
}

Span& Span::set_attribute(std::string key, std::string value) {
  if (recording()) put(state_->data.attributes, std::move(key), std::move(value));
  return *this;
}
Span& Span::set_attribute(std::string key, std::int64_t value) {
  if (recording()) put(state_->data.attributes, std::move(key), value);
  return *this;
}
Span& Span::set_attribute(std::string key, double value) {
  if (recording()) put(state_->data.attributes, std::move(key), value);
  return *this;
}
Span& Span::set_attribute(std::string key, bool value) {
  if (recording()) put(state_->data.attributes, std::move(key), value);
  return *this;
}
Span& Span::add_event(std::string name) {
  if (recording()) state_->data.events.push_back({std::move(name), trace::now_unix_nano(), {}});
  return *this;
}
Span& Span::set_error(std::string message) {
  if (recording()) {
    state_->data.status = trace::StatusCode::kError;
    state_->data.status_message = std::move(message);
  }
  return *this;
}

}  // namespace keel
