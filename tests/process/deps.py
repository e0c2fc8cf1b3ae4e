"""Throw-away PostgreSQL and Redis servers on loopback for keel's process-level tests.

    with deps.Postgres() as pg, deps.Redis() as redis:
        ...  # pg.url == "postgresql://postgres@127.0.0.1:PORT/postgres", redis.url == "redis://127.0.0.1:PORT"
        pg.stop()    # the port now refuses connections
        pg.start()   # same data directory, same port

Each server listens only on 127.0.0.1 at a free port, keeps its files in its own temporary
directory (removed by close()), and is stopped at interpreter exit if a test forgot to (or
failed before it could). A missing server binary raises unittest.SkipTest.

PostgreSQL refuses to run as root: when this runs as root, the data directory belongs to the
`postgres` system user and initdb / pg_ctl / psql run through `runuser -u postgres --`.

Standard library only; run by Debian's /usr/bin/python3.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest
from pathlib import Path

START_TIMEOUT = 20.0   # seconds for a server to accept connections
STOP_TIMEOUT = 10.0    # seconds for a server to stop before it is killed
_POLL = 0.02


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

def free_port() -> int:
    """A loopback TCP port nothing listens on right now (bound once, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accepts(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """True when a TCP connect to host:port succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


_live: list = []   # servers not closed yet, closed by the atexit guard


@atexit.register
def _close_all() -> None:
    for server in list(_live):
        try:
            server.close()
        except Exception:  # pragma: no cover - best effort at interpreter exit
            pass


class _Server:
    """Shared shape: start(), stop(), close(), context manager, url, port."""

    port: int

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def accepts(self) -> bool:
        return accepts(self.port)


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------

def _postgres_bindir() -> Path:
    """$KEEL_PG_BINDIR, else the newest /usr/lib/postgresql/*/bin, else initdb on PATH."""
    candidates = []
    if os.environ.get("KEEL_PG_BINDIR"):
        candidates.append(Path(os.environ["KEEL_PG_BINDIR"]))
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    versions.sort(key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0, reverse=True)
    candidates += [Path(p) for p in versions]
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).parent)
    for bindir in candidates:
        if all(os.access(bindir / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "postgres")):
            return bindir
    raise unittest.SkipTest("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found")


class Postgres(_Server):
    """A PostgreSQL cluster in a temporary directory, listening on 127.0.0.1:port, trust auth."""

    def __init__(self, port: int | None = None):
        self.bindir = _postgres_bindir()
        self.port = port if port is not None else free_port()
        self.dir: Path | None = None          # temporary directory (data/, sock/, log)
        self.running = False
        self._as_postgres: list[str] = []
        if os.geteuid() == 0:
            try:
                self._pw = pwd.getpwnam("postgres")
            except KeyError:
                raise unittest.SkipTest("running as root and there is no `postgres` user to run PostgreSQL as")
            if not shutil.which("runuser"):
                raise unittest.SkipTest("running as root and runuser is missing")
            self._as_postgres = ["runuser", "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def data_dir(self) -> Path:
        assert self.dir is not None
        return self.dir / "data"

    @property
    def log_file(self) -> Path:
        assert self.dir is not None
        return self.dir / "postgres.log"

    def _run(self, args: list[str], timeout: float, check: bool = True) -> subprocess.CompletedProcess:
        env = dict(os.environ, LC_ALL="C", LANG="C", PGTZ="UTC")
        proc = subprocess.run(self._as_postgres + args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=timeout, env=env,
                              cwd=str(self.dir or "/"))
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed ({proc.returncode}):\n{proc.stdout}\n"
                               f"--- log:\n{_log_tail(self.log_file) if self.dir else ''}")
        return proc

    def _initdb(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="keel-pg-"))
        _live.append(self)
        os.chmod(self.dir, 0o700)
        if self._as_postgres:
            os.chown(self.dir, self._pw.pw_uid, self._pw.pw_gid)
        (self.dir / "sock").mkdir()
        if self._as_postgres:
            os.chown(self.dir / "sock", self._pw.pw_uid, self._pw.pw_gid)
        self._run([str(self.bindir / "initdb"), "-D", str(self.data_dir), "-A", "trust", "-U", "postgres",
                   "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"], timeout=120)
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write("\n# keel tests (tests/process/deps.py)\n"
                       "listen_addresses = '127.0.0.1'\n"
                       f"port = {self.port}\n"
                       f"unix_socket_directories = '{self.dir / 'sock'}'\n"
                       "fsync = off\n"
                       "synchronous_commit = off\n"
                       "full_page_writes = off\n"
                       "max_connections = 50\n"
                       "shared_buffers = 16MB\n")

    def start(self) -> None:
        """initdb on the first call, then start the server and wait until it accepts TCP."""
        if self.running:
            return
        if self.dir is None:
            self._initdb()
        if accepts(self.port):
            raise RuntimeError(f"port {self.port} is already taken")
        self._run([str(self.bindir / "pg_ctl"), "start", "-D", str(self.data_dir), "-l", str(self.log_file),
                   "-w", "-t", str(int(START_TIMEOUT))], timeout=START_TIMEOUT + 5)
        self.running = True
        deadline = time.monotonic() + START_TIMEOUT
        while not accepts(self.port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL does not accept on port {self.port}:\n{_log_tail(self.log_file)}")
            time.sleep(_POLL)

    def stop(self) -> None:
        """Fast shutdown (bounded); the data directory is kept for the next start()."""
        if not self.running or self.dir is None:
            return
        pg_ctl = str(self.bindir / "pg_ctl")
        try:
            done = self._run([pg_ctl, "stop", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", str(int(STOP_TIMEOUT))],
                             timeout=STOP_TIMEOUT + 5, check=False).returncode == 0
        except subprocess.TimeoutExpired:
            done = False
        if not done:
            self._kill_postmaster()
        self.running = False

    def _kill_postmaster(self) -> None:
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
            os.kill(pid, signal.SIGKILL)   # the children exit when the postmaster is gone
        except (OSError, ValueError, IndexError):
            pass

    def close(self) -> None:
        """Stop and remove the temporary directory."""
        try:
            self.stop()
        finally:
            if self.dir is not None:
                shutil.rmtree(self.dir, ignore_errors=True)
                self.dir = None
            if self in _live:
                _live.remove(self)

    def psql(self, sql: str, db: str = "postgres", timeout: float = 10.0) -> str:
        """Runs sql with psql over TCP; returns the unaligned, tuples-only output. Raises on error."""
        proc = self._run([str(self.bindir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                          "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", db, "-c", sql],
                         timeout=timeout)
        return proc.stdout.strip()


# --------------------------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------------------------

class Redis(_Server):
    """redis-server in the foreground on 127.0.0.1:port, nothing persisted. With password, the
    server requires AUTH and url carries it (redis://:password@127.0.0.1:port)."""

    def __init__(self, port: int | None = None, password: str | None = None):
        binary = shutil.which("redis-server", path=os.environ.get("PATH", "") + ":/usr/bin:/usr/sbin")
        if not binary:
            raise unittest.SkipTest("redis-server not found")
        self.binary = binary
        self.port = port if port is not None else free_port()
        self.password = password
        self.dir: Path | None = None
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def log_file(self) -> Path:
        assert self.dir is not None
        return self.dir / "redis.log"

    def start(self) -> None:
        """Starts redis-server and waits until it answers PING."""
        if self.running:
            return
        if self.dir is None:
            self.dir = Path(tempfile.mkdtemp(prefix="keel-redis-"))
            _live.append(self)
        if accepts(self.port):
            raise RuntimeError(f"port {self.port} is already taken")
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--daemonize", "no", "--dir", str(self.dir), "--logfile", ""]
        if self.password:
            args += ["--requirepass", self.password]
        with open(self.log_file, "ab") as log:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while not self.ping():
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited ({self.proc.returncode}):\n{_log_tail(self.log_file)}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server does not answer on port {self.port}:\n{_log_tail(self.log_file)}")
            time.sleep(_POLL)

    def ping(self, timeout: float = 1.0) -> bool:
        """True when the server answers PING with PONG (authenticating first if needed)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
                request = b""
                if self.password:
                    pw = self.password.encode()
                    request = b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(pw), pw)
                s.sendall(request + b"PING\r\n")
                lines = 2 if self.password else 1
                answer = b""
                while answer.count(b"\r\n") < lines:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    answer += chunk
                return answer.endswith(b"+PONG\r\n")
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def close(self) -> None:
        try:
            self.stop()
        finally:
            if self.dir is not None:
                shutil.rmtree(self.dir, ignore_errors=True)
                self.dir = None
            if self in _live:
                _live.remove(self)
