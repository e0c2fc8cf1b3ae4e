"""Slow and abusive clients against a 2-worker keel with its production defaults.

- slowhttptest slow headers (-H, Slowloris), slow body (-B, R-U-Dead-Yet) and slow read (-X),
  each with 1,000 connections opened at 200/s, while normal clients (harden.Probe: one keep-alive
  connection and fresh connections, 40 requests/s in all) must see 100 % availability and
  p99 < 50 ms. Availability is never retried; a p99 over the limit is measured once more on a
  fresh server before it counts (the machine is shared; both runs are recorded);
- --worker-connections: the service holds 2 x the per-worker cap before it refuses clients that
  arrive one after the other, and a flood beyond the cap is answered 503 and closed, fast;
- descriptor exhaustion (EMFILE, RLIMIT_NOFILE 64) with clients still knocking does not spin the
  workers or the master (< 10 % of one core each).

Already covered elsewhere (not repeated here): the header/body/keep-alive timeouts one by one,
the 503 of --worker-connections and --limit-concurrency with one process, and EMFILE with a
single process (tests/process/test_limits_timeouts.py, tests/process/test_robustness.py).

slowhttptest runs under `nice -n 10`: in a real attack its CPU is on other machines, not on the
2 cores keel and the measuring client share here.
"""

from __future__ import annotations

import csv
import os
import re
import resource
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest

import harden
from harden import Keel, Probe, Sampler, record

CONNECTIONS = int(os.environ.get("HARDENING_SLOW_CONNECTIONS", "1000"))
ATTACK_SECONDS = int(os.environ.get("HARDENING_SLOW_SECONDS", "15"))
RAMP_PER_S = 200  # new attack connections per second: all 1,000 open after 5 s
P99_LIMIT_MS = 50.0
PROBE_RATE = 40.0
HEADER_TIMEOUT_S = 10.0  # keel's default --header-timeout


def slowhttptest_binary() -> str:
    path = shutil.which("slowhttptest")
    if path is None:
        raise unittest.SkipTest("slowhttptest is not installed (scripts/install-deps.sh installs it)")
    return path


