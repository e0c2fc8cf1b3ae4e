"""The process as a whole: command-line flags, JSON logs, pre-fork workers, signals and graceful
shutdown."""

import json
import os
import signal
import socket
import subprocess
import threading
import time
import unittest

import keelproc
from keelproc import Conn, KeelTestCase


class BadFlagsTest(KeelTestCase):
    def check_rejected(self, flag_name, *flags):
        rc, out, err = keelproc.run_cli(keelproc.testapp(), "--bind", "127.0.0.1:0", *flags, timeout=10)
        self.assertIsNotNone(rc, f"{flags}: the server started instead of rejecting the flag\n{out}\n{err}")
        self.assertNotEqual(rc, 0, f"{flags}: exit code 0\nstdout: {out}\nstderr: {err}")
        self.assertIn(flag_name, err, f"{flags}: stderr does not name {flag_name!r}: {err!r}")
        return rc, out, err

    def test_workers_not_a_number(self):
        self.check_rejected("--workers", "--workers", "abc")

    def test_workers_negative(self):
        self.check_rejected("--workers", "--workers", "-2")

    def test_bind_nonsense(self):
        rc, out, err = keelproc.run_cli(keelproc.testapp(), "--bind", "nonsense", timeout=10)
        self.assertIsNotNone(rc, f"server started with --bind nonsense\n{out}\n{err}")
        self.assertNotEqual(rc, 0)
        self.assertIn("--bind", err, f"stderr does not name the flag: {err!r}")

    def test_bind_bad_port(self):
        rc, out, err = keelproc.run_cli(keelproc.testapp(), "--bind", "127.0.0.1:99999", timeout=10)
        self.assertIsNotNone(rc)
        self.assertNotEqual(rc, 0)
        self.assertIn("--bind", err, f"stderr does not name the flag: {err!r}")

    def test_unknown_flag(self):
        self.check_rejected("--frobnicate", "--frobnicate")

    def test_missing_value(self):
        self.check_rejected("--workers", "--workers")

    def test_bad_duration(self):
        self.check_rejected("--keep-alive", "--keep-alive", "soon")
        self.check_rejected("--header-timeout", "--header-timeout", "5parsecs")

    def test_bad_size(self):
        self.check_rejected("--limit-request-body", "--limit-request-body", "12abc")
        self.check_rejected("--limit-request-line", "--limit-request-line", "-5")

    def test_port_in_use(self):
        holder = socket.socket()
        self.addCleanup(holder.close)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        rc, out, err = keelproc.run_cli(keelproc.testapp(), "--bind", f"127.0.0.1:{port}", timeout=10)
        self.assertIsNotNone(rc, "server started on a port already in use")
        self.assertNotEqual(rc, 0)
        self.assertTrue(err.strip() or out.strip(), "no message about the bind failure")


