#!/usr/bin/python3
"""Memory of idle keep-alive connections: keel against nginx, side by side, loopback only.

    bench/idle_connections.py [CONNECTIONS]          default 3000

Starts one keel worker (keel-testapp, single process) and one nginx worker (../shared/peers'
configuration), opens CONNECTIONS keep-alive connections to each, sends one GET /plaintext on
every connection and reads the answer, then leaves them idle. Each server's resident memory
(VmRSS of the serving process) is read before and after; the difference divided by the number
of connections is the cost of an idle connection in user space (kernel socket memory is not in
RSS, for either server). Prints one line per server and the ratio; exits 1 when keel's cost is
above GOAL_BYTES (2048, issue 14's goal) unless GOAL_BYTES=0.

Environment: BENCH_KEEL_BIN (build/release/tests/keel-testapp, else build/debug/...), BENCH_KEEL_PORT
(18090), NGINX_PORT (18091), SHARED_PEERS (../shared/peers).
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEERS = Path(os.environ.get("SHARED_PEERS", ROOT.parent / "shared" / "peers"))
BENCH_KEEL_PORT = int(os.environ.get("BENCH_KEEL_PORT", "18090"))
NGINX_PORT = int(os.environ.get("NGINX_PORT", "18091"))
GOAL_BYTES = int(os.environ.get("GOAL_BYTES", "2048"))
REQUEST = b"GET /plaintext HTTP/1.1\r\nHost: bench\r\n\r\n"


def keel_binary() -> str:
    if os.environ.get("BENCH_KEEL_BIN"):
        return os.environ["BENCH_KEEL_BIN"]
    for preset in ("release", "debug"):
        p = ROOT / "build" / preset / "tests" / "keel-testapp"
        if p.is_file():
            return str(p)
    sys.exit("no keel-testapp built (cmake --build --preset release --target keel-testapp)")


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on {port} after {timeout}s")


def one_request(s: socket.socket) -> None:
    s.sendall(REQUEST)
    data = b""
    while b"Hello, World!" not in data:
        chunk = s.recv(4096)
        if not chunk:
            raise RuntimeError(f"connection closed early: {data!r}")
        data += chunk


def measure(name: str, port: int, pid: int, count: int) -> float:
    # Warm up: the serving process has handled requests and grown its working set.
    for _ in range(50):
        with socket.create_connection(("127.0.0.1", port)) as s:
            one_request(s)
    time.sleep(0.5)
    before = rss_bytes(pid)
    held = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port))
        one_request(s)
        held.append(s)
    time.sleep(1.0)  # idle now
    after = rss_bytes(pid)
    for s in held:
        s.close()
    per = (after - before) / count
    print(f"{name:6s} {count} idle keep-alive connections: RSS {before / 2**20:.1f} -> {after / 2**20:.1f} MiB, "
          f"{per:.0f} bytes each")
    return per


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 2 * count + 256)), hard))
    if shutil.which("nginx") is None:
        sys.exit("nginx is missing (../shared/peers/peers.sh install)")
    tmp = Path(tempfile.mkdtemp(prefix="keel-idle-"))
    procs: list[subprocess.Popen] = []
    try:
        conf = (PEERS / "nginx.conf.in").read_text()
        conf = conf.replace("@DIR@", str(tmp)).replace("@PORT@", str(NGINX_PORT)).replace("@WORKERS@", "1")
        conf = conf.replace("worker_connections 4096", f"worker_connections {count + 512}")
        (tmp / "nginx.conf").write_text(conf)
        nginx = subprocess.Popen(["nginx", "-e", str(tmp / "nginx.err"), "-c", str(tmp / "nginx.conf"),
                                  "-g", "daemon off;"], start_new_session=True)
        procs.append(nginx)
        keel = subprocess.Popen([keel_binary(), "--bind", f"127.0.0.1:{BENCH_KEEL_PORT}", "--workers", "1",
                                 "--keep-alive", "120s", "--worker-connections", str(count + 512),
                                 "--no-access-log", "--log-level", "warning"],
                                stdout=subprocess.DEVNULL, start_new_session=True)
        procs.append(keel)
        wait_port(NGINX_PORT)
        wait_port(BENCH_KEEL_PORT)
        nginx_workers = children(nginx.pid)
        if len(nginx_workers) != 1:
            sys.exit(f"expected one nginx worker, found {nginx_workers}")
        keel_cost = measure("keel", BENCH_KEEL_PORT, keel.pid, count)
        nginx_cost = measure("nginx", NGINX_PORT, nginx_workers[0], count)
        print(f"keel/nginx bytes per idle connection: {keel_cost / max(nginx_cost, 1):.2f}")
        if GOAL_BYTES and keel_cost > GOAL_BYTES:
            print(f"keel is above the goal of {GOAL_BYTES} bytes per idle connection", file=sys.stderr)
            return 1
        return 0
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