class SlowHttpTest(unittest.TestCase):
    """One keel per attack, so each attack's numbers are its own."""

    def setUp(self):
        slowhttptest_binary()
        self.keel = Keel()  # production defaults, 2 workers
        self.addCleanup(self.keel.stop)
        self.tmp = tempfile.mkdtemp(prefix="keel-slowhttptest-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        # Warm up: both workers have served something.
        for _ in range(20):
            self.assertEqual(self.keel.get("/plaintext").status, 200)
        time.sleep(0.3)
        self.baseline_fds = self.keel.fds()

    def attack(self, name: str, mode: str, target: str, extra: list[str],
               seconds: int = ATTACK_SECONDS) -> tuple[list[dict], dict, str]:
        """Runs slowhttptest (mode -H/-B/-X) with CONNECTIONS connections for ATTACK_SECONDS while
        the probe measures; returns slowhttptest's per-second CSV rows, the probe summary (with
        peak worker RSS/fds, keel's CPU and the whole machine's) and slowhttptest's output."""
        prefix = os.path.join(self.tmp, name)
        args = ["nice", "-n", "10", slowhttptest_binary(), mode, "-c", str(CONNECTIONS), "-r", str(RAMP_PER_S),
                "-l", str(seconds), "-p", "3", "-g", "-o", prefix,
                "-u", f"http://127.0.0.1:{self.keel.port}{target}", *extra]
        sampler = Sampler(self.keel, sockets=True).start()
        machine = harden.SystemCpu().start()
        cpu0 = self.keel.cpu()
        probe = Probe(self.keel.port, rate=PROBE_RATE).start()
        time.sleep(1.0)  # a second of the probe before the attack starts
        out_path = prefix + ".out"
        t0 = time.monotonic()
        with open(out_path, "wb") as out:
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            try:
                proc.wait(seconds + 30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
                self.fail(f"slowhttptest did not end within {seconds + 30}s")
        wall = time.monotonic() - t0
        summary = probe.stop()
        cpu1 = self.keel.cpu()
        machine_busy = machine.stop()
        sampler.stop()
        with open(out_path, errors="replace") as f:
            output = f.read()
        rows = []
        if os.path.exists(prefix + ".csv"):
            with open(prefix + ".csv", newline="") as f:
                rows = [{k.strip(): int(v) for k, v in r.items()} for r in csv.DictReader(f)]
        self.assertTrue(rows, output[-2000:])
        peak = max(r["Connected"] for r in rows)
        keel_cpu = sum(cpu1.get(p, 0.0) - cpu0.get(p, 0.0) for p in cpu0)
        summary.update(connections=CONNECTIONS, peak_connected=peak, attack_s=round(wall, 1),
                       peak_worker_rss_mb=round(sampler.peak_worker_rss / 2**20, 1),
                       peak_worker_fds=sampler.peak_worker_fds,
                       peak_kernel_sendq_mb=round(sampler.peak_kernel_sendq / 2**20, 1),
                       peak_fin_wait1=sampler.peak_orphans,
                       keel_cpu_pct_of_one_core=round(100.0 * keel_cpu / (wall + 1.0), 1),
                       machine_cpu_busy_pct=machine_busy, load1=harden.loadavg())
        if probe.failures:
            summary["first_failures"] = probe.failures[:5]
        if summary["p99_ms"] is not None and summary["p99_ms"] >= P99_LIMIT_MS:
            summary["slowest"] = sorted(((round(t, 2), round(l * 1000)) for t, l in probe.timeline),
                                        key=lambda x: -x[1])[:8]
            summary["client_stalls"] = sorted(((round(t, 2), round(l * 1000)) for t, l in probe.stalls),
                                              key=lambda x: -x[1])[:8]
        # slowhttptest really held (about) CONNECTIONS connections at once.
        self.assertGreaterEqual(peak, CONNECTIONS * 0.98,
                                f"slowhttptest never had {CONNECTIONS} connections open: {rows}\n{self.keel.tail()}")
        return rows, summary, output

    def measured_attack(self, name: str, mode: str, target: str, extra: list[str], seconds: int = ATTACK_SECONDS):
        """attack(), asserting availability (never retried) and p99. A p99 over the limit is
        measured once more on a fresh server before it counts: on a shared 2-core machine a
        neighbour's burst can stall the measuring client itself (both runs are recorded)."""
        rows, summary, output = self.attack(name, mode, target, extra, seconds)
        self.assertServedNormally(name, summary, check_p99=False)
        if summary["p99_ms"] >= P99_LIMIT_MS:
            record(name + "_first_run", **summary)
            first_p99 = summary["p99_ms"]
            self.keel.stop()
            self.setUp()
            rows, summary, output = self.attack(name, mode, target, extra, seconds)
            summary["first_run_p99_ms"] = first_p99
        return rows, summary, output

    def assertServedNormally(self, name: str, summary: dict, check_p99: bool = True) -> None:
        self.assertTrue(self.keel.alive(), self.keel.tail())
        self.assertEqual(summary["failed"], 0,
                         f"{name}: normal requests failed during the attack: {summary}\n{self.keel.tail()}")
        self.assertGreater(summary["requests"], PROBE_RATE * ATTACK_SECONDS * 0.5, summary)
        if check_p99:
            self.assertLess(summary["p99_ms"], P99_LIMIT_MS, f"{name}: normal-request p99 too high: {summary}")

    def assertFdsBackToBaseline(self, name: str) -> dict:
        """Once slowhttptest has gone, every process is back to its descriptor count from before."""
        def back():
            now = self.keel.fds()
            return now if sorted(now.values()) == sorted(self.baseline_fds.values()) else None
        now = harden.wait_until(back, timeout=10.0, interval=0.2)
        self.assertIsNotNone(now, f"{name}: descriptors not back to baseline 10 s after the attack: "
                                  f"before {self.baseline_fds}, now {self.keel.fds()}")
        return now

    def test_slow_headers(self):
        # Slowloris: a partial head, one more header line every 5 s. The header timeout (10 s for
        # the whole head) answers 408 and closes, however steadily the client trickles.
        # slowhttptest stops once keel has closed every connection (about 15 s: 5 s of ramp, then
        # the header timeout); its time limit is set well past that.
        rows, summary, output = self.measured_attack("slow_headers", "-H", "/plaintext", ["-i", "5", "-x", "24"],
                                                     seconds=int(CONNECTIONS / RAMP_PER_S + HEADER_TIMEOUT_S + 10))
        # When did keel close them? slowhttptest stops by itself once none is left open.
        full = next(r["Seconds"] for r in rows if r["Connected"] >= CONNECTIONS * 0.98)
        m = re.search(r"Test ended on (\d+)\w* second\s*\n?.*?Exit status:\s*(?:\x1b\[[0-9;]*m)?\s*([^\n\x1b]+)",
                      output, re.S)
        ended_s, status = (int(m.group(1)), m.group(2).strip()) if m else (None, None)
        summary.update(all_open_at_s=full, attack_ended_at_s=ended_s, slowhttptest_exit=status)
        record("slow_headers", **summary)
        self.assertServedNormally("slow headers", summary)
        self.assertEqual(status, "No open connections left", f"keel did not close the slow-header connections:"
                                                              f" {rows}\n{output[-1500:]}")
        # Opened over 5 s at RAMP_PER_S, each closed HEADER_TIMEOUT_S after its first byte.
        self.assertLessEqual(ended_s, full + HEADER_TIMEOUT_S + 3, rows)
        self.assertFdsBackToBaseline("slow headers")

    def test_slow_body(self):
        # R-U-Dead-Yet: a POST announcing 8 KiB, then a few bytes every 5 s. The body timeout is
        # an idle timeout (30 s): a client that keeps trickling holds its connection; the defence
        # is that a held connection costs an fd and a few KiB, and the per-worker cap.
        rows, summary, _ = self.measured_attack("slow_body", "-B", "/echo", ["-i", "5", "-x", "24", "-s", "8192"])
        summary.update(held_at_end=rows[-1]["Connected"])
        record("slow_body", **summary)
        self.assertServedNormally("slow body", summary)
        self.assertFdsBackToBaseline("slow body")

    def test_slow_read(self):
        # Slow read: 2 pipelined GETs of a 256 KiB response per connection, a 10-20 byte receive
        # window and 32 bytes read per second. What keel has not handed to the kernel stays in the
        # worker's memory (peak_worker_rss_mb); on Linux the autotuned send buffer (tcp_wmem, up
        # to 4 MiB) takes most of it (peak_kernel_sendq_mb), keel sees the response as sent, and
        # the idle keep-alive timeout closes the connection with the data still queued
        # (peak_fin_wait1): from then on the attack costs kernel memory, not keel's. The CPU it
        # costs keel is mostly the kernel accepting those ~500 MB (perf: skb slab allocation and
        # copy_from_iter in sendmsg), during the 5 s ramp.
        rows, summary, _ = self.measured_attack("slow_read", "-X", "/big?bytes=262144",
                                       ["-k", "2", "-n", "1", "-w", "10", "-y", "20", "-z", "32"])
        summary.update(held_at_end=rows[-1]["Connected"])
        record("slow_read", **summary)
        self.assertServedNormally("slow read", summary)
        self.assertFdsBackToBaseline("slow read")


class AnnouncedBodyTest(unittest.TestCase):
    """Issue 14, point 1: a request head announcing the largest allowed body, then nothing.

    Before the fix the worker sized (and zero-filled) its buffer from Content-Length as soon as
    the head was parsed: 200 such connections took one worker from 7 MB to 362 MB resident. Now
    the buffer grows only with the bytes that arrive: 1,000 connections at the 1 MiB body limit
    (one worker, so all land on it) must cost under 64 MB of RSS while normal requests keep their
    p99 under 50 ms and none fails. Then each connection trickles one byte: the whole-body
    deadline (--body-deadline, here 6 s) closes them although the idle timer keeps restarting."""

    HEAD = (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: 1048576\r\n\r\n")

    def test_announced_bodies_do_not_reserve_memory(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < CONNECTIONS + 200:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, CONNECTIONS + 1024), hard))
        keel = Keel("--body-deadline", "6s", "--body-timeout", "4s", workers=1)
        self.addCleanup(keel.stop)
        for _ in range(20):
            self.assertEqual(keel.get("/plaintext").status, 200)
        time.sleep(0.3)
        worker = keel.pid  # one worker: the single process serves (no master)
        rss0 = harden.rss_bytes(worker)
        peak = [rss0]
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.wait(0.1):
                peak[0] = max(peak[0], harden.rss_bytes(worker))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        probe = Probe(keel.port, rate=PROBE_RATE).start()
        held: list[socket.socket] = []
        try:
            t0 = time.monotonic()
            for i in range(CONNECTIONS):
                s = socket.create_connection(("127.0.0.1", keel.port), timeout=5)
                s.sendall(self.HEAD)
                held.append(s)
                if i % 100 == 99:
                    time.sleep(0.05)  # 1,000 in about a second, like a ramping attacker
            opened_s = time.monotonic() - t0
            time.sleep(3.0)  # held: every head parsed, every body awaited
            held_rss = harden.rss_bytes(worker)
            # A byte on each every 1.5 s, well within the 4 s idle timeout, which therefore never
            # fires: only the whole-body deadline (6 s after the head) can end these requests.
            open_ = list(held)
            trickle_end = t0 + 14.0
            while open_ and time.monotonic() < trickle_end:
                still = []
                for s in open_:
                    if _closed_by_peer(s):
                        continue
                    try:
                        s.send(b"x")
                        still.append(s)
                    except OSError:
                        pass
                open_ = still
                time.sleep(1.5)
            closed = not open_
        finally:
            summary = probe.stop()
            sampling.set()
            sampler.join()
            for s in held:
                s.close()
        growth_mb = (peak[0] - rss0) / 2**20
        summary.update(connections=CONNECTIONS, opened_s=round(opened_s, 1), rss_before_mb=round(rss0 / 2**20, 1),
                       rss_held_mb=round(held_rss / 2**20, 1), peak_growth_mb=round(growth_mb, 1))
        record("announced_bodies", **summary)
        self.assertTrue(keel.alive(), keel.tail())
        self.assertLess(growth_mb, 64.0, summary)
        self.assertEqual(summary["failed"], 0, f"normal requests failed: {summary}\n{keel.tail()}")
        self.assertLess(summary["p99_ms"], P99_LIMIT_MS, summary)
        self.assertTrue(closed, f"the whole-body deadline left {len(open_)} trickling connections open")


def _closed_by_peer(s: socket.socket) -> bool:
    """True once keel has answered (408) and closed: reading hits EOF or a reset."""
    s.setblocking(False)
    try:
        while True:
            data = s.recv(65536)
            if not data:
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True


class ConnectionCapTest(unittest.TestCase):
    PER_WORKER = 500  # --worker-connections: the service holds 2 x 500
    FLOOD = 1000

    def fill(self, keel: Keel, attempts: int, held: list, stop_after_503s: int | None = None):
        """Opens keep-alive connections one after the other (each answers GET /pid once) and keeps
        the admitted ones. Returns (refused, {worker pid: admitted}, held count at the first 503)."""
        refused = 0
        per_worker: dict[int, int] = {}
        first_503_at = None
        streak = 0
        for _ in range(attempts):
            c = harden.Conn(keel.port, timeout=5)
            resp = c.request("GET", "/pid")
            if resp.status == 200:
                held.append(c)
                per_worker[int(resp.body)] = per_worker.get(int(resp.body), 0) + 1
                streak = 0
            else:
                self.assertEqual(resp.status, 503, resp)
                refused += 1
                streak += 1
                if first_503_at is None:
                    first_503_at = len(held)
                c.close()
                if stop_after_503s is not None and streak >= stop_after_503s:
                    break
            if len(held) >= 2 * self.PER_WORKER:
                break
        return refused, per_worker, first_503_at

    def test_the_cap_is_reached_before_connections_are_refused(self):
        # Clients arriving one after the other: the service should hold 2 x --worker-connections
        # before it answers 503. The cap is enforced per worker at accept time, so what matters
        # is whether a full worker leaves new connections to the one that still has room.
        keel = Keel("--worker-connections", str(self.PER_WORKER), "--keep-alive", "75s")
        self.addCleanup(keel.stop)
        held: list = []
        self.addCleanup(lambda: [c.close() for c in held])
        cap = 2 * self.PER_WORKER
        refused, per_worker, first_503_at = self.fill(keel, 2 * cap, held)
        summary = {"cap": cap, "held": len(held), "refused_503": refused, "first_503_with_open": first_503_at,
                   "per_worker": sorted(per_worker.values(), reverse=True)}
        record("connection_cap_balance", **summary)
        self.assertGreaterEqual(len(held), 0.95 * cap,
                                f"503 'too many connections' while the service held only {len(held)} of its "
                                f"{cap} connections: a worker at its cap keeps accepting (and refusing) while "
                                f"the other has room: {summary}")

    def test_flood_beyond_the_cap_is_refused_fast(self):
        keel = Keel("--worker-connections", str(self.PER_WORKER), "--keep-alive", "75s")
        self.addCleanup(keel.stop)
        baseline = keel.fds()
        cap = 2 * self.PER_WORKER
        held: list = []
        self.addCleanup(lambda: [c.close() for c in held])
        # Fill until the workers refuse (50 refusals in a row).
        _, per_worker, _ = self.fill(keel, 4 * cap, held, stop_after_503s=50)
        before = len(held)

        # The flood: FLOOD more connections from 20 threads. Each sends nothing and waits for
        # the server to speak: the canned 503 then the close (refused), or nothing within 1 s
        # (admitted by a worker that still had room: kept open).
        latencies: list[float] = []
        admitted: list[socket.socket] = []
        problems: list[str] = []
        lock = threading.Lock()
        self.addCleanup(lambda: [s.close() for s in admitted])
        per_thread = self.FLOOD // 20

        def flood():
            for _ in range(per_thread):
                t0 = time.perf_counter()
                try:
                    s = socket.create_connection(("127.0.0.1", keel.port), timeout=5)
                    s.settimeout(1.0)
                    data = b""
                    try:
                        while True:
                            chunk = s.recv(4096)
                            if not chunk:
                                break
                            data += chunk
                    except socket.timeout:
                        if not data:
                            with lock:
                                admitted.append(s)
                            continue
                        raise
                    s.close()
                    elapsed = time.perf_counter() - t0
                    with lock:
                        if data.startswith(b"HTTP/1.1 503"):
                            latencies.append(elapsed)
                        else:
                            problems.append(f"unexpected answer {data[:80]!r}")
                except OSError as e:
                    with lock:
                        problems.append(f"{type(e).__name__}: {e} after {time.perf_counter() - t0:.3f}s")

        cpu0 = keel.cpu()
        t0 = time.monotonic()
        threads = [threading.Thread(target=flood) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        wall = time.monotonic() - t0
        cpu1 = keel.cpu()
        worker_cpu = sum(cpu1.get(p, 0) - cpu0.get(p, 0) for p in keel.workers())
        # Held connections are unaffected.
        for i, c in enumerate(held[::25]):
            resp = c.request("GET", f"/users/{i}")
            self.assertEqual(resp.status, 200, resp)
        summary = {
            "cap": cap, "held_before_flood": before, "per_worker_before": sorted(per_worker.values(), reverse=True),
            "flood": self.FLOOD, "refused_503": len(latencies), "admitted": len(admitted), "other": len(problems),
            "refuse_p50_ms": round(harden.percentile(latencies, 50) * 1000, 2) if latencies else None,
            "refuse_p99_ms": round(harden.percentile(latencies, 99) * 1000, 2) if latencies else None,
            "refuse_max_ms": round(max(latencies) * 1000, 2) if latencies else None,
            "flood_wall_s": round(wall, 2), "worker_cpu_s": round(worker_cpu, 2),
        }
        if problems:
            summary["first_problems"] = problems[:5]
        record("connection_flood", **summary)
        self.assertEqual(problems, [], summary)
        self.assertLessEqual(before + len(admitted), cap, f"more connections open than the cap: {summary}")
        self.assertEqual(len(latencies) + len(admitted), self.FLOOD, summary)
        self.assertLess(summary["refuse_p99_ms"], 50.0, summary)
        self.assertLess(summary["refuse_max_ms"], 1000.0, summary)
        # Released: capacity is back, descriptors return to the baseline.
        for c in held:
            c.close()
        for s in admitted:
            s.close()
        held.clear()
        admitted.clear()
        self.assertEqual(harden.wait_until(lambda: keel.get("/plaintext").status == 200, 3.0), True)
        record("connection_flood_metrics",
               rejected_total=keel.metric("http_requests_rejected_total"))
        self.assertIsNotNone(harden.wait_until(
            lambda: sorted(keel.fds().values()) == sorted(baseline.values()), 10.0, 0.2),
            f"descriptors before {baseline}, after {keel.fds()}")


def _limit_fds():
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))


