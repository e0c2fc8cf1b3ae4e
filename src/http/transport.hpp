// recv()/send() on a connection's socket, through its TLS session when it has one: what the
// HTTP/1 and HTTP/2 connections read and write with.
#pragma once

#include <sys/types.h>

#include <cstddef>

#include "tls/session.hpp"

namespace keel::http {

// >0 bytes, 0 EOF, -1 with errno (EAGAIN: wait for the socket; wants_write: TLS needs it
// writable before it can read).
ssize_t transport_receive(int fd, tls::Session* tls, char* buf, std::size_t size, bool& wants_write);
// >0 bytes, -1 with errno (EAGAIN: wait; EPIPE: the connection is over).
ssize_t transport_transmit(int fd, tls::Session* tls, const char* data, std::size_t size);
// The start of a lingering close: close_notify through TLS (when it can go without waiting), then
// no more sending; the caller reads and discards until the client closes.
void transport_half_close(int fd, tls::Session* tls) noexcept;
// Makes the coming close() a reset: a client that stopped reading must not keep up to a whole
// socket send buffer queued in the kernel.
void transport_reset_on_close(int fd) noexcept;

}  // namespace keel::http
