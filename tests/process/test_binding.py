"""Where the server listens and how it talks to its service manager: unix: sockets (permissions,
stale files, refusing to clobber files and live servers, removal on exit), inherited descriptors
(--bind fd://N), systemd socket activation (LISTEN_PID/LISTEN_FDS), the sd_notify protocol
(READY/RELOADING/STOPPING/WATCHDOG, path and abstract NOTIFY_SOCKET), and the signals that must
not stop the service (SIGUSR1, SIGUSR2)."""

import os
import shutil
import signal
import socket
import stat
import tempfile
import threading
import time
import unittest
import uuid

import keelproc
from keelproc import Conn, KeelTestCase

# Variables a service manager may have left in our own environment: never leak them to keel.
MANAGER_VARS = ("NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "WATCHDOG_USEC", "WATCHDOG_PID",
                "WEB_CONCURRENCY")

EX_CONFIG = 78     # bad command line
EX_BIND = 3        # runtime failure to listen
CLI_TIMEOUT = 5.0  # a server that should refuse to start but serves instead is killed after this


def server_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in MANAGER_VARS}
    env.update(extra)
    return env


def unix_conn(path: str, timeout: float = 5.0) -> Conn:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
    except OSError:
        s.close()
        raise
    return Conn(0, timeout=timeout, sock=s)


def unix_get(path: str, target: str = "/plaintext") -> keelproc.Response:
    with unix_conn(path) as c:
        return c.get(target)


def events(server: keelproc.Server, name: str) -> list[dict]:
    out = []
    for line in server.stdout_snapshot():
        e = keelproc.parse_log_line(line)
        if e is not None and e.get("event") == name:
            out.append(e)
    return out


class BindingTestCase(KeelTestCase):
    def tmpdir(self) -> str:
        d = tempfile.mkdtemp(prefix="keel-bind-")
        self.addCleanup(shutil.rmtree, d, True)
        return d

    def start_keel(self, *flags, **kwargs) -> keelproc.Server:
        kwargs.setdefault("env", server_env())
        return self.start_server(*flags, **kwargs)

    def run_keel(self, *flags, **kwargs):
        kwargs.setdefault("env", server_env())
        kwargs.setdefault("timeout", CLI_TIMEOUT)
        return keelproc.run_cli(keelproc.testapp(), *flags, **kwargs)

    def wait_event(self, server: keelproc.Server, name: str, timeout: float = 5.0) -> dict:
        e = server.wait_for_stdout(lambda ev: ev.get("event") == name, timeout=timeout)
        self.assertIsNotNone(e, f"no {name!r} log line within {timeout}s\n{server.output_tail()}")
        return e

    def assertStopsCleanly(self, server: keelproc.Server) -> None:
        server.send_signal(signal.SIGTERM)
        rc = server.wait(10)
        self.assertEqual(rc, 0, f"exit code after SIGTERM\n{server.output_tail()}")

    def assertExit(self, result, code: int, *needles: str) -> str:
        rc, out, err = result
        text = out + "\n" + err
        self.assertIsNotNone(rc, f"the server kept running instead of exiting with {code}\n{text}")
        self.assertEqual(rc, code, f"exit code\nstdout: {out}\nstderr: {err}")
        for needle in needles:
            self.assertIn(needle, text, f"the message does not mention {needle!r}\nstdout: {out}\nstderr: {err}")
        return text


# --------------------------------------------------------------------------------------------
# unix: sockets
# --------------------------------------------------------------------------------------------

