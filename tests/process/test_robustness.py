"""Misbehaving clients: disconnects mid-response, RSTs, half-closes, slow readers, fd
exhaustion (EMFILE) — the server must stay alive, responsive and not spin."""

import resource
import socket
import time
import unittest

import keelproc
from keelproc import Conn, KeelTestCase, build_request


class DisconnectTest(KeelTestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = cls.start_class_server()
        cls.port = cls.server.port

    def assertServerHealthy(self):
        self.assertTrue(self.server.alive(), self.server.output_tail())
        resp = keelproc.get(self.port, "/plaintext", timeout=5)
        self.assertStatus(resp, 200, self.server)
        self.assertEqual(resp.body, b"Hello, World!")

    def abandon_big_response(self, rst: bool):
        s = keelproc.connect_raw(self.port, timeout=10)
        try:
            s.sendall(build_request("GET", "/big?bytes=50000000"))
            got = b""
            while len(got) < 4096:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
            self.assertTrue(got.startswith(b"HTTP/1.1 200"), got[:100])
            if rst:
                keelproc.set_linger_rst(s)
        finally:
            s.close()

    def test_close_mid_response(self):
        for _ in range(3):
            self.abandon_big_response(rst=False)
            self.assertServerHealthy()

    def test_reset_mid_response(self):
        for _ in range(3):
            self.abandon_big_response(rst=True)
            self.assertServerHealthy()

    def test_reset_mid_stream(self):
        s = keelproc.connect_raw(self.port)
        try:
            s.sendall(build_request("GET", "/stream?chunks=100000&size=1000"))
            self.assertTrue(s.recv(4096).startswith(b"HTTP/1.1 200"))
            keelproc.set_linger_rst(s)
        finally:
            s.close()
        self.assertServerHealthy()

    def test_close_while_handler_sleeps(self):
        # The client goes away while a coroutine handler is suspended.
        for rst in (False, True):
            s = keelproc.connect_raw(self.port)
            s.sendall(build_request("GET", "/sleep?ms=300"))
            time.sleep(0.05)
            if rst:
                keelproc.set_linger_rst(s)
            s.close()
        s = keelproc.connect_raw(self.port)
        s.sendall(build_request("GET", "/offload?ms=300"))
        time.sleep(0.05)
        keelproc.set_linger_rst(s)
        s.close()
        time.sleep(0.5)  # let the handlers finish against dead connections
        self.assertServerHealthy()

    def test_close_mid_request(self):
        for raw in (b"GET /plain", b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc",
                    b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nab"):
            for rst in (False, True):
                s = keelproc.connect_raw(self.port)
                s.sendall(raw)
                time.sleep(0.02)
                if rst:
                    keelproc.set_linger_rst(s)
                s.close()
        self.assertServerHealthy()

    def test_many_connect_and_close(self):
        for i in range(200):
            s = keelproc.connect_raw(self.port)
            if i % 2:
                keelproc.set_linger_rst(s)
            s.close()
        self.assertServerHealthy()

    def test_half_close_after_request(self):
        s = keelproc.connect_raw(self.port, timeout=10)
        with Conn(0, sock=s, timeout=10) as c:
            c.send(build_request("GET", "/plaintext"))
            s.shutdown(socket.SHUT_WR)
            resp = c.read_response()
            self.assertStatus(resp, 200)
            self.assertEqual(resp.body, b"Hello, World!")
            self.assertClosedByServer(c)

    def test_half_close_after_request_big_response(self):
        s = keelproc.connect_raw(self.port, timeout=10)
        with Conn(0, sock=s, timeout=10) as c:
            c.send(build_request("GET", "/big?bytes=2000000"))
            s.shutdown(socket.SHUT_WR)
            resp = c.read_response()
            self.assertStatus(resp, 200)
            self.assertEqual(len(resp.body), 2000000)
            self.assertClosedByServer(c)

    def test_half_close_after_pipelined_requests(self):
        s = keelproc.connect_raw(self.port, timeout=10)
        with Conn(0, sock=s, timeout=10) as c:
            c.send(b"".join(build_request("GET", f"/users/{i}") for i in range(5)) +
                   build_request("POST", "/echo", None, b"last"))
            s.shutdown(socket.SHUT_WR)
            for i in range(5):
                self.assertUserId(c.read_response(), i)
            self.assertEqual(c.read_response().body, b"last")
            self.assertClosedByServer(c)

    def test_half_close_during_slow_handler(self):
        s = keelproc.connect_raw(self.port, timeout=10)
        with Conn(0, sock=s, timeout=10) as c:
            c.send(build_request("GET", "/sleep?ms=300"))
            s.shutdown(socket.SHUT_WR)
            resp = c.read_response()
            self.assertStatus(resp, 200)
            self.assertEqual(resp.body, b"slept")

    def test_slow_reader_large_response(self):
        total = 20_000_000
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # small window, before connect
        s.settimeout(10)
        s.connect(("127.0.0.1", self.port))
        with Conn(0, sock=s, timeout=10) as c:
            c.send(build_request("GET", f"/big?bytes={total}"))
            head = c.read_head()
            self.assertStatus(head, 200)
            self.assertEqual(head.header("Content-Length"), str(total))
            received = len(c.buf)
            bad = c.buf.strip(b"x")
            c.buf = b""
            t_end = time.monotonic() + 30
            while received < total:
                self.assertLess(time.monotonic(), t_end, f"stalled at {received} of {total} bytes")
                chunk = s.recv(min(65536, total - received))
                if not chunk:
                    self.fail(f"connection closed after {received} of {total} bytes")
                received += len(chunk)
                if chunk.strip(b"x"):
                    bad = chunk.strip(b"x")
                time.sleep(0.002)  # slow reader: the server hits EAGAIN over and over
            self.assertEqual(received, total)
            self.assertEqual(bad, b"", "body contains something other than 'x'")
            # Connection still in sync.
            self.assertEqual(c.get("/plaintext").body, b"Hello, World!")

    def test_pipelined_requests_with_slow_reader(self):
        # Many big responses queued behind a reader that does not read yet: the server must
        # apply backpressure (stop reading), not buffer without bound or drop responses.
        s = keelproc.connect_raw(self.port, timeout=10)
        with Conn(0, sock=s, timeout=15) as c:
            c.send(b"".join(build_request("GET", "/big?bytes=1000000") for _ in range(20)) +
                   build_request("GET", "/users/99"))
            time.sleep(0.5)
            t0 = time.monotonic()
            for i in range(20):
                resp = c.read_response()
                self.assertEqual(resp.status, 200, f"pipelined response #{i + 1} of 20 (/big) after "
                                                   f"{time.monotonic() - t0:.2f}s: {resp!r}")
                self.assertEqual(len(resp.body), 1000000)
            resp = c.read_response()
            self.assertEqual(resp.status, 200, f"last pipelined request (/users/99) after "
                                               f"{time.monotonic() - t0:.2f}s: {resp!r}")
            self.assertUserId(resp, 99)
        self.assertServerHealthy()

    def test_garbage_then_healthy(self):
        import random
        rng = random.Random(1234)
        for _ in range(20):
            with Conn(self.port) as c:
                c.send(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 2000))) + b"\r\n\r\n")
                try:
                    resp = c.read_response(timeout=3)
                    self.assertGreaterEqual(resp.status, 400, resp)
                except (keelproc.ProtocolError, ConnectionResetError):
                    pass
        self.assertServerHealthy()

    def test_many_concurrent_connections(self):
        conns = []
        try:
            for _ in range(200):
                conns.append(Conn(self.port, timeout=10))
            for i, c in enumerate(conns):
                c.send(build_request("GET", f"/users/{i}"))
            for i, c in enumerate(conns):
                self.assertUserId(c.read_response(), i)
        finally:
            for c in conns:
                c.close()
        self.assertServerHealthy()