class HelpAndVersionTest(KeelTestCase):
    """--help names the application and groups its flags; --version; hints for flags from other
    servers (issue 14, point 15)."""

    def help_text(self, binary):
        rc, out, err = keelproc.run_cli(binary, "--help")
        self.assertEqual(rc, 0, err)
        return out

    def test_help_names_the_application_and_groups_the_flags(self):
        out = self.help_text(keelproc.demo())
        self.assertTrue(out.startswith("keel-demo: keel's demo service"), out[:200])
        self.assertIn("Usage: keel-demo", out)
        positions = []
        for section in ("Server:", "Workers:", "Limits and timeouts:", "Health and metrics:", "Logging:", "Tracing:",
                        "Process:", "App settings:"):
            self.assertIn("\n" + section + "\n", out, f"no {section} section")
            positions.append(out.index("\n" + section + "\n"))
        # A flag is listed in its section: --workers under Workers, --fault-latency under App settings.
        workers = out.index("\n" + "Workers:" + "\n")
        self.assertLess(workers, out.index("--workers"))
        self.assertLess(out.index("\nApp settings:\n"), out.index("--fault-latency"))
        # keel-testapp sets no name: its file name.
        self.assertIn("Usage: keel-testapp", self.help_text(keelproc.testapp()))

    def test_help_shows_boolean_defaults_as_they_are(self):
        out = self.help_text(keelproc.testapp())
        lines = {}
        for line in out.splitlines():
            words = line.split()
            if words and words[0].startswith("--"):
                lines[words[0].rstrip(",")] = line
        self.assertIn("default: on", lines["--access-log"])
        self.assertIn("negate with --no-access-log", lines["--access-log"])
        self.assertIn("default: off", lines["--reuse-port"])
        self.assertNotIn("{false}", out)
        self.assertNotIn("{true}", out)
        # The negation still works: --no-access-log turns the access log off.
        rc, out, err = keelproc.run_cli(keelproc.testapp(), "config", "--json", "--no-access-log")
        self.assertEqual(rc, 0, err)
        self.assertIn('"value": "false"', out.split('"name": "access_log"', 1)[1].split("}", 1)[0])

    def test_version(self):
        for flag in ("--version", "-V"):
            rc, out, err = keelproc.run_cli(keelproc.demo(), flag)
            self.assertEqual(rc, 0, err)
            lines = out.strip().splitlines()
            self.assertEqual(lines[0], "keel-demo")
            self.assertRegex(lines[1], r"^keel \d+\.\d+\.\d+ \(commit ([0-9a-f]{7,}|unknown)\)$")
        # keel-testapp has a setting named version: --version is that setting's flag, -V prints.
        rc, out, err = keelproc.run_cli(keelproc.testapp(), "-V")
        self.assertEqual(rc, 0, err)
        self.assertTrue(out.startswith("keel-testapp\nkeel "), out)

    def test_hints_for_flags_of_other_servers(self):
        rc, _, err = keelproc.run_cli(keelproc.testapp(), "--port", "8000")
        self.assertEqual(rc, 78)
        self.assertIn("unknown flag --port (keel takes one --bind HOST:PORT", err)
        rc, _, err = keelproc.run_cli(keelproc.testapp(), "--host", "0.0.0.0")
        self.assertEqual(rc, 78)
        self.assertIn("unknown flag --host (keel takes one --bind HOST:PORT", err)
        rc, _, err = keelproc.run_cli(keelproc.testapp(), "--preload")
        self.assertEqual(rc, 78)
        self.assertIn("unknown flag --preload (keel has no --preload", err)
        self.assertNotIn("--reload", err)

    def test_config_prints_every_setting_while_a_required_one_is_missing(self):
        env = keelproc.server_env({k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "SECRET_KEY_FILE")})
        env["DATABASE_URL"] = "sqlite:/nonexistent/never-opened.db"
        proc = subprocess.run([keelproc.demo(), "config"], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=10, env=env, cwd="/")
        self.assertEqual(proc.returncode, 78, proc.stderr)
        self.assertIn("secret_key: required, but not set", proc.stderr)
        settings = {line.split()[0]: line for line in proc.stdout.splitlines() if line and not line.startswith("#")}
        self.assertIn("workers", settings)
        self.assertIn("database_url", settings)
        self.assertIn("ERROR: required, but not set", settings["secret_key"])
        self.assertNotIn("ERROR", settings["workers"])
        proc = subprocess.run([keelproc.demo(), "config", "--json"], stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=10, env=env, cwd="/")
        self.assertEqual(proc.returncode, 78, proc.stderr)
        doc = {s["name"]: s for s in json.loads(proc.stdout)["settings"]}
        self.assertIn("required", doc["secret_key"]["error"])
        self.assertNotIn("error", doc["workers"])


