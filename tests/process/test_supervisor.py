"""The pre-fork master as a supervisor: when it exists, how it replaces dead, stuck and recycled
workers, rolling restarts (SIGHUP), scaling (SIGTTIN/SIGTTOU), the pid file, bind failures and
graceful shutdown. The service must keep answering through all of it."""

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import keelproc
from keelproc import Conn, KeelTestCase, ProtocolError, build_request

TIMEOUT_EVENT = "worker_timeout_stack"


# --------------------------------------------------------------------------------------------
# Clients
# --------------------------------------------------------------------------------------------

class RequestFailed(Exception):
    pass


class KeepAliveClient:
    """One keep-alive connection, used the way real HTTP clients (urllib3, requests, Go's
    net/http) use theirs: when the server closes an idle keep-alive connection just as a request
    is sent on it — the connection ends (EOF, reset, broken pipe) before any byte of a response —
    the request is retried once on a fresh connection. Anything else is a failure: an error on a
    fresh connection, a timeout, a partial or malformed response, a status other than 200."""

    def __init__(self, port: int, timeout: float = 5.0):
        self.port = port
        self.timeout = timeout
        self.conn: Conn | None = None
        self.reused = False
        self.retries = 0
        self.connections = 0

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = None

    def _connect(self) -> Conn:
        self.close()
        self.conn = Conn(self.port, timeout=self.timeout)
        self.reused = False
        self.connections += 1
        return self.conn

    def get(self, target: str) -> keelproc.Response:
        for _attempt in range(3):
            conn = self.conn if self.conn is not None else self._connect()
            reused = self.reused
            try:
                conn.send(build_request("GET", target))
                # Wait for the first response byte: "nothing at all" is the retryable case.
                deadline = time.monotonic() + self.timeout
                while not conn.buf:
                    if not conn._fill(deadline):
                        break
            except (ConnectionResetError, BrokenPipeError) as e:
                self.close()
                if reused:
                    self.retries += 1
                    continue
                raise RequestFailed(f"GET {target}: fresh connection failed: {e!r}") from None
            except (socket.timeout, OSError) as e:
                self.close()
                raise RequestFailed(f"GET {target}: {e!r} (reused connection: {reused})") from None
            if not conn.buf:
                self.close()
                if reused:
                    self.retries += 1
                    continue
                raise RequestFailed(f"GET {target}: fresh connection closed before any response byte")
            try:
                resp = conn.read_response()
            except (ProtocolError, OSError) as e:
                self.close()
                raise RequestFailed(f"GET {target}: partial or failed response: {e!r}") from None
            if resp.status != 200:
                self.close()
                raise RequestFailed(f"GET {target}: status {resp.status}: {resp!r}")
            if resp.has_token("Connection", "close") or resp.closed_after:
                self.close()
            else:
                self.reused = True
            return resp
        raise RequestFailed(f"GET {target}: reused connections closed on every attempt")


def fresh_get(port: int, target: str, timeout: float = 3.0) -> keelproc.Response:
    """One GET on a new connection; a failure is a failure (no retry)."""
    with Conn(port, timeout=timeout) as c:
        return c.get(target)


class LoadLoop:
    """Client threads sending GET requests until stopped (or a request budget is spent). Records
    successes, failures, worker pids seen via /pid, and retries on keep-alive connections."""

    def __init__(self, port: int, threads: int = 2, requests_per_thread: int | None = None,
                 pid_every: int = 5, pause: float = 0.0, target: str = "/plaintext"):
        self.port = port
        self.requests_per_thread = requests_per_thread
        self.pid_every = pid_every
        self.pause = pause
        self.target = target
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.failures: list[str] = []
        self.pids_seen: list[tuple[float, int]] = []
        self.retries = 0
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def start(self) -> "LoadLoop":
        for t in self.threads:
            t.start()
        return self

    def stop(self, timeout: float = 15.0) -> None:
        self.stop_event.set()
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.1, deadline - time.monotonic()))

    def join(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.1, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self.threads)

    def _run(self, index: int) -> None:
        client = KeepAliveClient(self.port)
        n = 0
        try:
            while not self.stop_event.is_set():
                if self.requests_per_thread is not None and n >= self.requests_per_thread:
                    break
                n += 1
                use_pid = self.pid_every and n % self.pid_every == 0
                target = "/pid" if use_pid else self.target
                try:
                    resp = client.get(target)
                except RequestFailed as e:
                    with self.lock:
                        self.failures.append(f"thread {index} request {n}: {e}")
                    continue
                except Exception as e:  # noqa: BLE001 - any client error is a failed request
                    with self.lock:
                        self.failures.append(f"thread {index} request {n}: unexpected {e!r}")
                    client.close()
                    continue
                with self.lock:
                    if use_pid:
                        try:
                            self.pids_seen.append((time.monotonic(), int(resp.body)))
                        except ValueError:
                            self.failures.append(f"thread {index} request {n}: /pid body {resp.body!r}")
                            continue
                    elif resp.body != b"Hello, World!" and self.target == "/plaintext":
                        self.failures.append(f"thread {index} request {n}: body {resp.body!r}")
                        continue
                    self.ok += 1
                if self.pause:
                    time.sleep(self.pause)
        finally:
            with self.lock:
                self.retries += client.retries
            client.close()


# --------------------------------------------------------------------------------------------
# Test base
# --------------------------------------------------------------------------------------------

