#include "app/configuration.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "app/server_settings.hpp"
#include "base/build_info.hpp"
#include "config/values.hpp"
#include "keel/request.hpp"
#include "keel/url.hpp"
#include "log/log.hpp"
#include "metrics/registry.hpp"
#include "process/prefork.hpp"
#include "tls/tickets.hpp"

namespace keel::app {

Configuration::Configuration(const ServerOptions& defaults, const Settings& app_settings) {
  add_server_settings(registry_, defaults);
  for (const auto& s : app_settings.declared()) {
    registry_.add(s, {.env_prefix = app_settings.env_prefix(), .file_section = "app"});
    app_names_.push_back(s.name);
  }
  // keel's own hand-over variables, not settings: a master sets them in the environment of the
  // master it executes (the --reload supervisor in the first master's); taken from the real
  // environment only, never from a .env file.
  for (const char* name :
       {process::kListenFdsEnv, process::kUpgradeFromEnv, process::kGenerationEnv, process::kSupervisorFdEnv,
        metrics_detail::kArenaFdEnv, metrics_detail::kParentArenaFdEnv, tls::kTicketSecretEnv}) {
    registry_.allow_env(name);
    config::add_internal_env(name);
  }
}

std::vector<cli::Flag> Configuration::flags() const {
  std::vector<cli::Flag> out;
  for (const auto& spec : registry_.specs()) {
    cli::Flag f{.name = spec.name,
                .type = spec.type,
                .help = spec.help,
                .env = registry_.env_name(spec),
                .secret = spec.secret};
    if (spec.default_value && !spec.secret) f.default_text = *spec.default_value;
    for (const auto& s : server_settings())
      if (s.spec.name == spec.name) f.aliases = s.cli_aliases;
    if (std::find(app_names_.begin(), app_names_.end(), spec.name) != app_names_.end()) f.group = "App settings";
    out.push_back(std::move(f));
  }
  return out;
}

config::Loaded Configuration::load(const config::Sources& sources) {
  return config::load(registry_, sources);
}

void Configuration::apply(ServerOptions& options, Settings& app_settings) const {
  apply_server_settings(registry_, options);
  apply_app(app_settings);
}

void Configuration::apply_app(Settings& app_settings) const {
  std::map<std::string, std::string, std::less<>> values;
  for (const auto& name : app_names_)
    if (const auto* r = registry_.find(name)) values.emplace(name, r->text);
  app_settings.assign(std::move(values));
}

namespace {

log::Level parse_level(std::string_view s) {
  if (s == "debug") return log::Level::kDebug;
  if (s == "warning") return log::Level::kWarning;
  if (s == "error") return log::Level::kError;
  if (s == "critical") return log::Level::kCritical;
  return log::Level::kInfo;
}

}  // namespace

void apply_logging(const ServerOptions& o) {
  log::Options lo;
  lo.level = parse_level(o.log_level);
  for (const auto& item : o.log_levels) {
    const auto eq = item.find('=');
    if (eq != std::string::npos) lo.logger_levels.emplace_back(item.substr(0, eq), parse_level(item.substr(eq + 1)));
  }
  const bool tty = o.log_file.empty() && ::isatty(STDOUT_FILENO) == 1;
  lo.format = o.log_format == "console" || (o.log_format == "auto" && tty) ? log::Format::kConsole : log::Format::kJson;
  lo.file = o.log_file;
  lo.max_bytes = o.log_max_size;
  lo.rotate_every = std::chrono::duration_cast<std::chrono::seconds>(o.log_rotate_interval);
  lo.max_files = static_cast<std::size_t>(o.log_max_files);
  lo.max_age = std::chrono::duration_cast<std::chrono::seconds>(o.log_max_age);
  lo.buffer_bytes = static_cast<std::size_t>(o.log_buffer);
  log::configure(lo);
  Request::id_header() = o.request_id_header;
}

namespace {

std::vector<std::pair<std::string, std::string>> key_values(const std::vector<std::string>& items) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& item : items) {
    const auto eq = item.find('=');
    if (eq == std::string::npos || eq == 0) continue;
    // OTEL_EXPORTER_OTLP_HEADERS and OTEL_RESOURCE_ATTRIBUTES values are percent-encoded, W3C
    // Baggage style ("a%20b" -> "a b"), leniently.
    out.emplace_back(keel::percent_decode(item.substr(0, eq)), keel::percent_decode(item.substr(eq + 1)));
  }
  return out;
}

}  // namespace

void log_config_warnings(const config::Loaded& loaded) {
  for (const auto& p : loaded.ignored)
    log::write(log::Level::kWarning, "keel.config", "env_file_entry_ignored",
               {{"origin", p.origin}, {"reason", p.message}});
  for (const auto& v : loaded.unknown_env)
    log::write(log::Level::kWarning, "keel.config", "unknown_variable",
               {{"variable", v.name},
                {"origin", v.origin},
                {"did_you_mean", v.suggestion},
                {"hint", "not a setting; ignored (strict_env makes this an error)"}});
}

