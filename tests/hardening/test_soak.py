"""A bounded mixed-load soak against a 2-worker keel with its production defaults.

$HARDENING_SOAK_SECONDS long (default 60; `scripts/hardening.sh soak 600` is the documented
10-minute run). Seven client threads at once:

- keep-alive x2: GET /plaintext, /json, /users/N, a coroutine (/sleep?ms=2) and an offloaded call
  (/offload?ms=1) on long-lived connections;
- pipelined: 16 requests (GETs and small POSTs) in one write, 16 responses read in order;
- uploads: POST /echo with 1 B..256 KiB bodies, Content-Length and chunked, echoed back intact;
- errors: 500 (a handler throws), 418 (HttpError), 404, 413 (Content-Length over the limit) and
  400 (a malformed head), each checked, reconnecting after the ones that close;
- streaming: GET /stream (chunked) read whole;
- disconnectors: go away mid-request (partial head, partial body), mid-response (a 1 MB body, a
  chunked stream) and mid-handler, with FIN or RST, or connect and leave.

Asserted: no failed request outside the disconnectors (whose connection errors are expected and
only counted), the same two workers all along (no crash), no unexpected warning or error in the
log (handler_exception for /boom is expected), worker RSS after warm-up vs at the end (both
measured with the load paused) grows < 5 MB, and every process's open descriptors are back to
their baseline once the clients are gone.
"""

from __future__ import annotations

import os
import random
import socket
import threading
import time
import unittest

import harden
from harden import Conn, Keel, ProtocolError, build_request, record

SOAK_SECONDS = float(os.environ.get("HARDENING_SOAK_SECONDS", "60"))
WARMUP_SECONDS = min(60.0, max(10.0, SOAK_SECONDS / 6))
RSS_GROWTH_LIMIT = 5 * 2**20
KEEP_ALIVE_REQUESTS = 1000  # keel's default --keep-alive-requests
EXPECTED_LOG_PROBLEMS = {"handler_exception"}  # /boom throws on purpose


class Failure(Exception):
    pass