def _limit_fds():
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))


class EmfileTest(KeelTestCase):
    def test_fd_exhaustion_no_busy_loop(self):
        server = self.start_server(preexec_fn=_limit_fds)
        port = server.port
        self.assertStatus(keelproc.get(port, "/plaintext"), 200)
        socks = []
        try:
            for _ in range(100):
                try:
                    socks.append(keelproc.connect_raw(port, timeout=2))
                except OSError:
                    pass  # refused or timed out under pressure: fine
            time.sleep(0.3)  # let the server run into EMFILE
            cpu0 = server.cpu_seconds()
            t0 = time.monotonic()
            time.sleep(2.0)
            cpu = server.cpu_seconds() - cpu0
            wall = time.monotonic() - t0
            self.assertTrue(server.alive(), server.output_tail())
            self.assertLess(cpu, 0.5, f"server burnt {cpu:.2f}s CPU in {wall:.2f}s while out of fds (busy loop)")
        finally:
            for s in socks:
                s.close()
        # All released: a normal request succeeds within 2 s.
        deadline = time.monotonic() + 2.0
        last = None
        while time.monotonic() < deadline:
            try:
                resp = keelproc.get(port, "/plaintext", timeout=max(0.1, deadline - time.monotonic()))
                if resp.status == 200 and resp.body == b"Hello, World!":
                    break
                last = resp
            except (OSError, keelproc.ProtocolError) as e:
                last = e
            time.sleep(0.05)
        else:
            self.fail(f"no successful request within 2 s after releasing the connections: {last!r}\n"
                      f"{server.output_tail()}")
        self.assertTrue(server.alive())
        # And it keeps working for a burst of fresh connections.
        for i in range(30):
            self.assertUserId(keelproc.get(port, f"/users/{i}"), i)

    def test_fd_exhaustion_active_connections_keep_working(self):
        server = self.start_server(preexec_fn=_limit_fds)
        port = server.port
        keep = Conn(port, timeout=5)
        self.addCleanup(keep.close)
        self.assertStatus(keep.get("/plaintext"), 200)
        socks = []
        try:
            for _ in range(100):
                try:
                    socks.append(keelproc.connect_raw(port, timeout=2))
                except OSError:
                    pass
            time.sleep(0.3)
            # An established keep-alive connection is unaffected by accept() failing.
            for i in range(5):
                self.assertUserId(keep.get(f"/users/{i}"), i)
        finally:
            for s in socks:
                s.close()
        self.assertTrue(server.alive())


