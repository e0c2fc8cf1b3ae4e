// What the HTTP/2 connections read from the configuration (filled by the composition root from
// the http2_* settings): the SETTINGS keel announces and the limits of its flood defences.
#pragma once

#include <cstddef>
#include <cstdint>

namespace keel::http2 {

struct Config {
  // Announced in keel's SETTINGS frame.
  std::uint32_t max_concurrent_streams = 100;
  std::uint32_t max_header_list_size = 64 * 1024;  // decoded; a larger request head gets 431
  std::uint32_t header_table_size = 4096;          // HPACK dynamic table the client may use
  std::uint32_t max_frame_size = 16384;
  std::uint32_t initial_window_size = 65535;  // per stream: request body bytes in flight
  // Request body bytes in flight over all of a connection's streams (the connection window).
  std::uint32_t connection_window_size = 1024 * 1024;
  // Flood defences, per connection: streams the client resets (CVE-2023-44487, "rapid reset"),
  // and frames that make the server work without asking for a response (PING, SETTINGS,
  // PRIORITY, WINDOW_UPDATE beyond the data keel sends, empty DATA/HEADERS/CONTINUATION). Each is
  // a bucket of this many, refilled at this many per 10 s; an empty bucket ends the connection
  // with GOAWAY ENHANCE_YOUR_CALM.
  std::uint32_t max_reset_streams = 1000;
  std::uint32_t max_control_frames = 1000;
  // Response bytes a connection may hold that the client's flow-control windows do not let out
  // yet (a client that never opens its window): beyond it no new stream is handed to the
  // application; with no progress for --write-timeout the connection ends.
  std::size_t max_pending_output = 1024 * 1024;
};

}  // namespace keel::http2