class SupervisorCase(KeelTestCase):
    def start_master(self, *flags, workers: int = 2, **kwargs) -> keelproc.Server:
        args = list(flags)
        if workers is not None:
            args = ["--workers", str(workers)] + args
        server = self.start_server(*args, **kwargs)
        if server.wait_for_stdout(lambda e: e.get("event") == "workers_ready", timeout=10) is None:
            self.fail("no workers_ready log line\n" + server.output_tail())
        return server

    @staticmethod
    def events(server: keelproc.Server, name: str, **fields) -> list[dict]:
        out = []
        for line in server.stdout_snapshot():
            e = keelproc.parse_log_line(line)
            if e is None or e.get("event") != name:
                continue
            if all(e.get(k) == v for k, v in fields.items()):
                out.append(e)
        return out

    def wait_event(self, server: keelproc.Server, name: str, timeout: float = 5.0, **fields) -> dict:
        event = server.wait_for_stdout(
            lambda e: e.get("event") == name and all(e.get(k) == v for k, v in fields.items()), timeout=timeout)
        if event is None:
            self.fail(f"no {name!r} log line with {fields} within {timeout}s\n" + server.output_tail(40))
        return event

    def wait_events(self, server: keelproc.Server, name: str, count: int, timeout: float = 5.0,
                    **fields) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.events(server, name, **fields)
            if len(found) >= count or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if len(found) < count:
            self.fail(f"expected {count} {name!r} log lines with {fields}, found {len(found)} within "
                      f"{timeout}s\n" + server.output_tail(40))
        return found

    def workers(self, server: keelproc.Server) -> list[int]:
        return keelproc.child_pids(server.pid)

    def wait_worker_count(self, server: keelproc.Server, n: int, timeout: float = 5.0,
                          exclude: set[int] | frozenset = frozenset()) -> list[int]:
        """Children of the master once there are exactly n (none of them in exclude)."""
        deadline = time.monotonic() + timeout
        while True:
            pids = self.workers(server)
            if len(pids) == n and not (set(pids) & set(exclude)):
                return pids
            if time.monotonic() > deadline:
                self.fail(f"expected {n} workers (excluding {sorted(exclude)}), found {pids}\n" +
                          server.output_tail(30))
            time.sleep(0.05)

    def wait_gone(self, pid: int, timeout: float = 3.0) -> None:
        """Until the process is dead (a zombie has already released its sockets)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = keelproc.read_stat(pid)
            if st is None or st[0] == "Z":
                return
            time.sleep(0.005)
        self.fail(f"process {pid} still alive after {timeout}s")

    def assertServing(self, server: keelproc.Server, count: int = 3) -> None:
        for _ in range(count):
            try:
                resp = fresh_get(server.port, "/plaintext")
            except Exception as e:  # noqa: BLE001
                self.fail(f"request failed: {e!r}\n" + server.output_tail())
            self.assertStatus(resp, 200, server)
            self.assertEqual(resp.body, b"Hello, World!")

    def assertNoFailures(self, load: LoadLoop, server: keelproc.Server) -> None:
        if load.failures:
            self.fail(f"{len(load.failures)} failed requests (of {load.ok + len(load.failures)}):\n" +
                      "\n".join(load.failures[:10]) + "\n" + server.output_tail(40))


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------

class MasterModeTest(SupervisorCase):
    def test_single_worker_serves_alone(self):
        server = self.start_server()
        self.assertServing(server, 1)
        self.assertEqual(int(fresh_get(server.port, "/pid").body), server.pid,
                         "with 1 worker and no recycling flag the started process must serve itself")
        self.assertEqual(self.workers(server), [], "no worker processes expected")
        self.assertEqual(self.events(server, "worker_spawned"), [])

    def test_master_logs_its_workers(self):
        server = self.start_master(workers=2)
        listening = self.events(server, "listening")
        self.assertEqual(listening[0].get("pid"), server.pid, "the started process logs 'listening'")
        started = self.wait_event(server, "workers_started")
        self.assertEqual(started.get("workers"), 2, started)
        spawned = self.events(server, "worker_spawned")
        self.assertEqual(len(spawned), 2, spawned)
        self.assertEqual(sorted(e.get("worker_id") for e in spawned), [0, 1], spawned)
        for e in spawned:
            self.assertEqual(e.get("pid"), server.pid, e)
        spawned_pids = sorted(e.get("worker_pid") for e in spawned)
        self.assertEqual(self.wait_worker_count(server, 2), spawned_pids)
        ready = self.wait_event(server, "workers_ready")
        self.assertEqual(ready.get("workers"), 2, ready)
        pid = int(fresh_get(server.port, "/pid").body)
        self.assertIn(pid, spawned_pids, "requests must be served by the workers, not the master")

    def test_recycling_flag_alone_starts_a_master(self):
        for flags in (("--max-requests", "1000"), ("--max-worker-lifetime", "1h"),
                      ("--max-worker-memory", "1000000000")):
            with self.subTest(flags=flags):
                server = self.start_master(*flags, workers=None)
                spawned = self.events(server, "worker_spawned")
                self.assertEqual(len(spawned), 1, spawned)
                workers = self.wait_worker_count(server, 1)
                self.assertEqual(int(fresh_get(server.port, "/pid").body), workers[0])
                self.assertEqual(server.stop(), 0, server.output_tail())


class WorkerDeathTest(SupervisorCase):
    def test_kill9_worker_is_replaced_and_service_continues(self):
        server = self.start_master(workers=2)
        before = self.wait_worker_count(server, 2)
        victim = before[0]
        victim_id = self.events(server, "worker_spawned", worker_pid=victim)[0]["worker_id"]

        # A client loop on fresh connections, paused only while the kill happens so that no
        # request is in flight on the victim at that instant (that loss is inherent to kill -9).
        gate = threading.Lock()
        stop = threading.Event()
        results = {"ok": 0, "failures": []}

        def loop():
            n = 0
            while not stop.is_set():
                n += 1
                with gate:
                    try:
                        resp = fresh_get(server.port, "/plaintext", timeout=3)
                        if resp.status == 200 and resp.body == b"Hello, World!":
                            results["ok"] += 1
                        else:
                            results["failures"].append(f"request {n}: {resp!r}")
                    except Exception as e:  # noqa: BLE001
                        results["failures"].append(f"request {n}: {e!r}")
                time.sleep(0.002)

        t = threading.Thread(target=loop, daemon=True)
        t.start()
        self.addCleanup(stop.set)
        time.sleep(0.3)
        with gate:
            os.kill(victim, signal.SIGKILL)
            t_kill = time.monotonic()
            self.wait_gone(victim)
        # A request on a fresh connection succeeds within 1 s of the kill.
        resp = fresh_get(server.port, "/plaintext", timeout=1.0)
        self.assertStatus(resp, 200, server)
        self.assertLess(time.monotonic() - t_kill, 1.0, "no answer within 1 s of the kill")

        exited = self.wait_event(server, "worker_exited", worker_pid=victim)
        self.assertEqual(exited.get("reason"), "killed_oom_suspected", exited)
        self.assertEqual(exited.get("signal"), 9, exited)
        self.assertEqual(exited.get("worker_id"), victim_id, exited)
        replacement = server.wait_for_stdout(
            lambda e: e.get("event") == "worker_spawned" and e.get("worker_id") == victim_id and
            e.get("worker_pid") != victim, timeout=5)
        self.assertIsNotNone(replacement, "no replacement worker spawned\n" + server.output_tail())
        after = self.wait_worker_count(server, 2, exclude={victim})
        self.assertIn(replacement["worker_pid"], after)
        self.assertIn(before[1], after, "the surviving worker must not be touched")
        time.sleep(0.3)
        stop.set()
        t.join(5)
        self.assertTrue(server.alive(), "master died with a worker\n" + server.output_tail())
        self.assertEqual(results["failures"], [], server.output_tail())
        self.assertGreater(results["ok"], 10)
        self.assertServing(server)


class TimeoutTest(SupervisorCase):
    def test_blocked_worker_is_aborted_with_a_stack_trace(self):
        server = self.start_master("--timeout", "1s", workers=2)
        workers = self.wait_worker_count(server, 2)
        blocked_conn = Conn(server.port, timeout=10)
        self.addCleanup(blocked_conn.close)
        resp = blocked_conn.get("/pid")
        self.assertStatus(resp, 200, server)
        blocked = int(resp.body)
        self.assertIn(blocked, workers)
        other = [w for w in workers if w != blocked][0]
        blocked_id = self.events(server, "worker_spawned", worker_pid=blocked)[0]["worker_id"]

        blocked_conn.send(build_request("GET", "/block?ms=4000"))
        t_block = time.monotonic()
        outcome = {}

        def read_blocked():
            try:
                outcome["resp"] = blocked_conn.read_response(timeout=8)
            except Exception as e:  # noqa: BLE001
                outcome["error"] = repr(e)

        reader = threading.Thread(target=read_blocked, daemon=True)
        reader.start()

        # While one worker's loop is blocked, the other keeps serving new connections.
        time.sleep(0.1)
        served_by = set()
        while time.monotonic() - t_block < 0.8:
            r = fresh_get(server.port, "/pid", timeout=2)
            self.assertStatus(r, 200, server)
            served_by.add(int(r.body))
            time.sleep(0.02)
        self.assertEqual(served_by, {other}, "requests during the block must be served by the other worker")

        timeout_event = self.wait_event(server, "worker_timeout", timeout=5, worker_pid=blocked)
        self.assertEqual(timeout_event.get("level"), "critical", timeout_event)
        self.assertGreaterEqual(timeout_event.get("silent_s", 0), 1.0, f"aborted too early: {timeout_event}")
        self.assertEqual(self.events(server, "worker_timeout", worker_pid=other), [],
                         "the healthy worker was declared stuck\n" + server.output_tail())

        exited = self.wait_event(server, "worker_exited", timeout=5, worker_pid=blocked)
        self.assertEqual(exited.get("reason"), "timeout", exited)
        self.assertIn(exited.get("signal"), (signal.SIGABRT, signal.SIGKILL), exited)
        self.assertLess(time.monotonic() - t_block, 4.0,
                        "the blocked worker must be aborted before its handler returns by itself")

        # The worker's stderr has the stack (one JSON line) with a frame naming the blocking handler.
        deadline = time.monotonic() + 3
        stack = None
        while stack is None and time.monotonic() < deadline:
            for line in server.stderr_text().splitlines():
                e = keelproc.parse_log_line(line)
                if e and e.get("event") == TIMEOUT_EVENT:
                    stack = e
            time.sleep(0.05)
        self.assertIsNotNone(stack, server.output_tail())
        self.assertEqual(stack.get("worker"), blocked_id, stack)
        self.assertTrue(any("blocking_handler" in f for f in stack["frames"]),
                        "no stack frame names blocking_handler:\n" + "\n".join(stack["frames"][:40]))

        reader.join(8)
        resp = outcome.get("resp")
        self.assertFalse(resp is not None and resp.status == 200 and resp.body == b"unblocked",
                         f"the blocked request completed normally: {outcome}")

        # A replacement takes the stuck worker's place and serves.
        after = self.wait_worker_count(server, 2, exclude={blocked})
        self.assertIn(other, after)
        fresh = [p for p in after if p != other][0]
        spawned = [self.wait_event(server, "worker_spawned", worker_pid=fresh)]  # logs are asynchronous
        self.assertEqual([e.get("worker_id") for e in spawned], [blocked_id], spawned)
        # Prove the replacement itself answers: stop the other worker for a moment (a few ms, well
        # under --timeout, so the master does not abort it too).
        os.kill(other, signal.SIGSTOP)
        self.addCleanup(self._cont, other)
        try:
            r = fresh_get(server.port, "/pid", timeout=3)
            self.assertStatus(r, 200, server)
            self.assertEqual(int(r.body), fresh)
            r = fresh_get(server.port, "/plaintext", timeout=3)
            self.assertStatus(r, 200, server)
        finally:
            self._cont(other)
        self.assertServing(server)
        self.assertTrue(server.alive())

    @staticmethod
    def _cont(pid):
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


class RecyclingTest(SupervisorCase):
    def test_max_requests_recycles_without_failed_requests(self):
        server = self.start_master("--max-requests", "50", "--max-requests-jitter", "10", workers=2)
        initial = set(self.wait_worker_count(server, 2))
        # Paced (about 3 s in all) so that several workers reach their limit while the load runs:
        # unpaced, the 600 requests finish before the master has replaced the first worker.
        load = LoadLoop(server.port, threads=8, requests_per_thread=75, pid_every=5, pause=0.035).start()
        self.addCleanup(load.stop)
        finished = load.join(30)
        self.assertTrue(finished, "the client threads did not finish within 30 s\n" + server.output_tail())
        self.assertNoFailures(load, server)
        # A draining worker answers busy keep-alive connections with Connection: close instead of
        # closing them under the client: no request even needs the retry.
        self.assertEqual(load.retries, 0, "a draining worker closed a keep-alive connection under a client")
        self.assertEqual(load.ok, 600)

        recycled = self.wait_events(server, "worker_exited", 4, timeout=5, reason="recycled")
        for e in recycled:
            self.assertGreaterEqual(e.get("requests", 0), 50, e)
        replacing = self.events(server, "worker_replacing", reason="recycled")
        self.assertGreaterEqual(len(replacing), len(recycled), replacing)
        self.assertGreaterEqual(len(self.wait_events(server, "max_requests_reached", len(recycled))), len(recycled))
        others = [e for e in self.events(server, "worker_exited") if e.get("reason") != "recycled"]
        self.assertEqual(others, [], "workers exited for another reason than recycling")

        seen = {pid for _, pid in load.pids_seen}
        self.assertGreater(len(seen), 2, f"worker pids seen via /pid did not change: {seen}")
        self.assertTrue(seen - initial, f"no request was served by a replacement worker: {seen}")
        final = set(self.wait_worker_count(server, 2))
        self.assertFalse(final & initial, f"initial workers {initial} still running: {final}")
        self.assertServing(server)

    def test_recycling_with_reuse_port_resets_no_queued_connection(self):
        # --reuse-port: each worker listens on a socket of its own, and closing it would reset the
        # connections in its queue. A new connection per request (--keep-alive-requests 1) keeps
        # those queues busy while workers retire every few dozen requests. (A retiring worker
        # drops new SYNs for 100 ms before it closes: those clients connect a second later, to
        # another worker, which is why this takes ~10 s rather than 2.)
        server = self.start_master("--reuse-port", "--max-requests", "30", "--max-requests-jitter", "5",
                                   "--keep-alive-requests", "1", "--no-access-log", workers=2)
        load = LoadLoop(server.port, threads=8, requests_per_thread=150, pid_every=0, pause=0.01).start()
        self.addCleanup(load.stop)
        finished = load.join(60)
        self.assertTrue(finished, "the client threads did not finish within 60 s\n" + server.output_tail())
        self.assertNoFailures(load, server)
        self.assertEqual(load.ok, 1200)
        self.assertGreaterEqual(len(self.wait_events(server, "worker_exited", 4, timeout=5, reason="recycled")), 4)


class SignalsTest(SupervisorCase):
    def test_sighup_rolling_restart_under_load(self):
        server = self.start_master(workers=2)
        before = set(self.wait_worker_count(server, 2))
        load = LoadLoop(server.port, threads=2, pid_every=3, pause=0.002).start()
        self.addCleanup(load.stop)
        time.sleep(0.3)
        server.send_signal(signal.SIGHUP)
        t_hup = time.monotonic()
        started = self.wait_event(server, "rolling_restart")
        self.assertEqual(started.get("workers"), 2, started)
        exits = self.wait_events(server, "worker_exited", 2, timeout=10, reason="rolling_restart")
        self.assertEqual({e["worker_pid"] for e in exits}, before, exits)
        self.assertEqual(len(self.events(server, "worker_replacing", reason="rolling_restart")), 2)
        after = set(self.wait_worker_count(server, 2, exclude=before))
        self.assertFalse(after & before, f"before {before}, after {after}")
        new_ids = sorted(self.wait_event(server, "worker_spawned", worker_pid=p)["worker_id"] for p in after)
        self.assertEqual(new_ids, [0, 1], "the new workers take over the old workers' ids")
        time.sleep(0.3)
        load.stop()
        self.assertNoFailures(load, server)
        self.assertGreater(load.ok, 20)
        late = {pid for t, pid in load.pids_seen if t > t_hup + 0.1 and pid in after}
        self.assertTrue(late, f"no request served by the new workers: {load.pids_seen[-10:]}")
        others = [e for e in self.events(server, "worker_exited") if e.get("reason") != "rolling_restart"]
        self.assertEqual(others, [])
        self.assertServing(server)

    def test_ttin_ttou_scale(self):
        server = self.start_master(workers=2)
        self.wait_worker_count(server, 2)

        server.send_signal(signal.SIGTTIN)
        up = self.wait_event(server, "scale_up")
        self.assertEqual(up.get("workers"), 3, up)
        three = self.wait_worker_count(server, 3)
        self.wait_event(server, "worker_spawned", worker_id=2)
        self.assertServing(server)

        server.send_signal(signal.SIGTTOU)
        down = self.wait_event(server, "scale_down")
        self.assertEqual(down.get("workers"), 2, down)
        exited = self.wait_event(server, "worker_exited", reason="scaled_down")
        self.assertIn(exited["worker_pid"], three)
        self.assertEqual(exited.get("worker_id"), 2, exited)
        self.assertEqual(exited.get("signal"), 0, exited)
        self.assertEqual(exited.get("exit_code"), 0, exited)
        two = self.wait_worker_count(server, 2)
        self.assertNotIn(exited["worker_pid"], two)
        time.sleep(0.3)  # a scaled-down worker is not respawned
        self.assertEqual(self.workers(server), two)

        server.send_signal(signal.SIGTTOU)
        self.wait_events(server, "worker_exited", 2, reason="scaled_down")
        one = self.wait_worker_count(server, 1)

        # At one worker, SIGTTOU does nothing.
        server.send_signal(signal.SIGTTOU)
        time.sleep(0.5)
        self.assertEqual(len(self.events(server, "scale_down")), 2, server.output_tail())
        self.assertEqual(len(self.events(server, "worker_exited")), 2, server.output_tail())
        self.assertEqual(self.workers(server), one)
        self.assertTrue(server.alive())
        self.assertServing(server)

    def test_pid_file(self):
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        path = os.path.join(tmp.name, "keel.pid")
        server = self.start_master("--pid", path, workers=2)
        with open(path) as f:
            self.assertEqual(f.read().strip(), str(server.pid))
        server.send_signal(signal.SIGTERM)
        self.assertEqual(server.wait(10), 0, server.output_tail())
        self.assertFalse(os.path.exists(path), "pid file left behind after SIGTERM")

    def test_pid_file_replaces_a_symlink_instead_of_following_it(self):
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        victim = os.path.join(tmp.name, "victim")
        with open(victim, "w") as f:
            f.write("precious\n")
        path = os.path.join(tmp.name, "keel.pid")
        os.symlink(victim, path)
        server = self.start_master("--pid", path, workers=2)
        self.assertFalse(os.path.islink(path))
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o644)
        with open(path) as f:
            self.assertEqual(f.read().strip(), str(server.pid))
        with open(victim) as f:
            self.assertEqual(f.read(), "precious\n")
        self.assertEqual(sorted(os.listdir(tmp.name)), ["keel.pid", "victim"])  # no temporary file left

    def test_sigterm_finishes_in_flight_request(self):
        server = self.start_master(workers=2)
        workers = self.wait_worker_count(server, 2)
        conn = Conn(server.port, timeout=10)
        self.addCleanup(conn.close)
        holder = {}

        def run():
            try:
                holder["resp"] = conn.get("/sleep?ms=1500")
            except Exception as e:  # noqa: BLE001
                holder["error"] = repr(e)

        t = threading.Thread(target=run, daemon=True)
        t.start()
        time.sleep(0.3)
        server.send_signal(signal.SIGTERM)
        t.join(10)
        self.assertNotIn("error", holder, f"{holder}\n{server.output_tail()}")
        self.assertIn("resp", holder, "the in-flight request did not complete")
        self.assertStatus(holder["resp"], 200, server)
        self.assertEqual(holder["resp"].body, b"slept")
        self.assertEqual(server.wait(10), 0, server.output_tail())
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(keelproc.read_stat(w) for w in workers):
            time.sleep(0.05)
        self.assertEqual([w for w in workers if keelproc.read_stat(w)], [], "workers outlived the master")
        self.assertFalse(server.group_alive(), keelproc.group_pids(server.pgid))
        exits = self.events(server, "worker_exited")
        self.assertEqual(sorted(e["worker_pid"] for e in exits), sorted(workers), exits)
        self.assertTrue(all(e.get("reason") == "shutdown" for e in exits), exits)


class BindFailureTest(SupervisorCase):
    def test_port_in_use_exits_3_quickly(self):
        # test_cli_process checks "non-zero"; this pins the documented code 3, promptness and the
        # message, with a master configuration (no worker is forked for a socket that failed).
        holder = socket.socket()
        self.addCleanup(holder.close)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        t0 = time.monotonic()
        rc, out, err = keelproc.run_cli(keelproc.testapp(), "--bind", f"127.0.0.1:{port}", "--workers", "2",
                                        timeout=5)
        elapsed = time.monotonic() - t0
        self.assertEqual(rc, 3, f"stdout: {out}\nstderr: {err}")
        self.assertLess(elapsed, 2.0)
        events = [keelproc.parse_log_line(l) for l in out.splitlines()]
        self.assertTrue(any(e and e.get("event") == "bind_failed" and e.get("error") for e in events), out)
        self.assertFalse(any(e and e.get("event") == "worker_spawned" for e in events), out)


class LifecycleHooksTest(SupervisorCase):
    """Startup/shutdown hooks per worker and the master-level hooks, in order; a failing startup
    hook is a boot failure: exit 3 quickly, no respawn loop."""

    @staticmethod
    def hooks(server_or_lines) -> list[tuple[str, int, int]]:
        lines = server_or_lines.stdout_snapshot() if hasattr(server_or_lines, "stdout_snapshot") else server_or_lines
        out = []
        for line in lines:
            e = keelproc.parse_log_line(line)
            if e and e.get("event") == "testapp_hook":
                out.append((e["hook"], e["pid"], e["worker_id"]))
        return out

    def test_master_and_worker_hooks_in_order(self):
        server = self.start_master(workers=2)
        master = server.pid
        self.wait_events(server, "testapp_hook", 1, hook="when_ready")
        self.assertServing(server)
        server.send_signal(signal.SIGTERM)
        self.assertEqual(server.wait(10), 0, server.output_tail())
        self.wait_events(server, "testapp_hook", 1, hook="on_exit")  # output is read by a thread
        hooks = self.hooks(server)
        names = [h[0] for h in hooks]
        self.assertEqual(names[0], "on_starting", hooks)
        self.assertEqual(names[-1], "on_exit", hooks)
        self.assertTrue(all(pid == master for name, pid, _ in hooks
                            if name in ("on_starting", "pre_fork", "when_ready", "worker_exit", "on_exit")), hooks)
        for worker_id in (0, 1):
            self.assertIn(("pre_fork", master, worker_id), hooks)
            post = [h for h in hooks if h[0] == "post_fork" and h[2] == worker_id]
            self.assertEqual(len(post), 1, hooks)
            worker_pid = post[0][1]
            self.assertNotEqual(worker_pid, master)
            mine = [h[0] for h in hooks if h[1] == worker_pid]
            self.assertEqual(mine, ["post_fork", "startup", "shutdown"], hooks)
            self.assertIn(("worker_exit", master, worker_id), hooks)
        # when_ready only after every worker ran its startup hook.
        ready_at = names.index("when_ready")
        self.assertEqual(names[:ready_at].count("startup"), 2, hooks)

    def test_single_process_hooks(self):
        server = self.start_server()  # one worker, no master
        self.assertServing(server, 1)
        server.send_signal(signal.SIGTERM)
        self.assertEqual(server.wait(10), 0, server.output_tail())
        self.wait_events(server, "testapp_hook", 1, hook="on_exit")  # output is read by a thread
        self.assertEqual([h[0] for h in self.hooks(server)],
                         ["on_starting", "startup", "when_ready", "shutdown", "on_exit"])

    def run_failing(self, *flags) -> tuple[int | None, float, str, str]:
        env = dict(os.environ, KEEL_TESTAPP_FAIL_STARTUP="1")
        t0 = time.monotonic()
        rc, out, err = keelproc.run_cli(keelproc.testapp(), "--bind", "127.0.0.1:0", *flags, timeout=10, env=env)
        return rc, time.monotonic() - t0, out, err

    def test_startup_failure_with_master_exits_3_without_respawn_loop(self):
        rc, elapsed, out, err = self.run_failing("--workers", "2")
        self.assertEqual(rc, 3, out + err)
        self.assertLess(elapsed, 2.0)
        self.assertIn("database unreachable", out)  # the startup_failed line (stderr has no plain line)
        spawned = [e for e in map(keelproc.parse_log_line, out.splitlines()) if e and e.get("event") == "worker_spawned"]
        self.assertLessEqual(len(spawned), 2, "workers were respawned after a boot failure")
        self.assertIn("worker_boot_failed", out)

    def test_startup_failure_single_process_exits_3(self):
        rc, elapsed, out, err = self.run_failing()
        self.assertEqual(rc, 3, out + err)
        self.assertLess(elapsed, 2.0)
        self.assertIn("startup_failed", out)


class OffloadShutdownTest(SupervisorCase):
    """Shutdown is bounded while offloaded work runs (issue 14, 15b): --graceful-timeout bounds the
    SIGTERM drain including a blocked keel::offload call, SIGINT stops at once, and a pool thread
    still blocked is abandoned (logged), never joined."""

    @staticmethod
    def threads(pid: int) -> int:
        return len(os.listdir(f"/proc/{pid}/task"))

    def block_in_offload(self, server: keelproc.Server, pid: int) -> Conn:
        """Sends a request whose offloaded call sleeps 30 s; returns once a pool thread runs it."""
        before = self.threads(pid)
        conn = Conn(server.port, timeout=40)
        self.addCleanup(conn.close)
        conn.send(build_request("GET", "/offload?ms=30000"))
        deadline = time.monotonic() + 5
        while self.threads(pid) <= before:  # the pool starts its first thread on the first offload
            self.assertLess(time.monotonic(), deadline, "the offloaded call did not start\n" + server.output_tail())
            time.sleep(0.02)
        return conn

    def assertStopsWithin(self, server: keelproc.Server, seconds: float, t0: float) -> None:
        rc = server.wait(seconds + 5)
        elapsed = time.monotonic() - t0
        self.assertIsNotNone(rc, "the server is still running 5 s past its bound\n" + server.output_tail())
        self.assertLess(elapsed, seconds, server.output_tail())

    def test_sigterm_drain_is_bounded_by_graceful_timeout(self):
        server = self.start_server("--graceful-timeout", "1s")  # one worker: no master
        self.block_in_offload(server, server.pid)
        t0 = time.monotonic()
        server.send_signal(signal.SIGTERM)
        self.assertStopsWithin(server, 3.0, t0)
        self.assertGreaterEqual(time.monotonic() - t0, 0.9, "the drain did not wait for the offloaded call")
        abandoned = self.wait_event(server, "threads_abandoned", timeout=2)
        self.assertEqual(abandoned.get("threads"), 1, abandoned)

    def test_sigint_stops_at_once(self):
        server = self.start_server("--graceful-timeout", "30s")
        self.block_in_offload(server, server.pid)
        t0 = time.monotonic()
        server.send_signal(signal.SIGINT)
        self.assertStopsWithin(server, 2.0, t0)
        self.wait_event(server, "threads_abandoned", timeout=2, threads=1)

    def test_sigint_during_a_drain_stops_at_once(self):
        server = self.start_server("--graceful-timeout", "30s")
        self.block_in_offload(server, server.pid)
        server.send_signal(signal.SIGTERM)
        self.wait_event(server, "graceful_shutdown")
        t0 = time.monotonic()
        server.send_signal(signal.SIGINT)
        self.assertStopsWithin(server, 2.0, t0)

    def test_worker_under_a_master_exits_by_itself(self):
        # --max-requests: one worker under a master
        server = self.start_master("--graceful-timeout", "1s", "--max-requests", "100000", workers=None)
        worker = self.wait_worker_count(server, 1)[0]
        self.block_in_offload(server, worker)
        t0 = time.monotonic()
        server.send_signal(signal.SIGTERM)
        self.assertStopsWithin(server, 3.0, t0)
        self.wait_event(server, "threads_abandoned", timeout=2, threads=1)
        # The worker ended itself within the bound: the master had nothing to kill.
        self.assertEqual(self.events(server, "workers_killed"), [], server.output_tail())


class TempBinaryCase(SupervisorCase):
    """Runs a copy of the test app from a temporary directory, so a test can replace it."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="keel-upgrade-")
        self.app = os.path.join(self.dir, "app")
        self.pidfile = os.path.join(self.dir, "keel.pid")
        with open(keelproc.testapp(), "rb") as src, open(self.app, "wb") as dst:
            dst.write(src.read())
        os.chmod(self.app, 0o755)

    def replace_binary(self, script: str) -> None:
        tmp = self.app + ".new"
        with open(tmp, "w") as f:
            f.write("#!/bin/sh\n" + script + "\n")
        os.chmod(tmp, 0o755)
        os.rename(tmp, self.app)  # atomically, like a deploy: the running file stays intact

    def read_pidfile(self) -> int:
        with open(self.pidfile) as f:
            return int(f.read().strip())

    def start(self):
        server = self.start_master("--pid", self.pidfile, workers=2, binary=self.app)
        self.assertEqual(self.read_pidfile(), server.pid)
        return server


