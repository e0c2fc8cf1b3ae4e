// systemd's notify protocol (sd_notify(3)) without libsystemd: one datagram to $NOTIFY_SOCKET.
// Does nothing when the variable is unset, so it is always safe to call.
#pragma once

#include <chrono>
#include <optional>
#include <string_view>

namespace keel::process {

void sd_notify(std::string_view state);

// The watchdog interval systemd expects pings within ($WATCHDOG_USEC, for this process).
std::optional<std::chrono::milliseconds> sd_watchdog_interval();

}  // namespace keel::process