class GoodFlagsTest(KeelTestCase):
    def test_duration_and_size_forms(self):
        server = self.start_server("--keep-alive", "500ms", "--header-timeout", "2", "--body-timeout", "2s",
                                   "--write-timeout", "1m", "--graceful-timeout", "5m",
                                   "--limit-request-body", "2048", "--threads", "2", "--thread-queue", "16",
                                   "--backlog", "64", "--limit-concurrency", "100")
        self.assertEqual(keelproc.get(server.port, "/plaintext").status, 200)
        self.assertEqual(keelproc.get(server.port, "/offload?ms=10").body, b"offloaded 10")
        resp = keelproc.get(server.port, "/echo", method="POST", body=b"a" * 2049)
        self.assertEqual(resp.status, 413)

    def test_multiple_binds(self):
        server = self.start_server("--bind", "127.0.0.1:0", "--bind", "127.0.0.1:0", listening=2)
        ports = {keelproc.port_of(a) for a in server.listening}
        self.assertEqual(len(ports), 2, server.listening)
        for port in ports:
            self.assertEqual(keelproc.get(port, "/plaintext").body, b"Hello, World!")

    def test_ipv6_loopback(self):
        try:
            probe = socket.socket(socket.AF_INET6)
            probe.bind(("::1", 0))
            probe.close()
        except OSError:
            self.skipTest("no IPv6 loopback")
        server = self.start_server("--bind", "[::1]:0")
        self.assertIn("[::1]", server.listening[0])
        s = socket.create_connection(("::1", server.port), timeout=5)
        with Conn(0, sock=s) as c:
            self.assertEqual(c.get("/plaintext").body, b"Hello, World!")

    def test_stdout_is_json_lines(self):
        server = self.start_server()
        for path in ("/plaintext", "/nope", "/boom"):
            keelproc.get(server.port, path)
        lines = server.stdout_snapshot()
        self.assertTrue(lines)
        listening = [keelproc.parse_log_line(l) for l in lines]
        listening = [e for e in listening if e and e.get("event") == "listening"]
        self.assertEqual(listening[0]["address"], f"http://127.0.0.1:{server.port}")
        self.assertEqual(server.stop(), 0, server.output_tail())
        for line in server.stdout_snapshot():
            if line.strip():
                event = keelproc.parse_log_line(line)
                self.assertIsInstance(event, dict, f"stdout line is not a JSON object: {line!r}")


class WorkersTest(KeelTestCase):
    def wait_workers(self, server, n):
        """Pids of the worker processes (the group minus the master), once there are n."""
        deadline = time.monotonic() + 5
        while True:
            workers = [p for p in keelproc.group_pids(server.pgid) if p != server.pid]
            if len(workers) >= n or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertEqual(len(workers), n, f"expected {n} worker processes, found {workers}")
        return workers

    def test_default_is_web_concurrency_else_one_per_cpu(self):
        env = {k: v for k, v in os.environ.items() if k != "WEB_CONCURRENCY"}
        cpus = len(os.sched_getaffinity(0))
        # --workers omitted: keelproc.start pins 1 unless WEB_CONCURRENCY is in env, so start by hand.
        server = self.start_server(binary=None, env=dict(env, WEB_CONCURRENCY="3"))
        self.wait_workers(server, 3)
        server.stop()
        rc, out, err = keelproc.run_cli(keelproc.testapp(), "--bind", "127.0.0.1:0", timeout=10,
                                        env=dict(env, WEB_CONCURRENCY="lots"))
        self.assertEqual(rc, 78, out + err)
        self.assertIn("WEB_CONCURRENCY", err)
        self.assertIn("'lots'", err)
        proc_env = dict(env, WEB_CONCURRENCY="")  # present but empty counts as set: rejected too
        rc, _, err = keelproc.run_cli(keelproc.testapp(), "--bind", "127.0.0.1:0", timeout=10, env=proc_env)
        self.assertEqual(rc, 78, err)
        server = keelproc.start(keelproc.testapp(), env=env, pin_workers=False)  # the real default
        self.addCleanup(server.stop)
        if cpus > 1:
            self.wait_workers(server, cpus)
        listening = [e for e in map(keelproc.parse_log_line, server.stdout_snapshot())
                     if e and e.get("event") == "listening"]
        self.assertEqual(listening[0].get("workers"), cpus)

    def test_two_workers(self):
        server = self.start_server("--workers", "2")
        port = server.port
        for i in range(20):
            self.assertUserId(keelproc.get(port, f"/users/{i}"), i)
        # Pre-fork: a master and two worker processes in the process group.
        workers = self.wait_workers(server, 2)
        # Both workers answer: with one worker stopped (SIGSTOP), the other one serves every
        # new connection from the shared listening socket, and vice versa.
        for stopped in workers:
            other = [w for w in workers if w != stopped][0]
            os.kill(stopped, signal.SIGSTOP)
            try:
                time.sleep(0.1)
                for i in range(5):
                    resp = keelproc.get(port, f"/users/{i}", timeout=3)
                    self.assertUserId(resp, i)
                self.assertEqual(keelproc.read_stat(stopped)[0], "T", "worker did not stop")
            finally:
                os.kill(stopped, signal.SIGCONT)
            self.assertIsNotNone(keelproc.read_stat(other))
        # Concurrent requests are all served.
        results = []
        lock = threading.Lock()

        def one(i):
            try:
                r = keelproc.get(port, f"/sleep?ms=200", timeout=10)
                with lock:
                    results.append(r.status)
            except Exception as e:
                with lock:
                    results.append(repr(e))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
        self.assertEqual(results, [200] * 10)
        # SIGTERM stops everything: the whole process group is gone within 10 s.
        server.send_signal(signal.SIGTERM)
        rc = server.wait(10)
        self.assertEqual(rc, 0, server.output_tail())
        deadline = time.monotonic() + 10
        while server.group_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertFalse(server.group_alive(), f"workers left behind: {keelproc.group_pids(server.pgid)}")

    def test_worker_crash_is_replaced(self):
        server = self.start_server("--workers", "2")
        workers = self.wait_workers(server, 2)
        os.kill(workers[0], signal.SIGKILL)
        time.sleep(0.5)
        self.assertTrue(server.alive(), "master died with a worker")
        for i in range(10):
            self.assertUserId(keelproc.get(server.port, f"/users/{i}"), i)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            live = [p for p in keelproc.group_pids(server.pgid) if p != server.pid]
            if len(live) >= 2:
                break
            time.sleep(0.1)
        self.assertGreaterEqual(len([p for p in keelproc.group_pids(server.pgid) if p != server.pid]), 2,
                                "killed worker was not replaced")


