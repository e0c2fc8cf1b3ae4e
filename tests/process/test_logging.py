"""Logging through the real binary: one request_handled line per request with its fields, health
and metrics left out by default, the request context on every line a handler logs (also after a
co_await and from offloaded work), X-Request-ID accepted/replaced/echoed, levels, a log file with
USR1 reopen, and a full disk that never stalls serving."""

import json
import os
import signal
import shutil
import tempfile
import time
import unittest

import keelproc
from keelproc import Conn, KeelTestCase


def events(server, name):
    out = []
    for line in server.stdout_snapshot():
        e = keelproc.parse_log_line(line)
        if e is not None and e.get("event") == name:
            out.append(e)
    return out


def wait_events(server, name, count, timeout=5.0):
    deadline = time.monotonic() + timeout
    while len(events(server, name)) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return events(server, name)


def strict_json_object(line: str) -> dict:
    """Parses one output line as a JSON object whose keys are unique; raises ValueError if not."""
    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise ValueError(f"duplicate keys {dup}")
        return dict(pairs)
    value = json.loads(line, object_pairs_hook=no_duplicates)
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


class EveryLineIsJsonTest(KeelTestCase):
    """In JSON mode every line keel writes, on stdout and on stderr, is one JSON object with unique
    keys (issue 14, 15d): the handler_exception line (its context carries route and request_id
    too), a failed startup hook, a port in use, and the stack a worker stuck past --timeout
    prints when the master aborts it."""

    def assertAllJson(self, stdout_lines, stderr_lines, context: str) -> list[dict]:
        parsed = []
        for stream, lines in (("stdout", stdout_lines), ("stderr", stderr_lines)):
            for line in lines:
                if not line.strip():
                    continue
                try:
                    parsed.append(strict_json_object(line))
                except ValueError as e:
                    self.fail(f"{context}: a {stream} line is not a JSON object with unique keys ({e}):\n{line}")
        return parsed

    def run_to_exit(self, *flags, env=None) -> tuple[int | None, list[dict]]:
        rc, out, err = keelproc.run_cli(keelproc.testapp(), *flags, timeout=10, env=env)
        return rc, self.assertAllJson(out.splitlines(), err.splitlines(), " ".join(flags))

    def test_handler_exception(self):
        server = self.start_server()
        resp = keelproc.get(server.port, "/boom", headers={"X-Request-ID": "req-dup-1"})
        self.assertProblem(resp, 500, close=False)
        found = wait_events(server, "handler_exception", 1)
        self.assertEqual(len(found), 1, server.output_tail())
        server.stop()
        parsed = self.assertAllJson(server.stdout_snapshot(), server.stderr_lines, "handler_exception")
        line = [e for e in parsed if e.get("event") == "handler_exception"][0]
        self.assertEqual(line["request_id"], "req-dup-1")
        self.assertEqual(line["route"], "/boom")

    def test_failed_startup_hook(self):
        env = dict(os.environ, KEEL_TESTAPP_FAIL_STARTUP="1")
        for workers in ("1", "2"):
            with self.subTest(workers=workers):
                rc, parsed = self.run_to_exit("--bind", "127.0.0.1:0", "--workers", workers, env=env)
                self.assertEqual(rc, 3)
                failed = [e for e in parsed if e.get("event") == "startup_failed"]
                self.assertTrue(failed and "database unreachable" in failed[0].get("error", ""), parsed)

    def test_port_in_use(self):
        import socket
        holder = socket.socket()
        self.addCleanup(holder.close)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        rc, parsed = self.run_to_exit("--bind", f"127.0.0.1:{holder.getsockname()[1]}")
        self.assertEqual(rc, 3)
        self.assertTrue(any(e.get("event") == "bind_failed" and e.get("error") for e in parsed), parsed)

    def test_timeout_stack_trace(self):
        server = self.start_server("--timeout", "1s", "--workers", "2")
        with Conn(server.port, timeout=10) as conn:
            conn.send(keelproc.build_request("GET", "/block?ms=4000"))
            deadline = time.monotonic() + 8
            while not any('"worker_timeout_stack"' in l for l in server.stderr_lines):
                self.assertLess(time.monotonic(), deadline, "no stack trace\n" + server.output_tail())
                time.sleep(0.05)
        server.stop()
        parsed = self.assertAllJson(server.stdout_snapshot(), server.stderr_lines, "--timeout")
        stack = [e for e in parsed if e.get("event") == "worker_timeout_stack"][0]
        self.assertEqual(stack["level"], "critical")
        self.assertTrue(any("blocking_handler" in f for f in stack["frames"]), stack)