class UnixSocketTest(BindingTestCase):
    def check_unix_server(self, *flags, mode: int = 0o660) -> None:
        path = os.path.join(self.tmpdir(), "keel.sock")
        server = self.start_keel("--bind", f"unix:{path}", *flags, expect_port=False)
        self.assertEqual(server.listening, [f"unix:{path}"], server.output_tail())
        st = os.lstat(path)
        self.assertTrue(stat.S_ISSOCK(st.st_mode), f"{path} is not a socket: {st}")
        self.assertEqual(stat.S_IMODE(st.st_mode), mode,
                         f"socket mode {oct(stat.S_IMODE(st.st_mode))}, expected {oct(mode)}")
        # Two requests on one keep-alive connection.
        with unix_conn(path) as c:
            for _ in range(2):
                resp = c.get("/plaintext")
                self.assertStatus(resp, 200, server)
                self.assertEqual(resp.body, b"Hello, World!")
                self.assertFalse(resp.has_token("Connection", "close"), resp)
        # Fresh connections too (with several workers, any of them may answer).
        for _ in range(4):
            self.assertEqual(unix_get(path).body, b"Hello, World!")
        self.assertStopsCleanly(server)
        self.assertFalse(os.path.lexists(path), f"socket file {path} left behind after SIGTERM")

    def test_unix_socket_default_mode(self):
        self.check_unix_server()

    def test_unix_socket_mode_flag(self):
        self.check_unix_server("--unix-socket-mode", "0600", mode=0o600)

    @unittest.skipUnless(shutil.which("strace"), "needs strace")
    def test_unix_socket_mode_is_set_by_the_umask_not_by_a_chmod_after_bind(self):
        # A chmod after bind leaves the socket with the process umask's mode (0755 under 022) for a
        # moment; created under the right umask it never has a wider mode.
        d = self.tmpdir()
        path = os.path.join(d, "keel.sock")
        trace = os.path.join(d, "strace.out")
        server = self.start_keel("--bind", f"unix:{path}", "--unix-socket-mode", "0600", expect_port=False,
                                 wrapper=["strace", "-f", "-qq", "-o", trace, "-e", "trace=umask,bind,chmod,fchmodat"])
        server.stop()
        with open(trace) as f:
            calls = [line for line in f if path in line or "umask(" in line]
        binds = [i for i, line in enumerate(calls) if "bind(" in line and path in line]
        self.assertEqual(len(binds), 1, calls)
        umasks = [line for line in calls[:binds[0]] if "umask(" in line]
        self.assertTrue(umasks and "umask(0177)" in umasks[-1], calls)
        self.assertEqual([line for line in calls if "chmod" in line], [], "the socket was chmod-ed after bind")

    def test_unix_socket_with_workers(self):
        self.check_unix_server("--workers", "2")

    def test_unix_and_tcp_binds(self):
        path = os.path.join(self.tmpdir(), "keel.sock")
        server = self.start_keel("--bind", "127.0.0.1:0", "--bind", f"unix:{path}", listening=2)
        self.assertEqual(server.listening[1], f"unix:{path}", server.listening)
        self.assertEqual(keelproc.get(server.port, "/plaintext").body, b"Hello, World!")
        self.assertEqual(unix_get(path).body, b"Hello, World!")
        self.assertStopsCleanly(server)
        self.assertFalse(os.path.lexists(path), f"socket file {path} left behind after SIGTERM")

    def test_stale_socket_file_is_replaced(self):
        path = os.path.join(self.tmpdir(), "keel.sock")
        dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        dead.bind(path)
        dead.listen(1)
        dead.close()  # the file stays, nobody listens: what a crashed server leaves behind
        self.assertTrue(stat.S_ISSOCK(os.lstat(path).st_mode))
        server = self.start_keel("--bind", f"unix:{path}", expect_port=False)
        self.assertEqual(unix_get(path).body, b"Hello, World!")
        self.assertStopsCleanly(server)

    def test_regular_file_is_not_clobbered(self):
        path = os.path.join(self.tmpdir(), "keel.sock")
        with open(path, "wb") as f:
            f.write(b"precious data\n")
        text = self.assertExit(self.run_keel("--bind", f"unix:{path}"), EX_BIND, path, "not a socket")
        self.assertTrue(stat.S_ISREG(os.lstat(path).st_mode), f"{path} is no longer a regular file\n{text}")
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"precious data\n")

    def test_live_listener_is_not_stolen(self):
        path = os.path.join(self.tmpdir(), "keel.sock")
        other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(other.close)
        other.bind(path)
        other.listen(8)
        self.assertExit(self.run_keel("--bind", f"unix:{path}"), EX_BIND, path, "another server is listening")
        # The other server still owns the path and still accepts.
        self.assertTrue(stat.S_ISSOCK(os.lstat(path).st_mode), f"{path} was removed or replaced")
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(client.close)
        client.settimeout(3)
        client.connect(path)
        client.sendall(b"ping")
        other.settimeout(3)
        got = None
        for _ in range(3):  # keel's probe connection may be queued (closed) before ours
            peer, _ = other.accept()
            with peer:
                peer.settimeout(3)
                data = peer.recv(16)
                if data:
                    got = data
                    peer.sendall(b"pong")
                    break
        self.assertEqual(got, b"ping", "the other listener no longer receives connections")
        self.assertEqual(client.recv(16), b"pong")

    def test_bad_unix_paths(self):
        self.assertExit(self.run_keel("--bind", "unix:"), EX_CONFIG, "--bind")
        base = self.tmpdir() + "/"
        for length in (108, 200):  # sun_path holds 107 bytes plus the NUL
            path = base + "s" * (length - len(base))
            self.assertEqual(len(path.encode()), length)
            self.assertExit(self.run_keel("--bind", f"unix:{path}"), EX_CONFIG, "--bind")
            self.assertFalse(os.path.lexists(path))
        # 107 bytes is the longest path that fits.
        path = base + "s" * (107 - len(base))
        server = self.start_keel("--bind", f"unix:{path}", expect_port=False)
        self.assertEqual(unix_get(path).body, b"Hello, World!")
        self.assertStopsCleanly(server)


