// keel's own server options as typed settings: one table gives each ServerOptions field its
// name (flag --graceful-timeout, file key graceful_timeout, env KEEL_GRACEFUL_TIMEOUT), type,
// range, help, and how to read and write the field, so the command line, the config file, the
// environment and `config` printing all come from the same place.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "config/settings.hpp"
#include "keel/app.hpp"

namespace keel::app {

struct ServerSetting {
  Setting spec;                          // default_value is filled from the options at registration
  std::vector<std::string> cli_aliases;  // more flag spellings: "-b", "--limit-request-field_size"
  bool restart_only = false;             // a reload (HUP) cannot change it: listeners, pid file, ...
  std::vector<config::EnvAlias> env_aliases;
  std::function<std::string(const ServerOptions&)> get;            // the field as setting text
  std::function<void(ServerOptions&, std::string_view text)> set;  // text already validated
};

const std::vector<ServerSetting>& server_settings();

// Registers every server setting with its default taken from `defaults` (what the application set
// in App::options() before run(), else ServerOptions{}; workers 0 becomes the CPU count).
void add_server_settings(config::Registry& registry, const ServerOptions& defaults);

// Writes the resolved values into options.
void apply_server_settings(const config::Registry& registry, ServerOptions& options);

// CPUs this process may run on (affinity, as taskset/cpusets restrict it), at least 1.
int cpu_count();

}  // namespace keel::app