class BinaryUpgradeTest(TempBinaryCase):
    """SIGUSR2: the master re-executes its binary with the listening sockets; the new master's
    workers take over and the old master drains and exits; a broken new binary changes nothing."""

    def test_upgrade_under_load(self):
        server = self.start()
        old_master = server.pid
        old_workers = set(self.wait_worker_count(server, 2))
        real = os.path.join(self.dir, "app.v1")
        os.link(self.app, real)
        self.replace_binary(f'KEEL_TESTAPP_VERSION=2 exec "{real}" "$@"')
        load = LoadLoop(server.port, threads=2, pid_every=3, pause=0.002).start()
        self.addCleanup(load.stop)
        time.sleep(0.3)
        server.send_signal(signal.SIGUSR2)
        started = self.wait_event(server, "upgrade_started")
        new_master = started["new_master"]
        self.wait_event(server, "upgrade_takeover", timeout=10, pid=new_master)
        self.wait_event(server, "upgrade_succeeded", timeout=5, pid=old_master)
        self.assertEqual(server.wait(15), 0, "the old master did not drain and exit\n" + server.output_tail())
        time.sleep(0.3)
        load.stop()
        self.assertNoFailures(load, server)
        self.assertEqual(load.retries, 0, "a draining old worker closed a keep-alive connection under a client")
        self.assertGreater(load.ok, 20)
        for _ in range(5):
            resp = fresh_get(server.port, "/version")
            self.assertEqual(resp.body, b"2", "the new binary does not serve")
        self.assertEqual(self.read_pidfile(), new_master)
        self.assertFalse(os.path.exists(self.pidfile + ".oldbin"))
        for pid in old_workers | {old_master}:
            self.wait_gone(pid, timeout=5)
        self.assertTrue(self.events(server, "listeners_inherited", pid=new_master))

    def test_counters_never_go_back_across_the_upgrade(self):
        # Scrapes reach workers of either generation during the overlap (each merges the other's
        # arena), and after the old master exits the new one takes its final counts over: the
        # total request count a scraper sees only grows.
        server = self.start()
        old_master = server.pid
        self.wait_worker_count(server, 2)
        load = LoadLoop(server.port, threads=2, pid_every=0, pause=0.002).start()
        self.addCleanup(load.stop)
        totals = []
        stop = threading.Event()

        def scrape():
            while not stop.is_set():
                try:
                    text = fresh_get(server.port, "/metrics").body.decode()
                except OSError:
                    continue
                totals.append(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                                  if line.startswith("http_requests_total{")))
                time.sleep(0.03)

        scraper = threading.Thread(target=scrape, daemon=True)
        scraper.start()
        self.addCleanup(stop.set)
        time.sleep(0.5)
        server.send_signal(signal.SIGUSR2)
        new_master = self.wait_event(server, "upgrade_started")["new_master"]
        self.assertEqual(server.wait(15), 0, "the old master did not drain and exit\n" + server.output_tail())
        self.wait_event(server, "metrics_generation_absorbed", timeout=5, pid=new_master)
        time.sleep(0.5)
        stop.set()
        scraper.join(5)
        load.stop()
        self.assertNoFailures(load, server)
        self.assertGreater(len(totals), 20)
        for i in range(1, len(totals)):
            self.assertGreaterEqual(totals[i], totals[i - 1], f"scrape {i} went back: {totals[max(0, i - 3):i + 2]}")
        self.assertGreater(totals[-1], totals[0])
        self.assertNotEqual(new_master, old_master)

    def test_broken_new_binary_keeps_old_master_serving(self):
        server = self.start()
        self.replace_binary("echo 'new build is broken' >&2; exit 1")
        load = LoadLoop(server.port, threads=2, pid_every=0, pause=0.002).start()
        self.addCleanup(load.stop)
        time.sleep(0.2)
        server.send_signal(signal.SIGUSR2)
        failed = self.wait_event(server, "upgrade_failed", timeout=10)
        self.assertEqual(failed.get("exit_code"), 1, failed)
        time.sleep(0.3)
        load.stop()
        self.assertNoFailures(load, server)
        self.assertTrue(server.alive())
        self.assertEqual(self.read_pidfile(), server.pid, "the pid file was not restored")
        self.assertFalse(os.path.exists(self.pidfile + ".oldbin"))
        self.assertEqual(fresh_get(server.port, "/version").body, b"1")
        self.assertEqual(len(self.workers(server)), 2)


