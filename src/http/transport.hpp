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

}  // namespace keel::http