class AccessLogTest(KeelTestCase):
    def test_one_line_per_request_with_its_fields(self):
        server = self.start_server()
        with Conn(server.port) as c:
            r = c.get("/users/42", headers={"User-Agent": "probe/1.0", "X-Request-ID": "given-id-1"})
        self.assertEqual(r.header("X-Request-ID"), "given-id-1")
        keelproc.get(server.port, "/health")
        keelproc.get(server.port, "/health/ready")
        keelproc.get(server.port, "/metrics")
        keelproc.get(server.port, "/nope")
        lines = wait_events(server, "request_handled", 2)
        self.assertEqual(len(lines), 2, lines)  # health and metrics are not logged
        first = lines[0]
        for key, want in (("method", "GET"), ("path", "/users/42"), ("route", "/users/{id:int}"), ("status", 200),
                          ("user_agent", "probe/1.0"), ("request_id", "given-id-1"), ("client_ip", "127.0.0.1"),
                          ("logger", "keel.access"), ("level", "info")):
            self.assertEqual(first.get(key), want, key)
        self.assertGreater(first["duration_ms"], 0)
        self.assertGreater(first["bytes_in"], 0)
        self.assertGreater(first["bytes_out"], 0)
        self.assertEqual((lines[1]["route"], lines[1]["status"]), ("unmatched", 404))

    def test_every_process_logs_its_own_pid(self):
        # The pid is cached (getpid() is a system call); a forked worker must not keep its master's.
        server = self.start_server("--workers", "2", "--reuse-port")
        for _ in range(8):
            keelproc.get(server.port, "/users/1")
        lines = wait_events(server, "request_handled", 8)
        workers = set(keelproc.child_pids(server.pid))
        self.assertEqual(len(workers), 2)
        self.assertEqual(len(lines), 8)
        for line in lines:
            self.assertIn(line["pid"], workers, line)
        self.assertTrue(all(e["pid"] == server.pid for e in events(server, "worker_spawned")))

    def test_switches(self):
        server = self.start_server("--access-log-health")
        keelproc.get(server.port, "/health")
        self.assertEqual(len(wait_events(server, "request_handled", 1)), 1)
        server.stop()
        server = self.start_server("--log-levels", "keel.access=warning")
        keelproc.get(server.port, "/users/1")
        time.sleep(0.3)
        self.assertEqual(events(server, "request_handled"), [])
        rc, _, err = keelproc.run_cli(keelproc.testapp(), "--log-levels", "keel.access=loud", "config", "--check")
        self.assertEqual(rc, 78)
        self.assertIn("log_levels (flag --log-levels): expected LOGGER=LEVEL", err)


class RequestContextTest(KeelTestCase):
    def test_context_follows_the_request_across_co_await_and_offload(self):
        server = self.start_server()
        with Conn(server.port) as c:
            r = c.get("/log-everywhere", headers={"X-Request-ID": "ctx-42"})
        self.assertEqual(r.status, 200)
        wait_events(server, "request_handled", 1)
        for name in ("before_sleep", "after_sleep", "in_offload", "request_handled"):
            got = events(server, name)
            self.assertEqual(len(got), 1, name)
            self.assertEqual(got[0]["request_id"], "ctx-42", name)
            self.assertEqual(got[0]["route"], "/log-everywhere", name)
            self.assertEqual(got[0]["tenant"], "acme", name)

    def test_request_ids_are_validated_generated_and_echoed(self):
        server = self.start_server()
        for given, kept in (("a" * 128, True), ("a" * 129, False), ("has space", False), ("", False)):
            with Conn(server.port) as c:
                headers = {"X-Request-ID": given} if given else {}
                r = c.get("/plaintext", headers=headers)
            rid = r.header("X-Request-ID")
            if kept:
                self.assertEqual(rid, given)
            else:
                self.assertRegex(rid, r"^[0-9a-f]{32}$", given)
        # Error bodies carry it too.
        with Conn(server.port) as c:
            r = c.get("/nope", headers={"X-Request-ID": "err-7"})
        self.assertEqual(r.json().get("request_id"), "err-7")

    def test_the_header_name_is_configurable(self):
        server = self.start_server("--request-id-header", "X-Correlation-ID")
        with Conn(server.port) as c:
            r = c.get("/plaintext", headers={"X-Correlation-ID": "corr-1"})
        self.assertEqual(r.header("X-Correlation-ID"), "corr-1")
        self.assertIsNone(r.header("X-Request-ID"))


