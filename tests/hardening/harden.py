"""Shared helpers for keel's hardening suite (tests/hardening/): slow and abusive clients, the
mixed-load soak and the fault scenarios that scripts/hardening.sh runs.

It builds on the process-test harness (tests/process/keelproc.py: raw HTTP over loopback, /proc
helpers) but starts keel differently: stdout and stderr go to files, not to pipes drained by
Python threads, because these tests produce hundreds of thousands of access-log lines and the
parsing must not eat the CPU whose latency they measure. The server runs with its production
defaults (docs/security.md "Hardening suite" lists them) and 2 workers.

Every measured number is printed as a "RESULT" line and, when $HARDENING_RESULTS names a
file, appended to it as one JSON object per line (scripts/hardening.sh prints the summary from
it).

Standard library only; run by Debian's /usr/bin/python3.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests" / "process"))

import deps  # noqa: E402  (tests/process/deps.py)
import keelproc  # noqa: E402  (tests/process/keelproc.py)
from keelproc import Conn, ProtocolError, build_request  # noqa: E402,F401

START_TIMEOUT = 15.0


# --------------------------------------------------------------------------------------------
# The binary
# --------------------------------------------------------------------------------------------

def binary() -> str:
    """keel-testapp: $HARDENING_APP, else the release build (timings mean something there),
    else any other build."""
    value = os.environ.get("HARDENING_APP")
    if value:
        return value
    for preset in ("release", "debug", "clang"):
        candidate = REPO_ROOT / "build" / preset / "tests" / "keel-testapp"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise unittest.SkipTest("HARDENING_APP is not set and no built keel-testapp was found "
                            "(cmake --build --preset release --target keel-testapp)")


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------

def record(name: str, **values) -> None:
    """Prints one RESULT line and appends it to $HARDENING_RESULTS (JSON lines)."""
    doc = {"test": name, **values}
    print("RESULT " + json.dumps(doc, sort_keys=False), file=sys.stderr, flush=True)
    path = os.environ.get("HARDENING_RESULTS")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(doc) + "\n")


def percentile(values, q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = max(0, min(len(ordered) - 1, int(round(q / 100.0 * len(ordered) + 0.5)) - 1))
    return ordered[k]


def system_cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies over all CPUs since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        parts = [float(x) for x in f.readline().split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0.0)  # idle + iowait
    total = sum(parts[:8])  # guest time is already in user
    return total - idle, total


class SystemCpu:
    """Busy share of all CPUs between start() and stop(): how loaded the machine was (other
    processes included), to tell keel's latency from a noisy neighbour's."""

    def start(self) -> "SystemCpu":
        self.busy0, self.total0 = system_cpu_times()
        return self

    def stop(self) -> float:
        busy, total = system_cpu_times()
        return round(100.0 * (busy - self.busy0) / max(1.0, total - self.total0), 1)


def loadavg() -> float:
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError):
        return float("nan")


# --------------------------------------------------------------------------------------------
# /proc
# --------------------------------------------------------------------------------------------

def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def cpu_seconds(pid: int) -> float:
    st = keelproc.read_stat(pid)
    return st[2] if st is not None else 0.0


def alive(pid: int) -> bool:
    st = keelproc.read_stat(pid)
    return st is not None and st[0] != "Z"


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------

_live: list["Keel"] = []


@atexit.register
def _stop_all() -> None:
    for k in list(_live):
        try:
            k.stop(timeout=2.0)
        except Exception:  # pragma: no cover - best effort at interpreter exit
            pass


def _on_sigterm(signum, frame):
    # scripts/hardening.sh bounds each part with timeout(1), which sends SIGTERM: end the run
    # like Ctrl-C, so that atexit still stops every server this process started.
    raise KeyboardInterrupt("SIGTERM: time bound reached")


signal.signal(signal.SIGTERM, _on_sigterm)


class Keel:
    """keel-testapp on 127.0.0.1:<free port> with 2 workers (by default) in its own process group;
    stdout to <tmp>/keel.log, stderr to <tmp>/keel.err.

    stdout: None (the file), or an open file object / fd to use instead (e.g. a pipe nobody reads).
    log_file: log with --log-file <tmp>/keel.log instead of stdout (then stdout goes to
    <tmp>/stdout.log); with rotation flags the rotated files are read too.
    """

    def __init__(self, *flags: str, workers: int = 2, env=None, preexec_fn=None, stdout=None,
                 wait: bool = True, log_file: bool = False):
        self.dir = Path(tempfile.mkdtemp(prefix="keel-hardening-"))
        self.log_path = self.dir / "keel.log"
        self.err_path = self.dir / "keel.err"
        self.port = deps.free_port()
        self.args = [binary(), "--bind", f"127.0.0.1:{self.port}", "--workers", str(workers),
                     "--log-format", "json", *flags]
        if log_file:
            self.args += ["--log-file", str(self.log_path)]
        self._out = open(self.dir / "stdout.log" if log_file else self.log_path, "wb") if stdout is None else stdout
        self._err = open(self.err_path, "wb")
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=self._out, stderr=self._err,
                                     start_new_session=True, preexec_fn=preexec_fn,
                                     env=keelproc.server_env(env))
        self.pid = self.proc.pid
        self.workers_expected = workers
        _live.append(self)
        if wait:
            try:
                self.wait_ready()
            except BaseException:
                self.stop(timeout=2.0)
                raise

    # -- start -------------------------------------------------------------------------------

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Until the port accepts and (with a master) the workers are ready."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"keel exited with {self.proc.returncode} while starting\n{self.tail()}")
            if deps.accepts(self.port, timeout=0.2):
                if self.workers_expected <= 1 or self.events("workers_ready"):
                    if self.workers_expected <= 1 or len(self.workers()) == self.workers_expected:
                        return
            time.sleep(0.05)
        raise RuntimeError(f"keel not ready within {timeout}s\n{self.tail()}")

    # -- logs --------------------------------------------------------------------------------

    def log_files(self) -> list[Path]:
        """keel.log and its rotated copies (keel.log.<UTC timestamp>), oldest first."""
        return sorted(p for p in self.dir.glob("keel.log.*")) + [self.log_path]

    def log_lines(self, predicate=None) -> list[dict]:
        """Parsed JSON log lines (of every log file), optionally only those where predicate(raw
        line) is true (a cheap pre-filter for big logs)."""
        out = []
        for path in self.log_files():
            try:
                with open(path, "rb") as f:
                    for raw in f:
                        line = raw.decode("utf-8", "replace")
                        if predicate is not None and not predicate(line):
                            continue
                        e = keelproc.parse_log_line(line)
                        if e is not None:
                            out.append(e)
            except OSError:
                pass
        return out

    def events(self, name: str, **fields) -> list[dict]:
        return [e for e in self.log_lines()
                if e.get("event") == name and all(e.get(k) == v for k, v in fields.items())]

    def tail(self, lines: int = 25) -> str:
        def last(path: Path) -> str:
            # Access-log lines are the bulk and say little about a failure: left out.
            try:
                kept = [l[:400] for l in path.read_text(errors="replace").splitlines()
                        if '"event":"request_handled"' not in l]
                return "\n".join(kept[-lines:])
            except OSError:
                return "(unreadable)"
        return (f"--- keel: {' '.join(self.args)}\n--- stdout tail ({self.log_path}):\n{last(self.log_path)}\n"
                f"--- stderr tail:\n{last(self.err_path)}")

    # -- processes ---------------------------------------------------------------------------

    def workers(self) -> list[int]:
        return keelproc.child_pids(self.pid)

    def pids(self) -> list[int]:
        return [self.pid] + self.workers()

    def fds(self) -> dict[int, int]:
        return {pid: fd_count(pid) for pid in self.pids()}

    def rss(self) -> dict[int, int]:
        return {pid: rss_bytes(pid) for pid in self.pids()}

    def cpu(self) -> dict[int, float]:
        return {pid: cpu_seconds(pid) for pid in self.pids()}

    def alive(self) -> bool:
        return self.proc.poll() is None

    # -- HTTP --------------------------------------------------------------------------------

    def get(self, target: str, timeout: float = 5.0) -> keelproc.Response:
        return keelproc.get(self.port, target, timeout=timeout)

    def metric(self, name: str) -> float:
        """Sum of the samples of one metric family in /metrics (0 if absent)."""
        text = self.get("/metrics").text
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and (len(line) == len(name) or line[len(name)] in " {"):
                try:
                    total += float(line.split()[-1])
                except ValueError:
                    pass
        return total

    # -- stop --------------------------------------------------------------------------------

    def kill(self) -> None:
        """SIGKILL to the whole process group, then the usual cleanup."""
        try:
            os.killpg(self.pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.stop(timeout=5.0)

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        if keelproc.group_pids(self.pgid):
            try:
                os.killpg(self.pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        for f in (self._out, self._err):
            try:
                if hasattr(f, "close"):
                    f.close()
            except OSError:
                pass
        if self in _live:
            _live.remove(self)
        if not os.environ.get("HARDENING_KEEP_LOGS"):
            shutil.rmtree(self.dir, ignore_errors=True)
        return self.proc.returncode

    @property
    def pgid(self) -> int:
        return self.pid


def wait_until(predicate, timeout: float, interval: float = 0.05):
    """Polls predicate until it returns a truthy value (returned) or timeout (returns the last)."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value


