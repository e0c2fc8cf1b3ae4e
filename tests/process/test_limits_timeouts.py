"""Request size limits (414/431/413), timeouts (408, idle keep-alive close), and connection /
concurrency caps (503)."""

import os
import threading
import time
import unittest

import keelproc
from keelproc import Conn, KeelTestCase, build_request, chunked


class LimitsTest(KeelTestCase):
    LINE, FIELD, FIELDS, HEADER, BODY = 256, 256, 10, 1024, 1000

    @classmethod
    def setUpClass(cls):
        cls.server = cls.start_class_server(
            "--limit-request-line", str(cls.LINE),
            "--limit-request-field_size", str(cls.FIELD),
            "--limit-request-fields", str(cls.FIELDS),
            "--limit-request-header-size", str(cls.HEADER),
            "--limit-request-body", str(cls.BODY))
        cls.port = cls.server.port

    def rejected(self, raw: bytes, status: int, allow_reset: bool = False):
        with Conn(self.port) as c:
            c.send(raw)
            resp = c.read_response()
            self.assertProblem(resp, status)
            self.assertClosedByServer(c, allow_reset=allow_reset)
        self.assertEqual(keelproc.get(self.port, "/plaintext").status, 200)

    # -- request line ------------------------------------------------------------------------

    def test_request_line_too_long(self):
        target = "/" + "a" * (self.LINE + 50)
        self.rejected(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode(), 414)

    def test_request_line_too_long_without_newline(self):
        # The server must not wait for the end of an endless request line.
        with Conn(self.port) as c:
            c.send(b"GET /" + b"a" * (self.LINE * 4))
            resp = c.read_response(timeout=3)
            self.assertProblem(resp, 414)
            self.assertClosedByServer(c)

    def test_request_line_within_limit(self):
        target = "/" + "a" * (self.LINE - len("GET / HTTP/1.1") - 1)
        line = f"GET {target} HTTP/1.1"
        self.assertEqual(len(line), self.LINE - 1)
        resp = keelproc.get(self.port, target)
        self.assertProblem(resp, 404, close=False)

    # -- header fields -----------------------------------------------------------------------

    def test_header_field_too_large(self):
        self.rejected(b"GET /plaintext HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * (self.FIELD + 10) + b"\r\n\r\n", 431)

    def test_header_field_within_limit(self):
        value = "b" * (self.FIELD - len("X-Big: ") - 1)
        resp = keelproc.get(self.port, "/plaintext", {"X-Big": value})
        self.assertStatus(resp, 200)

    def test_too_many_header_fields(self):
        headers = "".join(f"X-F{i}: v\r\n" for i in range(self.FIELDS))  # + Host = FIELDS + 1
        self.rejected(f"GET /plaintext HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode(), 431)

    def test_header_field_count_within_limit(self):
        headers = {f"X-F{i}": "v" for i in range(self.FIELDS - 1)}  # + Host = FIELDS
        self.assertStatus(keelproc.get(self.port, "/plaintext", headers), 200)

    def test_header_block_too_large(self):
        # Every field is under the field limit and there are few of them, but together they
        # exceed the header block limit.
        field_value = "h" * (self.FIELD - 20)
        n = self.HEADER // len(field_value) + 2
        self.assertLess(n + 1, self.FIELDS)
        headers = "".join(f"X-H{i}: {field_value}\r\n" for i in range(n))
        self.rejected(f"GET /plaintext HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode(), 431)

    def test_too_many_trailer_fields(self):
        trailers = {f"X-T{i}": "v" for i in range(self.FIELDS + 2)}
        raw = build_request("POST", "/echo", {"Transfer-Encoding": "chunked"}, chunked(b"abc", trailers=trailers))
        self.rejected(raw, 431)

    # -- body ---------------------------------------------------------------------------------

    def test_body_content_length_over_limit_head_only(self):
        # Answered from the head alone: 413 without waiting for the body.
        self.rejected(f"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {self.BODY + 1}\r\n\r\n".encode(), 413)

    def test_body_content_length_over_limit_with_body(self):
        self.rejected(build_request("POST", "/echo", None, b"z" * (self.BODY + 1)), 413, allow_reset=True)

    def test_body_at_limit(self):
        body = b"z" * self.BODY
        resp = keelproc.get(self.port, "/echo", method="POST", body=body)
        self.assertStatus(resp, 200)
        self.assertEqual(resp.body, body)

    def test_chunked_body_over_limit(self):
        half = b"c" * (self.BODY // 2 + 100)
        self.rejected(build_request("POST", "/echo", {"Transfer-Encoding": "chunked"}, chunked(half, half)), 413)

    def test_chunked_single_chunk_over_limit(self):
        # The chunk size alone says it is too big: 413 before any data.
        self.rejected(build_request("POST", "/echo", {"Transfer-Encoding": "chunked"},
                                    f"{self.BODY + 1:x}\r\n".encode()), 413)

    def test_chunked_body_at_limit(self):
        body = b"q" * self.BODY
        resp = keelproc.get(self.port, "/echo", {"Transfer-Encoding": "chunked"}, method="POST",
                            body=chunked(body[:300], body[300:]))
        self.assertStatus(resp, 200)
        self.assertEqual(resp.body, body)

    def test_expect_continue_over_limit_gets_413_without_100(self):
        with Conn(self.port) as c:
            c.send(f"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                   f"Content-Length: {self.BODY * 5}\r\n\r\n".encode())
            resp = c.read_response(timeout=3)
            self.assertNotEqual(resp.status, 100, "sent 100 Continue for a body that is over the limit")
            self.assertProblem(resp, 413)
            self.assertClosedByServer(c)

    def test_expect_continue_within_limit(self):
        with Conn(self.port) as c:
            c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
            self.assertEqual(c.read_exact(25, timeout=3), b"HTTP/1.1 100 Continue\r\n\r\n")
            c.send(b"body")
            resp = c.read_response()
            self.assertStatus(resp, 200)
            self.assertEqual(resp.body, b"body")


class TimeoutsTest(KeelTestCase):
    TIMEOUT = 1.0

    @classmethod
    def setUpClass(cls):
        cls.server = cls.start_class_server("--header-timeout", "1s", "--keep-alive", "1s", "--body-timeout", "1s")
        cls.port = cls.server.port

    def test_slow_loris_partial_head(self):
        with Conn(self.port, timeout=5) as c:
            t0 = time.monotonic()
            c.send(b"GET /plaintext HTTP/1.1\r\nHost: x\r\nX-Slow")
            resp = c.read_response(timeout=self.TIMEOUT + 3)
            elapsed = time.monotonic() - t0
            self.assertProblem(resp, 408)
            self.assertGreaterEqual(elapsed, self.TIMEOUT * 0.5, "408 before the header timeout")
            self.assertLess(elapsed, self.TIMEOUT + 1.0, "408 came too late")
            self.assertClosedByServer(c, timeout=1.0)

    def test_slow_loris_trickling_head(self):
        # The header timeout covers the whole head: trickling a byte every 200 ms does not
        # extend it.
        with Conn(self.port, timeout=5) as c:
            t0 = time.monotonic()
            c.send(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n")
            i = 0
            try:
                while not c.readable_within(0.2) and time.monotonic() - t0 < self.TIMEOUT + 3:
                    c.send(b"X-%d: y\r\n" % i)
                    i += 1
            except (BrokenPipeError, ConnectionResetError):
                pass
            resp = c.read_response(timeout=2)
            elapsed = time.monotonic() - t0
            self.assertProblem(resp, 408)
            self.assertLess(elapsed, self.TIMEOUT + 1.0, "a trickled head kept the connection alive")
            self.assertClosedByServer(c, timeout=1.0, allow_reset=True)

    def test_idle_keep_alive_closed(self):
        with Conn(self.port, timeout=5) as c:
            self.assertStatus(c.get("/plaintext"), 200)
            t0 = time.monotonic()
            state = c.wait_closed(timeout=self.TIMEOUT + 2.5)
            elapsed = time.monotonic() - t0
            self.assertEqual(state, "eof", f"idle keep-alive connection: {state} {getattr(c, 'extra', b'')!r}")
            self.assertGreaterEqual(elapsed, self.TIMEOUT * 0.5, "closed before the keep-alive timeout")
            self.assertLess(elapsed, self.TIMEOUT + 1.5, "not closed after the keep-alive timeout")

    def test_keep_alive_timer_restarts_per_request(self):
        # 5 requests 0.6 s apart: the connection lives longer than the timeout but is never
        # idle for a whole timeout, so it must stay open.
        with Conn(self.port, timeout=5) as c:
            t0 = time.monotonic()
            for i in range(5):
                if i:
                    time.sleep(self.TIMEOUT * 0.6)
                try:
                    resp = c.get("/plaintext")
                except (keelproc.ProtocolError, ConnectionResetError, BrokenPipeError) as e:
                    self.fail(f"request #{i + 1} at t={time.monotonic() - t0:.2f}s: the server closed a keep-alive "
                              f"connection idle for only {self.TIMEOUT * 0.6:.1f}s (--keep-alive "
                              f"{self.TIMEOUT:.0f}s): the idle timer is not restarted per request ({e})")
                self.assertStatus(resp, 200)

    def test_fresh_idle_connection_closed(self):
        # A connection that never sends a byte does not stay open forever.
        with Conn(self.port, timeout=5) as c:
            t0 = time.monotonic()
            state = c.wait_closed(timeout=self.TIMEOUT + 2.5)
            elapsed = time.monotonic() - t0
            if state == "data":  # a 408 is acceptable here; then the close must follow
                self.assertIn(b" 408 ", c.extra.split(b"\r\n", 1)[0], c.extra)
                c.buf = c.extra
                c.read_response()
                state = c.wait_closed(timeout=1.0)
            self.assertEqual(state, "eof")
            self.assertLess(elapsed, self.TIMEOUT + 1.5)

    def test_partial_body_stall(self):
        with Conn(self.port, timeout=5) as c:
            c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
            t0 = time.monotonic()
            resp = c.read_response(timeout=self.TIMEOUT + 3)
            elapsed = time.monotonic() - t0
            self.assertProblem(resp, 408)
            self.assertGreaterEqual(elapsed, self.TIMEOUT * 0.5)
            self.assertLess(elapsed, self.TIMEOUT + 1.0)
            self.assertClosedByServer(c, timeout=1.0)

    def test_partial_chunked_body_stall(self):
        with Conn(self.port, timeout=5) as c:
            c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
            t0 = time.monotonic()
            resp = c.read_response(timeout=self.TIMEOUT + 3)
            elapsed = time.monotonic() - t0
            self.assertProblem(resp, 408)
            self.assertLess(elapsed, self.TIMEOUT + 1.0)
            self.assertClosedByServer(c, timeout=1.0)

    def test_slow_but_steady_body_is_accepted(self):
        # The body timeout is an idle timeout, and the header timeout does not cover the body:
        # a body trickled over ~2 s with 350 ms gaps is fine.
        with Conn(self.port, timeout=5) as c:
            c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\n")
            for b in b"steady":
                time.sleep(0.35)
                c.send(bytes([b]))
            resp = c.read_response(timeout=3)
            self.assertStatus(resp, 200)
            self.assertEqual(resp.body, b"steady")

    def test_server_alive_after_timeouts(self):
        self.assertTrue(self.server.alive())
        self.assertEqual(keelproc.get(self.port, "/plaintext").body, b"Hello, World!")


class ConcurrencyLimitTest(KeelTestCase):
    def test_limit_concurrency(self):
        server = self.start_server("--limit-concurrency", "2")
        port = server.port
        n = 6
        conns = [Conn(port, timeout=10) for _ in range(n)]
        for c in conns:
            self.addCleanup(c.close)
        barrier = threading.Barrier(n)
        results = [None] * n

        def worker(i):
            try:
                barrier.wait(5)
                t0 = time.monotonic()
                resp = conns[i].get("/sleep?ms=1000")
                results[i] = (resp.status, time.monotonic() - t0, resp)
            except Exception as e:
                results[i] = ("error", 0.0, repr(e))

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
        statuses = sorted(r[0] for r in results if r)
        self.assertEqual(statuses, [200, 200, 503, 503, 503, 503], results)
        for status, elapsed, resp in results:
            if status == 200:
                self.assertEqual(resp.body, b"slept")
                self.assertGreaterEqual(elapsed, 0.95)
            else:
                self.assertLess(elapsed, 0.5, f"503 was not immediate: {elapsed:.3f}s")
        time.sleep(0.2)
        # Capacity is back.
        for _ in range(3):
            self.assertEqual(keelproc.get(port, "/plaintext").status, 200)
        pair = []

        def sleeper():
            pair.append(keelproc.get(port, "/sleep?ms=300", timeout=5).status)

        threads = [threading.Thread(target=sleeper) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        self.assertEqual(pair, [200, 200])


class RequestBufferBudgetTest(KeelTestCase):
    """--request-buffer-budget: the bytes one worker holds for requests still arriving. A request
    whose buffer would take it over the budget gets 503 and its connection closes (counted as
    buffer_budget); once the holder finishes, the same request is served."""

    def test_over_budget_is_503_and_counted_then_served_again(self):
        server = self.start_server("--request-buffer-budget", "256KiB", "--limit-request-body", "1MiB")
        port = server.port
        head = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n"
        holder = Conn(port, timeout=5)
        self.addCleanup(holder.close)
        holder.send(head.format(200_000).encode() + b"a" * 150_000)  # its buffer: ~200 KB
        time.sleep(0.3)
        with Conn(port, timeout=5) as c:
            c.send(head.format(100_000).encode() + b"b" * 100_000)
            resp = c.read_response(timeout=3)
            self.assertProblem(resp, 503)
            self.assertClosedByServer(c, allow_reset=True)
        holder.send(b"a" * 50_000)
        resp = holder.read_response(timeout=3)
        self.assertStatus(resp, 200)
        self.assertEqual(len(resp.body), 200_000)
        with Conn(port, timeout=5) as c:  # the budget is free again
            c.send(head.format(100_000).encode() + b"b" * 100_000)
            resp = c.read_response(timeout=3)
            self.assertStatus(resp, 200)
            self.assertEqual(resp.body, b"b" * 100_000)
        metrics = keelproc.get(port, "/metrics").text
        self.assertRegex(metrics, r'http_requests_rejected_total\{reason="buffer_budget"\} 1(\.0)?\n')
        self.assertTrue(any(keelproc.parse_log_line(l) and '"request_buffer_budget_exhausted"' in l
                            for l in server.stdout_snapshot()), server.output_tail(10))

    def test_body_deadline_ends_a_trickled_body(self):
        # A byte every 300 ms keeps the 1 s idle timer from firing; the 1.5 s whole-body deadline
        # ends the request all the same (before the fix only the idle timer existed).
        server = self.start_server("--body-timeout", "1s", "--body-deadline", "1500ms")
        with Conn(server.port, timeout=5) as c:
            c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
            t0 = time.monotonic()
            resp = None
            while time.monotonic() - t0 < 5 and resp is None:
                time.sleep(0.3)
                try:
                    c.send(b"x")
                except OSError:
                    break
                if c.readable_within(0):
                    resp = c.read_response(timeout=2)
            if resp is None:
                resp = c.read_response(timeout=2)
            elapsed = time.monotonic() - t0
            self.assertProblem(resp, 408)
            self.assertIn("body", resp.json()["detail"])
            self.assertLess(elapsed, 2.5)


class WorkerConnectionsTest(KeelTestCase):
    def test_worker_connections_cap(self):
        server = self.start_server("--worker-connections", "5")
        port = server.port
        conns = []
        for i in range(5):
            c = Conn(port, timeout=5)
            self.addCleanup(c.close)
            conns.append(c)
            self.assertUserId(c.get(f"/users/{i}"), i)
        sixth = Conn(port, timeout=5)
        self.addCleanup(sixth.close)
        # Whether the server speaks first or waits for a request, the answer is 503 + close.
        if not sixth.readable_within(0.5):
            try:
                sixth.send(build_request("GET", "/plaintext"))
            except (BrokenPipeError, ConnectionResetError):
                pass
        resp = sixth.read_response(timeout=3)
        self.assertStatus(resp, 503)
        self.assertClosedByServer(sixth, allow_reset=True)
        # The first five still work.
        for i, c in enumerate(conns):
            self.assertUserId(c.get(f"/users/{i + 10}"), i + 10)
        # Closing one frees a slot.
        conns[0].close()
        deadline = time.monotonic() + 3
        while True:
            try:
                resp = keelproc.get(port, "/plaintext", timeout=2)
                if resp.status == 200:
                    break
            except (keelproc.ProtocolError, OSError):
                pass
            self.assertLess(time.monotonic(), deadline, "slot not freed after a connection closed")
            time.sleep(0.1)
        self.assertTrue(server.alive())


class JsonDepthLimitTest(KeelTestCase):
    """Request::json() refuses arrays and objects nested deeper than limit_json_depth (default 64)
    before parsing: a deeply nested body cannot exhaust a worker's stack."""

    def post_json(self, port: int, body: str):
        return keelproc.get(port, "/json-type", method="POST",
                            headers={"Content-Type": "application/json"}, body=body.encode())

    def test_nesting_beyond_the_limit_is_a_400(self):
        server = self.start_server()
        pid = keelproc.get(server.port, "/pid").text
        r = self.post_json(server.port, "[" * 64 + "]" * 64)
        self.assertEqual((r.status, r.text), (200, "array"))
        r = self.post_json(server.port, '{"a":' * 63 + "[]" + "}" * 63)
        self.assertEqual((r.status, r.text), (200, "object"))
        doc = self.assertProblem(self.post_json(server.port, "[" * 65 + "]" * 65), 400, close=False)
        self.assertIn("deeper than 64 levels", doc["detail"])
        self.assertIn("limit_json_depth", doc["detail"])
        # Brackets inside strings (escaped quotes too) are not nesting.
        r = self.post_json(server.port, '["\\\"' + "[{" * 300 + '"]')
        self.assertEqual((r.status, r.text), (200, "array"))
        # Far beyond any stack: refused, and the same worker still serves.
        self.assertProblem(self.post_json(server.port, "[" * 500000), 400, close=False)
        self.assertProblem(self.post_json(server.port, '{"a":' * 200000), 400, close=False)
        self.assertEqual(keelproc.get(server.port, "/pid").text, pid)

    def test_the_limit_is_a_setting(self):
        server = self.start_server("--limit-json-depth", "100")
        self.assertEqual(self.post_json(server.port, "[" * 100 + "]" * 100).status, 200)
        self.assertProblem(self.post_json(server.port, "[" * 101 + "]" * 101), 400, close=False)
        server.stop()
        server = self.start_server(env=dict(os.environ, KEEL_LIMIT_JSON_DEPTH="2"))
        self.assertEqual(self.post_json(server.port, "[[1]]").status, 200)
        self.assertProblem(self.post_json(server.port, "[[[1]]]"), 400, close=False)
        server.stop()
        import tempfile
        with tempfile.NamedTemporaryFile("w", suffix=".toml") as f:
            f.write("limit_json_depth = 3\n")
            f.flush()
            server = self.start_server("--config", f.name)
            self.assertEqual(self.post_json(server.port, "[[[1]]]").status, 200)
            self.assertProblem(self.post_json(server.port, "[[[[1]]]]"), 400, close=False)
        rc, _, err = keelproc.run_cli(keelproc.testapp(), "--limit-json-depth", "0", "config", "--check")
        self.assertEqual(rc, 78)
        self.assertIn("limit_json_depth", err)


class FetchLimitsTest(KeelTestCase):
    """keel::fetch speaks http and https only, and bounds the response body it keeps
    (limit_fetch_response)."""

    def test_only_http_and_https_are_fetched(self):
        import socket
        import urllib.parse
        server = self.start_server()
        with socket.socket() as lsn:
            lsn.bind(("127.0.0.1", 0))
            lsn.listen(8)
            lsn.setblocking(False)
            port = lsn.getsockname()[1]
            for url in ("file:///etc/hostname", f"dict://127.0.0.1:{port}/info", f"gopher://127.0.0.1:{port}/x",
                        f"ftp://127.0.0.1:{port}/x", f"telnet://127.0.0.1:{port}", "127.0.0.1:1/x", ""):
                r = keelproc.get(server.port, "/fetch?url=" + urllib.parse.quote(url, safe=""))
                self.assertEqual(r.status, 200, r)
                doc = r.json()
                self.assertEqual((doc["status"], doc["body_bytes"]), (0, 0), (url, doc))
                self.assertTrue("http and https only" in doc["error"] or "not an absolute" in doc["error"],
                                (url, doc))
            # The answers are back, so any connection would already have been made: none was.
            with self.assertRaises(BlockingIOError):
                lsn.accept()
            # http itself works, whatever the case of the scheme.
            target = f"HTTP://127.0.0.1:{server.port}/plaintext"
            doc = keelproc.get(server.port, "/fetch?url=" + urllib.parse.quote(target, safe="")).json()
            self.assertEqual((doc["status"], doc["error"], doc["body_bytes"]), (200, "", 13))

    def test_response_body_beyond_the_limit_is_an_error(self):
        import urllib.parse
        server = self.start_server("--limit-fetch-response", "64KiB")

        def fetch(target: str) -> dict:
            url = f"http://127.0.0.1:{server.port}{target}"
            return keelproc.get(server.port, "/fetch?url=" + urllib.parse.quote(url, safe="")).json()

        doc = fetch("/big?bytes=65536")
        self.assertEqual((doc["status"], doc["error"], doc["body_bytes"]), (200, "", 65536))
        for target in ("/big?bytes=65537", "/big?bytes=10000000", "/stream?chunks=100&size=1000"):
            doc = fetch(target)  # Content-Length (refused early) and chunked (cut off while read)
            self.assertEqual((doc["status"], doc["body_bytes"]), (0, 0), (target, doc))
            self.assertIn("larger than 65536 bytes (the limit_fetch_response setting)", doc["error"])
        doc = fetch("/stream?chunks=10&size=1000")
        self.assertEqual((doc["status"], doc["body_bytes"]), (200, 10000))


if __name__ == "__main__":
    unittest.main()
