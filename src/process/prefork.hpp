// Minimal pre-fork supervision: the master binds every listener, forks the workers, forwards
// shutdown signals and replaces workers that die. (Heartbeats, recycling, rolling restarts and
// binary upgrade belong to the process-manager work that builds on this.)
#pragma once

#include <functional>
#include <vector>

#include "keel/app.hpp"
#include "net/listener.hpp"

namespace keel::process {

// Runs worker_main(listeners, worker_id) in `options.workers` child processes (or in this
// process when workers == 1) and returns the exit code for the whole service.
int run(const ServerOptions& options, std::vector<net::Listener> listeners,
        const std::function<int(std::vector<net::Listener>, int)>& worker_main);

}  // namespace keel::process