def _rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class BackpressureTest(KeelTestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = cls.start_class_server("--write-timeout", "1s")
        cls.port = cls.server.port

    def test_write_stall_closes_connection(self):
        # A client that stops reading a large response: after --write-timeout without progress
        # the server gives up on it instead of holding the connection (and its buffer) forever.
        s = keelproc.connect_raw(self.port, timeout=10)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            s.sendall(build_request("GET", "/big?bytes=50000000"))
            time.sleep(2.5)  # the server's send buffer fills, then --write-timeout (1 s) runs out
            received, deadline = 0, time.monotonic() + 10
            ended = False
            while time.monotonic() < deadline:
                try:
                    chunk = s.recv(1 << 20)
                except ConnectionResetError:
                    ended = True
                    break
                if not chunk:
                    ended = True
                    break
                received += len(chunk)
            self.assertTrue(ended, "the stalled connection was not closed")
            self.assertLess(received, 50_000_000, "the whole body arrived: the stall was not detected")
        finally:
            s.close()
        self.assertEqual(keelproc.get(self.port, "/plaintext").status, 200)

    def test_pipelining_without_reading_is_bounded(self):
        # 2000 pipelined requests for 100 kB each (200 MB of responses) from a client that does not
        # read: the server must stop reading the connection once its output buffer is over the
        # bound instead of queueing every response in memory.
        pid = self.server.pid
        before = _rss_bytes(pid)
        s = keelproc.connect_raw(self.port, timeout=10)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        try:
            s.setblocking(False)
            payload = b"".join(build_request("GET", "/big?bytes=100000") for _ in range(2000))
            sent = 0
            t0 = time.monotonic()
            while sent < len(payload) and time.monotonic() - t0 < 2.0:
                try:
                    sent += s.send(payload[sent:])
                except BlockingIOError:
                    time.sleep(0.01)
            time.sleep(0.5)
            grown = _rss_bytes(pid) - before
            self.assertLess(grown, 40_000_000, f"server RSS grew by {grown} bytes for an unread pipeline")
            # Other clients are still served meanwhile.
            self.assertEqual(keelproc.get(self.port, "/plaintext", timeout=5).status, 200)
            # And the pipeline is answered in order once the client reads.
            s.setblocking(True)
            s.settimeout(10)
            c = Conn(0, sock=s, timeout=10)
            for _ in range(20):
                resp = c.read_response()
                self.assertStatus(resp, 200)
                self.assertEqual(len(resp.body), 100000)
        finally:
            s.close()


if __name__ == "__main__":
    unittest.main()