std::vector<std::string> operational_paths(const ServerOptions& o) {
  std::vector<std::string> out;
  for (const auto* p : {&o.health_path, &o.readiness_path, &o.startup_path, &o.metrics_path})
    if (!p->empty()) out.push_back(*p);
  return out;
}

std::unique_ptr<trace::Tracer> make_tracer(const ServerOptions& o) {
  trace::TracerOptions t;
  t.sampler = trace::parse_sampler(o.otel_traces_sampler).value_or(trace::Sampler::kParentAlwaysOn);
  t.ratio = o.otel_traces_sampler_arg;
  if (!o.trace_health) t.untraced_paths = operational_paths(o);
  std::string endpoint = o.otel_exporter_otlp_traces_endpoint;
  if (endpoint.empty() && !o.otel_exporter_otlp_endpoint.empty()) {
    endpoint = o.otel_exporter_otlp_endpoint;
    if (endpoint.back() == '/') endpoint.pop_back();
    endpoint += "/v1/traces";
  }
  if (!endpoint.empty()) {
    trace::ExporterOptions e;
    e.endpoint = endpoint;
    const auto header_items = config::parse_list(o.otel_exporter_otlp_headers);
    if (header_items) e.headers = key_values(*header_items.value);
    e.timeout = std::chrono::milliseconds(o.otel_exporter_otlp_timeout);
    e.max_queue = static_cast<std::size_t>(o.otel_bsp_max_queue_size);
    e.max_batch = static_cast<std::size_t>(o.otel_bsp_max_export_batch_size);
    e.schedule_delay = std::chrono::milliseconds(o.otel_bsp_schedule_delay);
    e.export_timeout = std::chrono::milliseconds(o.otel_bsp_export_timeout);
    const std::string service =
        o.otel_service_name.empty() ? std::string(program_invocation_short_name) : o.otel_service_name;
    // The SDK's own attributes, then OTEL_RESOURCE_ATTRIBUTES over them (the later of two equal
    // keys wins), then OTEL_SERVICE_NAME: each key once (OTLP: attribute keys are unique).
    std::vector<trace::Attribute> resource = {{"telemetry.sdk.name", std::string("keel")},
                                              {"telemetry.sdk.language", std::string("cpp")},
                                              {"telemetry.sdk.version", std::string(base::keel_version())},
                                              {"process.pid", static_cast<std::int64_t>(::getpid())}};
    for (auto& kv : key_values(o.otel_resource_attributes)) {
      const std::string& key = kv.first;  // (clang 14 cannot capture a structured binding)
      if (key == "service.name") continue;
      std::erase_if(resource, [&](const trace::Attribute& a) { return a.key == key; });
      resource.push_back({key, std::move(kv.second)});
    }
    e.resource.push_back({"service.name", service});
    for (auto& a : resource) e.resource.push_back(std::move(a));
    t.exporter = std::move(e);
  }
  return std::make_unique<trace::Tracer>(std::move(t));
}

bool reload(const ServerOptions& defaults, const config::Sources& sources, ServerOptions& options,
            Settings& app_settings) {
  Configuration fresh(defaults, app_settings);
  const config::Loaded loaded = fresh.load(sources);
  if (!loaded.problems.empty()) {
    std::string all;
    for (const auto& p : loaded.problems) all += (all.empty() ? "" : "; ") + p.to_string();
    log::write(log::Level::kError, "keel.config", "config_reload_rejected",
               {{"problems", loaded.problems.size()}, {"errors", all}, {"kept", "the running configuration"}});
    return false;
  }
  ServerOptions next = options;
  apply_server_settings(fresh.registry(), next);
  std::string changed, needs_restart;
  for (const auto& s : server_settings()) {
    if (s.get(next) == s.get(options)) continue;
    if (s.restart_only) {
      s.set(next, s.get(options));  // listeners, pid file, control socket stay as they are
      needs_restart += (needs_restart.empty() ? "" : ",") + s.spec.name;
    } else {
      changed += (changed.empty() ? "" : ",") + s.spec.name;
    }
  }
  options = next;
  try {
    apply_logging(options);  // new levels and format for the master and the workers it starts
  } catch (const std::exception& e) {
    log::write(log::Level::kError, "keel.config", "log_reconfigure_failed", {{"error", e.what()}});
  }
  Settings before = app_settings;
  fresh.apply_app(app_settings);
  for (const auto& s : app_settings.declared())
    if (before.string(s.name) != app_settings.string(s.name)) changed += (changed.empty() ? "" : ",") + s.name;
  log::write(log::Level::kInfo, "keel.config", "config_reloaded",
             {{"changed", changed}, {"config_file", loaded.config_file}, {"env_file", loaded.env_file}});
  if (!needs_restart.empty())
    log::write(log::Level::kWarning, "keel.config", "config_needs_restart",
               {{"settings", needs_restart}, {"hint", "send USR2 (binary upgrade) to apply these"}});
  log_config_warnings(loaded);
  config::export_dotenv(loaded);
  return true;
}

}  // namespace keel::app
