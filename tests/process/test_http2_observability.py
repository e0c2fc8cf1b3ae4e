"""HTTP/2 observability through the real binary: the RED series labelled network_protocol_version
("2" for an h2c request by curl, "1.1" for HTTP/1.1 beside it), the HTTP/2 connection and stream
gauges (a raw h2c connection held open, a stream held by a sleeping handler), the connection-error
counter with every reason declared up front, the access log's protocol and stream_id, and the
SERVER span's network.protocol.name/version."""

import os
import shutil
import socket
import struct
import subprocess
import time
import unittest

import keelproc
from keelproc import Conn, KeelTestCase
from test_metrics import samples, scrape, value
from test_tracing import Collector, attrs

CURL = shutil.which("curl")
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
REASONS = ("rapid_reset", "control_flood", "header_flood", "slow_reader", "bad_preface", "protocol_error")

# Frame types and flags (RFC 9113 section 6).
DATA, HEADERS, SETTINGS, PING, GOAWAY = 0, 1, 4, 6, 7
END_STREAM, END_HEADERS = 0x1, 0x4


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def literal(name_index: int, value: str) -> bytes:
    """HPACK literal header field without indexing, name from the static table, no Huffman."""
    v = value.encode()
    assert name_index < 15 and len(v) < 127
    return bytes([name_index, len(v)]) + v


def get_headers(path: str, authority: str) -> bytes:
    # :method GET (static 2), :scheme http (6), then :path (name 4) and :authority (name 1).
    return b"\x82\x86" + literal(4, path) + literal(1, authority)