# --------------------------------------------------------------------------------------------
# --bind fd://N
# --------------------------------------------------------------------------------------------

class FdBindTest(BindingTestCase):
    def test_inherited_tcp_listener(self):
        lsock = socket.socket()
        self.addCleanup(lsock.close)
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(16)
        port = lsock.getsockname()[1]
        fd = lsock.fileno()
        server = self.start_keel("--bind", f"fd://{fd}", pass_fds=[fd])
        lsock.close()  # only keel's copy is left
        self.assertEqual(server.listening, [f"http://127.0.0.1:{port}"], server.output_tail())
        with Conn(port) as c:
            for _ in range(2):
                self.assertEqual(c.get("/plaintext").body, b"Hello, World!")
        self.assertStopsCleanly(server)

    def test_inherited_tcp_listener_with_workers(self):
        lsock = socket.socket()
        self.addCleanup(lsock.close)
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(16)
        port = lsock.getsockname()[1]
        fd = lsock.fileno()
        server = self.start_keel("--bind", f"fd://{fd}", "--workers", "2", pass_fds=[fd])
        lsock.close()
        self.assertEqual(server.port, port)
        for i in range(6):
            self.assertUserId(keelproc.get(port, f"/users/{i}"), i)
        self.assertStopsCleanly(server)

    def test_fd_not_a_socket(self):
        fd, path = tempfile.mkstemp(prefix="keel-fd-")
        self.addCleanup(os.unlink, path)
        self.addCleanup(os.close, fd)
        self.assertExit(self.run_keel("--bind", f"fd://{fd}", pass_fds=[fd]), EX_BIND, f"fd://{fd}", "not a socket")

    def test_fd_not_listening(self):
        s = socket.socket()
        self.addCleanup(s.close)
        s.bind(("127.0.0.1", 0))  # bound, never listen()ed
        fd = s.fileno()
        self.assertExit(self.run_keel("--bind", f"fd://{fd}", pass_fds=[fd]), EX_BIND, f"fd://{fd}", "listening")

    def test_fd_not_a_number(self):
        self.assertExit(self.run_keel("--bind", "fd://abc"), EX_CONFIG, "--bind")
        self.assertExit(self.run_keel("--bind", "fd://"), EX_CONFIG, "--bind")


# --------------------------------------------------------------------------------------------
# systemd socket activation
# --------------------------------------------------------------------------------------------

class SocketActivationTest(BindingTestCase):
    # $$ is the shell's pid, which exec hands to keel: LISTEN_PID names keel itself.
    SCRIPT = 'LISTEN_PID={pid} LISTEN_FDS=1 LISTEN_FDNAMES=web exec "$0" "$@"'

    def start_activated(self, *flags, listen_pid: str = "$$"):
        lsock = socket.socket()
        self.addCleanup(lsock.close)
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(16)
        port = lsock.getsockname()[1]
        fd = lsock.fileno()

        def as_fd3():  # runs in the child before exec; fd 3 is kept open (pass_fds)
            if fd != 3:
                os.dup2(fd, 3)
            os.set_inheritable(3, True)

        server = self.start_keel(*flags, bind="127.0.0.1:0", pass_fds=[3], preexec_fn=as_fd3,
                                 wrapper=["/bin/sh", "-c", self.SCRIPT.format(pid=listen_pid)])
        lsock.close()  # only keel's copy is left
        return server, port

    def check_activated(self, *flags):
        server, port = self.start_activated(*flags)
        self.assertEqual(server.listening, [f"http://127.0.0.1:{port}"],
                         f"keel did not listen on the activated socket\n{server.output_tail()}")
        act = self.wait_event(server, "socket_activation", timeout=1.0)
        self.assertEqual(act.get("sockets"), 1, act)
        for i in range(6):
            self.assertUserId(keelproc.get(port, f"/users/{i}"), i)
        self.assertStopsCleanly(server)

    def test_activation_single_process(self):
        self.check_activated("--workers", "1")

    def test_activation_with_workers(self):
        self.check_activated("--workers", "2")

    def test_listen_pid_of_another_process_is_ignored(self):
        server, port = self.start_activated("--workers", "1", listen_pid=str(os.getpid()))
        self.assertNotEqual(server.port, port, f"keel used a socket meant for another process\n{server.output_tail()}")
        self.assertEqual(server.listening, [f"http://127.0.0.1:{server.port}"], server.output_tail())
        self.assertEqual(events(server, "socket_activation"), [])
        self.assertEqual(keelproc.get(server.port, "/plaintext").body, b"Hello, World!")
        self.assertStopsCleanly(server)


