"""Shared helpers for keel's process-level tests.

Starts the real server binaries (keel-testapp, keel-demo) on 127.0.0.1 with an ephemeral port,
drains their output in background threads, and talks to them over raw loopback sockets (the
tests need to send malformed and oddly split requests that http.client refuses to produce).

Standard library only; run by Debian's /usr/bin/python3 with `python3 -m unittest`.
"""

from __future__ import annotations

import atexit
import email.utils
import json
import os
import re
import select
import signal
import socket
import subprocess
import threading
import time
import unittest
from datetime import datetime, timezone
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 10.0     # seconds to wait for the "listening" log line
STOP_TIMEOUT = 10.0      # seconds between SIGTERM and SIGKILL
DEFAULT_TIMEOUT = 5.0    # default timeout of every socket operation


# --------------------------------------------------------------------------------------------
# Locating the binaries
# --------------------------------------------------------------------------------------------

def _find_binary(env_var: str, relative: str) -> str:
    value = os.environ.get(env_var)
    if value:
        return value
    for preset in ("debug", "release", "asan", "clang"):
        candidate = REPO_ROOT / "build" / preset / relative
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise unittest.SkipTest(f"{env_var} is not set and no built {relative} was found")


def testapp() -> str:
    """Path of keel-testapp ($KEELTEST_APP, else build/<preset>/tests/keel-testapp)."""
    return _find_binary("KEELTEST_APP", "tests/keel-testapp")


def demo() -> str:
    """Path of keel-demo ($KEELTEST_DEMO, else build/<preset>/apps/demo/keel-demo)."""
    return _find_binary("KEELTEST_DEMO", "apps/demo/keel-demo")


# --------------------------------------------------------------------------------------------
# /proc helpers
# --------------------------------------------------------------------------------------------

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def read_stat(pid: int):
    """(state, pgrp, utime+stime seconds) of a process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    rest = data[data.rfind(")") + 2:].split()
    state, pgrp = rest[0], int(rest[2])
    utime, stime = int(rest[11]), int(rest[12])
    return state, pgrp, (utime + stime) / _CLK_TCK


def group_pids(pgid: int, include_zombies: bool = False) -> list[int]:
    """Pids of the processes of a process group (zombies excluded unless asked)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        st = read_stat(int(entry))
        if st is None or st[1] != pgid:
            continue
        if st[0] == "Z" and not include_zombies:
            continue
        pids.append(int(entry))
    return pids


