"""Metrics through the real binary: /metrics in both exposition formats (checked by promtool and
by the prometheus_client OpenMetrics parser), gzip, route templates as labels, rejections,
counters that survive a worker killed with SIGKILL and a recycled one (exact totals), and a real
Prometheus scraping a loaded 2-worker keel."""

import gzip
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

import deps
import keelproc
from keelproc import Conn, KeelTestCase

PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
                     "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)')


def scrape(port: int, accept: str | None = None, encoding: str | None = None):
    headers = {}
    if accept:
        headers["Accept"] = accept
    if encoding:
        headers["Accept-Encoding"] = encoding
    with Conn(port) as c:
        return c.get("/metrics", headers=headers)


def samples(text: str) -> list[tuple[str, dict, float]]:
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        out.append((m.group(1), labels, float(m.group(4))))
    return out


def value(text: str, name: str, **labels) -> float:
    return sum(v for n, l, v in samples(text) if n == name and all(l.get(k) == x for k, x in labels.items()))


class ExpositionTest(KeelTestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = cls.start_class_server("--workers", "2", pin_workers=False)
        for _ in range(20):
            keelproc.get(cls.server.port, "/plaintext")
            keelproc.get(cls.server.port, "/users/42")
            keelproc.get(cls.server.port, "/no/such/path/123")

    def test_prometheus_text_passes_promtool(self):
        resp = scrape(self.server.port)
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.header("Content-Type"), "text/plain; version=0.0.4; charset=utf-8")
        text = resp.text
        check = subprocess.run(["promtool", "check", "metrics"], input=resp.body, capture_output=True, timeout=30)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        self.assertEqual((check.stdout + check.stderr).strip(), b"")
        # Route templates, never raw paths; 404s as "unmatched".
        self.assertGreaterEqual(value(text, "http_requests_total", route="/users/{id:int}", status="200"), 20)
        self.assertGreaterEqual(value(text, "http_requests_total", route="unmatched", status="404"), 20)
        self.assertNotIn("/users/42", text)
        self.assertNotIn("/no/such/path", text)
        self.assertEqual(value(text, "keel_workers"), 2)
        self.assertGreater(value(text, "process_cpu_seconds_total"), 0)
        self.assertGreater(value(text, "process_resident_memory_bytes"), 1e6)
        self.assertGreater(value(text, "process_open_fds"), 3)
        self.assertGreater(value(text, "process_start_time_seconds"), time.time() - 600)
        self.assertEqual(value(text, "keel_build_info"), 1)
        for family in ("http_request_duration_seconds", "http_request_size_bytes", "http_response_size_bytes",
                       "keel_event_loop_lag_seconds"):
            self.assertIn(f"# TYPE {family} histogram", text)
        for family in ("http_requests_in_flight", "http_connections_open", "keel_thread_pool_queue_depth"):
            self.assertIn(f"# TYPE {family} gauge", text)

    def test_histograms_are_consistent(self):
        text = scrape(self.server.port).text
        buckets = [(l, v) for n, l, v in samples(text) if n == "http_request_duration_seconds_bucket"
                   and l.get("route") == "/plaintext"]
        self.assertTrue(buckets)
        values = [v for _, v in buckets]
        self.assertEqual(values, sorted(values), "buckets are cumulative")
        self.assertEqual(buckets[-1][0]["le"], "+Inf")
        count = value(text, "http_request_duration_seconds_count", route="/plaintext")
        self.assertEqual(values[-1], count)
        self.assertEqual(count, value(text, "http_requests_total", route="/plaintext"))

    def test_openmetrics_negotiated_like_prometheus_and_parsable(self):
        resp = scrape(self.server.port, accept=PROMETHEUS_ACCEPT)
        self.assertEqual(resp.header("Content-Type"), "application/openmetrics-text; version=1.0.0; charset=utf-8")
        self.assertTrue(resp.text.endswith("# EOF\n"))
        # `promtool check metrics` lints only the Prometheus text format (an OpenMetrics counter's
        # `x_total` samples under `# TYPE x counter` read as "no help text" there); OpenMetrics is
        # checked by Prometheus' own OpenMetrics parser, the one its scrapes use ...
        work = tempfile.mkdtemp(prefix="keel-om-")
        self.addCleanup(shutil.rmtree, work, True)
        # (the backfill reader wants a timestamp on every sample: before an exemplar, if any)
        stamped = re.sub(r"^([^#\n][^\n]*?) (\S+)( # \{.*)?$",
                         lambda m: f"{m.group(1)} {m.group(2)} {int(time.time())}{m.group(3) or ''}",
                         resp.text, flags=re.M)
        with open(os.path.join(work, "in.om"), "w") as f:
            f.write(stamped)
        check = subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", os.path.join(work, "in.om"),
                                os.path.join(work, "out")], capture_output=True, timeout=60)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        # ... and by the client library's strict one.
        parser = subprocess.run(
            ["/usr/bin/python3", "-c",
             "import sys\nfrom prometheus_client.openmetrics.parser import text_string_to_metric_families as p\n"
             "print(len(list(p(sys.stdin.read()))))"],
            input=resp.body, capture_output=True, timeout=30)
        self.assertEqual(parser.returncode, 0, parser.stderr)
        self.assertGreater(int(parser.stdout), 15)

    def test_gzip_when_accepted(self):
        resp = scrape(self.server.port, encoding="gzip, deflate")
        self.assertEqual(resp.header("Content-Encoding"), "gzip")
        text = gzip.decompress(resp.body).decode()
        self.assertIn("# TYPE http_requests_total counter", text)
        self.assertIsNone(scrape(self.server.port, encoding="gzip;q=0, identity").header("Content-Encoding"))

    def test_rejections_are_counted_by_reason(self):
        before = scrape(self.server.port).text
        with Conn(self.server.port) as c:
            c.send(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
            c.read_response()
        with Conn(self.server.port) as c:
            c.send(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            c.read_response()
        after = scrape(self.server.port).text
        for reason in ("parse_error", "too_large"):
            self.assertEqual(value(after, "http_requests_rejected_total", reason=reason),
                             value(before, "http_requests_rejected_total", reason=reason) + 1, reason)


class AdminListener(KeelTestCase):
    def test_metrics_only_on_the_admin_listener(self):
        server = self.start_server("--metrics-bind", "127.0.0.1:0", listening=2)
        admin = keelproc.port_of(server.listening[1])
        self.assertNotEqual(admin, server.port)
        keelproc.get(server.port, "/plaintext")
        self.assertEqual(keelproc.get(server.port, "/metrics").status, 404)
        resp = keelproc.get(admin, "/metrics")
        self.assertEqual(resp.status, 200)
        self.assertGreaterEqual(value(resp.text, "http_requests_total", route="/plaintext"), 1)
        self.assertEqual(keelproc.get(admin, "/health/ready").status, 200)
        self.assertEqual(keelproc.get(admin, "/plaintext").status, 404)  # the application is not there
        self.assertEqual(keelproc.get(server.port, "/health").status, 200)

    def test_admin_probes_are_served_while_traffic_is_saturated(self):
        # Issue 14, point 3: before, the admin listener's connections counted against
        # --worker-connections and its requests against --limit-concurrency, so a traffic flood
        # made /health answer 503 there (and the kubelet killed a healthy pod).
        server = self.start_server("--metrics-bind", "127.0.0.1:0", "--worker-connections", "3",
                                   "--limit-concurrency", "2", listening=2)
        admin = keelproc.port_of(server.listening[1])
        held = []
        # Two in-flight slow requests take every --limit-concurrency slot ...
        for _ in range(2):
            c = Conn(server.port, timeout=10)
            self.addCleanup(c.close)
            c.send(keelproc.build_request("GET", "/sleep?ms=4000"))
            held.append(c)
        # ... and a third connection fills --worker-connections.
        third = Conn(server.port, timeout=5)
        self.addCleanup(third.close)
        time.sleep(0.3)
        self.assertStatus(third.get("/plaintext"), 503)  # the concurrency limit bites on traffic
        fourth = Conn(server.port, timeout=5)
        self.addCleanup(fourth.close)
        fourth.send(keelproc.build_request("GET", "/plaintext"))
        self.assertStatus(fourth.read_response(timeout=3), 503)  # and the connection cap
        # The admin listener answers every probe and scrape meanwhile, on fresh and kept connections.
        with Conn(admin, timeout=3) as kept:
            for _ in range(5):
                for path in ("/health", "/health/ready", "/metrics"):
                    self.assertStatus(keelproc.get(admin, path, timeout=3), 200, server)
                    self.assertStatus(kept.get(path), 200, server)
        for c in held:
            self.assertStatus(c.read_response(timeout=10), 200)

    def test_an_invalid_admin_address_is_a_configuration_error(self):
        rc, _, err = keelproc.run_cli(keelproc.testapp(), "--metrics-bind", "nowhere", "config", "--check")
        self.assertEqual(rc, 78)
        self.assertIn("metrics_bind (flag --metrics-bind): invalid bind address 'nowhere'", err)


class MetricsOff(KeelTestCase):
    def test_an_empty_metrics_path_turns_metrics_off(self):
        server = self.start_server("--metrics-path", "")
        self.assertEqual(keelproc.get(server.port, "/metrics").status, 404)
        self.assertEqual(keelproc.get(server.port, "/plaintext").status, 200)
        server = self.start_server("--metrics-path", "/internal/metrics")
        self.assertEqual(keelproc.get(server.port, "/metrics").status, 404)
        self.assertIn("http_requests_total", keelproc.get(server.port, "/internal/metrics").text)


class CountersSurviveWorkerExits(KeelTestCase):
    def test_counts_are_exact_across_sigkill_and_recycling(self):
        server = self.start_server("--workers", "2", "--max-requests", "150", pin_workers=False)
        route = "/plaintext"
        sent = 0
        last = 0.0

        def check_scrape():
            nonlocal last
            total = value(scrape(server.port).text, "http_requests_total", route=route)
            self.assertGreaterEqual(total, last, "a counter went backwards")
            last = total
            return total

        def send(n):
            nonlocal sent
            for _ in range(n):
                with Conn(server.port) as c:
                    self.assertEqual(c.get(route).status, 200)
                sent += 1

        send(100)
        check_scrape()
        victim = keelproc.child_pids(server.pid)[0]
        os.kill(victim, signal.SIGKILL)  # between requests: nothing in flight on it
        deadline = time.monotonic() + 5
        while victim in keelproc.child_pids(server.pid) or len(keelproc.child_pids(server.pid)) < 2:
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.02)
        check_scrape()
        send(400)  # crosses --max-requests: workers are recycled meanwhile
        check_scrape()
        time.sleep(0.5)
        self.assertEqual(check_scrape(), sent)
        text = scrape(server.port).text
        self.assertGreaterEqual(value(text, "keel_worker_restarts_total", reason="recycled"), 1)
        self.assertGreaterEqual(value(text, "keel_worker_restarts_total", reason="killed_oom_suspected"), 1)


class RealPrometheus(KeelTestCase):
    def test_prometheus_scrapes_a_loaded_service(self):
        if not shutil.which("prometheus"):
            self.skipTest("prometheus is not installed")
        server = self.start_server("--workers", "2", pin_workers=False)
        work = tempfile.mkdtemp(prefix="keel-prom-")
        self.addCleanup(shutil.rmtree, work, True)
        prom_port = deps.free_port()
        with open(os.path.join(work, "prometheus.yml"), "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    "scrape_configs:\n  - job_name: keel\n    static_configs:\n"
                    f"      - targets: ['127.0.0.1:{server.port}']\n")
        prom = subprocess.Popen(
            ["prometheus", f"--config.file={work}/prometheus.yml", f"--storage.tsdb.path={work}/data",
             f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        self.addCleanup(lambda: (prom.poll() is None and prom.terminate(), prom.wait(10)))

        def api(query: str):
            url = f"http://127.0.0.1:{prom_port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
            with urllib.request.urlopen(url, timeout=5) as r:
                return json.load(r)["data"]["result"]

        def targets():
            # Prometheus accepts connections before it is ready and answers 503 until then
            # ("Service Unavailable"): no targets yet, not an error.
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{prom_port}/api/v1/targets", timeout=5) as r:
                    return json.load(r)["data"]["activeTargets"]
            except urllib.error.HTTPError as e:
                if e.code == 503:
                    return []
                raise

        # Started, and scraping keel already: rate() over a window must not reach back to before
        # the series existed.
        deadline = time.monotonic() + 30
        while not (deps.accepts(prom_port) and [t["health"] for t in targets()] == ["up"]):
            self.assertLess(time.monotonic(), deadline, "prometheus did not start scraping")
            time.sleep(0.2)
        time.sleep(2)

        # A paced load: 4 clients x 50 requests/s = 200 requests/s.
        stop = threading.Event()
        sent = [0] * 4

        def client(i):
            with Conn(server.port) as c:
                nxt = time.monotonic()
                while not stop.is_set():
                    self.assertEqual(c.get("/plaintext").status, 200)
                    sent[i] += 1
                    nxt += 0.02
                    time.sleep(max(0.0, nxt - time.monotonic()))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        time.sleep(9)
        rate = api('sum(rate(http_requests_total{route="/plaintext"}[5s]))')
        p99 = api('histogram_quantile(0.99, sum(rate(http_request_duration_seconds_bucket[5s])) by (le))')
        stop.set()
        for t in threads:
            t.join()
        client_rate = sum(sent) / (time.monotonic() - t0)
        self.assertTrue(rate, "no rate from prometheus")
        measured = float(rate[0]["value"][1])
        self.assertLess(abs(measured - client_rate) / client_rate, 0.10, f"prometheus {measured} vs client {client_rate}")
        q = float(p99[0]["value"][1])
        self.assertTrue(q == q and q != float("inf") and q > 0, f"p99 {q}")
        self.assertEqual([(t["health"], t["lastError"]) for t in targets()], [("up", "")])


if __name__ == "__main__":
    unittest.main()
