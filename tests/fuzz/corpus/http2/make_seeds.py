#!/usr/bin/python3
"""Writes the seed corpus of fuzz_http2 (tests/fuzz/http2_fuzz.cpp) next to this script.

Each seed is what a client sends on a plaintext HTTP/2 connection: the client preface, SETTINGS
and frames, made with Debian's python3-h2 (hyperframe for frames h2's state machine will not send,
such as a PING ACK or DATA beyond a window). "@@h2" + a command byte cuts the input into segments
(the first one is handed over as already read, the others go through the socket; the harness
documents the commands). Run it with /usr/bin/python3 and commit the .h2 files it writes:

    /usr/bin/python3 tests/fuzz/corpus/http2/make_seeds.py
"""

import os

import h2.config
import h2.connection
import h2.settings
from hyperframe.frame import DataFrame, PingFrame, PriorityFrame, RstStreamFrame, SettingsFrame, WindowUpdateFrame

HERE = os.path.dirname(os.path.abspath(__file__))
MARKER = b"@@h2"


def cmd(n):
    """The marker that starts a new segment, after command n."""
    return MARKER + bytes([n])


def client():
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    c.initiate_connection()  # preface + SETTINGS
    return c


def req(path, method="GET", extra=()):
    return [(":method", method), (":scheme", "http"), (":authority", "example.com"), (":path", path),
            *extra]


def out(c):
    return c.data_to_send()


seeds = {}

# GET /
c = client()
c.send_headers(1, req("/"), end_stream=True)
seeds["get_root"] = out(c)

# POST /echo with a body in two DATA frames
c = client()
c.send_headers(1, req("/echo", "POST", [("content-type", "text/plain"), ("content-length", "11")]))
c.send_data(1, b"hello ")
c.send_data(1, b"world", end_stream=True)
seeds["post_echo"] = out(c)

# PING, then a request
c = client()
c.ping(b"01234567")
c.send_headers(1, req("/"), end_stream=True)
seeds["ping"] = out(c)

# A request body cut short by RST_STREAM, then another request
c = client()
c.send_headers(1, req("/echo", "POST"))
c.send_data(1, b"partial")
c.reset_stream(1)
c.send_headers(3, req("/"), end_stream=True)
seeds["rst_stream"] = out(c)

# A header block split over CONTINUATION frames (h2 splits at the frame size it believes allowed)
c = client()
c.max_outbound_frame_size = 64
c.send_headers(1, req("/", extra=[("x-long-%d" % i, "v" * 40) for i in range(4)]), end_stream=True)
seeds["continuation"] = out(c)

# Several streams, each behaviour of the handler once; HEAD; a trailer-carrying request
c = client()
sid = 1
for path, method in [("/stream?6", "GET"), ("/trailers", "GET"), ("/stream-trailers?3", "GET"),
                     ("/empty", "GET"), ("/", "HEAD"), ("/status/304", "GET"), ("/id", "GET"),
                     ("/bad-header", "GET")]:
    c.send_headers(sid, req(path, method), end_stream=True)
    sid += 2
c.send_headers(sid, req("/echo", "POST"))
c.send_data(sid, b"body")
c.send_headers(sid, [("x-trailer", "t")], end_stream=True)
seeds["many_streams"] = out(c)

# /big with the client's windows opened (SETTINGS, connection WINDOW_UPDATE) in a later segment
c = client()
c.send_headers(1, req("/big"), end_stream=True)
first = out(c)
later = (SettingsFrame(0, settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20}).serialize() +
         WindowUpdateFrame(0, window_increment=1 << 20).serialize())
seeds["big_window_update"] = first + cmd(0) + later

# Deferred answers: two held, answered by command 5, a third reset while held
c = client()
c.send_headers(1, req("/defer"), end_stream=True)
c.send_headers(3, req("/defer"), end_stream=True)
c.send_headers(5, req("/defer"), end_stream=True)
first = out(c)
c.send_headers(7, req("/"), end_stream=True)
seeds["defer"] = first + cmd(0) + RstStreamFrame(5, error_code=8).serialize() + cmd(5) + out(c)

# Graceful shutdown (command 2): the client acks the drain PING ("keeldran") and sends one more
# request; the final GOAWAY goes at the drain-idle deadline (command 1: the harness's clock does
# not move, so the grace after the ACK never ends by itself), then more
c = client()
c.send_headers(1, req("/"), end_stream=True)
first = out(c)
c.send_headers(3, req("/"), end_stream=True)
second = out(c)
c.send_headers(5, req("/"), end_stream=True)
seeds["drain"] = first + cmd(2) + PingFrame(0, flags=["ACK"], opaque_data=b"keeldran").serialize() + \
    second + cmd(1) + out(c)

# A body that stops arriving: the deadline (command 1) answers 408
c = client()
c.send_headers(1, req("/echo", "POST", [("content-length", "100")]))
c.send_data(1, b"only a little")
seeds["body_timeout"] = out(c) + cmd(1)

# Bodies over the limit (8 KiB): announced, and sent without a length
c = client()
c.send_headers(1, req("/echo", "POST", [("content-length", "100000")]))
c.send_headers(3, req("/echo", "POST"))
first = out(c)
seeds["body_too_large"] = first + DataFrame(3, data=b"x" * 9000, flags=["END_STREAM"]).serialize()

