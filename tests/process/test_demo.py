"""keel-demo, the users API: CRUD round trips on SQLite and on PostgreSQL (with and without a Redis
cache), validation errors, conflicts, pagination bounds, readiness reflecting database and cache
outages, the required secret, and the fault-injection settings."""

import json
import os
import shutil
import tempfile
import time
import unittest
from concurrent.futures import ThreadPoolExecutor

import deps
import keelproc
from keelproc import Conn, KeelTestCase


def call(port: int, method: str, target: str, body=None, raw: bytes | None = None, content_type="application/json"):
    headers = {}
    data = None
    if raw is not None:
        data = raw
        headers["Content-Type"] = content_type
    elif body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = content_type
    with Conn(port) as c:
        resp = c.request(method, target, headers=headers, body=data)
    return resp


class DemoCrud:
    """The CRUD scenario, run against each storage configuration."""

    def crud_round_trip(self, port: int):
        email = f"ada{time.monotonic_ns()}@example.com"
        r = call(port, "POST", "/api/users", {"name": "Ada Lovelace", "email": email})
        self.assertEqual(r.status, 201, r.text)
        user = r.json()
        uid = user["id"]
        self.assertEqual(r.header("Location"), f"/api/users/{uid}")
        self.assertEqual((user["name"], user["email"]), ("Ada Lovelace", email))
        self.assertRegex(user["created_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")

        r = call(port, "GET", f"/api/users/{uid}")
        self.assertEqual((r.status, r.json()["email"]), (200, email))
        self.assertEqual(r.header("Content-Type"), "application/json")
        r = call(port, "GET", f"/api/users/{uid}")  # a second read (from the cache when there is one)
        self.assertEqual(r.json()["name"], "Ada Lovelace")

        r = call(port, "PATCH", f"/api/users/{uid}", {"name": "Ada King"})
        self.assertEqual((r.status, r.json()["name"], r.json()["email"]), (200, "Ada King", email))
        r = call(port, "GET", f"/api/users/{uid}")  # the write invalidated the cached copy
        self.assertEqual(r.json()["name"], "Ada King")

        email2 = "countess." + email
        r = call(port, "PUT", f"/api/users/{uid}", {"name": "Countess", "email": email2})
        self.assertEqual((r.status, r.json()["email"]), (200, email2))
        self.assertEqual(call(port, "GET", f"/api/users/{uid}").json()["email"], email2)

        other = call(port, "POST", "/api/users", {"name": "B", "email": "b" + email}).json()["id"]
        r = call(port, "POST", "/api/users", {"name": "C", "email": email2})
        self.assertEqual(r.status, 409, r.text)
        self.assertEqual(r.header("Content-Type"), "application/problem+json")
        self.assertEqual(call(port, "PATCH", f"/api/users/{other}", {"email": email2}).status, 409)

        r = call(port, "GET", "/api/users?limit=1&offset=0")
        page = r.json()
        self.assertEqual((r.status, len(page["items"]), page["limit"], page["offset"]), (200, 1, 1, 0))
        self.assertGreaterEqual(page["total"], 2)

        self.assertEqual(call(port, "DELETE", f"/api/users/{uid}").status, 204)
        self.assertEqual(call(port, "GET", f"/api/users/{uid}").status, 404)
        self.assertEqual(call(port, "DELETE", f"/api/users/{uid}").status, 404)
        self.assertEqual(call(port, "PATCH", f"/api/users/{uid}", {"name": "x"}).status, 404)
        self.assertEqual(call(port, "DELETE", f"/api/users/{other}").status, 204)


class DemoOnSqlite(KeelTestCase, DemoCrud):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="keel-demo-")
        cls.addClassCleanup(shutil.rmtree, cls.dir, True)
        cls.server = cls.start_class_server(
            "--workers", "2", binary=keelproc.demo(), pin_workers=False,
            env=dict(os.environ, DATABASE_URL=f"sqlite:{cls.dir}/users.db", SECRET_KEY="sqlite-test-secret"))

    def test_crud(self):
        self.crud_round_trip(self.server.port)

    def test_the_database_files_are_private(self):
        # Issue 14, point 7: SQLite made the database (and its -wal/-shm files) 0644 less the
        # umask, readable by every local user; the demo now creates it 0600.
        self.crud_round_trip(self.server.port)
        for name in ("users.db", "users.db-wal", "users.db-shm"):
            path = os.path.join(self.dir, name)
            if name == "users.db" or os.path.exists(path):
                self.assertEqual(os.stat(path).st_mode & 0o777, 0o600, name)

    def test_validation_reports_every_field(self):
        r = call(self.server.port, "POST", "/api/users", {"name": "", "email": "not-an-email", "admin": True})
        self.assertEqual(r.status, 422)
        errors = {e["field"]: e["message"] for e in r.json()["errors"]}
        self.assertEqual(set(errors), {"name", "email", "admin"})
        self.assertIn("empty", errors["name"])
        self.assertIn("email address", errors["email"])
        r = call(self.server.port, "POST", "/api/users", {"name": 5, "email": "a@b.c" + "x" * 300})
        errors = {e["field"]: e["message"] for e in r.json()["errors"]}
        self.assertEqual(errors["name"], "must be a string")
        self.assertIn("at most 254", errors["email"])
        r = call(self.server.port, "POST", "/api/users", {})
        self.assertEqual({e["field"] for e in r.json()["errors"]}, {"name", "email"})
        r = call(self.server.port, "PUT", "/api/users/1", {"name": "only a name"})
        self.assertEqual((r.status, [e["field"] for e in r.json()["errors"]]), (422, ["email"]))
        self.assertEqual(call(self.server.port, "POST", "/api/users", [1, 2]).status, 422)
        self.assertEqual(call(self.server.port, "POST", "/api/users", raw=b"{not json").status, 400)
        self.assertEqual(call(self.server.port, "POST", "/api/users", raw=b"{}", content_type="text/plain").status, 415)
        for query in ("limit=0", "limit=101", "limit=x", "offset=-1"):
            r = call(self.server.port, "GET", f"/api/users?{query}")
            self.assertEqual(r.status, 422, query)
        self.assertEqual(call(self.server.port, "GET", "/api/users/abc").status, 404)

    def test_json_bodies_require_the_json_content_type(self):
        # A cross-site form (or a no-cors fetch) posts without a preflight only as text/plain, a
        # form type, or without any Content-Type: none of them reaches the store.
        port = self.server.port
        body = json.dumps({"name": "Mallory", "email": "mallory@example.com"}).encode()
        for ctype in (None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                      "application/jsonx", ""):
            headers = {} if ctype is None else {"Content-Type": ctype}
            for method, target in (("POST", "/api/users"), ("PUT", "/api/users/1"), ("PATCH", "/api/users/1")):
                with Conn(port) as c:
                    r = c.request(method, target, headers=headers, body=body)
                doc = self.assertProblem(r, 415, close=False)
                self.assertIn("application/json", doc["detail"])
        self.assertNotIn("Mallory", call(port, "GET", "/api/users?limit=100").text)
        r = call(port, "POST", "/api/users", {"name": "Ok", "email": f"ok{time.monotonic_ns()}@example.com"},
                 content_type="Application/JSON; charset=utf-8")
        self.assertEqual(r.status, 201, r.text)

    def test_names_and_emails_reject_control_characters(self):
        port = self.server.port
        for name in ("a\u0000b", "line\nbreak", "tab\there", "bell\u0007", "del\u007f", "c1\u0085x", "\u009b"):
            r = call(port, "POST", "/api/users", {"name": name, "email": f"ctl{time.monotonic_ns()}@example.com"})
            self.assertEqual(r.status, 422, (name, r.text))
            self.assertEqual(r.json()["errors"], [{"field": "name", "message": r.json()["errors"][0]["message"]}])
            self.assertIn("control characters", r.json()["errors"][0]["message"])
        for email in ("a\u0000@example.com", "a@example.com\u0000", "a\r\n@example.com"):
            r = call(port, "POST", "/api/users", {"name": "Ctl", "email": email})
            self.assertEqual(r.status, 422, (email, r.text))
            self.assertEqual([e["field"] for e in r.json()["errors"]], ["email"])
            self.assertIn("control characters", r.json()["errors"][0]["message"])
        r = call(port, "PATCH", "/api/users/1", raw=b'{"name": "x\u0000"}')
        self.assertEqual(r.status, 422, r.text)
        r = call(port, "POST", "/api/users", {"name": "Zoë Élise", "email": f"zoe{time.monotonic_ns()}@example.com"})
        self.assertEqual(r.status, 201, r.text)  # non-ASCII letters are fine

    def test_a_422_echoes_a_bounded_number_of_unknown_keys(self):
        # Every unknown key was echoed back: a 170 KB body gave a 1 MB answer.
        body = {f"k{i:015d}": 0 for i in range(10000)}
        body["é" * 500] = 1  # a long key, cut at a character boundary
        raw = json.dumps(body).encode()
        self.assertGreater(len(raw), 170_000)
        for method, target in (("POST", "/api/users"), ("PATCH", "/api/users/1")):
            r = call(self.server.port, method, target, raw=raw)
            self.assertEqual(r.status, 422)
            self.assertLess(len(r.body), 2048, r.body[:300])
            doc = r.json()
            unknown = [e for e in doc["errors"] if e["field"] not in ("name", "email")]
            self.assertEqual(len(unknown), 5)
            self.assertEqual(doc["unknown_fields_not_listed"], 10001 - 5)
            self.assertTrue(all(len(e["field"].encode()) <= 67 for e in unknown), unknown)
        r = call(self.server.port, "POST", "/api/users", {"name": "x", "email": "x@example.com", "é" * 100: 1})
        self.assertEqual(r.json()["errors"], [{"field": "é" * 32 + "...", "message": "is not a field of a user"}])
        self.assertNotIn("unknown_fields_not_listed", r.json())

    def test_readiness_checks_the_database(self):
        r = keelproc.get(self.server.port, "/health/ready")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["checks"]["database"]["status"], "ok")