class ControlAndReloadTest(TempBinaryCase):
    """`status` against the master's --control-socket, and --reload re-executing a changed binary."""

    def test_status(self):
        ctl = os.path.join(self.dir, "ctl")
        server = self.start_master("--control-socket", ctl, workers=2, binary=self.app)
        self.assertServing(server, 2)
        rc, out, err = keelproc.run_cli(self.app, "status", "--control-socket", ctl, "--json")
        self.assertEqual(rc, 0, err)
        import json
        status = json.loads(out)
        self.assertEqual(status["master_pid"], server.pid)
        self.assertEqual(sorted(w["id"] for w in status["workers"]), [0, 1])
        self.assertEqual(sorted(w["pid"] for w in status["workers"]), sorted(self.workers(server)))
        self.assertTrue(all(w["state"] == "ready" for w in status["workers"]), status)
        self.assertEqual(sum(w["requests"] for w in status["workers"]), 2)
        rc, out, err = keelproc.run_cli(self.app, "status", "--control-socket", ctl)
        self.assertEqual(rc, 0, err)
        self.assertIn(f"master {server.pid}", out)
        self.assertIn("ready", out)
        rc, out, err = keelproc.run_cli(self.app, "status", "--control-socket", os.path.join(self.dir, "none"))
        self.assertEqual(rc, 1)
        self.assertIn("no master answers", err)
        server.send_signal(signal.SIGTERM)
        self.assertEqual(server.wait(10), 0)
        self.assertFalse(os.path.exists(ctl), "the control socket was left behind")

    def control_failure(self, ctl: str) -> tuple[int | None, str]:
        rc, out, err = keelproc.run_cli(self.app, "--workers", "2", "--control-socket", ctl, "--bind", "127.0.0.1:0")
        failed = [e for e in map(keelproc.parse_log_line, out.splitlines()) if e and e.get("event") ==
                  "control_socket_failed"]
        self.assertTrue(failed, out + err)
        self.assertEqual(self.events_in(out, "worker_spawned"), [], "workers were started without a control socket")
        return rc, failed[0]["error"]

    @staticmethod
    def events_in(out: str, name: str) -> list[dict]:
        return [e for e in map(keelproc.parse_log_line, out.splitlines()) if e and e.get("event") == name]

    def test_a_control_socket_that_cannot_be_had_is_a_startup_error(self):
        rc, error = self.control_failure(os.path.join(self.dir, "no-such-dir", "ctl"))
        self.assertEqual(rc, 78)
        self.assertIn("no-such-dir", error)
        regular = os.path.join(self.dir, "a-file")
        open(regular, "w").close()
        rc, error = self.control_failure(regular)
        self.assertEqual(rc, 78)
        self.assertIn("the path exists and is not a socket", error)
        # A directory other users can write to: they could put their own socket in its place.
        shared = os.path.join(self.dir, "shared")
        os.mkdir(shared)
        os.chmod(shared, 0o777)
        rc, error = self.control_failure(os.path.join(shared, "ctl"))
        self.assertEqual(rc, 78)
        self.assertIn(f"directory {shared} (mode 0777", error)
        self.assertIn("/run/keel/", error)
        # Sticky (like /tmp): others cannot replace our file, so a fresh path is fine.
        os.chmod(shared, 0o1777)
        server = self.start_master("--control-socket", os.path.join(shared, "ctl"), workers=2, binary=self.app)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(shared, "ctl")).st_mode), 0o600)
        server.stop()

    @unittest.skipUnless(os.geteuid() == 0, "needs root to plant a file owned by another user")
    def test_a_path_another_user_holds_in_a_sticky_directory_is_refused(self):
        shared = os.path.join(self.dir, "shared")
        os.mkdir(shared)
        os.chmod(shared, 0o1777)
        ctl = os.path.join(shared, "ctl")
        planted = socket.socket(socket.AF_UNIX)
        planted.bind(ctl)
        planted.close()
        os.chown(ctl, 65534, 65534)
        rc, error = self.control_failure(ctl)
        self.assertEqual(rc, 78)
        self.assertIn(f"{ctl} already exists and belongs to uid 65534", error)

    @unittest.skipUnless(os.geteuid() == 0, "needs root to run a process as another user")
    def test_status_refuses_a_master_of_another_user(self):
        os.chmod(self.dir, 0o755)
        shared = os.path.join(self.dir, "shared")
        os.mkdir(shared)
        os.chmod(shared, 0o777)
        ctl = os.path.join(shared, "ctl")
        fake = subprocess.Popen(
            [sys.executable, "-c",
             "import socket, sys\n"
             "s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(4)\n"
             "while True:\n"
             "    c, _ = s.accept()\n"
             "    try:\n"
             "        c.recv(4096); c.sendall(b'{\"master_pid\": 1, \"workers_target\": 9, \"workers\": []}\\n')\n"
             "    except OSError:\n"
             "        pass\n"
             "    c.close()\n",
             ctl],
            preexec_fn=lambda: (os.setgid(65534), os.setuid(65534)))
        self.addCleanup(fake.wait)
        self.addCleanup(fake.kill)
        deadline = time.monotonic() + 5
        while not os.path.exists(ctl) and fake.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertTrue(os.path.exists(ctl), "the other user's process did not listen")
        rc, out, err = keelproc.run_cli(self.app, "status", "--control-socket", ctl, "--json")
        self.assertEqual(rc, 1, out)
        self.assertIn(f"refusing the control socket {ctl}: it is held by pid {fake.pid} of uid 65534", err)

    def test_malformed_control_messages_get_an_error_answer(self):
        ctl = os.path.join(self.dir, "ctl")
        server = self.start_master("--control-socket", ctl, workers=2, binary=self.app)
        workers = sorted(self.workers(server))

        def send(message: bytes) -> dict:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(5)
                s.connect(ctl)
                s.sendall(message + b"\n")
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
            return json.loads(data)

        for message, error in [
            (b'{"cmd":"promote","control_socket":5}', '"control_socket" must be a string'),
            (b'{"cmd":"park","window_ms":"60000"}', '"window_ms" must be an integer'),
            (b'{"cmd":"spawn","workers":"2"}', '"workers" must be an integer'),
            (b'{"cmd":"spawn","workers":1,"binary":["/bin/sh"]}', '"binary" must be a string'),
            (b'{"cmd":"scale","workers":99999999999}', '"workers" must be an integer'),
            (b'{"cmd":5}', 'expected a JSON object with a "cmd" string'),
        ]:
            answer = send(message)
            self.assertEqual(answer.get("ok"), False, (message, answer))
            self.assertIn(error, answer.get("error", ""), message)
        self.assertTrue(server.alive(), server.output_tail())
        status = send(b'{"cmd":"status"}')
        self.assertEqual((status["master_pid"], status["role"]), (server.pid, "primary"))
        self.assertEqual(sorted(w["pid"] for w in status["workers"]), workers)
        self.assertServing(server, 2)

    def test_reload_on_binary_change(self):
        server = self.start_master("--reload", workers=2, binary=self.app)
        self.wait_event(server, "reload_watching")
        real = os.path.join(self.dir, "app.v1")
        os.link(self.app, real)
        self.replace_binary(f'KEEL_TESTAPP_VERSION=2 exec "{real}" "$@"')
        self.wait_event(server, "reload", timeout=5)
        self.wait_event(server, "upgrade_succeeded", timeout=10)
        deadline = time.monotonic() + 5
        while fresh_get(server.port, "/version").body != b"2":
            self.assertLess(time.monotonic(), deadline, "the reloaded binary does not serve")
            time.sleep(0.05)
        self.assertStaysInForeground(server)

    def test_reload_on_config_file_change(self):
        config = os.path.join(self.dir, "keel.toml")
        with open(config, "w") as f:
            f.write('[app]\nmessage = "v1"\n')
        server = self.start_master("--reload", "--config", config, workers=2, binary=self.app)
        self.wait_event(server, "reload_watching")
        self.assertEqual(fresh_get(server.port, "/settings/message").body, b"v1")
        with open(config, "w") as f:
            f.write('[app]\nmessage = "v2"\n')
        self.wait_event(server, "reload", timeout=5)
        self.wait_event(server, "upgrade_succeeded", timeout=10)
        deadline = time.monotonic() + 5
        while fresh_get(server.port, "/settings/message").body != b"v2":
            self.assertLess(time.monotonic(), deadline, "the re-executed master does not use the edited file")
            time.sleep(0.05)
        self.assertStaysInForeground(server)

    def assertStaysInForeground(self, server: keelproc.Server) -> None:
        """After a reload the process the user started is still there (issue 14, 15c): the first
        master has exited, yet the started process did not, and a SIGINT to it alone (Ctrl-C)
        stops the re-executed master and its workers."""
        first_master = self.events(server, "workers_started")[0]["pid"]
        self.wait_gone(first_master, timeout=10)
        self.assertTrue(server.alive(), "the started process exited after the reload\n" + server.output_tail())
        os.kill(server.pid, signal.SIGINT)
        self.assertIsNotNone(server.wait(10), "SIGINT to the started process did not stop it\n" + server.output_tail())
        deadline = time.monotonic() + 5
        while keelproc.group_pids(server.pgid):
            self.assertLess(time.monotonic(), deadline,
                            f"processes left after SIGINT: {keelproc.group_pids(server.pgid)}")
            time.sleep(0.05)
        self.assertEqual(self.wait_event(server, "supervisor_stopped").get("exit_code"), 0, server.output_tail())


