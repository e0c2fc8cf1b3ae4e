// The hooks of keel's process model (App::hooks(), App::on_startup(), App::on_shutdown()).
#pragma once

#include <functional>
#include <string_view>
#include <vector>

namespace keel {

// Lifecycle hooks of the process model. Worker hooks run in every worker process (or in the single
// process); master hooks run in the master (in the single process too, where there is no fork).
struct LifecycleHooks {
  // Worker: before it accepts its first connection (open pools, run migrations, warm caches).
  // An exception is a boot failure: logged with its message, the worker exits with code 3 and a
  // master that never became ready stops with exit code 3 instead of respawning forever.
  std::vector<std::function<void()>> startup;
  // Worker: after it has drained (close pools, flush). Exceptions are logged.
  std::vector<std::function<void()>> shutdown;
  // Master.
  std::function<void()> on_starting;             // listeners bound, before the first fork
  std::function<void()> when_ready;              // every worker serves (again after a roll)
  std::function<void(int worker_id)> pre_fork;   // in the master, before forking a worker
  std::function<void(int worker_id)> post_fork;  // in the new worker, right after the fork
  std::function<void(int worker_id, int pid, std::string_view reason)> worker_exit;  // after reaping
  std::function<void()> on_exit;                                                     // the service is about to exit
};

}  // namespace keel