# --------------------------------------------------------------------------------------------
# Normal clients: steady pace, latency recorded
# --------------------------------------------------------------------------------------------

class Probe:
    """The "normal" clients of the slow-client and fault tests: GET target at a steady total
    rate, half of it on one keep-alive connection and half on a fresh connection per request.
    Every request is timed (from connect for fresh ones, from send for keep-alive) and checked
    (status 200, the expected body). Nothing is retried: any error is a failed request."""

    def __init__(self, port: int, rate: float = 40.0, target: str = "/plaintext",
                 expect: bytes | None = b"Hello, World!", timeout: float = 5.0):
        self.port = port
        self.interval = 2.0 / rate  # per thread
        self.target = target
        self.expect = expect
        self.timeout = timeout
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.latencies: list[float] = []  # seconds
        self.timeline: list[tuple[float, float]] = []  # (seconds since start, latency) of each success
        self.failures: list[str] = []
        self.started = self.ended = 0.0
        self.stalls: list[tuple[float, float]] = []  # (seconds since start, oversleep) of this process
        self.threads = [threading.Thread(target=self._run, args=(True,), daemon=True),
                        threading.Thread(target=self._run, args=(False,), daemon=True),
                        threading.Thread(target=self._watch_self, daemon=True)]

    def start(self) -> "Probe":
        self.started = time.monotonic()
        for t in self.threads:
            t.start()
        return self

    def stop(self) -> dict:
        self.stop_event.set()
        for t in self.threads:
            t.join(self.timeout + 2)
        self.ended = time.monotonic()
        return self.summary()

    def _watch_self(self) -> None:
        """Sleeps 5 ms over and over and records how late it wakes up: when the measuring client
        itself gets no CPU (a busy neighbour on a shared machine), its latencies say nothing
        about keel. The summary reports the worst oversleep next to the request latencies."""
        while not self.stop_event.is_set():
            t0 = time.perf_counter()
            time.sleep(0.005)
            late = time.perf_counter() - t0 - 0.005
            if late > 0.005:
                with self.lock:
                    self.stalls.append((time.monotonic() - self.started, late))

    def _check(self, resp: keelproc.Response) -> str | None:
        if resp.status != 200:
            return f"status {resp.status}: {resp!r}"
        if self.expect is not None and resp.body != self.expect:
            return f"body {resp.body[:100]!r}"
        return None

    def _run(self, keep_alive: bool) -> None:
        conn: Conn | None = None
        next_t = time.monotonic()
        n = 0
        while not self.stop_event.is_set():
            now = time.monotonic()
            if next_t > now:
                if self.stop_event.wait(next_t - now):
                    break
            elif now - next_t > self.interval:
                next_t = now  # behind schedule: no catch-up burst
            next_t += self.interval
            n += 1
            t0 = time.perf_counter()
            try:
                if keep_alive:
                    if conn is None:
                        conn = Conn(self.port, timeout=self.timeout)
                        t0 = time.perf_counter()  # reconnects are not part of the request
                    resp = conn.request("GET", self.target)
                    if resp.has_token("Connection", "close"):
                        conn.close()
                        conn = None
                else:
                    with Conn(self.port, timeout=self.timeout) as c:
                        resp = c.request("GET", self.target)
                elapsed = time.perf_counter() - t0
                problem = self._check(resp)
            except (OSError, ProtocolError) as e:
                elapsed = time.perf_counter() - t0
                problem = f"{type(e).__name__}: {e}"
                if conn is not None:
                    conn.close()
                    conn = None
            with self.lock:
                if problem is None:
                    self.latencies.append(elapsed)
                    self.timeline.append((time.monotonic() - self.started, elapsed))
                else:
                    kind = "keep-alive" if keep_alive else "fresh"
                    self.failures.append(f"{kind} request #{n} at +{time.monotonic() - self.started:.2f}s "
                                         f"after {elapsed * 1000:.0f} ms: {problem}")
        if conn is not None:
            conn.close()

    def summary(self) -> dict:
        with self.lock:
            lat = list(self.latencies)
            failures = len(self.failures)
        total = len(lat) + failures
        return {
            "requests": total,
            "failed": failures,
            "availability_pct": round(100.0 * len(lat) / total, 3) if total else 0.0,
            "p50_ms": round(percentile(lat, 50) * 1000, 2) if lat else None,
            "p99_ms": round(percentile(lat, 99) * 1000, 2) if lat else None,
            "max_ms": round(max(lat) * 1000, 2) if lat else None,
            "client_stall_max_ms": round(max((s for _, s in self.stalls), default=0.0) * 1000, 1),
        }


