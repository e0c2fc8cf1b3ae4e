"""Health endpoints through the real binary: liveness, startup and readiness with real
dependencies (PostgreSQL and Redis started on loopback, SQLite), check timeouts, concurrency, the
result cache, draining, and configurable paths."""

import os
import signal
import sqlite3
import tempfile
import threading
import time
import unittest
from pathlib import Path

import deps
import keelproc
from keelproc import KeelTestCase


def probe(port: int, path: str = "/health/ready"):
    t0 = time.monotonic()
    resp = keelproc.get(port, path)
    return resp, time.monotonic() - t0


class HealthBasics(KeelTestCase):
    def test_liveness_startup_and_readiness_shape(self):
        server = self.start_server()
        resp, _ = probe(server.port, "/health")
        self.assertEqual((resp.status, resp.json()), (200, {"status": "ok"}))
        self.assertEqual(resp.header("Cache-Control"), "no-store")
        resp, _ = probe(server.port, "/health/startup")
        self.assertEqual((resp.status, resp.json()), (200, {"status": "started"}))
        resp, _ = probe(server.port)
        self.assertEqual(resp.status, 200)
        # On the traffic port: each check's name and status, nothing else.
        self.assertEqual(resp.json(), {"status": "ok", "checks": {"counter": {"status": "ok"}}})
        # On the admin listener: the details.
        server = self.start_server("--metrics-bind", "127.0.0.1:0", listening=2)
        resp, _ = probe(keelproc.port_of(server.listening[1]))
        self.assertEqual(resp.status, 200)
        counter = resp.json()["checks"]["counter"]
        self.assertEqual(set(counter), {"status", "critical", "duration_ms", "error"})
        self.assertEqual((counter["status"], counter["critical"], counter["error"]), ("ok", True, None))

    def test_results_are_cached_for_the_ttl(self):
        server = self.start_server("--health-cache-ttl", "400ms")
        t0 = time.monotonic()
        for _ in range(40):
            self.assertEqual(probe(server.port)[0].status, 200)
        elapsed = time.monotonic() - t0
        runs = int(keelproc.get(server.port, "/check-runs").text)
        # One round per started TTL window at most: a probe storm is not a query storm.
        self.assertLessEqual(runs, int(elapsed / 0.4) + 1, f"{runs} rounds in {elapsed:.2f}s")
        time.sleep(0.5)
        probe(server.port)
        self.assertEqual(int(keelproc.get(server.port, "/check-runs").text), runs + 1)

    def test_a_hanging_check_never_delays_the_answer_beyond_its_timeout(self):
        server = self.start_server("--check-hang", "5s", "--check-async-hang", "5s", "--check-timeout", "300ms",
                                   "--health-cache-ttl", "100ms", "--metrics-bind", "127.0.0.1:0", listening=2)
        admin = keelproc.port_of(server.listening[1])
        resp, took = probe(admin)
        self.assertEqual(resp.status, 503)
        checks = resp.json()["checks"]
        self.assertEqual(checks["hang"]["error"], "timed out after 300ms")
        self.assertEqual(checks["async_hang"]["error"], "timed out after 300ms")
        self.assertEqual(checks["counter"]["status"], "ok")
        # Both ran concurrently: one timeout's worth, not two.
        self.assertLess(took, 0.55, f"readiness took {took:.3f}s")
        self.assertGreaterEqual(took, 0.29)
        # The blocking check is still stuck in its thread: not started a second time, reported at once.
        time.sleep(0.15)
        resp, took = probe(admin)
        self.assertEqual(resp.status, 503)
        self.assertIn("still running after", resp.json()["checks"]["hang"]["error"])
        self.assertLess(took, 0.55)
        # Liveness does not depend on the checks.
        resp, took = probe(server.port, "/health")
        self.assertEqual(resp.status, 200)
        self.assertLess(took, 0.1)

    def test_paths_are_configurable_and_can_be_turned_off(self):
        server = self.start_server("--readiness-path", "/ready2", "--health-path", "")
        self.assertEqual(probe(server.port, "/ready2")[0].status, 200)
        self.assertEqual(probe(server.port, "/health")[0].status, 404)
        self.assertEqual(probe(server.port, "/health/ready")[0].status, 404)
        rc, _, err = keelproc.run_cli(keelproc.testapp(), "--readiness-path", "no slash", "config", "--check")
        self.assertEqual(rc, 78)
        self.assertIn("readiness_path (flag --readiness-path): expected text matching", err)

    def test_healthcheck_subcommand(self):
        server = self.start_server()
        rc, _, err = keelproc.run_cli(keelproc.testapp(), "--bind", f"127.0.0.1:{server.port}", "healthcheck")
        self.assertEqual(rc, 0, err)
        rc, _, err = keelproc.run_cli(keelproc.testapp(), "healthcheck", "--url",
                                      f"http://127.0.0.1:{server.port}/nope")
        self.assertEqual(rc, 1)
        self.assertIn("404", err)
        server.stop()
        rc, _, err = keelproc.run_cli(keelproc.testapp(), "--bind", f"127.0.0.1:{server.port}", "healthcheck")
        self.assertEqual(rc, 1)
        self.assertIn("cannot connect: Connection refused", err)

    def test_application_route_on_a_health_path_wins(self):
        # keel-testapp serves its own /ready; pointing readiness there keeps the app's handler.
        server = self.start_server("--readiness-path", "/ready")
        self.assertEqual(keelproc.get(server.port, "/ready").text, "ready")

    def test_draining_fails_readiness_while_requests_still_succeed(self):
        server = self.start_server("--shutdown-delay", "1500ms")
        self.assertEqual(probe(server.port)[0].status, 200)
        server.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 1.0
        status = None
        while time.monotonic() < deadline:
            resp, _ = probe(server.port)
            status = resp.status
            if status == 503:
                self.assertEqual(resp.json()["status"], "draining")
                break
            time.sleep(0.02)
        self.assertEqual(status, 503)
        self.assertEqual(keelproc.get(server.port, "/pid").status, 200)  # still serving
        self.assertEqual(probe(server.port, "/health")[0].status, 200)