class ShutdownTest(KeelTestCase):
    def in_flight_request(self, port, path):
        holder = {}
        conn = Conn(port, timeout=10)
        self.addCleanup(conn.close)

        def run():
            try:
                holder["resp"] = conn.get(path)
            except Exception as e:
                holder["error"] = repr(e)

        t = threading.Thread(target=run)
        t.start()
        return t, holder

    def test_graceful_shutdown_completes_in_flight(self):
        server = self.start_server()
        t, holder = self.in_flight_request(server.port, "/sleep?ms=1500")
        time.sleep(0.3)
        t_sig = time.monotonic()
        server.send_signal(signal.SIGTERM)
        t.join(10)
        self.assertNotIn("error", holder, holder)
        resp = holder["resp"]
        self.assertStatus(resp, 200)
        self.assertEqual(resp.body, b"slept")
        rc = server.wait(10)
        self.assertEqual(rc, 0, server.output_tail())
        self.assertLess(time.monotonic() - t_sig, 5.0)

    def test_graceful_shutdown_with_workers(self):
        server = self.start_server("--workers", "2")
        flights = [self.in_flight_request(server.port, "/sleep?ms=1000") for _ in range(4)]
        time.sleep(0.3)
        server.send_signal(signal.SIGTERM)
        for t, holder in flights:
            t.join(10)
            self.assertNotIn("error", holder, holder)
            self.assertEqual(holder["resp"].status, 200)
        self.assertEqual(server.wait(10), 0, server.output_tail())
        deadline = time.monotonic() + 10
        while server.group_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertFalse(server.group_alive())

    def test_graceful_shutdown_idle_keep_alive_does_not_delay_exit(self):
        server = self.start_server("--keep-alive", "60s")
        c = Conn(server.port)
        self.addCleanup(c.close)
        self.assertStatus(c.get("/plaintext"), 200)
        t0 = time.monotonic()
        server.send_signal(signal.SIGTERM)
        self.assertEqual(server.wait(10), 0, server.output_tail())
        self.assertLess(time.monotonic() - t0, 3.0, "an idle keep-alive connection delayed shutdown")
        self.assertIn(c.wait_closed(2.0), ("eof", "reset"))

    def test_graceful_timeout_bounds_shutdown(self):
        server = self.start_server("--graceful-timeout", "1s")
        t, holder = self.in_flight_request(server.port, "/sleep?ms=8000")
        time.sleep(0.3)
        t0 = time.monotonic()
        server.send_signal(signal.SIGTERM)
        rc = server.wait(10)
        elapsed = time.monotonic() - t0
        self.assertIsNotNone(rc, "server did not exit")
        self.assertLess(elapsed, 3.5, f"shutdown took {elapsed:.2f}s with --graceful-timeout 1s")
        t.join(10)

    def test_sigint_stops(self):
        server = self.start_server()
        self.assertEqual(keelproc.get(server.port, "/plaintext").status, 200)
        server.send_signal(signal.SIGINT)
        rc = server.wait(10)
        self.assertEqual(rc, 0, server.output_tail())


