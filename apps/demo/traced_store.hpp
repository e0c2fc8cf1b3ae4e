// The demo's database calls as spans (traced_store.cpp).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "store.hpp"

namespace demo {

// What the spans say about the database.
struct DbInfo {
  std::string system{};  // db.system.name: "postgresql", "sqlite"
  bool network = false;  // a database server (span kind CLIENT) rather than a library in the process
  std::string name{};    // db.namespace: the database name; empty: not recorded
  std::string server_address{};
  std::int64_t server_port = 0;
};

std::unique_ptr<UserStore> traced_store(std::unique_ptr<UserStore> inner, DbInfo db);

}  // namespace demo
