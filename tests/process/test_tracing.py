"""Tracing through the real binary: W3C trace context continued or started, SERVER spans with the
HTTP semantic-convention attributes exported over OTLP/HTTP JSON to a collector on loopback (which
checks every export request against the OTLP rules), child spans across co_await and offload,
samplers, error status, log correlation, exemplars, a collector that is down (requests
unaffected, drops counted), keel-demo's database and fetch spans, and the W3C Trace Context
conformance suite at STRICT_LEVEL=2."""

import gzip
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import deps
import keelproc
from keelproc import Conn, KeelTestCase

PARENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"


_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_HEX16 = re.compile(r"^[0-9a-f]{16}$")
_DECIMAL = re.compile(r"^(0|[1-9][0-9]*)$")
_VALUE_KINDS = {"stringValue", "intValue", "doubleValue", "boolValue", "arrayValue", "kvlistValue", "bytesValue"}


def _attribute_problems(where, attributes, empty_strings_ok=False):
    problems = []
    if not isinstance(attributes, list):
        return [f"{where}: attributes is not a list"]
    keys = [a.get("key") for a in attributes]
    for key in set(k for k in keys if keys.count(k) > 1):
        problems.append(f"{where}: attribute {key!r} appears {keys.count(key)} times")
    for a in attributes:
        key, value = a.get("key"), a.get("value")
        if not isinstance(key, str) or not key:
            problems.append(f"{where}: attribute without a key: {a!r}")
        if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in _VALUE_KINDS:
            problems.append(f"{where}: attribute {key!r} has no single typed value: {value!r}")
            continue
        kind, v = next(iter(value.items()))
        if kind == "intValue" and not (isinstance(v, int) or (isinstance(v, str) and re.match(r"^-?[0-9]+$", v))):
            problems.append(f"{where}: attribute {key!r}: intValue {v!r}")
        if kind == "stringValue" and (not isinstance(v, str) or (v == "" and not empty_strings_ok)):
            problems.append(f"{where}: attribute {key!r}: stringValue {v!r}")
    return problems


def otlp_problems(doc):
    """What makes an ExportTraceServiceRequest (OTLP/HTTP JSON) invalid, or breaks a rule keel keeps
    (no empty string attribute on a span, unique keys, well-formed ids and times)."""
    problems = []
    for rs in doc.get("resourceSpans", []):
        problems += _attribute_problems("resource", rs.get("resource", {}).get("attributes", []))
        for ss in rs.get("scopeSpans", []):
            if not ss.get("scope", {}).get("name"):
                problems.append("scope without a name")
            for span in ss.get("spans", []):
                where = f"span {span.get('name')!r}"
                if not _HEX32.match(span.get("traceId", "")) or set(span["traceId"]) == {"0"}:
                    problems.append(f"{where}: traceId {span.get('traceId')!r}")
                if not _HEX16.match(span.get("spanId", "")) or set(span["spanId"]) == {"0"}:
                    problems.append(f"{where}: spanId {span.get('spanId')!r}")
                if "parentSpanId" in span and not _HEX16.match(span["parentSpanId"]):
                    problems.append(f"{where}: parentSpanId {span['parentSpanId']!r}")
                if not isinstance(span.get("name"), str) or not span["name"]:
                    problems.append(f"{where}: empty name")
                if span.get("kind") not in (1, 2, 3, 4, 5):
                    problems.append(f"{where}: kind {span.get('kind')!r}")
                start, end = span.get("startTimeUnixNano", ""), span.get("endTimeUnixNano", "")
                if not (_DECIMAL.match(str(start)) and _DECIMAL.match(str(end)) and int(end) >= int(start) > 0):
                    problems.append(f"{where}: times {start!r}..{end!r}")
                if not isinstance(span.get("flags", 0), int) or not 0 <= span.get("flags", 0) < 2**32:
                    problems.append(f"{where}: flags {span.get('flags')!r}")
                if span.get("status", {}).get("code", 0) not in (0, 1, 2):
                    problems.append(f"{where}: status {span.get('status')!r}")
                problems += _attribute_problems(where, span.get("attributes", []))
                for event in span.get("events", []):
                    if not event.get("name") or not _DECIMAL.match(str(event.get("timeUnixNano", ""))):
                        problems.append(f"{where}: event {event!r}")
                    problems += _attribute_problems(f"{where} event", event.get("attributes", []), True)
    return problems