class DocsMatchBehaviourTest(unittest.TestCase):
    """The documentation says what the code does (issue 14, 15g): the README's layout names every
    source directory, health.md and dependencies.md say what the core library links (read from
    CMakeLists.txt), configuration.md and shutdown.md describe the bounded SIGINT and the log
    line the process tests see, and api.md's handler_exception example is a valid log line."""

    ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

    def read(self, rel: str) -> str:
        with open(os.path.join(self.ROOT, rel), encoding="utf-8") as f:
            return f.read()

    def section(self, rel: str, heading: str) -> str:
        text = self.read(rel)
        start = text.find(heading)
        self.assertGreaterEqual(start, 0, f"{rel} has no section {heading!r}")
        end = text.find("\n## ", start + len(heading))
        return text[start:end if end >= 0 else len(text)]

    def test_readme_layout_names_every_source_directory(self):
        layout = self.section("README.md", "## Layout")
        for name in sorted(os.listdir(os.path.join(self.ROOT, "src"))):
            if os.path.isdir(os.path.join(self.ROOT, "src", name)):
                self.assertIn(f"`{name}`", layout, f"README's layout does not list src/{name}")

    def test_what_the_core_links(self):
        import re
        cmake = self.read("CMakeLists.txt")
        # libkeel.a is made of the modules (keel_module(...)); what they link, the core links.
        core = " ".join(re.findall(r"keel_module\(([^)]*)\)", cmake) +
                        re.findall(r"target_link_libraries\(keel\s([^)]*)\)", cmake))
        self.assertIn("KEEL_CURL", core, "premise: the core library links libcurl (OTLP export)")
        self.assertIn("OpenSSL::SSL", core, "premise: the core library links OpenSSL (TLS)")
        self.assertNotIn("KEEL_CHECK_DEPS", core, "premise: libpq/hiredis/sqlite3 only via keel::checks")
        health = self.read("docs/health.md")
        self.assertNotIn("the core links none of these", health)
        self.assertRegex(health, r"libcurl[^.]*core links anyway")
        links = self.section("docs/dependencies.md", "## What a service links")
        for lib in ("libcurl", "zlib", "toml++", "OpenSSL", "keel::checks", "libpq", "hiredis", "SQLite"):
            self.assertIn(lib, links)
        curl_row = [l for l in self.read("docs/dependencies.md").splitlines() if l.startswith("| libcurl")][0]
        self.assertIn("core", curl_row)
        self.assertNotIn("later", curl_row)

    def test_sigint_is_documented_as_the_code_behaves(self):
        # tests/process/test_supervisor.py OffloadShutdownTest checks the behaviour and the event.
        for rel in ("docs/configuration.md", "docs/shutdown.md"):
            text = self.read(rel)
            self.assertIn("threads_abandoned", text, rel)
            self.assertIn("keel::offload", text, rel)

    def test_api_middleware_and_handler_exception(self):
        import json
        middleware = self.section("docs/api.md", "## Middleware")
        self.assertIn(".around", middleware)  # async middleware exists and is shown
        self.assertIn("`operational_middleware`", middleware)  # the opt-in for health and metrics
        self.assertIn("`/health/ready`", middleware)
        self.assertIn("`/metrics`", middleware)
        errors = self.section("docs/api.md", "## Errors")
        block = errors[errors.index("```json") + len("```json"):]
        block = block[:block.index("```")]
        pairs = json.loads(block.replace("…", ""), object_pairs_hook=lambda p: p)
        keys = [k for k, _ in pairs]
        self.assertEqual(len(keys), len(set(keys)), keys)
        self.assertEqual(dict(pairs)["event"], "handler_exception")
        for key in ("route", "request_id", "error"):
            self.assertIn(key, keys)


if __name__ == "__main__":
    unittest.main()
