"""Tracing through the real binary: W3C trace context continued or started, SERVER spans with the
HTTP semantic-convention attributes exported over OTLP/HTTP JSON to a collector on loopback,
child spans across co_await and offload, samplers, error status, log correlation, exemplars, and
a collector that is down (requests unaffected, drops counted)."""

import gzip
import http.server
import json
import os
import threading
import time
import unittest

import deps
import keelproc
from keelproc import Conn, KeelTestCase

PARENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"


class Collector:
    """A minimal OTLP/HTTP collector: stores every span it receives."""

    def __init__(self):
        self.spans = []
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


if __name__ == "__main__":
    unittest.main()