class Collector:
    """A minimal OTLP/HTTP collector: stores every span it receives, and what is wrong with any
    export request (otlp_problems)."""

    def __init__(self):
        self.spans = []
        self.problems = []
        self.requests = 0
        self.lock = threading.Lock()
        collector = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                doc = json.loads(body)
                with collector.lock:
                    collector.requests += 1
                    collector.problems += otlp_problems(doc)
                    for rs in doc["resourceSpans"]:
                        resource = {a["key"]: a["value"] for a in rs["resource"]["attributes"]}
                        for ss in rs["scopeSpans"]:
                            for span in ss["spans"]:
                                span["_resource"] = resource
                                collector.spans.append(span)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def wait(self, predicate, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                found = [s for s in self.spans if predicate(s)]
            if found:
                return found
            time.sleep(0.05)
        return []


def attrs(span):
    out = {}
    for a in span.get("attributes", []):
        v = a["value"]
        out[a["key"]] = next(iter(v.values()))
    return out


class TracingTest(KeelTestCase):
    def setUp(self):
        self.collector = Collector()
        self.addCleanup(self.collector.close)
        # Every test: whatever keel exported is valid OTLP (runs before the collector closes).
        self.addCleanup(lambda: self.assertEqual(self.collector.problems, []))

    def start(self, *flags, **env):
        e = dict(os.environ, OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{self.collector.port}",
                 OTEL_BSP_SCHEDULE_DELAY="100", OTEL_SERVICE_NAME="testapp-traced")
        e.update(env)
        return self.start_server(*flags, env=e)

    def test_server_span_continues_the_callers_trace(self):
        server = self.start()
        with Conn(server.port) as c:
            r = c.get("/users/42", headers={"traceparent": f"00-{PARENT_TRACE}-{PARENT_SPAN}-01",
                                            "tracestate": "vendor=abc,other=x", "User-Agent": "tracer/1"})
        self.assertEqual(r.status, 200)
        spans = self.collector.wait(lambda s: s["traceId"] == PARENT_TRACE)
        self.assertEqual(len(spans), 1)
        span = spans[0]
        self.assertEqual(span["parentSpanId"], PARENT_SPAN)
        self.assertEqual(span["name"], "GET /users/{id:int}")
        self.assertEqual(span["kind"], 2)
        self.assertEqual(span["traceState"], "vendor=abc,other=x")
        self.assertEqual(span["_resource"]["service.name"], {"stringValue": "testapp-traced"})
        a = attrs(span)
        self.assertEqual(a["http.request.method"], "GET")
        self.assertEqual(a["url.path"], "/users/42")
        self.assertEqual(a["http.route"], "/users/{id:int}")
        self.assertEqual(int(a["http.response.status_code"]), 200)
        self.assertEqual(a["user_agent.original"], "tracer/1")
        self.assertEqual(a["client.address"], "127.0.0.1")
        self.assertEqual(a["network.protocol.version"], "1.1")
        self.assertEqual(a["network.protocol.name"], "http")
        self.assertIn("server.port", a)
        self.assertGreater(int(span["endTimeUnixNano"]), int(span["startTimeUnixNano"]))
        # The access log line carries the same ids.
        line = server.wait_for_stdout(lambda e: e.get("event") == "request_handled" and e.get("path") == "/users/42")
        self.assertEqual((line["trace_id"], line["span_id"]), (PARENT_TRACE, span["spanId"]))

    def test_a_new_trace_when_there_is_none_or_it_is_invalid(self):
        server = self.start()
        keelproc.get(server.port, "/users/1")
        with Conn(server.port) as c:
            c.get("/users/2", headers={"traceparent": "00-" + "0" * 32 + "-" + PARENT_SPAN + "-01",
                                       "tracestate": "vendor=abc"})
        spans = self.collector.wait(lambda s: attrs(s).get("url.path") == "/users/2")
        self.assertEqual(len(spans), 1)
        self.assertNotIn(spans[0].get("parentSpanId") or "", (PARENT_SPAN,))
        self.assertFalse(spans[0].get("parentSpanId"))
        self.assertFalse(spans[0].get("traceState"))  # dropped with the invalid traceparent
        self.assertNotEqual(spans[0]["traceId"], "0" * 32)

    def test_several_traceparent_fields_start_a_new_trace(self):
        # W3C Trace Context: traceparent is not a list; two fields (even equal ones) are invalid.
        server = self.start()
        other = "12345678901234567890123456789012"
        for path, values in (("/users/11", [PARENT_TRACE, other]), ("/users/12", [PARENT_TRACE, PARENT_TRACE])):
            head = f"GET {path} HTTP/1.1\r\nHost: t\r\n"
            for trace_id in values:
                head += f"traceparent: 00-{trace_id}-{PARENT_SPAN}-01\r\n"
            head += "tracestate: vendor=abc\r\n\r\n"
            with Conn(server.port) as c:
                c.send(head.encode())
                self.assertEqual(c.read_response().status, 200)
            span = self.collector.wait(lambda s, path=path: attrs(s).get("url.path") == path)[0]
            self.assertNotIn(span["traceId"], (PARENT_TRACE, other))
            self.assertFalse(span.get("parentSpanId"))
            self.assertFalse(span.get("traceState"))

    def test_duplicated_tracestate_keys_are_inherited(self):
        server = self.start()
        with Conn(server.port) as c:
            c.send((f"GET /users/13 HTTP/1.1\r\nHost: t\r\ntraceparent: 00-{PARENT_TRACE}-{PARENT_SPAN}-01\r\n"
                    "tracestate: foo=1,bar=2\r\ntracestate: foo=3\r\n\r\n").encode())
            self.assertEqual(c.read_response().status, 200)
        span = self.collector.wait(lambda s: attrs(s).get("url.path") == "/users/13")[0]
        self.assertEqual(span["traceId"], PARENT_TRACE)
        self.assertEqual(span["traceState"], "foo=1,bar=2")

    def test_http_semantic_conventions(self):
        server = self.start(OTEL_RESOURCE_ATTRIBUTES="deployment.environment.name=test,telemetry.sdk.language=cpp")
        # A method semconv does not know: _OTHER, the original kept, "HTTP" in the span name.
        with Conn(server.port) as c:
            r = c.request("PURGE", "/users/21?x=1", headers={"Host": "svc.example:8081"})
        self.assertIn(r.status, (404, 405))
        span = self.collector.wait(lambda s: attrs(s).get("url.path") == "/users/21")[0]
        a = attrs(span)
        # A 405 carries the template of the route the path has (the method is the wrong one).
        self.assertEqual(span["name"], "HTTP /users/{id:int}" if r.status == 405 else "HTTP")
        self.assertEqual(a["http.request.method"], "_OTHER")
        self.assertEqual(a["http.request.method_original"], "PURGE")
        self.assertEqual(a["url.query"], "x=1")
        self.assertEqual((a["server.address"], int(a["server.port"])), ("svc.example", 8081))
        resource = {k: next(iter(v.values())) for k, v in span["_resource"].items()}
        self.assertRegex(resource["telemetry.sdk.version"], r"^[0-9]+\.[0-9]+")
        self.assertEqual(resource["telemetry.sdk.name"], "keel")
        self.assertEqual(resource["deployment.environment.name"], "test")
        # A known method and a query with a signature in it; the peer's address and port.
        with Conn(server.port) as c:
            self.assertEqual(c.get("/users/22?a=b&sig=s3cr3t&c").status, 200)
            local_port = c.sock.getsockname()[1]
        span = self.collector.wait(lambda s: attrs(s).get("url.path") == "/users/22")[0]
        a = attrs(span)
        self.assertEqual(span["name"], "GET /users/{id:int}")
        self.assertEqual(a["http.request.method"], "GET")
        self.assertNotIn("http.request.method_original", a)
        self.assertEqual(a["url.query"], "a=b&sig=REDACTED&c")
        self.assertEqual(a["network.peer.address"], "127.0.0.1")
        self.assertEqual(int(a["network.peer.port"]), local_port)
        # No query: no url.query. HTTP/1.0 without Host: no server.address (nor server.port).
        with Conn(server.port) as c:
            c.send(b"GET /users/23 HTTP/1.0\r\n\r\n")
            self.assertEqual(c.read_response().status, 200)
        span = self.collector.wait(lambda s: attrs(s).get("url.path") == "/users/23")[0]
        a = attrs(span)
        self.assertNotIn("url.query", a)
        self.assertNotIn("server.address", a)
        self.assertNotIn("server.port", a)
        self.assertEqual(a["network.protocol.version"], "1.0")

    def test_child_spans_across_co_await_and_offload(self):
        server = self.start()
        keelproc.get(server.port, "/span-demo")
        server_span = self.collector.wait(lambda s: s["name"] == "GET /span-demo")[0]
        work = self.collector.wait(lambda s: s["name"] == "work")[0]
        inner = self.collector.wait(lambda s: s["name"] == "offloaded")[0]
        self.assertEqual(work["parentSpanId"], server_span["spanId"])
        self.assertEqual(inner["parentSpanId"], work["spanId"])
        self.assertEqual({work["traceId"], inner["traceId"]}, {server_span["traceId"]})
        self.assertEqual(attrs(work), {"work.items": "3", "work.kind": "demo"})
        self.assertEqual([e["name"] for e in work.get("events", [])], ["halfway"])
        line = server.wait_for_stdout(lambda e: e.get("event") == "inside_span")
        self.assertEqual(line["span_id"], work["spanId"])
        line = server.wait_for_stdout(lambda e: e.get("event") == "inside_inner_span")
        self.assertEqual(line["span_id"], inner["spanId"])

    def test_health_and_metrics_are_not_traced_unless_asked(self):
        server = self.start()
        for path in ("/health", "/health/ready", "/metrics"):
            keelproc.get(server.port, path)
        keelproc.get(server.port, "/users/9")
        self.collector.wait(lambda s: attrs(s).get("url.path") == "/users/9")
        self.assertEqual([s["name"] for s in self.collector.spans if s["kind"] == 2], ["GET /users/{id:int}"])
        server.stop()
        server = self.start("--trace-health")
        keelproc.get(server.port, "/health")
        self.assertTrue(self.collector.wait(lambda s: s["name"] == "GET /health"))

    def test_server_errors_mark_the_span(self):
        server = self.start()
        self.assertEqual(keelproc.get(server.port, "/fail").status, 500)
        span = self.collector.wait(lambda s: s["name"] == "GET /fail")[0]
        self.assertEqual(span["status"]["code"], 2)
        events = span.get("events", [])
        self.assertEqual([e["name"] for e in events], ["exception"])
        ev = attrs(events[0])
        self.assertEqual(ev["exception.type"], "std::runtime_error")
        self.assertEqual(ev["exception.message"], "handler failure")

    def test_always_off_exports_nothing_but_logs_keep_ids(self):
        server = self.start(OTEL_TRACES_SAMPLER="always_off")
        with Conn(server.port) as c:
            c.get("/users/3", headers={"traceparent": f"00-{PARENT_TRACE}-{PARENT_SPAN}-01"})
        line = server.wait_for_stdout(lambda e: e.get("event") == "request_handled")
        self.assertEqual(len(line["trace_id"]), 32)
        time.sleep(0.5)
        self.assertEqual(self.collector.spans, [])

    def test_parent_not_sampled_is_respected(self):
        server = self.start()
        with Conn(server.port) as c:
            c.get("/users/4", headers={"traceparent": f"00-{PARENT_TRACE}-{PARENT_SPAN}-00"})
        line = server.wait_for_stdout(lambda e: e.get("event") == "request_handled")
        self.assertEqual(line["trace_id"], PARENT_TRACE)
        time.sleep(0.5)
        self.assertEqual(self.collector.spans, [])

    def test_exemplars_carry_sampled_trace_ids(self):
        server = self.start()
        with Conn(server.port) as c:
            c.get("/users/5", headers={"traceparent": f"00-{PARENT_TRACE}-{PARENT_SPAN}-01"})
        with Conn(server.port) as c:
            r = c.get("/metrics", headers={"Accept": "application/openmetrics-text;version=1.0.0"})
        self.assertIn(f'# {{trace_id="{PARENT_TRACE}"}}', r.text)

    def test_a_dead_collector_changes_nothing_for_requests(self):
        dead = deps.free_port()
        server = self.start(OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{dead}", OTEL_BSP_MAX_QUEUE_SIZE="16",
                            OTEL_BSP_EXPORT_TIMEOUT="300", OTEL_BSP_SCHEDULE_DELAY="50")
        t0 = time.monotonic()
        for _ in range(300):
            self.assertEqual(keelproc.get(server.port, "/plaintext").status, 200)
        self.assertLess(time.monotonic() - t0, 10)
        time.sleep(1.5)
        text = keelproc.get(server.port, "/metrics").text
        dropped = [l for l in text.splitlines() if l.startswith("keel_spans_dropped_total")]
        self.assertTrue(dropped and float(dropped[0].split()[-1]) > 0, dropped)


def demo_call(port, method, target, body=None):
    return keelproc.get(port, target, method=method, body=None if body is None else json.dumps(body),
                        headers={"Content-Type": "application/json"})


class DemoSpans(KeelTestCase):
    """keel-demo's database spans (OTel database semantic conventions) and keel::fetch's CLIENT
    spans, exported to a collector on loopback."""

    def setUp(self):
        self.collector = Collector()
        self.addCleanup(self.collector.close)
        self.addCleanup(lambda: self.assertEqual(self.collector.problems, []))
        self.work = tempfile.mkdtemp(prefix="keel-demo-spans-")
        self.addCleanup(shutil.rmtree, self.work, True)

    def start_demo(self, **env):
        e = dict(os.environ, DATABASE_URL=f"sqlite:{self.work}/t.db", SECRET_KEY="span-test-secret",
                 OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{self.collector.port}", OTEL_BSP_SCHEDULE_DELAY="100")
        e.update(env)
        return self.start_server(binary=keelproc.demo(), env=e)

    def test_sqlite_spans_are_internal(self):
        server = self.start_demo()
        self.assertEqual(demo_call(server.port, "POST", "/api/users", {"name": "S", "email": "s@example.com"}).status,
                         201)
        insert = self.collector.wait(lambda s: s["name"] == "INSERT users")[0]
        a = attrs(insert)
        self.assertEqual(insert["kind"], 1)
        self.assertEqual((a["db.system.name"], a["db.operation.name"], a["db.collection.name"], a["db.query.summary"]),
                         ("sqlite", "INSERT", "users", "INSERT users"))
        self.assertNotIn("db.system", a)  # the pre-1.26 names are gone
        self.assertNotIn("db.operation", a)
        self.assertNotIn("server.address", a)

    def test_postgres_spans_are_clients_and_failures_carry_error_type(self):
        pg = deps.Postgres()
        self.addCleanup(pg.close)
        pg.start()
        redis = deps.Redis()
        self.addCleanup(redis.close)
        redis.start()
        server = self.start_demo(DATABASE_URL=pg.url, CACHE_URL=redis.url)
        r = demo_call(server.port, "POST", "/api/users", {"name": "P", "email": "p@example.com"})
        self.assertEqual(r.status, 201)
        self.assertEqual(demo_call(server.port, "GET", f"/api/users/{r.json()['id']}").status, 200)
        cache = self.collector.wait(lambda s: s["name"] == "GET cache")[0]
        self.assertEqual(cache["kind"], 3)
        self.assertEqual((attrs(cache)["db.system.name"], attrs(cache)["db.operation.name"]), ("redis", "GET"))
        insert = self.collector.wait(lambda s: s["name"] == "INSERT users")[0]
        a = attrs(insert)
        self.assertEqual(insert["kind"], 3)
        self.assertEqual((a["db.system.name"], a["db.operation.name"], a["db.collection.name"]),
                         ("postgresql", "INSERT", "users"))
        self.assertEqual(a["db.namespace"], "postgres")
        self.assertEqual((a["server.address"], int(a["server.port"])), ("127.0.0.1", pg.port))
        self.assertNotIn("error.type", a)
        pg.stop()
        self.assertEqual(demo_call(server.port, "GET", "/api/users").status, 500)
        failed = self.collector.wait(lambda s: s["name"] == "SELECT users" and s["status"].get("code") == 2)
        self.assertTrue(failed, self.collector.spans)
        a = attrs(failed[0])
        self.assertEqual(failed[0]["kind"], 3)
        self.assertRegex(a["error.type"], r"^(08[0-9A-Z]{3}|57P0[0-9])$")  # a connection-class SQLSTATE
        self.assertEqual(a["db.response.status_code"], a["error.type"])

    def test_database_errors_never_show_the_password(self):
        # A %00 escape is well-formed (URL validation lets it through) but libpq refuses it and
        # repeats the whole password in its message: "forbidden value %00 in percent-encoded value".
        password = "hunter2-db-password%00x"
        port = deps.free_port()
        rc, out, err = keelproc.run_cli(keelproc.demo(), "--bind", "127.0.0.1:0", "--workers", "1", timeout=10,
                                        env=dict(os.environ, SECRET_KEY="span-test-secret",
                                                 DATABASE_URL=f"postgresql://app:{password}@127.0.0.1:{port}/app"))
        output = out + err
        self.assertIn("percent-encoded value", output)  # libpq's message is there ...
        self.assertNotIn("hunter2-db-password", output)  # ... without the password

    def test_fetch_client_spans_carry_no_credentials(self):
        import http.server as hs
        seen = []

        class Target(hs.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                seen.append(self.headers.get("Authorization"))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        target = hs.ThreadingHTTPServer(("127.0.0.1", 0), Target)
        threading.Thread(target=target.serve_forever, daemon=True).start()
        self.addCleanup(target.server_close)
        self.addCleanup(target.shutdown)
        server = self.start_demo(TEST_ROUTES="true")
        port = target.server_address[1]
        steps = [{"url": f"http://app:pw-in-url@127.0.0.1:{port}/cb?sig=sig-in-url&v=1", "arguments": []}]
        self.assertEqual(demo_call(server.port, "POST", "/test/tracecontext", steps).status, 200)
        self.assertEqual(len(seen), 1)
        self.assertTrue(seen[0] and seen[0].startswith("Basic "))  # the credentials were used ...
        client = self.collector.wait(lambda s: s["kind"] == 3)[0]
        a = attrs(client)
        self.assertEqual(a["url.full"], f"http://REDACTED:REDACTED@127.0.0.1:{port}/cb?sig=REDACTED&v=1")
        self.assertEqual((a["server.address"], int(a["server.port"])), ("127.0.0.1", port))
        self.assertEqual((client["name"], a["http.request.method"]), ("POST", "POST"))
        self.assertNotIn("in-url", json.dumps(client))  # ... and recorded nowhere


# The W3C Trace Context conformance suite (test/ of the w3c/trace-context repository), kept beside
# the repository in shared/tools/; W3C_TRACE_CONTEXT_TEST names another copy.
W3C_SUITE = os.environ.get("W3C_TRACE_CONTEXT_TEST") or os.path.normpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "tools",
                 "w3c-trace-context-test"))


class W3CTraceContextSuite(KeelTestCase):
    """keel-demo's POST /test/tracecontext (the suite's test service protocol) against the W3C
    suite at STRICT_LEVEL=2 and SPEC_LEVEL=2 (Level 2, the random flag): every case passes."""

    def test_every_case_passes_at_strict_level_2(self):
        if not os.path.exists(os.path.join(W3C_SUITE, "test.py")):
            # shared/ lies beside the checkout on the team's machines; a checkout elsewhere skips,
            # unless W3C_TRACE_CONTEXT_REQUIRED=1 says the suite must run.
            if os.environ.get("W3C_TRACE_CONTEXT_REQUIRED") == "1":
                self.fail(f"the W3C trace-context suite is missing: {W3C_SUITE}")
            self.skipTest(f"no W3C trace-context suite at {W3C_SUITE} (set W3C_TRACE_CONTEXT_TEST)")
        try:
            import aiohttp  # noqa: F401  (the suite's harness server; Debian's python3-aiohttp)
        except ImportError:
            self.fail("the W3C suite needs python3-aiohttp (scripts/install-deps.sh installs it)")
        work = tempfile.mkdtemp(prefix="keel-w3c-")
        self.addCleanup(shutil.rmtree, work, True)
        server = self.start_server(binary=keelproc.demo(), env=dict(
            os.environ, DATABASE_URL=f"sqlite:{work}/t.db", SECRET_KEY="w3c-test-secret", TEST_ROUTES="true"))
        port = deps.free_port()
        env = dict(os.environ, STRICT_LEVEL="2", SPEC_LEVEL="2", HARNESS_HOST="127.0.0.1", HARNESS_PORT=str(port),
                   HARNESS_TIMEOUT="5", PYTHONDONTWRITEBYTECODE="1")
        env.pop("HARNESS_DEBUG", None)
        proc = subprocess.run([sys.executable, "test.py", f"http://127.0.0.1:{server.port}/test/tracecontext"],
                              cwd=W3C_SUITE, env=env, capture_output=True, text=True, timeout=240)
        report = proc.stdout + proc.stderr
        self.assertEqual(proc.returncode, 0, report)
        ran = re.search(r"^Ran (\d+) tests?", report, re.M)
        self.assertTrue(ran and int(ran.group(1)) >= 40, report)
        self.assertRegex(report, r"(?m)^OK$", report)  # no failures, and nothing skipped ("OK (skipped=...)")


if __name__ == "__main__":
    unittest.main()