class DrainUnderLoadTest(SupervisorCase):
    """SIGTERM at steady load (wrk in the background, counting clients in Python): every request
    written on a connection that reached the server gets a complete 200 — no resets, no timeouts,
    no retries; only new connections attempted after the listeners closed may be refused."""

    def test_sigterm_under_load_loses_nothing(self):
        import shutil
        import subprocess
        server = self.start_master("--graceful-timeout", "10s", workers=2)
        wrk = None
        if shutil.which("wrk"):
            wrk = subprocess.Popen(["wrk", "-t1", "-c32", "-d4s", f"http://127.0.0.1:{server.port}/plaintext"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.addCleanup(lambda: wrk.poll() is None and wrk.kill())
        stop = threading.Event()
        lock = threading.Lock()
        stats = {"ok": 0, "refused": 0, "failures": [], "retries": 0}

        def keep_alive_client():
            client = KeepAliveClient(server.port)
            while not stop.is_set():
                try:
                    client.get("/plaintext")
                    with lock:
                        stats["ok"] += 1
                except RequestFailed as e:
                    if "ConnectionRefused" in str(e) or "Errno 111" in str(e):
                        with lock:
                            stats["refused"] += 1
                        break  # the listeners are closed: a load balancer would stop here too
                    with lock:
                        stats["failures"].append(str(e))
                    break
                except ConnectionRefusedError:
                    with lock:
                        stats["refused"] += 1
                    break
            with lock:
                stats["retries"] += client.retries
            client.close()

        def fresh_client():
            while not stop.is_set():
                try:
                    c = Conn(server.port, timeout=5)
                except ConnectionRefusedError:
                    with lock:
                        stats["refused"] += 1
                    return
                try:
                    resp = c.get("/plaintext")  # the connection reached us: it must be answered
                    with lock:
                        if resp.status == 200:
                            stats["ok"] += 1
                        else:
                            stats["failures"].append(f"fresh connection: status {resp.status}")
                except Exception as e:  # noqa: BLE001
                    with lock:
                        stats["failures"].append(f"fresh connection: {e!r}")
                finally:
                    c.close()

        threads = [threading.Thread(target=keep_alive_client, daemon=True) for _ in range(3)]
        threads += [threading.Thread(target=fresh_client, daemon=True) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        before = stats["ok"]
        t_term = time.monotonic()
        server.send_signal(signal.SIGTERM)
        code = server.wait(15)
        elapsed = time.monotonic() - t_term
        stop.set()
        for t in threads:
            t.join(5)
        self.assertEqual(code, 0, server.output_tail())
        self.assertLess(elapsed, 5.0, "shutdown took longer than the in-flight work needs")
        self.assertGreater(before, 50, "no load before SIGTERM")
        self.assertEqual(stats["failures"], [], server.output_tail())
        self.assertEqual(stats["retries"], 0, "a keep-alive connection was closed under a client")


class ShutdownDelayTest(SupervisorCase):
    def test_shutdown_delay_keeps_serving_while_readiness_fails(self):
        for workers in (1, 2):
            with self.subTest(workers=workers):
                server = self.start_master("--shutdown-delay", "1s", workers=workers) if workers > 1 else \
                    self.start_server("--shutdown-delay", "1s")
                self.assertEqual(fresh_get(server.port, "/ready").status, 200)
                client = KeepAliveClient(server.port)
                self.assertEqual(client.get("/plaintext").status, 200)
                t0 = time.monotonic()
                server.send_signal(signal.SIGTERM)
                time.sleep(0.3)
                # During the delay: readiness fails, everything else is served normally, new
                # connections included, and keep-alive continues.
                ready = fresh_get(server.port, "/ready")
                self.assertEqual(ready.status, 503, ready)
                resp = client.get("/plaintext")
                self.assertEqual(resp.status, 200)
                self.assertFalse(resp.has_token("Connection", "close"), "draining before the delay ended")
                self.assertEqual(fresh_get(server.port, "/plaintext").status, 200)
                self.assertEqual(server.wait(10), 0, server.output_tail())
                elapsed = time.monotonic() - t0
                self.assertGreaterEqual(elapsed, 0.9, "stopped before --shutdown-delay")
                self.assertLess(elapsed, 4.0)
                client.close()


if __name__ == "__main__":
    unittest.main()