class DemoSettings(KeelTestCase):
    def test_secret_key_is_required_and_never_shown(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("SECRET_KEY")}
        rc, out, err = keelproc.run_cli(keelproc.demo(), "config", "--check", env=dict(env, SECRET_KEY_FILE="/nonexistent"))
        self.assertEqual(rc, 78)
        self.assertIn("secret_key (env SECRET_KEY_FILE): cannot read /nonexistent", err)
        with tempfile.NamedTemporaryFile("w", suffix=".key") as f:
            f.write("a-long-enough-secret\n")
            f.flush()
            rc, out, err = keelproc.run_cli(keelproc.demo(), "config", env=dict(env, SECRET_KEY_FILE=f.name))
            self.assertEqual(rc, 0, err)
            self.assertNotIn("a-long-enough-secret", out + err)
        rc, _, err = keelproc.run_cli(keelproc.demo(), "config", "--check", env=dict(env, SECRET_KEY="short"))
        self.assertEqual(rc, 78)
        self.assertIn("secret_key (env SECRET_KEY): must be at least 8 characters", err)
        self.assertNotIn("short'", err)

    def test_fault_injection(self):
        server = self.start_server("--fault-error-ratio", "1", "--fault-latency", "200ms", binary=keelproc.demo())
        t0 = time.monotonic()
        r = call(server.port, "GET", "/api/users")
        self.assertEqual(r.status, 500)
        self.assertEqual(keelproc.get(server.port, "/health").status, 200)
        self.assertEqual(keelproc.get(server.port, "/plaintext").status, 200)
        server.stop()
        server = self.start_server("--fault-latency", "200ms", binary=keelproc.demo())
        t0 = time.monotonic()
        self.assertEqual(call(server.port, "GET", "/api/users").status, 200)
        self.assertGreaterEqual(time.monotonic() - t0, 0.2)
        server.stop()
        server = self.start_server("--fault-never-ready", "--metrics-bind", "127.0.0.1:0", listening=2,
                                   binary=keelproc.demo())
        r = keelproc.get(server.port, "/health/ready")
        self.assertEqual(r.status, 503)
        self.assertEqual(r.json()["checks"]["fault_never_ready"], {"status": "failing"})
        r = keelproc.get(keelproc.port_of(server.listening[1]), "/health/ready")
        self.assertEqual(r.json()["checks"]["fault_never_ready"]["error"], "fault_never_ready is set")
        self.assertEqual(keelproc.get(server.port, "/health").status, 200)
        rc, out, err = keelproc.run_cli(keelproc.demo(), "--bind", "127.0.0.1:0", "--workers", "2",
                                        "--fault-fail-startup", timeout=10)
        self.assertEqual(rc, 3, err)
        self.assertIn("fault_fail_startup is set", out)  # the startup_failed line (JSON: no plain stderr line)