def child_pids(ppid: int, include_zombies: bool = False) -> list[int]:
    """Pids of the direct children of a process (zombies excluded unless asked), sorted."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                data = f.read().decode("ascii", "replace")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        rest = data[data.rfind(")") + 2:].split()
        if int(rest[1]) != ppid:
            continue
        if rest[0] == "Z" and not include_zombies:
            continue
        pids.append(int(entry))
    return sorted(pids)


def group_cpu_seconds(pgid: int) -> float:
    """utime+stime (all threads) summed over the live processes of a process group."""
    total = 0.0
    for pid in group_pids(pgid):
        st = read_stat(pid)
        if st is not None:
            total += st[2]
    return total


# --------------------------------------------------------------------------------------------
# Server processes
# --------------------------------------------------------------------------------------------

_live_servers: list["Server"] = []


@atexit.register
def _stop_all_servers() -> None:
    for server in list(_live_servers):
        try:
            server.stop(timeout=2.0)
        except Exception:  # pragma: no cover - best effort at interpreter exit
            pass


class ServerStartError(RuntimeError):
    pass


class Server:
    """A running server process (own process group) whose output is drained in the background."""

    def __init__(self, args: list[str], preexec_fn=None, env=None, pass_fds=(), cwd=None):
        self.args = args
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []
        self.listening: list[str] = []  # "address" of every "listening" event, in order
        self.port: int | None = None
        self.returncode: int | None = None
        self._cond = threading.Condition()
        self._stopped = False
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # own process group: stop() can reach every worker
            preexec_fn=preexec_fn,
            env=server_env(env),
            pass_fds=pass_fds,
            cwd=cwd,
        )
        self.pid = self.proc.pid
        self.pgid = self.proc.pid
        _live_servers.append(self)
        self._threads = [
            threading.Thread(target=self._drain, args=(self.proc.stdout, self.stdout_lines, True), daemon=True),
            threading.Thread(target=self._drain, args=(self.proc.stderr, self.stderr_lines, False), daemon=True),
        ]
        for t in self._threads:
            t.start()

    # -- output ------------------------------------------------------------------------------

    def _drain(self, pipe, sink: list[str], is_stdout: bool) -> None:
        try:
            for raw in iter(pipe.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                with self._cond:
                    sink.append(line)
                    if is_stdout:
                        event = parse_log_line(line)
                        if event is not None and event.get("event") == "listening" and "address" in event:
                            self.listening.append(str(event["address"]))
                    self._cond.notify_all()
        except (OSError, ValueError):
            pass
        finally:
            with self._cond:
                self._cond.notify_all()

    def wait_listening(self, count: int = 1, timeout: float = START_TIMEOUT, expect_port: bool = True) -> None:
        """Waits for count "listening" log lines; sets .port from the first one (unless
        expect_port is False: a unix: address has no port, .port is then None)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.listening) < count:
                if self.proc.poll() is not None:
                    # Give the drain threads a moment to collect the last words.
                    self._cond.wait(0.2)
                    raise ServerStartError(
                        f"server exited with {self.proc.returncode} before listening\n{self.output_tail()}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ServerStartError(f"no 'listening' log line within {timeout}s\n{self.output_tail()}")
                self._cond.wait(min(remaining, 0.1))
        if expect_port:
            self.port = port_of(self.listening[0])

    def wait_for_stdout(self, predicate, timeout: float = 5.0):
        """Waits for a stdout line whose parsed JSON object satisfies predicate; returns it."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                while seen < len(self.stdout_lines):
                    event = parse_log_line(self.stdout_lines[seen])
                    seen += 1
                    if event is not None and predicate(event):
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(min(remaining, 0.1))

    def output_tail(self, lines: int = 30) -> str:
        with self._cond:
            out = self.stdout_lines[-lines:]
            err = self.stderr_lines[-lines:]
        return ("--- server command: " + " ".join(self.args) + "\n--- stdout (tail):\n" + "\n".join(out) +
                "\n--- stderr (tail):\n" + "\n".join(err))

    def stderr_text(self) -> str:
        with self._cond:
            return "\n".join(self.stderr_lines)

    def stdout_snapshot(self) -> list[str]:
        with self._cond:
            return list(self.stdout_lines)

    # -- lifecycle ---------------------------------------------------------------------------

    def alive(self) -> bool:
        return self.proc.poll() is None

    def group_alive(self) -> bool:
        return bool(group_pids(self.pgid))

    def cpu_seconds(self) -> float:
        return group_cpu_seconds(self.pgid)

    def send_signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, sig)

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill_group(self) -> None:
        try:
            os.killpg(self.pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, timeout: float = STOP_TIMEOUT, sig: int = signal.SIGTERM) -> int:
        """SIGTERM, wait up to timeout, then SIGKILL the whole process group. Idempotent."""
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill_group()
                self.proc.wait(5)
        # No leftovers: workers that outlived their master are killed too.
        if group_pids(self.pgid):
            self.kill_group()
        for t in self._threads:
            t.join(2.0)
        for pipe in (self.proc.stdout, self.proc.stderr):
            try:
                pipe.close()
            except OSError:
                pass
        self.returncode = self.proc.returncode
        if self in _live_servers:
            _live_servers.remove(self)
        return self.returncode


def parse_log_line(line: str):
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def port_of(address: str) -> int:
    m = re.search(r":(\d+)/?$", address)
    if not m:
        raise ServerStartError(f"cannot find a port in listening address {address!r}")
    return int(m.group(1))


# Prefixes of the variables a keel binary reads as configuration: keel's own, keel-demo's APP_ and
# keel-testapp's (its prefix comes from its name, KEEL_TESTAPP_ being covered by KEEL_).
CONFIG_PREFIXES = ("KEEL_", "APP_")


def server_env(env=None) -> dict:
    """The environment a server under test gets: the caller's (os.environ when env is None)
    without the KEEL_* / APP_* variables of whoever runs the tests (TEST_PRESETS used to be
    KEEL_TEST_PRESETS; a developer's shell may export KEEL_WORKERS). Such a variable stays when the
    test set it: present in env with another value than in os.environ, or absent from os.environ."""
    env = dict(os.environ if env is None else env)
    for name in [k for k in env if k.startswith(CONFIG_PREFIXES)]:
        if os.environ.get(name) == env[name]:
            del env[name]
    return env


_demo_dir: str | None = None


def demo_env(binary: str, env):
    """keel-demo requires a secret key and writes a SQLite file: unless the caller decides, give
    it a test secret and a database in a temporary directory (never in the source tree)."""
    global _demo_dir
    if os.path.basename(binary) != "keel-demo":
        return env
    env = dict(os.environ if env is None else env)
    if "SECRET_KEY" not in env and "SECRET_KEY_FILE" not in env:
        env["SECRET_KEY"] = "test-secret-key-0123456789"
    if "DATABASE_URL" not in env:
        if _demo_dir is None:
            import tempfile
            _demo_dir = tempfile.mkdtemp(prefix="keel-demo-test-")
            atexit.register(lambda: __import__("shutil").rmtree(_demo_dir, True))
        env["DATABASE_URL"] = f"sqlite:{_demo_dir}/demo.db"
    return env


def start(binary: str, *flags: str, bind: str | None = "127.0.0.1:0", preexec_fn=None, env=None,
          wrapper: list[str] | None = None, listening: int = 1, timeout: float = START_TIMEOUT,
          pass_fds=(), expect_port: bool = True, pin_workers: bool = True, cwd=None) -> Server:
    """Starts binary with flags (plus --bind 127.0.0.1:0 unless bind is None or flags bind),
    waits for the "listening" log line and returns the Server (.port, .proc). pass_fds: extra
    descriptors the server inherits; expect_port=False when the first address is unix:."""
    args = list(wrapper or []) + [binary]
    if bind is not None and "--bind" not in flags:
        args += ["--bind", bind]
    # keel's default is one worker per CPU; tests pin the count so they mean the same everywhere.
    if pin_workers and "--workers" not in flags and "-w" not in flags and not (env and "WEB_CONCURRENCY" in env):
        args += ["--workers", "1"]
    args += list(flags)
    env = demo_env(binary, env)
    server = Server(args, preexec_fn=preexec_fn, env=env, pass_fds=pass_fds, cwd=cwd)
    try:
        server.wait_listening(count=listening, timeout=timeout, expect_port=expect_port)
    except BaseException:
        server.stop(timeout=2.0)
        raise
    return server


def run_cli(binary: str, *flags: str, timeout: float = 10.0, env=None, pass_fds=(), cwd=None):
    """Runs the binary expecting it to exit by itself (bad flags). Returns (rc, stdout, stderr);
    rc is None if it had to be killed after timeout."""
    env = demo_env(binary, env)
    proc = subprocess.Popen([binary, *flags], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True, env=server_env(env), pass_fds=pass_fds,
                            cwd=cwd)
    try:
        out, err = proc.communicate(timeout=timeout)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate(timeout=5)
        rc = None
    finally:
        if group_pids(proc.pid):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return rc, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


# --------------------------------------------------------------------------------------------
# Raw HTTP/1.1 over sockets
# --------------------------------------------------------------------------------------------

class ProtocolError(Exception):
    pass


def build_request(method: str, target: str, headers=None, body: bytes | str | None = None,
                  version: str = "HTTP/1.1", host: str | None = "127.0.0.1") -> bytes:
    """Serialises a request. Adds Host (unless host is None or given) and Content-Length for a
    body (unless Content-Length or Transfer-Encoding is given). headers: dict or list of pairs."""
    if isinstance(body, str):
        body = body.encode()
    pairs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    names = {k.lower() for k, _ in pairs}
    if host is not None and "host" not in names:
        pairs.insert(0, ("Host", host))
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        pairs.append(("Content-Length", str(len(body))))
    head = f"{method} {target} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in pairs) + "\r\n"
    return head.encode("latin-1") + (body or b"")


def chunked(*chunks: bytes | str, trailers=None, extensions=None) -> bytes:
    """Chunked transfer coding of the given chunks, optional per-chunk extension strings
    (";name=value") and trailer fields."""
    out = b""
    for i, c in enumerate(chunks):
        if isinstance(c, str):
            c = c.encode()
        ext = (extensions[i] if extensions and i < len(extensions) else "") or ""
        out += f"{len(c):x}{ext}\r\n".encode() + c + b"\r\n"
    out += b"0\r\n"
    for k, v in (trailers.items() if isinstance(trailers, dict) else (trailers or [])):
        out += f"{k}: {v}\r\n".encode()
    return out + b"\r\n"


class Response:
    def __init__(self, version: str, status: int, reason: str, headers: list[tuple[str, str]],
                 raw_head: bytes):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers
        self.raw_head = raw_head
        self.body = b""
        self.raw_body = b""
        self.chunked = False
        self.chunks: list[bytes] = []
        self.trailers: list[tuple[str, str]] = []
        self.closed_after = False  # the body was delimited by connection close

    @property
    def raw(self) -> bytes:
        return self.raw_head + self.raw_body

    def header(self, name: str, default: str | None = None) -> str | None:
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def header_all(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def has_token(self, name: str, token: str) -> bool:
        """Whether a comma-separated header (Connection, Allow, ...) contains token."""
        token = token.lower()
        return any(t.strip().lower() == token for v in self.header_all(name) for t in v.split(","))

    def tokens(self, name: str) -> set[str]:
        return {t.strip().upper() for v in self.header_all(name) for t in v.split(",") if t.strip()}

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def __repr__(self) -> str:
        body = self.body if len(self.body) <= 200 else self.body[:200] + b"..."
        return f"<Response {self.status} {self.reason!r} headers={self.headers!r} body={body!r}>"


class Conn:
    """A client connection with a read buffer, so pipelined responses can be read one by one."""

    def __init__(self, port: int, timeout: float = DEFAULT_TIMEOUT, host: str = "127.0.0.1",
                 sock: socket.socket | None = None):
        self.timeout = timeout
        if sock is None:
            sock = socket.create_connection((host, port), timeout=timeout)
        sock.settimeout(timeout)
        self.sock = sock
        self.buf = b""
        self.eof = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def fileno(self) -> int:
        return self.sock.fileno()

    # -- sending -----------------------------------------------------------------------------

    def send(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def send_slowly(self, data: bytes, piece: int = 1, delay: float = 0.005) -> None:
        for i in range(0, len(data), piece):
            self.sock.sendall(data[i:i + piece])
            time.sleep(delay)

    def request(self, method: str, target: str, headers=None, body=None, version: str = "HTTP/1.1",
                host: str | None = "127.0.0.1") -> Response:
        self.send(build_request(method, target, headers, body, version, host))
        return self.read_response(method=method)

    def get(self, target: str, headers=None) -> Response:
        return self.request("GET", target, headers)

    # -- receiving ---------------------------------------------------------------------------

    def _fill(self, deadline: float) -> bool:
        """Reads more bytes into buf. False at EOF. Raises socket.timeout past deadline."""
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("read deadline passed")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        finally:
            self.sock.settimeout(self.timeout)
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _deadline(self, timeout: float | None) -> float:
        return time.monotonic() + (self.timeout if timeout is None else timeout)

    def read_until(self, delim: bytes, timeout: float | None = None, limit: int = 1 << 20) -> bytes:
        deadline = self._deadline(timeout)
        start = 0
        while True:
            i = self.buf.find(delim, start)
            if i >= 0:
                out, self.buf = self.buf[:i + len(delim)], self.buf[i + len(delim):]
                return out
            start = max(0, len(self.buf) - len(delim) + 1)
            if len(self.buf) > limit:
                raise ProtocolError(f"no {delim!r} within {limit} bytes")
            if not self._fill(deadline):
                raise ProtocolError(f"connection closed before {delim!r}; got {self.buf[:300]!r}")

    def read_exact(self, n: int, timeout: float | None = None) -> bytes:
        deadline = self._deadline(timeout)
        while len(self.buf) < n:
            if not self._fill(deadline):
                raise ProtocolError(f"connection closed after {len(self.buf)} of {n} bytes")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_to_eof(self, timeout: float | None = None) -> bytes:
        deadline = self._deadline(timeout)
        while self._fill(deadline):
            pass
        out, self.buf = self.buf, b""
        return out

    def read_status_line(self, timeout: float | None = None) -> tuple[str, int, str]:
        """Reads just the status line (the rest stays buffered)."""
        line = self.read_until(b"\r\n", timeout).decode("latin-1")
        return parse_status_line(line)

    def read_head(self, timeout: float | None = None) -> Response:
        raw = self.read_until(b"\r\n\r\n", timeout)
        lines = raw[:-4].decode("latin-1").split("\r\n")
        version, status, reason = parse_status_line(lines[0])
        headers = []
        for line in lines[1:]:
            if ":" not in line or line[:1] in (" ", "\t"):
                raise ProtocolError(f"malformed response header line {line!r} in {raw!r}")
            name, value = line.split(":", 1)
            if not name or name != name.strip():
                raise ProtocolError(f"malformed response header name {name!r}")
            headers.append((name, value.strip(" \t")))
        return Response(version, status, reason, headers, raw)

    def read_response(self, method: str = "GET", timeout: float | None = None) -> Response:
        """Reads one complete response (1xx interim responses are returned as they come)."""
        deadline = self._deadline(timeout)
        resp = self.read_head(max(0.001, deadline - time.monotonic()))
        if 100 <= resp.status < 200 or resp.status in (204, 304) or method.upper() == "HEAD":
            return resp
        te = resp.header("Transfer-Encoding")
        if te is not None:
            codings = [t.strip().lower() for t in te.split(",")]
            if codings[-1] != "chunked":
                raise ProtocolError(f"unexpected Transfer-Encoding {te!r}")
            resp.chunked = True
            self._read_chunked(resp, deadline)
        elif resp.header("Content-Length") is not None:
            values = {v.strip() for v in resp.header_all("Content-Length")}
            if len(values) != 1 or not next(iter(values)).isdigit():
                raise ProtocolError(f"bad Content-Length {resp.header_all('Content-Length')!r}")
            n = int(next(iter(values)))
            resp.body = resp.raw_body = self.read_exact(n, max(0.001, deadline - time.monotonic()))
        else:
            resp.body = resp.raw_body = self.read_to_eof(max(0.001, deadline - time.monotonic()))
            resp.closed_after = True
        return resp

    def _read_chunked(self, resp: Response, deadline: float) -> None:
        raw = b""
        body = []
        while True:
            line = self.read_until(b"\r\n", max(0.001, deadline - time.monotonic()))
            raw += line
            size_text = line[:-2].split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size line {line!r}") from None
            if size == 0:
                break
            data = self.read_exact(size + 2, max(0.001, deadline - time.monotonic()))
            if data[-2:] != b"\r\n":
                raise ProtocolError(f"chunk data not followed by CRLF: {data[-10:]!r}")
            raw += data
            body.append(data[:-2])
        while True:  # trailer section
            line = self.read_until(b"\r\n", max(0.001, deadline - time.monotonic()))
            raw += line
            if line == b"\r\n":
                break
            name, _, value = line[:-2].decode("latin-1").partition(":")
            resp.trailers.append((name, value.strip()))
        resp.chunks = body
        resp.body = b"".join(body)
        resp.raw_body = raw

    def wait_closed(self, timeout: float = 3.0) -> str:
        """Waits for the server to close: returns "eof" (recv returned b""), "reset"
        (ECONNRESET), "timeout", or "data" (unexpected bytes arrived; they are kept in .extra)."""
        self.extra = b""
        if self.buf:
            self.extra, self.buf = self.buf, b""
            return "data"
        if self.eof:
            return "eof"
        deadline = time.monotonic() + timeout
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return "timeout"
                self.sock.settimeout(remaining)
                data = self.sock.recv(65536)
                if not data:
                    self.eof = True
                    return "eof"
                self.extra += data
                return "data"
        except socket.timeout:
            return "timeout"
        except ConnectionResetError:
            return "reset"
        finally:
            try:
                self.sock.settimeout(self.timeout)
            except OSError:
                pass

    def readable_within(self, timeout: float) -> bool:
        if self.buf:
            return True
        r, _, _ = select.select([self.sock], [], [], timeout)
        return bool(r)


def parse_status_line(line: str) -> tuple[str, int, str]:
    m = re.match(r"^(HTTP/\d\.\d) (\d{3}) ?(.*)$", line.rstrip("\r\n"))
    if not m:
        raise ProtocolError(f"malformed status line {line!r}")
    return m.group(1), int(m.group(2)), m.group(3)


def get(port: int, target: str, headers=None, timeout: float = DEFAULT_TIMEOUT, method: str = "GET",
        body=None) -> Response:
    """One request on a fresh connection (closed afterwards)."""
    with Conn(port, timeout=timeout) as c:
        return c.request(method, target, headers, body)


def connect_raw(port: int, timeout: float = DEFAULT_TIMEOUT) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.settimeout(timeout)
    return s


def set_linger_rst(sock: socket.socket) -> None:
    """close() will then send RST instead of FIN."""
    import struct
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


# --------------------------------------------------------------------------------------------
# Assertions
# --------------------------------------------------------------------------------------------

_IMF_FIXDATE = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d{2}) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"(\d{4}) (\d{2}):(\d{2}):(\d{2}) GMT$")


class KeelTestCase(unittest.TestCase):
    """TestCase with server lifecycle and HTTP assertions."""

    maxDiff = 4000

    def start_server(self, *flags, binary: str | None = None, **kwargs) -> Server:
        server = start(binary or testapp(), *flags, **kwargs)
        self.addCleanup(server.stop)
        return server

    @classmethod
    def start_class_server(cls, *flags, binary: str | None = None, **kwargs) -> Server:
        server = start(binary or testapp(), *flags, **kwargs)
        cls.addClassCleanup(server.stop)
        return server

    def assertStatus(self, resp: Response, status: int, server: Server | None = None) -> None:
        if resp.status != status:
            msg = f"expected status {status}, got {resp!r}"
            if server is not None:
                msg += "\n" + server.output_tail(10)
            self.fail(msg)

    def assertUserId(self, resp: Response, user_id: int) -> None:
        """A GET /users/{id:int} response for this id."""
        self.assertStatus(resp, 200)
        try:
            doc = resp.json()
        except ValueError as e:
            self.fail(f"/users/{user_id}: body is not JSON ({e}): {resp!r}")
        self.assertEqual(doc, {"id": user_id, "route": "/users/{id:int}"}, f"response for /users/{user_id} out of order?")

    def assertProblem(self, resp: Response, status: int, close: bool = True) -> dict:
        """An RFC 9457 problem response: status, application/problem+json body with "status"
        and (for framing errors) Connection: close."""
        self.assertStatus(resp, status)
        ctype = resp.header("Content-Type", "")
        self.assertTrue(ctype.lower().startswith("application/problem+json"),
                        f"Content-Type {ctype!r} is not application/problem+json: {resp!r}")
        try:
            doc = resp.json()
        except ValueError as e:
            self.fail(f"problem body is not JSON ({e}): {resp!r}")
        self.assertIsInstance(doc, dict, resp)
        self.assertEqual(doc.get("status"), status, f"problem body: {doc!r}")
        if close:
            self.assertTrue(resp.has_token("Connection", "close"),
                            f"error response lacks Connection: close: {resp!r}")
        return doc

    def assertClosedByServer(self, conn: Conn, timeout: float = 3.0, allow_reset: bool = False) -> None:
        """The server closes the connection: recv returns b"" (or, if allow_reset, the peer reset
        it because bytes the client sent were never read)."""
        state = conn.wait_closed(timeout)
        allowed = ("eof", "reset") if allow_reset else ("eof",)
        if state not in allowed:
            detail = f" (extra bytes: {conn.extra[:300]!r})" if state == "data" else ""
            self.fail(f"expected the server to close the connection ({'/'.join(allowed)}), got {state}{detail}")

    def assertImfFixdate(self, value: str | None) -> None:
        self.assertIsNotNone(value, "missing Date header")
        m = _IMF_FIXDATE.match(value)
        self.assertIsNotNone(m, f"Date {value!r} is not an RFC 7231 IMF-fixdate")
        when = email.utils.parsedate_to_datetime(value)
        self.assertEqual(when.strftime("%a"), m.group(1), f"wrong weekday in Date {value!r}")
        now = datetime.now(timezone.utc)
        self.assertLess(abs((now - when).total_seconds()), 5.0, f"Date {value!r} is not now ({now})")