class HealthWithRealDependencies(KeelTestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = deps.Postgres()
        cls.addClassCleanup(cls.pg.close)
        cls.redis = deps.Redis()
        cls.addClassCleanup(cls.redis.close)
        cls.pg.start()
        cls.redis.start()
        cls.dir = tempfile.mkdtemp(prefix="keel-health-")
        cls.db = os.path.join(cls.dir, "app.db")
        with sqlite3.connect(cls.db) as c:
            c.execute("create table t (x int)")

    @classmethod
    def tearDownClass(cls):
        for f in Path(cls.dir).iterdir():
            f.unlink()
        os.rmdir(cls.dir)

    def wait_status(self, port: int, want: int, timeout: float, check=None, check_status=None):
        deadline = time.monotonic() + timeout
        while True:
            resp, _ = probe(port)
            body = resp.json()
            if resp.status == want and (check is None or body["checks"][check]["status"] == check_status):
                return body, timeout - (deadline - time.monotonic())
            if time.monotonic() > deadline:
                self.fail(f"readiness did not become {want} within {timeout}s: {resp.status} {body}")
            time.sleep(0.05)

    def test_database_down_fails_readiness_and_recovers(self):
        server = self.start_server("--check-postgres", self.pg.url, "--check-redis", self.redis.url,
                                   "--check-sqlite", self.db, "--check-timeout", "1s", "--health-cache-ttl", "1s",
                                   "--workers", "2")
        body, _ = self.wait_status(server.port, 200, 5)
        self.assertEqual(body["status"], "ok", body)
        self.assertEqual({k: v["status"] for k, v in body["checks"].items()},
                         {"counter": "ok", "postgres": "ok", "redis": "ok", "sqlite": "ok"})

        self.pg.stop()
        # Within TTL + timeout (+ polling slack): 503 naming the check, liveness unaffected.
        body, took = self.wait_status(server.port, 503, 1 + 1 + 1.0)
        self.assertEqual(body["status"], "failing")
        self.assertEqual(body["checks"]["postgres"]["status"], "failing")
        self.assertEqual(body["checks"]["postgres"], {"status": "failing"})  # the error: admin port, log
        self.assertEqual(body["checks"]["sqlite"]["status"], "ok")
        for _ in range(5):
            self.assertEqual(probe(server.port, "/health")[0].status, 200)

        self.pg.start()
        body, _ = self.wait_status(server.port, 200, 1 + 1 + 2.0)
        self.assertEqual(body["status"], "ok")

        # The cache is non-critical: down means degraded (200), not failing.
        self.redis.stop()
        body, _ = self.wait_status(server.port, 200, 3.0, check="redis", check_status="failing")
        self.assertEqual(body["status"], "degraded")
        self.assertEqual(body["checks"]["redis"], {"status": "failing"})  # the error: admin port, log
        self.redis.start()
        body, _ = self.wait_status(server.port, 200, 3.0, check="redis", check_status="ok")
        self.assertEqual(body["status"], "ok")

    def test_public_readiness_reveals_no_error_text(self):
        # A failing check's error names hosts, ports and users (libpq): only the admin listener
        # and the log show it; the traffic port says which check fails, nothing more.
        pg = deps.Postgres()  # never started: its port refuses connections
        url = pg.url.replace("postgres@", "keel_secret_user@")
        server = self.start_server("--check-postgres", url, "--metrics-bind", "127.0.0.1:0", listening=2)
        resp, _ = probe(server.port)
        self.assertEqual(resp.status, 503)
        self.assertEqual(resp.json(), {"status": "failing",
                                       "checks": {"counter": {"status": "ok"}, "postgres": {"status": "failing"}}})
        for path in ("/health", "/health/startup", "/health/ready"):
            text = probe(server.port, path)[0].text
            for secret in (str(pg.port), "127.0.0.1", "keel_secret_user", "connect"):
                self.assertNotIn(secret, text, path)
        resp, _ = probe(keelproc.port_of(server.listening[1]))
        self.assertEqual(resp.status, 503)
        error = resp.json()["checks"]["postgres"]["error"]
        self.assertIn(str(pg.port), error)
        logged = server.wait_for_stdout(lambda e: e.get("event") == "health_check_failed")
        self.assertIsNotNone(logged, server.output_tail())
        self.assertEqual((logged["check"], logged["critical"], logged["error"]), ("postgres", True, error))

    def test_missing_sqlite_database_fails(self):
        server = self.start_server("--check-sqlite", os.path.join(self.dir, "missing.db"))
        resp, _ = probe(server.port)
        self.assertEqual(resp.status, 503)
        self.assertEqual(resp.json()["checks"]["sqlite"]["status"], "failing")


if __name__ == "__main__":
    unittest.main()