class H2:
    """A raw h2c connection (prior knowledge): enough to hold a connection and streams open."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.port = port
        self.sock.sendall(PREFACE + frame(SETTINGS, 0, 0))

    def request(self, stream: int, path: str) -> None:
        self.sock.sendall(frame(HEADERS, END_STREAM | END_HEADERS, stream,
                                get_headers(path, f"127.0.0.1:{self.port}")))

    def frames(self, timeout: float = 5.0):
        """Frames until the server closes the connection or the timeout: [(type, flags, stream, payload)]."""
        out, buf = [], b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                break
            if not chunk:
                break
            buf += chunk
            while len(buf) >= 9:
                length = int.from_bytes(buf[:3], "big")
                if len(buf) < 9 + length:
                    break
                out.append((buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF, buf[9:9 + length]))
                buf = buf[9 + length:]
        return out

    def close(self) -> None:
        self.sock.close()


def curl_h2(port: int, path: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([CURL, "-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
                           *extra, f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, timeout=30)


def metric_text(port: int) -> str:
    resp = scrape(port)
    assert resp.status == 200, resp
    return resp.text


def wait_metric(test, port: int, predicate, what: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = metric_text(port)
        if predicate(text):
            return text
        if time.monotonic() > deadline:
            test.fail(f"{what}: not seen within {timeout}s\n" + "\n".join(
                line for line in text.splitlines() if "http2" in line or "in_flight" in line))
        time.sleep(0.05)


@unittest.skipUnless(CURL, "curl is not installed")
class Http2MetricsTest(KeelTestCase):
    @classmethod
    def setUpClass(cls):
        # Two workers: every scrape must add up what each worker saw.
        cls.server = cls.start_class_server("--workers", "2", "--http2-max-control-frames", "4", pin_workers=False)

    def test_requests_carry_the_protocol_version(self):
        port = self.server.port
        for _ in range(3):
            r = curl_h2(port, "/users/7")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout, "2 200")
        keelproc.get(port, "/users/8")  # HTTP/1.1
        text = metric_text(port)
        route = "/users/{id:int}"
        self.assertGreaterEqual(value(text, "http_requests_total", route=route, status="200",
                                      network_protocol_version="2"), 3)
        self.assertGreaterEqual(value(text, "http_requests_total", route=route, status="200",
                                      network_protocol_version="1.1"), 1)
        self.assertEqual(value(text, "http_request_duration_seconds_count", route=route,
                               network_protocol_version="2"),
                         value(text, "http_requests_total", route=route, network_protocol_version="2"))
        # Every series of the RED families has the label, with one of the three values.
        for name, labels, _ in samples(text):
            if name in ("http_requests_total", "http_request_duration_seconds_bucket", "http_requests_in_flight"):
                self.assertIn(labels.get("network_protocol_version"), ("1.0", "1.1", "2"), (name, labels))
        # In flight: one series per protocol version from the start; only this scrape (1.1) now.
        self.assertEqual(value(text, "http_requests_in_flight", network_protocol_version="2"), 0)
        self.assertEqual(value(text, "http_requests_in_flight", network_protocol_version="1.0"), 0)
        self.assertIn('http_requests_in_flight{network_protocol_version="2"} 0', text)
        # What dashboards and rules do: summing over the label gives every request.
        self.assertEqual(value(text, "http_requests_total", route=route),
                         value(text, "http_requests_total", route=route, network_protocol_version="2") +
                         value(text, "http_requests_total", route=route, network_protocol_version="1.1"))
        check = subprocess.run(["promtool", "check", "metrics"], input=text.encode(), capture_output=True,
                               timeout=30) if shutil.which("promtool") else None
        if check is not None:
            self.assertEqual(check.returncode, 0, check.stdout + check.stderr)

    def test_connection_and_stream_gauges(self):
        port = self.server.port
        self.assertIn("# TYPE keel_http2_connections_open gauge", metric_text(port))
        c = H2(port)
        try:
            wait_metric(self, port, lambda t: value(t, "keel_http2_connections_open") == 1
                        and value(t, "keel_http2_streams_open") == 0, "one HTTP/2 connection, no stream")
            c.request(1, "/sleep?ms=1500")
            text = wait_metric(self, port, lambda t: value(t, "keel_http2_streams_open") == 1,
                               "a stream open while its handler sleeps")
            self.assertEqual(value(text, "keel_http2_connections_open"), 1)
            self.assertEqual(value(text, "http_requests_in_flight", network_protocol_version="2"), 1)
            frames = c.frames(timeout=5)
            self.assertTrue(any(t == DATA and s == 1 and f & END_STREAM for t, f, s, _ in frames), frames)
            wait_metric(self, port, lambda t: value(t, "keel_http2_streams_open") == 0
                        and value(t, "http_requests_in_flight", network_protocol_version="2") == 0,
                        "the stream closed once answered")
            self.assertEqual(value(metric_text(port), "keel_http2_connections_open"), 1)
        finally:
            c.close()
        wait_metric(self, port, lambda t: value(t, "keel_http2_connections_open") == 0, "the connection gone")

    def test_connection_errors_by_reason(self):
        port = self.server.port
        text = metric_text(port)
        self.assertIn("# TYPE keel_http2_connection_errors_total counter", text)
        for reason in REASONS:  # declared up front: 0 before anything happened
            self.assertIn(f'keel_http2_connection_errors_total{{reason="{reason}"}}', text)
        before = value(text, "keel_http2_connection_errors_total", reason="control_flood")
        others = {r: value(text, "keel_http2_connection_errors_total", reason=r) for r in REASONS if r != "control_flood"}
        # --http2-max-control-frames 4: the client's SETTINGS and PINGs beyond the budget.
        c = H2(port)
        try:
            c.sock.sendall(b"".join(frame(PING, 0, 0, bytes(8)) for _ in range(8)))
            frames = c.frames(timeout=5)
            goaway = [p for t, _, _, p in frames if t == GOAWAY]
            self.assertTrue(goaway, frames)
            self.assertEqual(int.from_bytes(goaway[-1][4:8], "big"), 0xB)  # ENHANCE_YOUR_CALM
        finally:
            c.close()
        text = wait_metric(self, port, lambda t: value(t, "keel_http2_connection_errors_total",
                                                       reason="control_flood") == before + 1, "control_flood counted")
        for r, v in others.items():
            self.assertEqual(value(text, "keel_http2_connection_errors_total", reason=r), v, r)
        wait_metric(self, port, lambda t: value(t, "keel_http2_connections_open") == 0, "the connection gone")


@unittest.skipUnless(CURL, "curl is not installed")
class Http2AccessLogTest(KeelTestCase):
    def test_access_log_names_the_protocol_and_the_stream(self):
        server = self.start_server()
        r = curl_h2(server.port, "/users/7?h2=1", "-H", "User-Agent: h2-observer")
        self.assertEqual((r.returncode, r.stdout), (0, "2 200"), r.stderr)
        line = server.wait_for_stdout(lambda e: e.get("event") == "request_handled" and e.get("path") == "/users/7")
        self.assertIsNotNone(line, server.output_tail())
        self.assertEqual(line["protocol"], "HTTP/2")
        self.assertEqual(line["stream_id"], 1)  # curl's first stream
        self.assertEqual(line["user_agent"], "h2-observer")
        self.assertEqual(line["status"], 200)
        # Several streams on one connection: one line each, odd stream ids in order.
        c = H2(server.port)
        try:
            for stream in (1, 3, 5):
                c.request(stream, f"/users/{100 + stream}")
            frames = c.frames(timeout=2)
            self.assertEqual(sorted(s for t, f, s, _ in frames if t == DATA and f & END_STREAM), [1, 3, 5])
        finally:
            c.close()
        for stream in (1, 3, 5):
            line = server.wait_for_stdout(lambda e, s=stream: e.get("event") == "request_handled"
                                          and e.get("path") == f"/users/{100 + s}")
            self.assertIsNotNone(line, server.output_tail())
            self.assertEqual((line["protocol"], line["stream_id"]), ("HTTP/2", stream))
        # HTTP/1.x: the protocol, and no stream_id.
        keelproc.get(server.port, "/users/9")
        line = server.wait_for_stdout(lambda e: e.get("event") == "request_handled" and e.get("path") == "/users/9")
        self.assertEqual(line["protocol"], "HTTP/1.1")
        self.assertNotIn("stream_id", line)
        with Conn(server.port) as conn:
            self.assertEqual(conn.request("GET", "/users/10", version="HTTP/1.0").status, 200)
        line = server.wait_for_stdout(lambda e: e.get("event") == "request_handled" and e.get("path") == "/users/10")
        self.assertEqual(line["protocol"], "HTTP/1.0")
        self.assertNotIn("stream_id", line)


@unittest.skipUnless(CURL, "curl is not installed")
class Http2TracingTest(KeelTestCase):
    def test_server_span_says_http_2(self):
        collector = Collector()
        self.addCleanup(collector.close)
        self.addCleanup(lambda: self.assertEqual(collector.problems, []))
        env = dict(os.environ, OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{collector.port}",
                   OTEL_BSP_SCHEDULE_DELAY="100", OTEL_SERVICE_NAME="testapp-h2")
        server = self.start_server(env=env)
        trace = "0af7651916cd43dd8448eb211c80319c"
        r = curl_h2(server.port, "/users/5", "-H", f"traceparent: 00-{trace}-b7ad6b7169203331-01")
        self.assertEqual((r.returncode, r.stdout), (0, "2 200"), r.stderr)
        keelproc.get(server.port, "/users/6")
        spans = collector.wait(lambda s: s["traceId"] == trace)
        self.assertEqual(len(spans), 1)
        a = attrs(spans[0])
        self.assertEqual(a["network.protocol.name"], "http")
        self.assertEqual(a["network.protocol.version"], "2")
        self.assertEqual(a["http.route"], "/users/{id:int}")
        spans = collector.wait(lambda s: attrs(s).get("url.path") == "/users/6")
        self.assertEqual(len(spans), 1)
        a = attrs(spans[0])
        self.assertEqual((a["network.protocol.name"], a["network.protocol.version"]), ("http", "1.1"))


if __name__ == "__main__":
    unittest.main()