class EmfileTest(unittest.TestCase):
    MEASURE_S = 4.0
    CPU_LIMIT = 0.10  # of one core, per process

    def test_descriptor_exhaustion_does_not_spin(self):
        # Master and 2 workers, 64 descriptors each. Idle timeouts longer than the test, so that
        # the held connections stay open throughout (a fresh idle connection is closed after
        # --keep-alive, 5 s by default).
        keel = Keel("--keep-alive", "60s", "--header-timeout", "60s", preexec_fn=_limit_fds)
        self.addCleanup(keel.stop)
        self.assertEqual(keel.get("/plaintext").status, 200)
        held = []
        self.addCleanup(lambda: [s.close() for s in held])
        # More connections than both workers can accept: each runs into EMFILE.
        for _ in range(200):
            try:
                held.append(harden.keelproc.connect_raw(keel.port, timeout=2))
            except OSError:
                pass
        time.sleep(0.5)
        # Meanwhile new clients keep knocking (a few connection attempts per second).
        stop = threading.Event()
        knocks = {"n": 0}

        def knock():
            while not stop.is_set():
                try:
                    with socket.create_connection(("127.0.0.1", keel.port), timeout=0.5) as s:
                        s.settimeout(0.2)
                        knocks["n"] += 1
                        try:
                            s.recv(100)
                        except OSError:
                            pass
                except OSError:
                    knocks["n"] += 1
                stop.wait(0.02)

        knocker = threading.Thread(target=knock, daemon=True)
        knocker.start()
        self.addCleanup(stop.set)
        time.sleep(0.3)
        workers = keel.workers()
        self.assertEqual(len(workers), 2, keel.tail())
        fds_start = keel.fds()
        cpu0 = {p: harden.cpu_seconds(p) for p in keel.pids()}
        t0 = time.monotonic()
        time.sleep(self.MEASURE_S)
        wall = time.monotonic() - t0
        cpu = {p: harden.cpu_seconds(p) - cpu0[p] for p in cpu0}
        stop.set()
        knocker.join(2)
        fds = keel.fds()
        summary = {
            "rlimit_nofile": 64, "held_connections": len(held), "knocks": knocks["n"],
"measure_s": round(wall, 2),
            "worker_cpu_pct": [round(100 * cpu[p] / wall, 1) for p in workers],
            "master_cpu_pct": round(100 * cpu[keel.pid] / wall, 1),
            "worker_fds": [fds_start.get(p) for p in workers], "worker_fds_end": [fds.get(p) for p in workers],
            "accept_failed_logged": len(keel.events("accept_failed")),
        }
        record("emfile", **summary)
        for p in workers:
            self.assertGreaterEqual(min(fds_start.get(p, 0), fds.get(p, 0)), 60,
                                    f"worker {p} was not out of descriptors throughout: {summary}")
            self.assertLess(cpu[p] / wall, self.CPU_LIMIT, f"worker {p} spins while out of descriptors: {summary}")
        self.assertLess(cpu[keel.pid] / wall, self.CPU_LIMIT, summary)
        # Released: service is back within 2 s.
        for s in held:
            s.close()
        held.clear()

        def ok():
            try:
                return keel.get("/plaintext", timeout=1).status == 200
            except (OSError, harden.ProtocolError):
                return False
        self.assertTrue(harden.wait_until(ok, 2.0), keel.tail())
        for i in range(30):
            self.assertEqual(keel.get(f"/users/{i}").status, 200)


if __name__ == "__main__":
    unittest.main()