# Two bodies in flight beyond the worker's request body budget (12 KiB): 503
c = client()
c.send_headers(1, req("/echo", "POST"))
c.send_headers(3, req("/echo", "POST"))
c.send_data(1, b"a" * 7000)
c.send_data(3, b"b" * 7000)
c.end_stream(1)
c.end_stream(3)
seeds["body_budget"] = out(c)

# DATA beyond the stream's window (16 KiB): a flow-control error
c = client()
c.send_headers(1, req("/echo", "POST"))
seeds["window_overrun"] = out(c) + DataFrame(1, data=b"y" * 16384).serialize() + DataFrame(1, data=b"z").serialize()

# The client's GOAWAY after a request
c = client()
c.send_headers(1, req("/"), end_stream=True)
c.close_connection()
seeds["client_goaway"] = out(c)

# SETTINGS ACK, PRIORITY, WINDOW_UPDATE on a stream, then a request
c = client()
first = out(c)
seeds["control_frames"] = (first + SettingsFrame(0, flags=["ACK"]).serialize() +
                           PriorityFrame(3, depends_on=1, stream_weight=10).serialize() +
                           WindowUpdateFrame(0, window_increment=1000).serialize())
c.send_headers(1, req("/"), end_stream=True)
seeds["control_frames"] += out(c)

# Only the preface handed over; the request comes through the socket
c = client()
first = out(c)
c.send_headers(1, req("/echo", "POST"))
c.send_data(1, b"via the socket", end_stream=True)
seeds["socket_read"] = first + cmd(0) + out(c)

# The client half-closes after its request (command 6)
c = client()
first = out(c)
c.send_headers(1, req("/stream?4"), end_stream=True)
seeds["half_close"] = first + cmd(6) + out(c)

# A client that stops reading, a tiny socket buffer, several large answers, then reads again
c = client()
c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
first = out(c) + WindowUpdateFrame(0, window_increment=1 << 22).serialize()
for sid in (1, 3, 5):
    c.send_headers(sid, req("/big"), end_stream=True)
seeds["slow_reader"] = first + cmd(8) + cmd(3) + out(c) + cmd(1) + cmd(9)

# Proxy headers (the peer is trusted) and cookies split over several fields
c = client()
c.send_headers(1, req("/", extra=[("x-forwarded-for", "203.0.113.7, 10.1.2.3"), ("x-forwarded-proto", "https"),
                                  ("forwarded", 'for="[2001:db8::1]:443";proto=https;host=a.example'),
                                  ("cookie", "a=1"), ("cookie", "b=2"), ("x-request-id", "abc-123")]),
               end_stream=True)
seeds["proxy_cookies"] = out(c)

# A producer that throws after its first piece (the stream is reset)
c = client()
c.send_headers(1, req("/stream-throw?5"), end_stream=True)
c.send_headers(3, req("/"), end_stream=True)
seeds["stream_throw"] = out(c)

# Rapid reset: streams opened and reset at once, beyond the budget
c = client()
for i in range(60):
    c.send_headers(1 + 2 * i, req("/"))
    c.reset_stream(1 + 2 * i)
seeds["rapid_reset"] = out(c)

# Rapid reset of complete requests: the stream that ends the connection is still queued for the
# handler (main's 3e6310e fixed the erase of a cleared queue this reaches)
c = client()
for i in range(60):
    c.send_headers(1 + 2 * i, req("/"), end_stream=True)
    c.reset_stream(1 + 2 * i)
seeds["rapid_reset_queued"] = out(c)

# A ping flood beyond the control frame budget
c = client()
seeds["ping_flood"] = out(c) + PingFrame(0, opaque_data=b"flooding").serialize() * 60

# A header list over the limit (4 KiB decoded): 431
c = client()
c.send_headers(1, req("/", extra=[("x-big", "h" * 5000)]), end_stream=True)
c.send_headers(3, req("/"), end_stream=True)
seeds["headers_too_large"] = out(c)

# 0xFE: keep_alive_requests 3, the connection drains itself after the third request
c = client()
for sid in (1, 3, 5, 7):
    c.send_headers(sid, req("/"), end_stream=True)
seeds["max_requests"] = b"\xfe" + out(c)

# Idle: the keep-alive deadline sends GOAWAY, the next one (linger) closes
c = client()
c.send_headers(1, req("/"), end_stream=True)
first = out(c)
c.send_headers(3, req("/"), end_stream=True)
seeds["idle_timeout"] = first + cmd(1) + out(c) + cmd(1)

# Not HTTP/2 at all (0xFF: no preface is added)
seeds["bad_preface"] = b"\xffGET / HTTP/1.1\r\nHost: x\r\n\r\n"

# The frames themselves must not contain the marker by chance (only cmd() puts it there).
segmented = {"big_window_update": 1, "defer": 2, "drain": 2, "body_timeout": 1, "socket_read": 1,
             "half_close": 1, "slow_reader": 4, "idle_timeout": 2}
for name, data in seeds.items():
    assert data.count(MARKER) == segmented.get(name, 0), name
    assert data[:1] not in (b"\xff", b"\xfe") or name in ("bad_preface", "max_requests"), name
    with open(os.path.join(HERE, name + ".h2"), "wb") as f:
        f.write(data)
print("wrote %d seeds to %s" % (len(seeds), HERE))