class DemoStartsWithoutItsDatabase(KeelTestCase):
    """The database is down when keel-demo starts (Compose and Kubernetes start them in any order):
    the service starts anyway, alive but not ready, and becomes ready by itself once the database
    accepts connections — no crash loop."""

    def test_ready_once_the_database_comes_up(self):
        pg = deps.Postgres()  # not started yet: its port refuses connections
        self.addCleanup(pg.close)
        server = self.start_server("--workers", "2", "--health-cache-ttl", "100ms", "--metrics-bind", "127.0.0.1:0",
                                   listening=2, binary=keelproc.demo(), pin_workers=False,
                                   env=dict(os.environ, DATABASE_URL=pg.url, SECRET_KEY="postgres-test-secret"))
        admin = keelproc.port_of(server.listening[1])
        # Alive, not ready, naming the database; the API says why it cannot answer.
        deadline = time.monotonic() + 10
        while keelproc.get(server.port, "/health/startup").status != 200:
            self.assertLess(time.monotonic(), deadline, server.output_tail())
            time.sleep(0.05)
        self.assertEqual(keelproc.get(server.port, "/health").status, 200)
        r = keelproc.get(server.port, "/health/ready")
        self.assertEqual((r.status, r.json()["status"], r.json()["checks"]["database"]), (503, "failing",
                                                                                           {"status": "failing"}))
        error = keelproc.get(admin, "/health/ready").json()["checks"]["database"]["error"]
        self.assertIn("not migrated yet", error)
        self.assertIn(str(pg.port), error)  # the details: on the admin listener only
        r = call(server.port, "GET", "/api/users")
        doc = self.assertProblem(r, 503, close=False)
        self.assertIn("database", doc["detail"])
        self.assertEqual(r.header("Retry-After"), "1")
        retry = server.wait_for_stdout(lambda e: e.get("event") == "database_unavailable" and e.get("attempt", 0) >= 2)
        self.assertIsNotNone(retry, server.output_tail())
        self.assertIn(str(pg.port), retry["error"])
        self.assertTrue(server.alive())
        # The database comes up: ready without a restart.
        pg.start()
        deadline = time.monotonic() + 20
        while keelproc.get(server.port, "/health/ready").status != 200:
            self.assertLess(time.monotonic(), deadline, server.output_tail())
            time.sleep(0.1)
        ready = set()  # each worker retries on its own: wait for both
        while len(ready) < 2:
            e = server.wait_for_stdout(lambda e: e.get("event") == "database_ready" and e["pid"] not in ready,
                                       timeout=15)
            self.assertIsNotNone(e, server.output_tail())
            ready.add(e["pid"])
        r = call(server.port, "POST", "/api/users", {"name": "Late", "email": "late@example.com"})
        self.assertEqual(r.status, 201, r.text)
        with ThreadPoolExecutor(4) as pool:  # both workers migrated and serve
            self.assertEqual(set(pool.map(lambda _: call(server.port, "GET", "/api/users").status, range(16))), {200})
        self.assertTrue(server.alive())