class LogDestinations(KeelTestCase):
    def start_logging_to_a_file(self):
        """Two workers logging to <tmp>/keel.log; returns (server, log path, port from the
        file's listening line)."""
        work = tempfile.mkdtemp(prefix="keel-logs-")
        self.addCleanup(shutil.rmtree, work, True)
        path = os.path.join(work, "keel.log")
        server = self.start_server("--log-file", path, "--workers", "2", pin_workers=False,
                                   bind="127.0.0.1:0", listening=0, expect_port=False)
        deadline = time.monotonic() + 5
        port = None
        while port is None and time.monotonic() < deadline:
            if os.path.exists(path):
                with open(path) as f:
                    for line in f:
                        e = json.loads(line)
                        if e.get("event") == "listening":
                            port = keelproc.port_of(e["address"])
            time.sleep(0.05)
        self.assertIsNotNone(port)
        return server, path, port

    def test_file_with_usr1_reopen(self):
        server, path, port = self.start_logging_to_a_file()
        keelproc.get(port, "/users/1")
        os.rename(path, path + ".1")  # what logrotate does
        server.send_signal(signal.SIGUSR1)
        time.sleep(1.5)
        for _ in range(4):
            keelproc.get(port, "/users/2")
        time.sleep(1.0)
        after = [json.loads(l) for l in open(path)]
        self.assertTrue(any(e.get("path") == "/users/2" for e in after), after[-5:])
        before = [json.loads(l) for l in open(path + ".1")]
        self.assertTrue(any(e.get("path") == "/users/1" for e in before))

    def test_log_file_is_created_0640_and_never_through_a_symlink(self):
        work = tempfile.mkdtemp(prefix="keel-logs-")
        self.addCleanup(shutil.rmtree, work, True)
        victim = os.path.join(work, "victim")
        with open(victim, "w") as f:
            f.write("precious\n")
        link = os.path.join(work, "keel.log")
        os.symlink(victim, link)
        rc, out, err = keelproc.run_cli(keelproc.testapp(), "--log-file", link, "--bind", "127.0.0.1:0")
        self.assertEqual(rc, 78, err)
        self.assertIn(f"cannot open log file {link}: it is a symbolic link (not followed)", err)
        with open(victim) as f:
            self.assertEqual(f.read(), "precious\n")
        path = os.path.join(work, "new.log")
        server = self.start_server("--log-file", path, bind="127.0.0.1:0", listening=0, expect_port=False)
        deadline = time.monotonic() + 5
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o640)
        server.stop()

    @unittest.skipUnless(os.geteuid() == 0, "needs root to plant a file owned by another user")
    def test_reopen_refuses_a_file_planted_by_another_user(self):
        server, path, port = self.start_logging_to_a_file()
        # Someone else's file in its place (a directory others can write to, or a planted link
        # target): the processes keep their old file and say why there.
        os.rename(path, path + ".1")
        with open(path, "w"):
            pass
        os.chown(path, 65534, 65534)
        server.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        failures = []
        while not failures and time.monotonic() < deadline:
            keelproc.get(port, "/users/3")
            with open(path + ".1") as f:
                failures = [e for e in map(json.loads, f) if e.get("event") == "log_reopen_failed"]
            time.sleep(0.1)
        self.assertTrue(failures, "no log_reopen_failed line in the old file")
        self.assertIn("owned by uid 65534", failures[0]["error"])
        for _ in range(5):
            keelproc.get(port, "/users/4")
        self.assertEqual(os.path.getsize(path), 0, "a process wrote to the planted file")

    def test_a_full_disk_never_stalls_serving(self):
        server = self.start_server("--log-file", "/dev/full", bind="127.0.0.1:0", listening=0, expect_port=False)
        # No "listening" line can be read (it went to /dev/full): find the port from the socket.
        time.sleep(0.5)
        port = None
        for line in open(f"/proc/{server.pid}/net/tcp").readlines()[1:]:
            parts = line.split()
            if parts[3] == "0A":  # LISTEN
                inode = parts[9]
                for fd in os.listdir(f"/proc/{server.pid}/fd"):
                    try:
                        if os.readlink(f"/proc/{server.pid}/fd/{fd}") == f"socket:[{inode}]":
                            port = int(parts[1].split(":")[1], 16)
                    except OSError:
                        pass
        self.assertIsNotNone(port)
        t0 = time.monotonic()
        for _ in range(200):
            self.assertEqual(keelproc.get(port, "/plaintext").status, 200)
        self.assertLess(time.monotonic() - t0, 5)
        text = keelproc.get(port, "/metrics").text
        dropped = [l for l in text.splitlines() if l.startswith("keel_log_dropped_total")]
        time.sleep(1.2)  # the per-second sample
        text = keelproc.get(port, "/metrics").text
        dropped = [l for l in text.splitlines() if l.startswith("keel_log_dropped_total")]
        self.assertTrue(dropped and float(dropped[0].split()[-1]) >= 200, dropped)


if __name__ == "__main__":
    unittest.main()
