// The whole configuration of an application: keel's server settings and the application's own
// settings in one registry, so both come from the same sources, with one error report and one
// `config` printout.
#pragma once

#include <string>
#include <vector>

#include "app/cli.hpp"
#include "config/loader.hpp"
#include "config/settings.hpp"
#include "keel/app.hpp"
#include "keel/settings.hpp"
#include "trace/tracer.hpp"

namespace keel::app {

class Configuration {
 public:
  // defaults: the options as the application set them before run(). Throws std::invalid_argument
  // when an application setting clashes with a server setting.
  Configuration(const ServerOptions& defaults, const Settings& app_settings);

  [[nodiscard]] std::vector<cli::Flag> flags() const;
  config::Loaded load(const config::Sources& sources);  // resolves; problems in the result
  // Writes resolved values into the options and the application's settings.
  void apply(ServerOptions& options, Settings& app_settings) const;
  void apply_app(Settings& app_settings) const;
  [[nodiscard]] const config::Registry& registry() const noexcept { return registry_; }

 private:
  config::Registry registry_{"KEEL_"};
  std::vector<std::string> app_names_;
};

// Applies the logging settings (levels, format, file, rotation) to the logger. Throws
// std::runtime_error naming the file when log_file cannot be opened.
void apply_logging(const ServerOptions& options);

// Logs the loader's warnings: the .env entries it dropped (hand-over, PATH, LD_*, proxy
// variables), one warning each naming the file and line; and the prefixed variables that name no
// setting (unknown_variable, with the closest known variable).
void log_config_warnings(const config::Loaded& loaded);

// The health and metrics paths that are served (empty ones left out): kept out of the access log,
// traces and the upgrade analysis unless asked for.
std::vector<std::string> operational_paths(const ServerOptions& options);

// The tracer a worker starts with (sampler, OTLP exporter when an endpoint is set).
std::unique_ptr<trace::Tracer> make_tracer(const ServerOptions& options);

// HUP: reads every source again. Valid: applies what can change without new listeners, keeps the
// rest (logged as needing a restart) and returns true. Invalid: logs every problem, changes
// nothing, returns false.
bool reload(const ServerOptions& defaults, const config::Sources& sources, ServerOptions& options,
            Settings& app_settings);

}  // namespace keel::app