# --------------------------------------------------------------------------------------------
# sd_notify
# --------------------------------------------------------------------------------------------

class NotifyListener:
    """A datagram socket standing in for systemd's notification socket; records every message
    with its arrival time."""

    def __init__(self, address: str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, list[str]]] = []
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            with self._cond:
                self.messages.append((time.monotonic(), data.decode("utf-8", "replace").split("\n")))
                self._cond.notify_all()

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self.sock.close()

    def wait_for(self, line: str, start: int = 0, timeout: float = 5.0) -> int | None:
        """Index of the first message at or after start that has the line, or None."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i in range(start, len(self.messages)):
                    if line in self.messages[i][1]:
                        return i
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(min(remaining, 0.1))

    def count(self) -> int:
        with self._cond:
            return len(self.messages)

    def times(self, line: str, since: float, until: float) -> list[float]:
        with self._cond:
            return [t for t, lines in self.messages if line in lines and since <= t <= until]

    def dump(self) -> str:
        with self._cond:
            return repr(["\\n".join(lines) for _, lines in self.messages])


class NotifyTest(BindingTestCase):
    def listener(self, abstract: bool = False) -> tuple[NotifyListener, str]:
        if abstract:
            name = f"keel-test-{uuid.uuid4().hex}"
            listener = NotifyListener("\0" + name)
            env_value = "@" + name
        else:
            env_value = os.path.join(self.tmpdir(), "notify")
            listener = NotifyListener(env_value)
        self.addCleanup(listener.close)
        return listener, env_value

    def expect(self, listener: NotifyListener, line: str, server, start: int = 0, timeout: float = 5.0) -> int:
        i = listener.wait_for(line, start, timeout)
        self.assertIsNotNone(i, f"no {line!r} notification within {timeout}s (after message #{start}); "
                                f"got {listener.dump()}\n{server.output_tail()}")
        return i

    def check_ready_stopping(self, workers: str, abstract: bool = False) -> None:
        listener, env_value = self.listener(abstract)
        server = self.start_keel("--workers", workers, env=server_env(NOTIFY_SOCKET=env_value))
        ready = self.expect(listener, "READY=1", server)
        self.assertEqual(keelproc.get(server.port, "/plaintext").status, 200)
        self.assertIsNone(listener.wait_for("STOPPING=1", 0, timeout=0.2), f"STOPPING=1 before SIGTERM: "
                                                                             f"{listener.dump()}")
        server.send_signal(signal.SIGTERM)
        self.expect(listener, "STOPPING=1", server, start=ready + 1)
        self.assertEqual(server.wait(10), 0, server.output_tail())

    def test_single_process_ready_and_stopping(self):
        self.check_ready_stopping("1")

    def test_master_ready_and_stopping(self):
        self.check_ready_stopping("2")

    def test_abstract_notify_socket(self):
        self.check_ready_stopping("1", abstract=True)

    def test_abstract_notify_socket_master(self):
        self.check_ready_stopping("2", abstract=True)

    def test_master_reload_notifications(self):
        listener, env_value = self.listener()
        server = self.start_keel("--workers", "2", env=server_env(NOTIFY_SOCKET=env_value))
        ready = self.expect(listener, "READY=1", server)
        self.assertEqual(keelproc.get(server.port, "/plaintext").status, 200)
        deadline = time.monotonic() + 5
        old = keelproc.child_pids(server.pid)
        while len(old) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
            old = keelproc.child_pids(server.pid)
        self.assertEqual(len(old), 2, f"workers: {old}")
        self.assertIsNone(listener.wait_for("READY=1", ready + 1, timeout=0.3),
                          f"READY=1 sent twice before any reload: {listener.dump()}")
        server.send_signal(signal.SIGHUP)
        reloading = self.expect(listener, "RELOADING=1", server, start=ready + 1, timeout=3)
        ready2 = self.expect(listener, "READY=1", server, start=reloading + 1, timeout=15)
        # READY=1 only once the rolling restart is over: every old worker is gone.
        left = set(keelproc.child_pids(server.pid)) & set(old)
        self.assertEqual(left, set(), f"READY=1 sent while old workers {left} were still running")
        self.wait_event(server, "rolling_restart_done", timeout=2)
        self.assertEqual(keelproc.get(server.port, "/plaintext").status, 200)
        server.send_signal(signal.SIGTERM)
        self.expect(listener, "STOPPING=1", server, start=ready2 + 1)
        self.assertEqual(server.wait(10), 0, server.output_tail())

    def check_watchdog(self, workers: str) -> None:
        listener, env_value = self.listener()
        server = self.start_keel("--workers", workers,
                                 env=server_env(NOTIFY_SOCKET=env_value, WATCHDOG_USEC="400000"))
        self.expect(listener, "READY=1", server)
        t0 = time.monotonic()
        time.sleep(1.5)
        pings = listener.times("WATCHDOG=1", t0, t0 + 1.5)
        gaps = [round(b - a, 3) for a, b in zip(pings, pings[1:])]
        self.assertGreaterEqual(len(pings), 3,
                                f"WATCHDOG_USEC=400000 (--workers {workers}): {len(pings)} WATCHDOG=1 pings in 1.5 s, "
                                f"gaps {gaps}; systemd kills a service silent for 0.4 s")
        self.assertTrue(server.alive())
        self.assertStopsCleanly(server)

    def test_watchdog_single_process(self):
        self.check_watchdog("1")

    def test_watchdog_master(self):
        self.check_watchdog("2")

    def test_watchdog_pid_of_another_process(self):
        # WATCHDOG_PID names someone else: keel must not ping.
        listener, env_value = self.listener()
        server = self.start_keel("--workers", "1", env=server_env(NOTIFY_SOCKET=env_value, WATCHDOG_USEC="400000",
                                                                  WATCHDOG_PID=str(os.getpid())))
        self.expect(listener, "READY=1", server)
        time.sleep(0.6)
        self.assertIsNone(listener.wait_for("WATCHDOG=1", 0, timeout=0.0), listener.dump())
        self.assertStopsCleanly(server)


# --------------------------------------------------------------------------------------------
# Signals that must not stop the service
# --------------------------------------------------------------------------------------------

class HarmlessSignalsTest(BindingTestCase):
    def assertServes(self, server: keelproc.Server, what: str) -> None:
        time.sleep(0.3)
        self.assertTrue(server.alive(), f"server died after {what}\n{server.output_tail()}")
        for i in range(4):
            self.assertUserId(keelproc.get(server.port, f"/users/{i}"), i)

    def test_master_sigusr1(self):
        # (SIGUSR2 on a master is the binary upgrade: test_supervisor.BinaryUpgradeTest.)
        server = self.start_keel("--workers", "2")
        self.wait_event(server, "workers_ready")
        workers = keelproc.child_pids(server.pid)
        self.assertEqual(len(workers), 2, workers)
        server.send_signal(signal.SIGUSR1)
        self.wait_event(server, "reopen_logs")
        self.assertServes(server, "SIGUSR1")
        self.assertEqual(keelproc.child_pids(server.pid), workers, "workers were replaced or killed")
        self.assertStopsCleanly(server)

    def test_single_process_sigusr1_sigusr2(self):
        server = self.start_keel("--workers", "1")
        self.assertEqual(keelproc.get(server.port, "/plaintext").status, 200)  # serving: handlers are set
        for sig in (signal.SIGUSR1, signal.SIGUSR2):
            server.send_signal(sig)
            self.assertServes(server, signal.Signals(sig).name)
        self.assertStopsCleanly(server)


if __name__ == "__main__":
    unittest.main()
