// Every database call of the demo as a CLIENT-side child span ("db SELECT users" style names,
// OpenTelemetry database attributes), whichever backend is behind it.
#include "keel/trace.hpp"
#include "store.hpp"

namespace demo {
namespace {

class TracedStore final : public UserStore {
  template <class F>
  auto traced(const char* operation, F&& call) {
    keel::Span span(std::string(operation) + " users");
    span.set_attribute("db.system", system_)
        .set_attribute("db.operation", operation)
        .set_attribute("db.sql.table", "users");
    try {
      return call();
    } catch (const Conflict&) {
      throw;  // an expected outcome (409), not a failed call
    } catch (const std::exception& e) {
      span.set_error(e.what());
      throw;
    }
  }

 public:
  TracedStore(std::unique_ptr<UserStore> inner, std::string system)
      : inner_(std::move(inner)), system_(std::move(system)) {}

  void migrate() override {
    traced("CREATE", [&] { inner_->migrate(); });
  }
  std::vector<User> list(std::int64_t limit, std::int64_t offset) override {
    return traced("SELECT", [&] { return inner_->list(limit, offset); });
  }
  std::int64_t count() override {
    return traced("SELECT", [&] { return inner_->count(); });
  }
  std::optional<User> get(std::int64_t id) override {
    return traced("SELECT", [&] { return inner_->get(id); });
  }
  User create(const std::string& name, const std::string& email) override {
    return traced("INSERT", [&] { return inner_->create(name, email); });
  }
  std::optional<User> update(std::int64_t id, const UserChanges& changes) override {
    return traced("UPDATE", [&] { return inner_->update(id, changes); });
  }
  bool remove(std::int64_t id) override {
    return traced("DELETE", [&] { return inner_->remove(id); });
  }
  void ping() override { inner_->ping(); }  // readiness probes: not worth a span each

  std::unique_ptr<UserStore> inner_;
  std::string system_;
};

}  // namespace

std::unique_ptr<UserStore> traced_store(std::unique_ptr<UserStore> inner, std::string system) {
  return std::make_unique<TracedStore>(std::move(inner), std::move(system));
}

}  // namespace demo