class Clients:
    """The client threads. pause()/resume() let the test measure a quiescent server."""

    def __init__(self, port: int):
        self.port = port
        self.stop_event = threading.Event()
        self.run_gate = threading.Event()
        self.run_gate.set()
        self.lock = threading.Lock()
        self.idle = 0
        self.ops: dict[str, int] = {}
        self.requests = 0
        self.failures: list[str] = []
        self.deliberate_errors = 0  # connection errors the disconnectors caused themselves
        self.server_closes = 0  # responses with Connection: close on keep-alive connections
        self.pipeline_resent = 0  # pipelined requests sent again after such a close
        self.threads = []
        for name, fn in (("keepalive-1", self.keep_alive), ("keepalive-2", self.keep_alive),
                         ("pipelined", self.pipelined), ("uploads", self.uploads), ("errors", self.errors),
                         ("streaming", self.streaming), ("disconnects", self.disconnects)):
            self.threads.append(threading.Thread(target=self._loop, args=(name, fn), daemon=True, name=name))

    # -- control -----------------------------------------------------------------------------

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def pause(self, timeout: float = 30.0) -> None:
        self.run_gate.clear()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self.idle == len(self.threads):
                    return
            time.sleep(0.01)
        raise AssertionError("client threads did not pause")

    def resume(self) -> None:
        self.run_gate.set()

    def stop(self) -> None:
        self.stop_event.set()
        self.run_gate.set()
        for t in self.threads:
            t.join(30)

    def _loop(self, name: str, fn) -> None:
        rng = random.Random(hash(name) & 0xFFFF)
        state: dict = {}
        try:
            while not self.stop_event.is_set():
                if not self.run_gate.is_set():
                    with self.lock:
                        self.idle += 1
                    self.run_gate.wait()
                    with self.lock:
                        self.idle -= 1
                    continue
                try:
                    n = fn(rng, state)
                    with self.lock:
                        self.ops[name] = self.ops.get(name, 0) + 1
                        self.requests += n
                except (Failure, OSError, ProtocolError) as e:
                    with self.lock:
                        self.failures.append(f"{name}: {type(e).__name__}: {e}")
                    conn = state.pop("conn", None)
                    if conn is not None:
                        conn.close()
                time.sleep(0.003)
        finally:
            conn = state.pop("conn", None)
            if conn is not None:
                conn.close()

    # -- helpers -----------------------------------------------------------------------------

    def conn(self, state: dict) -> Conn:
        if state.get("conn") is None:
            state["conn"] = Conn(self.port, timeout=10)
            state["n"] = 0  # requests sent on this connection
        return state["conn"]

    @staticmethod
    def expect(resp, status: int, body: bytes | None = None, what: str = "") -> None:
        if resp.status != status:
            raise Failure(f"{what}: expected {status}, got {resp!r}")
        if body is not None and resp.body != body:
            raise Failure(f"{what}: body {len(resp.body)} bytes {resp.body[:60]!r}, expected {len(body)} bytes")

    @staticmethod
    def closes(resp) -> bool:
        return resp.has_token("Connection", "close") or resp.closed_after

    # -- client kinds (each returns the number of requests it made) ---------------------------

    def done_with(self, resp, state: dict) -> None:
        """A response with Connection: close ends the connection (keel closes a keep-alive
        connection after --keep-alive-requests, 1000 by default): the next request opens a new
        one, as every HTTP client does. The close must really follow."""
        if self.closes(resp):
            conn = state.pop("conn")
            try:
                if conn.wait_closed(5) not in ("eof", "reset"):
                    raise Failure(f"Connection: close, but the connection stayed open: {resp!r}")
            finally:
                conn.close()
            with self.lock:
                self.server_closes += 1

    def keep_alive(self, rng: random.Random, state: dict) -> int:
        c = self.conn(state)
        choice = rng.randrange(5)
        if choice == 0:
            resp = c.get("/plaintext")
            self.expect(resp, 200, b"Hello, World!", "/plaintext")
        elif choice == 1:
            resp = c.get("/json")
            self.expect(resp, 200, b'{"message":"Hello, World!"}', "/json")
        elif choice == 2:
            i = rng.randrange(1 << 30)
            resp = c.get(f"/users/{i}")
            self.expect(resp, 200, f'{{"id":{i},"route":"/users/{{id:int}}"}}'.encode(), "/users")
        elif choice == 3:
            resp = c.get("/sleep?ms=2")
            self.expect(resp, 200, b"slept", "/sleep")
        else:
            resp = c.get("/offload?ms=1")
            self.expect(resp, 200, b"offloaded 1", "/offload")
        self.done_with(resp, state)
        return 1

    def pipelined(self, rng: random.Random, state: dict) -> int:
        batch = []  # (request bytes, method, expected body)
        for i in range(16):
            if rng.random() < 0.25:
                body = os.urandom(rng.randrange(1, 2048))
                batch.append((build_request("POST", "/echo", {"Content-Type": "application/octet-stream"}, body),
                              "POST", body))
            else:
                n = rng.randrange(1 << 20)
                batch.append((build_request("GET", f"/users/{n}"), "GET",
                              f'{{"id":{n},"route":"/users/{{id:int}}"}}'.encode()))
        answered = 0
        while answered < len(batch):
            c = self.conn(state)
            pending = batch[answered:]
            c.send(b"".join(raw for raw, _, _ in pending))
            for raw, method, body in pending:
                resp = c.read_response(method=method)
                self.expect(resp, 200, body, f"pipelined #{answered + 1} {method}")
                answered += 1
                if self.closes(resp):
                    # The server ends the connection here (keep-alive request limit): the
                    # requests behind it were not processed and are sent again on a new
                    # connection (RFC 9112 section 9.3.2).
                    self.done_with(resp, state)
                    if answered < len(batch):
                        with self.lock:
                            self.pipeline_resent += len(batch) - answered
                    break
        return len(batch)

    def uploads(self, rng: random.Random, state: dict) -> int:  # noqa: C901
        c = self.conn(state)
        size = rng.choice([1, 100, 4096, 65536, rng.randrange(1, 262144)])
        body = os.urandom(size)
        if rng.random() < 0.5:
            resp = c.request("POST", "/echo", {"Content-Type": "application/octet-stream"}, body)
        else:
            cut = rng.randrange(0, size + 1)
            resp = c.request("POST", "/echo", {"Transfer-Encoding": "chunked"},
                             harden.keelproc.chunked(*(p for p in (body[:cut], body[cut:]) if p)))
        self.expect(resp, 200, body, f"upload {size} B")
        self.done_with(resp, state)
        return 1

    def errors(self, rng: random.Random, state: dict) -> int:
        choice = rng.randrange(5)
        if choice <= 2:
            c = self.conn(state)
            target, status = (("/boom", 500), ("/http-error", 418), ("/no/such/route", 404))[choice]
            state["n"] += 1
            resp = c.get(target)
            self.expect(resp, status, None, target)
            if resp.header("Content-Type", "").startswith("application/problem+json") is False:
                raise Failure(f"{target}: not a problem document: {resp!r}")
            if self.closes(resp) and state["n"] < KEEP_ALIVE_REQUESTS:
                raise Failure(f"{target}: a {status} from a handler closed the connection: {resp!r}")
            self.done_with(resp, state)
            return 1
        # Framing errors: answered, then the connection is closed (fresh connection each time).
        with Conn(self.port, timeout=10) as c:
            if choice == 3:
                c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n")
                status = 413
            else:
                c.send(b"GET /plaintext HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
                status = 400
            resp = c.read_response()
            self.expect(resp, status, None, "framing error")
            if not self.closes(resp):
                raise Failure(f"{status} without Connection: close: {resp!r}")
            if c.wait_closed(5) not in ("eof", "reset"):
                raise Failure(f"connection not closed after {status}")
        return 1

    def streaming(self, rng: random.Random, state: dict) -> int:
        c = self.conn(state)
        chunks, size = rng.randrange(1, 200), rng.randrange(1, 4000)
        resp = c.get(f"/stream?chunks={chunks}&size={size}")
        self.expect(resp, 200, None, "/stream")
        if not resp.chunked or len(resp.body) != chunks * size:
            raise Failure(f"/stream: {len(resp.body)} bytes, chunked={resp.chunked}, expected {chunks * size}")
        self.done_with(resp, state)
        return 1

    def disconnects(self, rng: random.Random, state: dict) -> int:
        """Errors here are the point: they are counted, not failures."""
        choice = rng.randrange(7)
        rst = rng.random() < 0.5
        try:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        except OSError as e:
            raise Failure(f"disconnector could not connect: {e}") from None
        try:
            if choice == 0:  # partial head
                s.sendall(b"GET /plaintext HTTP/1.1\r\nHost: x\r\nX-Par")
            elif choice == 1:  # partial body
                s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 50000\r\n\r\n" + b"a" * 1000)
            elif choice == 2:  # mid-response, big body
                s.sendall(build_request("GET", "/big?bytes=1000000"))
                s.recv(4096)
            elif choice == 3:  # mid-response, chunked stream
                s.sendall(build_request("GET", "/stream?chunks=100000&size=1000"))
                s.recv(4096)
            elif choice == 4:  # while the coroutine handler sleeps
                s.sendall(build_request("GET", "/sleep?ms=50"))
                time.sleep(0.01)
            elif choice == 5:  # pipelined requests, then gone before reading
                s.sendall(b"".join(build_request("GET", f"/users/{i}") for i in range(10)))
            # choice 6: connect and leave
            time.sleep(rng.random() * 0.005)
            if rst:
                harden.keelproc.set_linger_rst(s)
        except OSError:
            with self.lock:
                self.deliberate_errors += 1
        finally:
            s.close()
        return 1 if choice in (2, 3, 4, 5) else 0


class SoakTest(unittest.TestCase):
    def test_mixed_load_soak(self):
        # Production defaults, 2 workers, logging to a rotated file (a 10-minute soak writes
        # about a million access-log lines).
        keel = Keel("--log-max-size", "64MiB", "--log-max-files", "2", log_file=True)
        self.addCleanup(keel.stop)
        for _ in range(10):
            self.assertEqual(keel.get("/plaintext").status, 200)
        time.sleep(0.5)
        workers0 = keel.workers()
        fds0 = keel.fds()
        clients = Clients(keel.port).start()
        self.addCleanup(clients.stop)
        t0 = time.monotonic()
        trend = []

        def sample():
            trend.append((round(time.monotonic() - t0), [round(harden.rss_bytes(p) / 2**20, 1) for p in workers0]))

        # Warm-up, then the quiescent measurement.
        while time.monotonic() - t0 < WARMUP_SECONDS:
            time.sleep(min(5.0, WARMUP_SECONDS - (time.monotonic() - t0)))
            sample()
        clients.pause()
        time.sleep(1.0)
        rss_warm = {p: harden.rss_bytes(p) for p in workers0}
        clients.resume()
        # The soak.
        next_sample = time.monotonic() + 5
        while time.monotonic() - t0 < SOAK_SECONDS:
            time.sleep(max(0.05, min(1.0, SOAK_SECONDS - (time.monotonic() - t0))))
            if time.monotonic() >= next_sample:
                sample()
                next_sample += 5 if SOAK_SECONDS <= 120 else 30
            self.assertTrue(keel.alive(), keel.tail())
        clients.pause()
        time.sleep(1.0)
        rss_end = {p: harden.rss_bytes(p) for p in workers0}
        elapsed = time.monotonic() - t0
        clients.stop()
        # Descriptors back to the baseline once every client has gone (lingering closes last
        # up to 2 s).
        fds_after = harden.wait_until(
            lambda: (lambda now: now if now == fds0 else None)(keel.fds()), timeout=15.0, interval=0.25)
        fds_now = keel.fds()
        problems = [e for e in keel.log_lines(lambda l: '"event":"request_handled"' not in l)
                    if e.get("level") in ("warning", "error", "critical")
                    and e.get("event") not in EXPECTED_LOG_PROBLEMS]
        rotated = len(keel.log_files()) - 1
        growth = {p: rss_end[p] - rss_warm[p] for p in workers0}
        summary = {
            "seconds": round(elapsed), "warmup_s": round(WARMUP_SECONDS), "requests": clients.requests,
            "rps": round(clients.requests / elapsed), "rotated_log_files_kept": rotated, "ops": clients.ops,
            "failed": len(clients.failures), "deliberate_disconnect_errors": clients.deliberate_errors,
            "keep_alive_closes_by_server": clients.server_closes, "pipelined_resent": clients.pipeline_resent,
            "worker_rss_warm_mb": [round(rss_warm[p] / 2**20, 2) for p in workers0],
            "worker_rss_end_mb": [round(rss_end[p] / 2**20, 2) for p in workers0],
            "worker_rss_growth_mb": [round(growth[p] / 2**20, 2) for p in workers0],
            "fds_baseline": sorted(fds0.values()), "fds_after": sorted(fds_now.values()),
            "unexpected_log_lines": len(problems), "rss_trend_mb": trend[-12:],
        }
        if clients.failures:
            summary["first_failures"] = clients.failures[:5]
        if problems:
            summary["first_log_problems"] = [{k: e.get(k) for k in ("level", "event", "error", "message", "reason")}
                                             for e in problems[:5]]
        record("soak", **summary)
        self.assertEqual(clients.failures, [], summary)
        self.assertEqual(keel.workers(), workers0, f"a worker was replaced during the soak\n{keel.tail()}")
        self.assertEqual(problems, [], summary)
        for p in workers0:
            self.assertLess(growth[p], RSS_GROWTH_LIMIT, f"worker {p} RSS grew by {growth[p] / 2**20:.2f} MB "
                                                         f"after warm-up: {summary}")
        self.assertIsNotNone(fds_after, f"descriptors not back to the baseline {fds0}: {fds_now}")
        self.assertGreater(clients.requests, 1000, summary)


if __name__ == "__main__":
    unittest.main()