class DemoOnPostgres(KeelTestCase, DemoCrud):
    @classmethod
    def setUpClass(cls):
        cls.pg = deps.Postgres()
        cls.addClassCleanup(cls.pg.close)
        cls.redis = deps.Redis()
        cls.addClassCleanup(cls.redis.close)
        cls.pg.start()
        cls.redis.start()

    def start_demo(self, cache: bool):
        env = dict(os.environ, DATABASE_URL=self.pg.url, SECRET_KEY="postgres-test-secret")
        if cache:
            env["CACHE_URL"] = self.redis.url
        return self.start_server("--workers", "2", "--health-cache-ttl", "200ms", binary=keelproc.demo(),
                                 pin_workers=False, env=env)

    def test_crud_without_cache(self):
        self.crud_round_trip(self.start_demo(cache=False).port)

    def test_crud_with_cache(self):
        server = self.start_demo(cache=True)
        self.crud_round_trip(server.port)
        # The cache holds what was read.
        uid = call(server.port, "POST", "/api/users", {"name": "Cached", "email": "cached@example.com"}).json()["id"]
        call(server.port, "GET", f"/api/users/{uid}")
        with Conn(self.redis.port) as c:
            c.send(f"GET keel-demo:user:{uid}\r\n".encode())
            self.assertIn(b"cached@example.com", c.read_until(b"}", timeout=2))

    def wait_ready(self, port: int, status: int, timeout: float = 5.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            r = keelproc.get(port, "/health/ready")
            if r.status == status or time.monotonic() > deadline:
                self.assertEqual(r.status, status, r.text)
                return r.json()
            time.sleep(0.1)

    def test_readiness_follows_database_and_cache_outages(self):
        server = self.start_demo(cache=True)
        self.assertEqual(self.wait_ready(server.port, 200)["status"], "ok")
        self.redis.stop()
        try:
            body = self.wait_ready(server.port, 200)
            deadline = time.monotonic() + 5
            while body["status"] != "degraded" and time.monotonic() < deadline:
                time.sleep(0.1)
                body = keelproc.get(server.port, "/health/ready").json()
            self.assertEqual(body["status"], "degraded")
            # Cache down: slower, not broken.
            r = call(server.port, "POST", "/api/users", {"name": "NoCache", "email": "nocache@example.com"})
            self.assertEqual(r.status, 201)
            self.assertEqual(call(server.port, "GET", f"/api/users/{r.json()['id']}").status, 200)
        finally:
            self.redis.start()
        self.pg.stop()
        try:
            body = self.wait_ready(server.port, 503)
            self.assertEqual(body["checks"]["database"]["status"], "failing")
            self.assertEqual(keelproc.get(server.port, "/health").status, 200)
            self.assertEqual(call(server.port, "GET", "/api/users").status, 500)
        finally:
            self.pg.start()
        self.wait_ready(server.port, 200, timeout=10)
        self.assertEqual(call(server.port, "GET", "/api/users").status, 200)  # pooled connections recover

    def test_connections_closed_by_a_database_restart_are_not_reused(self):
        # One worker, several pooled connections, and no request between the restart and the next
        # one: every idle connection is dead, and the first request after the restart must not be
        # the one that finds out.
        server = self.start_server("--workers", "1", binary=keelproc.demo(), pin_workers=False,
                                   env=dict(os.environ, DATABASE_URL=self.pg.url, SECRET_KEY="postgres-test-secret"))
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda _: call(server.port, "GET", "/api/users").status, range(32)))
        self.assertEqual(statuses, [200] * 32)
        self.pg.stop()
        self.pg.start()
        for _ in range(4):
            self.assertEqual(call(server.port, "GET", "/api/users").status, 200)


