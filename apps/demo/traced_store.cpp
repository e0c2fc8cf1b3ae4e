// Every database call of the demo as a child span named and described as the OpenTelemetry
// database semantic conventions say (v1.33, stable): "SELECT users", db.system.name,
// db.operation.name, db.collection.name, db.query.summary, db.namespace, server.address /
// server.port for a database server, error.type (and db.response.status_code) when a call fails.
// A database server (PostgreSQL) is called over the network: kind CLIENT; SQLite runs in the
// process: kind INTERNAL.
#include "traced_store.hpp"

#include "keel/trace.hpp"
#include "store.hpp"

namespace demo {
namespace {

class TracedStore final : public UserStore {
  template <class F>
  auto traced(const char* operation, F&& call) {
    const std::string summary = std::string(operation) + " users";
    keel::Span span(summary, db_.network ? keel::SpanKind::kClient : keel::SpanKind::kInternal);
    if (span.recording()) {
      span.set_attribute("db.system.name", db_.system)
          .set_attribute("db.operation.name", operation)
          .set_attribute("db.collection.name", "users")
          .set_attribute("db.query.summary", summary);
      if (!db_.name.empty()) span.set_attribute("db.namespace", db_.name);
      if (!db_.server_address.empty()) span.set_attribute("server.address", db_.server_address);
      if (db_.server_port > 0) span.set_attribute("server.port", db_.server_port);
    }
    try {
      return call();
    } catch (const Conflict&) {
      throw;  // an expected outcome (409), not a failed call
    } catch (const DatabaseError& e) {
      if (!e.code().empty()) span.set_attribute("db.response.status_code", e.code());
      span.set_attribute("error.type", e.code().empty() ? std::string("_OTHER") : e.code());
      span.set_error(e.what());
      throw;
    } catch (const std::exception& e) {
      span.set_attribute("error.type", "_OTHER").set_error(e.what());
      throw;
    }
  }

 public:
  TracedStore(std::unique_ptr<UserStore> inner, DbInfo db) : inner_(std::move(inner)), db_(std::move(db)) {}

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
  DbInfo db_;
};

}  // namespace

std::unique_ptr<UserStore> traced_store(std::unique_ptr<UserStore> inner, DbInfo db) {
  return std::make_unique<TracedStore>(std::move(inner), std::move(db));
}

}  // namespace demo
