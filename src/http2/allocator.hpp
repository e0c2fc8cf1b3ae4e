// The memory nghttp2 sessions allocate (streams, frames, header buffers, reference-counted
// strings: several small blocks per request) from per-size free lists of the worker thread,
// rather than from glibc malloc, whose per-thread cache keeps 7 blocks per size and sends
// HTTP/2's bursts of streams to its slower paths (~13% of a worker's CPU under h2load).
#pragma once

#include <nghttp2/nghttp2.h>

namespace keel::http2 {

// The allocator to hand nghttp2_session_server_new3. Sessions must be used on one thread (a
// worker's event loop); blocks freed on another thread go back to that thread's lists.
nghttp2_mem* pooled_memory() noexcept;

}  // namespace keel::http2