if __name__ == "__main__":
    unittest.main()


class DemoTracing(KeelTestCase):
    def test_database_calls_are_child_spans(self):
        from test_tracing import Collector, attrs
        collector = Collector()
        self.addCleanup(collector.close)
        work = tempfile.mkdtemp(prefix="keel-demo-trace-")
        self.addCleanup(shutil.rmtree, work, True)
        server = self.start_server(binary=keelproc.demo(), env=dict(
            os.environ, DATABASE_URL=f"sqlite:{work}/t.db", SECRET_KEY="trace-test-secret",
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{collector.port}", OTEL_BSP_SCHEDULE_DELAY="100"))
        uid = call(server.port, "POST", "/api/users", {"name": "T", "email": "t@example.com"}).json()["id"]
        call(server.port, "GET", f"/api/users/{uid}")
        post = collector.wait(lambda s: s["name"] == "POST /api/users")[0]
        insert = collector.wait(lambda s: s["name"] == "INSERT users")[0]
        self.assertEqual(insert["parentSpanId"], post["spanId"])
        self.assertEqual(attrs(insert)["db.system.name"], "sqlite")
        get = collector.wait(lambda s: s["name"] == "GET /api/users/{id:int}")[0]
        select = collector.wait(lambda s: s["name"] == "SELECT users" and s["traceId"] == get["traceId"])
        self.assertEqual(len(select), 1)


class DemoTraceContextHarness(KeelTestCase):
    """POST /test/tracecontext, the W3C conformance harness protocol, through keel::fetch."""

    def test_untrusted_bodies_are_bounded(self):
        work = tempfile.mkdtemp(prefix="keel-demo-harness-")
        self.addCleanup(shutil.rmtree, work, True)
        server = self.start_server(binary=keelproc.demo(), env=dict(
            os.environ, DATABASE_URL=f"sqlite:{work}/t.db", SECRET_KEY="trace-test-secret", TEST_ROUTES="true"))
        # Deep nesting crashed the worker (stack overflow): now refused before it is parsed.
        for body in ("[" * 100000 + "]" * 100000, '[{"url": "http://127.0.0.1:1/", "arguments": ' + "[" * 100000
                     + "]" * 100000 + "}]"):
            r = call(server.port, "POST", "/test/tracecontext", raw=body.encode())
            doc = self.assertProblem(r, 400, close=False)
            self.assertIn("limit_json_depth", doc["detail"])
        self.assertEqual(keelproc.get(server.port, "/health").status, 200)
        self.assertTrue(server.alive())
        # Steps are capped: no unbounded fan-out from one request.
        steps = [{"url": "http://127.0.0.1:1/x", "arguments": []}] * 33
        doc = self.assertProblem(call(server.port, "POST", "/test/tracecontext", steps), 422, close=False)
        self.assertIn("at most 32 steps", doc["detail"])
        # Only http(s) URLs are called.
        r = call(server.port, "POST", "/test/tracecontext", [{"url": "file:///etc/passwd", "arguments": []}])
        self.assertEqual(r.status, 400)

    def test_calls_propagate_the_context_and_record_client_spans(self):
        import http.server
        import threading
        from test_tracing import Collector, attrs
        collector = Collector()
        self.addCleanup(collector.close)
        received = []

        class Target(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                received.append((dict(self.headers), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        target = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Target)
        threading.Thread(target=target.serve_forever, daemon=True).start()
        self.addCleanup(target.server_close)
        self.addCleanup(target.shutdown)
        work = tempfile.mkdtemp(prefix="keel-demo-harness-")
        self.addCleanup(shutil.rmtree, work, True)
        env = dict(os.environ, DATABASE_URL=f"sqlite:{work}/t.db", SECRET_KEY="trace-test-secret",
                   OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{collector.port}", OTEL_BSP_SCHEDULE_DELAY="100")
        off = self.start_server(binary=keelproc.demo(), env=env)
        steps = [{"url": f"http://127.0.0.1:{target.server_address[1]}/a", "arguments": [{"x": 1}]}]
        self.assertEqual(call(off.port, "POST", "/test/tracecontext", steps).status, 404)
        off.stop()
        server = self.start_server(binary=keelproc.demo(), env=dict(env, TEST_ROUTES="true"))
        trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
        with Conn(server.port) as c:
            r = c.request("POST", "/test/tracecontext",
                          headers={"Content-Type": "application/json", "X-Request-ID": "harness-1",
                                   "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01", "tracestate": "vendor=v1"},
                          body=json.dumps(steps * 2).encode())
        self.assertEqual(r.status, 200)
        self.assertEqual(len(received), 2)  # in order, each answered before the next
        headers, body = received[0]
        self.assertEqual(json.loads(body), [{"x": 1}])
        tp = headers["traceparent"].split("-")
        self.assertEqual((tp[0], tp[1], tp[3]), ("00", trace_id, "01"))
        self.assertEqual(headers["X-Request-ID"], "harness-1")
        self.assertEqual(headers["tracestate"], "vendor=v1")
        server_span = collector.wait(lambda s: s["name"] == "POST /test/tracecontext" and s["traceId"] == trace_id)[0]
        deadline = time.monotonic() + 5
        clients = []
        while len(clients) < 2 and time.monotonic() < deadline:
            clients = collector.wait(lambda s: s.get("kind") == 3 and s["traceId"] == trace_id, timeout=0.5)
        self.assertEqual(len(clients), 2)
        self.assertEqual({c["parentSpanId"] for c in clients}, {server_span["spanId"]})
        self.assertIn(tp[2], {c["spanId"] for c in clients})  # the callee's parent is our CLIENT span
        self.assertEqual(int(attrs(clients[0])["http.response.status_code"]), 200)