def tcp_server_sockets(port: int) -> tuple[int, int]:
    """(bytes queued in the kernel for sending, sockets in FIN-WAIT-1) over the server side of
    the connections to 127.0.0.1:port."""
    try:
        out = subprocess.run(["ss", "-tanH", f"sport = :{port}"], capture_output=True, text=True,
                             timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return 0, 0
    sendq = orphans = 0
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 3 or parts[0] == "LISTEN":
            continue
        sendq += int(parts[2])
        orphans += parts[0] == "FIN-WAIT-1"
    return sendq, orphans


class Sampler:
    """Samples RSS and open fds of the master and workers every interval seconds (peaks kept)."""

    def __init__(self, keel: Keel, interval: float = 0.5, sockets: bool = False):
        self.keel = keel
        self.interval = interval
        self.sockets = sockets  # also sample the server side's TCP sockets (ss): states, Send-Q
        self.peak_kernel_sendq = 0
        self.peak_orphans = 0  # FIN-WAIT-1: closed by keel, data still queued in the kernel
        self.stop_event = threading.Event()
        self.peak_worker_rss = 0
        self.peak_worker_fds = 0
        self.samples: list[tuple[float, dict, dict, dict]] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "Sampler":
        self.t0 = time.monotonic()
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(5)

    def _run(self) -> None:
        while not self.stop_event.is_set():
            workers = self.keel.workers()
            rss = {p: rss_bytes(p) for p in workers}
            fds = {p: fd_count(p) for p in workers}
            cpu = {p: cpu_seconds(p) for p in workers}
            self.samples.append((time.monotonic() - self.t0, rss, fds, cpu))
            if rss:
                self.peak_worker_rss = max(self.peak_worker_rss, max(rss.values()))
                self.peak_worker_fds = max(self.peak_worker_fds, max(fds.values()))
            if self.sockets:
                sendq, orphans = tcp_server_sockets(self.keel.port)
                self.peak_kernel_sendq = max(self.peak_kernel_sendq, sendq)
                self.peak_orphans = max(self.peak_orphans, orphans)
            self.stop_event.wait(self.interval)
