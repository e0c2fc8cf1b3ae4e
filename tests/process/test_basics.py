"""Basic responses, headers, keep-alive and handler shapes of keel-testapp over real sockets."""

import http.client
import json
import threading
import time
import unittest

import keelproc
from keelproc import Conn, KeelTestCase


class BasicsTest(KeelTestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = cls.start_class_server()
        cls.port = cls.server.port

    def client(self) -> http.client.HTTPConnection:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        self.addCleanup(conn.close)
        return conn

    def test_plaintext(self):
        conn = self.client()
        conn.request("GET", "/plaintext")
        resp = conn.getresponse()
        body = resp.read()
        self.assertEqual(resp.status, 200)
        self.assertEqual(body, b"Hello, World!")
        self.assertTrue(resp.getheader("Content-Type", "").startswith("text/plain"), resp.getheaders())
        self.assertEqual(resp.getheader("Content-Length"), "13")
        self.assertEqual(resp.getheader("Server"), "keel")
        self.assertImfFixdate(resp.getheader("Date"))
        self.assertIsNone(resp.getheader("Transfer-Encoding"))

    def test_json(self):
        conn = self.client()
        conn.request("GET", "/json")
        resp = conn.getresponse()
        body = resp.read()
        self.assertEqual(resp.status, 200)
        self.assertEqual(json.loads(body), {"message": "Hello, World!"})
        self.assertTrue(resp.getheader("Content-Type", "").startswith("application/json"), resp.getheaders())
        self.assertEqual(resp.getheader("Content-Length"), str(len(body)))
        self.assertEqual(resp.getheader("Server"), "keel")
        self.assertImfFixdate(resp.getheader("Date"))

    def test_raw_response_framing(self):
        # Status line and header block are well-formed CRLF-terminated HTTP/1.1.
        with Conn(self.port) as c:
            resp = c.get("/plaintext")
            self.assertEqual(resp.version, "HTTP/1.1")
            self.assertEqual(resp.status, 200)
            self.assertTrue(resp.raw_head.startswith(b"HTTP/1.1 200 "), resp.raw_head)
            self.assertEqual(len(resp.header_all("Content-Length")), 1)
            self.assertEqual(len(resp.header_all("Date")), 1)
            self.assertEqual(len(resp.header_all("Server")), 1)

    def test_keep_alive_many_requests_http_client(self):
        conn = self.client()
        conn.request("GET", "/plaintext")
        conn.getresponse().read()
        sock = conn.sock
        local = sock.getsockname()
        for i in range(60):
            path = ("/plaintext", "/json", f"/users/{i}")[i % 3]
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            self.assertEqual(resp.status, 200, (path, body))
            self.assertFalse(resp.will_close, f"server wants to close after {path}")
            self.assertIs(conn.sock, sock, "http.client had to reconnect: keep-alive broken")
            self.assertEqual(conn.sock.getsockname(), local)
            if path.startswith("/users/"):
                self.assertEqual(json.loads(body)["id"], i)

    def test_keep_alive_raw(self):
        with Conn(self.port) as c:
            for i in range(30):
                resp = c.get(f"/users/{i}")
                self.assertStatus(resp, 200)
                self.assertUserId(resp, i)
                self.assertFalse(resp.has_token("Connection", "close"), resp)

    def test_http10_closes_by_default(self):
        with Conn(self.port) as c:
            c.send(b"GET /plaintext HTTP/1.0\r\n\r\n")
            resp = c.read_response()
            self.assertStatus(resp, 200)
            self.assertEqual(resp.body, b"Hello, World!")
            self.assertFalse(resp.has_token("Connection", "keep-alive"), resp)
            self.assertIsNone(resp.header("Transfer-Encoding"), "chunked is not HTTP/1.0")
            self.assertClosedByServer(c)

    def test_http10_keep_alive(self):
        with Conn(self.port) as c:
            for _ in range(3):
                c.send(b"GET /plaintext HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                resp = c.read_response()
                self.assertStatus(resp, 200)
                self.assertEqual(resp.body, b"Hello, World!")
                self.assertEqual(resp.header("Content-Length"), "13")
                self.assertTrue(resp.has_token("Connection", "keep-alive"),
                                f"an HTTP/1.0 keep-alive response must say Connection: keep-alive: {resp!r}")
            # A final HTTP/1.0 request without keep-alive closes.
            c.send(b"GET /json HTTP/1.0\r\n\r\n")
            self.assertStatus(c.read_response(), 200)
            self.assertClosedByServer(c)

    def test_connection_close(self):
        with Conn(self.port) as c:
            self.assertStatus(c.get("/plaintext"), 200)
            resp = c.request("GET", "/plaintext", {"Connection": "close"})
            self.assertStatus(resp, 200)
            self.assertEqual(resp.body, b"Hello, World!")
            self.assertTrue(resp.has_token("Connection", "close"), resp)
            self.assertClosedByServer(c)

    def test_connection_close_with_http_client(self):
        conn = self.client()
        conn.request("GET", "/json", headers={"Connection": "close"})
        resp = conn.getresponse()
        resp.read()
        self.assertEqual(resp.status, 200)
        self.assertTrue(resp.will_close)

    def test_sleep_coroutine(self):
        t0 = time.monotonic()
        resp = keelproc.get(self.port, "/sleep?ms=200")
        elapsed = time.monotonic() - t0
        self.assertStatus(resp, 200)
        self.assertEqual(resp.body, b"slept")
        self.assertGreaterEqual(elapsed, 0.19)
        self.assertLess(elapsed, 2.0)

    def test_concurrent_sleeps_do_not_serialise(self):
        # Coroutine handlers suspend on the event loop: 10 x 500 ms finish in about 500 ms.
        results = []
        lock = threading.Lock()

        def one():
            try:
                r = keelproc.get(self.port, "/sleep?ms=500", timeout=10)
                with lock:
                    results.append((r.status, r.body))
            except Exception as e:  # recorded, asserted below
                with lock:
                    results.append(("error", repr(e)))

        t0 = time.monotonic()
        threads = [threading.Thread(target=one) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
        elapsed = time.monotonic() - t0
        self.assertEqual(results, [(200, b"slept")] * 10)
        self.assertLess(elapsed, 2.5, "sleeping handlers were serialised")

    def test_offload(self):
        resp = keelproc.get(self.port, "/offload?ms=100")
        self.assertStatus(resp, 200)
        self.assertEqual(resp.body, b"offloaded 100")

    def test_concurrent_offloads(self):
        results = []
        lock = threading.Lock()

        def one(ms):
            try:
                r = keelproc.get(self.port, f"/offload?ms={ms}", timeout=15)
                with lock:
                    results.append((ms, r.status, r.body))
            except Exception as e:
                with lock:
                    results.append((ms, "error", repr(e)))

        t0 = time.monotonic()
        threads = [threading.Thread(target=one, args=(100 + i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        elapsed = time.monotonic() - t0
        self.assertEqual(sorted(results), [(100 + i, 200, f"offloaded {100 + i}".encode()) for i in range(8)])
        # 8 x ~100 ms on the default 4-thread pool: ~200 ms, far from serial on one thread.
        self.assertLess(elapsed, 3.0)
        # The event loop stays responsive while offloaded work runs.
        self.assertStatus(keelproc.get(self.port, "/plaintext"), 200)

    def test_offload_keeps_loop_responsive(self):
        holder = {}

        def slow():
            holder["resp"] = keelproc.get(self.port, "/offload?ms=800", timeout=10)

        t = threading.Thread(target=slow)
        t.start()
        time.sleep(0.15)
        t0 = time.monotonic()
        resp = keelproc.get(self.port, "/plaintext")
        self.assertStatus(resp, 200)
        self.assertLess(time.monotonic() - t0, 0.5, "event loop blocked by an offloaded call")
        t.join(10)
        self.assertEqual(holder["resp"].body, b"offloaded 800")

    def test_stream(self):
        with Conn(self.port) as c:
            resp = c.get("/stream?chunks=5&size=3")
            self.assertStatus(resp, 200)
            self.assertTrue(resp.chunked, f"not Transfer-Encoding: chunked: {resp!r}")
            self.assertIsNone(resp.header("Content-Length"), "chunked response with Content-Length")
            self.assertEqual(resp.body, b"aaabbbcccdddeee")
            self.assertTrue(resp.header("Content-Type", "").startswith("text/plain"), resp)
            # The connection stays usable after the terminating chunk.
            self.assertEqual(c.get("/plaintext").body, b"Hello, World!")

    def test_stream_http_client(self):
        conn = self.client()
        conn.request("GET", "/stream?chunks=26&size=100")
        resp = conn.getresponse()
        body = resp.read()
        self.assertEqual(resp.status, 200)
        self.assertEqual(body, b"".join(bytes([ord("a") + i]) * 100 for i in range(26)))

    def test_stream_http10_has_no_chunked_encoding(self):
        # An HTTP/1.0 client cannot decode chunked: the body must be delimited by close.
        with Conn(self.port) as c:
            c.send(b"GET /stream?chunks=5&size=3 HTTP/1.0\r\n\r\n")
            resp = c.read_response()
            self.assertStatus(resp, 200)
            self.assertIsNone(resp.header("Transfer-Encoding"), resp)
            self.assertEqual(resp.body, b"aaabbbcccdddeee")

    def test_echo(self):
        with Conn(self.port) as c:
            resp = c.request("POST", "/echo", {"Content-Type": "text/x-test"}, b"hello body")
            self.assertStatus(resp, 200)
            self.assertEqual(resp.body, b"hello body")
            self.assertEqual(resp.header("Content-Type"), "text/x-test")
            self.assertEqual(resp.header("X-Body-Length"), "10")
            self.assertEqual(resp.header("X-Trailer-Count"), "0")
            # Binary body with every byte value.
            payload = bytes(range(256)) * 40
            resp = c.request("POST", "/echo", None, payload)
            self.assertEqual(resp.body, payload)
            self.assertEqual(resp.header("X-Body-Length"), str(len(payload)))
            # Empty body.
            resp = c.request("POST", "/echo", {"Content-Length": "0"})
            self.assertStatus(resp, 200)
            self.assertEqual(resp.body, b"")

    def test_request_id_from_client(self):
        resp = keelproc.get(self.port, "/request-id", {"X-Request-ID": "abc-123.XYZ_7"})
        self.assertStatus(resp, 200)
        self.assertEqual(resp.body, b"abc-123.XYZ_7")

    def test_request_id_invalid_is_replaced(self):
        bad = "a" * 200
        resp = keelproc.get(self.port, "/request-id", {"X-Request-ID": bad})
        self.assertStatus(resp, 200)
        self.assertNotEqual(resp.body, bad.encode())
        self.assertGreater(len(resp.body), 0)
        self.assertLessEqual(len(resp.body), 128)
        resp = keelproc.get(self.port, "/request-id", {"X-Request-ID": "has space"})
        self.assertNotEqual(resp.body, b"has space")
        self.assertGreater(len(resp.body), 0)

    def test_request_id_generated_unique(self):
        ids = {keelproc.get(self.port, "/request-id").body for _ in range(5)}
        self.assertEqual(len(ids), 5, ids)
        for rid in ids:
            self.assertTrue(0 < len(rid) <= 128 and rid.isascii() and b" " not in rid, rid)

    def test_handler_exception_500_keeps_connection(self):
        with Conn(self.port) as c:
            resp = c.get("/boom")
            self.assertStatus(resp, 500)
            self.assertIn("json", resp.header("Content-Type", ""), resp)
            doc = resp.json()
            self.assertIn("request_id", doc, doc)
            self.assertTrue(doc["request_id"], doc)
            # Same keep-alive connection, still sane.
            resp = c.get("/plaintext")
            self.assertStatus(resp, 200)
            self.assertEqual(resp.body, b"Hello, World!")
        for _ in range(20):
            self.assertStatus(keelproc.get(self.port, "/boom"), 500)
        self.assertTrue(self.server.alive(), self.server.output_tail())
        self.assertStatus(keelproc.get(self.port, "/plaintext"), 200)

    def test_handler_exception_uses_client_request_id(self):
        resp = keelproc.get(self.port, "/boom", {"X-Request-ID": "trace-42"})
        self.assertStatus(resp, 500)
        self.assertEqual(resp.json().get("request_id"), "trace-42", resp)

    def test_http_error(self):
        with Conn(self.port) as c:
            resp = c.get("/http-error")
            doc = self.assertProblem(resp, 418, close=False)
            self.assertEqual(doc.get("detail"), "short and stout", doc)
            self.assertEqual(c.get("/plaintext").status, 200)

    def test_bad_header_is_never_sent(self):
        with Conn(self.port) as c:
            resp = c.get("/bad-header")
            self.assertStatus(resp, 500)
            self.assertNotIn(b"set-cookie", resp.raw.lower(), resp.raw)
            self.assertNotIn(b"x-injected", resp.raw.lower(), resp.raw)
            self.assertNotIn(b"evil", resp.raw, resp.raw)
            # Nothing extra sneaked onto the wire either.
            if not resp.has_token("Connection", "close"):
                resp = c.get("/plaintext")
                self.assertStatus(resp, 200)
                self.assertNotIn(b"evil", resp.raw)
        self.assertTrue(self.server.alive())

    def test_large_response(self):
        conn = self.client()
        conn.request("GET", "/big?bytes=3000000")
        resp = conn.getresponse()
        body = resp.read()
        self.assertEqual(resp.status, 200)
        self.assertEqual(len(body), 3000000)
        self.assertEqual(body.count(b"x"), 3000000)


class ServerHeaderTest(KeelTestCase):
    def test_custom_server_header(self):
        server = self.start_server("--server-header", "teapot/1.0")
        resp = keelproc.get(server.port, "/plaintext")
        self.assertStatus(resp, 200)
        self.assertEqual(resp.header_all("Server"), ["teapot/1.0"])

    def test_no_server_header(self):
        server = self.start_server("--no-server-header")
        for path in ("/plaintext", "/json", "/nope"):
            resp = keelproc.get(server.port, path)
            self.assertIsNone(resp.header("Server"), resp)
            self.assertImfFixdate(resp.header("Date"))

    def test_error_responses_carry_server_and_date(self):
        server = self.start_server("--server-header", "custom")
        with Conn(server.port) as c:
            c.send(b"GET / HTTP/1.1\r\n\r\n")  # no Host: 400 from the parser
            resp = c.read_response()
            self.assertStatus(resp, 400)
            self.assertEqual(resp.header("Server"), "custom")
            self.assertImfFixdate(resp.header("Date"))


class DemoTest(KeelTestCase):
    def test_demo_routes(self):
        server = self.start_server(binary=keelproc.demo())
        resp = keelproc.get(server.port, "/plaintext")
        self.assertStatus(resp, 200)
        self.assertEqual(resp.body, b"Hello, World!")
        resp = keelproc.get(server.port, "/json")
        self.assertStatus(resp, 200)
        self.assertEqual(resp.json(), {"message": "Hello, World!"})


if __name__ == "__main__":
    unittest.main()
