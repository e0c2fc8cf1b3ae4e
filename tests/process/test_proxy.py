"""Behind proxies, through the real binary: X-Forwarded-For/-Proto/-Host/-Port and Forwarded from
trusted peers only (a client that is not trusted cannot spoof them), chains of trusted hops, quoted
IPv6 in Forwarded, malformed values that change nothing, unix socket peers, what the access log and
the spans say; the PROXY protocol v1 and v2 (TCP4, TCP6, LOCAL, TLVs, split over several packets,
before TLS), a missing, malformed or too slow header closing the connection and counted; and
--root-path routing."""

import os
import shutil
import socket
import ssl
import struct
import tempfile
import time
import unittest

import keelproc
from keelproc import Conn, KeelTestCase
from test_logging import wait_events
from test_metrics import scrape, value
from test_tracing import Collector, attrs

EX_CONFIG = 78

XFF_ALL = {"X-Forwarded-For": "198.51.100.1, 203.0.113.9", "X-Forwarded-Proto": "https",
           "X-Forwarded-Host": "shop.example", "X-Forwarded-Port": "8443"}


def info(port: int, headers=None, target: str = "/proxy-info") -> dict:
    r = keelproc.get(port, target, headers=headers)
    assert r.status == 200, r
    return r.json()


# ---- PROXY protocol headers ---------------------------------------------------------------------

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_v1(src: str, sport: int, family: str = "TCP4", dst: str | None = None, dport: int = 8000) -> bytes:
    dst = dst or ("127.0.0.1" if family == "TCP4" else "::1")
    return f"PROXY {family} {src} {dst} {sport} {dport}\r\n".encode()


def proxy_v2(src: str | None, sport: int = 0, local: bool = False, tlvs: bytes = b"") -> bytes:
    if src is None:  # UNSPEC
        body, fam = b"", 0x00
    elif ":" in src:
        body = socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, "::1")
        body += struct.pack("!HH", sport, 8000)
        fam = 0x21
    else:
        body = socket.inet_aton(src) + socket.inet_aton("127.0.0.1") + struct.pack("!HH", sport, 8000)
        fam = 0x11
    body += tlvs
    return V2_SIGNATURE + bytes([0x20 if local else 0x21, fam]) + struct.pack("!H", len(body)) + body


def tlv(kind: int, data: bytes) -> bytes:
    return bytes([kind]) + struct.pack("!H", len(data)) + data


def request_bytes(target: str = "/proxy-info", headers=None, close: bool = False) -> bytes:
    h = dict(headers or {})
    if close:
        h["Connection"] = "close"
    return keelproc.build_request("GET", target, h)


class ProxyHeadersTest(KeelTestCase):
    """Default settings: proxy headers on, 127.0.0.1 and ::1 trusted."""

    @classmethod
    def setUpClass(cls):
        cls.server = cls.start_class_server()

    def test_without_proxy_headers_the_peer_is_the_client(self):
        doc = info(self.server.port)
        self.assertRegex(doc["client_address"], r"^127\.0\.0\.1:\d+$")
        self.assertEqual(doc["client_address"], doc["peer_address"])
        self.assertEqual(doc["scheme"], "http")
        self.assertEqual(doc["host"], "127.0.0.1")

    def test_x_forwarded_from_a_trusted_peer(self):
        doc = info(self.server.port, XFF_ALL)
        # 198.51.100.1 was the client's own (forged) entry; the proxy appended the real address.
        self.assertEqual(doc["client_address"], "203.0.113.9")
        self.assertRegex(doc["peer_address"], r"^127\.0\.0\.1:\d+$")
        self.assertEqual(doc["scheme"], "https")
        self.assertEqual(doc["host"], "shop.example:8443")

    def test_x_forwarded_proto_alone_makes_the_scheme_https(self):
        doc = info(self.server.port, {"X-Forwarded-Proto": "https"})
        self.assertEqual(doc["scheme"], "https")
        self.assertEqual(doc["host"], "127.0.0.1")
        self.assertEqual(doc["client_address"], doc["peer_address"])

    def test_forwarded_with_quoted_ipv6(self):
        doc = info(self.server.port, {"Forwarded": 'for="[2001:db8:cafe::17]:4711";proto=https;host="api.example"'})
        self.assertEqual(doc["client_address"], "[2001:db8:cafe::17]:4711")
        self.assertEqual(doc["scheme"], "https")
        self.assertEqual(doc["host"], "api.example")

    def test_x_forwarded_wins_over_forwarded(self):
        doc = info(self.server.port, {"Forwarded": "for=198.51.100.66;proto=https", "X-Forwarded-For": "203.0.113.9"})
        self.assertEqual(doc["client_address"], "203.0.113.9")
        self.assertEqual(doc["scheme"], "http")

    def test_malformed_values_keep_the_peer(self):
        for headers in ({"X-Forwarded-For": "not-an-ip"}, {"X-Forwarded-For": "203.0.113.9, 300.1.1.1"},
                        {"X-Forwarded-Proto": "javascript"}, {"X-Forwarded-Host": "evil.example/x?y"},
                        {"X-Forwarded-Port": "99999"}, {"Forwarded": "for=203.0.113.9:80"},
                        {"Forwarded": 'for="203.0.113.9'}, {"Forwarded": "for=unknown;proto=gopher"},
                        {"X-Forwarded-For": "203.0.113.9\xff"}):
            doc = info(self.server.port, headers)
            self.assertEqual(doc["client_address"], doc["peer_address"], headers)
            self.assertEqual(doc["scheme"], "http", headers)
            self.assertEqual(doc["host"], "127.0.0.1", headers)
        self.assertTrue(self.server.alive())

    def test_each_request_of_a_connection_starts_from_the_peer(self):
        with Conn(self.server.port) as c:
            first = c.get("/proxy-info", headers=XFF_ALL).json()
            second = c.get("/proxy-info").json()
        self.assertEqual(first["client_address"], "203.0.113.9")
        self.assertEqual(second["client_address"], second["peer_address"])
        self.assertEqual(second["scheme"], "http")
        self.assertEqual(second["host"], "127.0.0.1")

    def test_access_log_names_the_forwarded_client(self):
        keelproc.get(self.server.port, "/users/77", headers={"X-Forwarded-For": "203.0.113.77"})
        line = self.server.wait_for_stdout(lambda e: e.get("event") == "request_handled" and e.get("path") == "/users/77")
        self.assertIsNotNone(line, self.server.output_tail())
        self.assertEqual(line["client_ip"], "203.0.113.77")


class TrustTest(KeelTestCase):
    def test_an_untrusted_peer_cannot_spoof(self):
        # The test client (127.0.0.1) is not the trusted proxy 10.0.0.1.
        server = self.start_server("--forwarded-allow-ips", "10.0.0.1")
        doc = info(server.port, dict(XFF_ALL, Forwarded="for=198.51.100.2;proto=https"))
        self.assertRegex(doc["client_address"], r"^127\.0\.0\.1:\d+$")
        self.assertEqual(doc["client_address"], doc["peer_address"])
        self.assertEqual(doc["scheme"], "http")
        self.assertEqual(doc["host"], "127.0.0.1")
        keelproc.get(server.port, "/users/5", headers={"X-Forwarded-For": "203.0.113.5"})
        line = wait_events(server, "request_handled", 2)[-1]
        self.assertEqual(line["client_ip"], "127.0.0.1")

    def test_proxy_headers_off(self):
        server = self.start_server("--no-proxy-headers")
        doc = info(server.port, XFF_ALL)
        self.assertEqual(doc["client_address"], doc["peer_address"])
        self.assertEqual(doc["scheme"], "http")

    def test_chain_of_trusted_hops(self):
        server = self.start_server("--forwarded-allow-ips", "127.0.0.1, 10.0.0.0/8, 2001:db8::/32")
        doc = info(server.port, {"X-Forwarded-For": "198.51.100.1, 203.0.113.9, 10.1.2.3, 2001:db8::5",
                                 "X-Forwarded-Proto": "https, http, http"})
        self.assertEqual(doc["client_address"], "203.0.113.9")
        self.assertEqual(doc["scheme"], "https")  # what the client's hop (third from the right) saw
        # Every hop trusted: the leftmost is the client.
        self.assertEqual(info(server.port, {"X-Forwarded-For": "10.9.9.9, 10.1.2.3"})["client_address"], "10.9.9.9")
        # The same through Forwarded, quoted IPv6 included.
        doc = info(server.port, {"Forwarded": 'for=198.51.100.1, for="[2001:db9::1]:4711";proto=https, '
                                              'for="[2001:db8::5]", for=10.1.2.3'})
        self.assertEqual(doc["client_address"], "[2001:db9::1]:4711")
        self.assertEqual(doc["scheme"], "https")

    def test_star_trusts_every_peer(self):
        server = self.start_server("--forwarded-allow-ips", "*")
        self.assertEqual(info(server.port, {"X-Forwarded-For": "203.0.113.9"})["client_address"], "203.0.113.9")

    def test_environment_variable_and_invalid_values(self):
        env = dict(os.environ, FORWARDED_ALLOW_IPS="10.0.0.1")  # uvicorn's and gunicorn's variable
        server = self.start_server(env=env)
        doc = info(server.port, {"X-Forwarded-For": "203.0.113.9"})
        self.assertEqual(doc["client_address"], doc["peer_address"])
        for bad in ("10.0.0.0/33", "localhost", "10.0.0.1,nope"):
            rc, _, err = keelproc.run_cli(keelproc.testapp(), "--forwarded-allow-ips", bad, "config", "--check")
            self.assertEqual(rc, EX_CONFIG, (bad, err))
            self.assertIn("forwarded_allow_ips", err)
        rc, _, err = keelproc.run_cli(keelproc.testapp(), "--root-path", "api", "config", "--check")
        self.assertEqual(rc, EX_CONFIG, err)

    def test_unix_socket_peers_are_trusted(self):
        directory = tempfile.mkdtemp(prefix="keel-proxy-")
        self.addCleanup(shutil.rmtree, directory, True)
        path = os.path.join(directory, "s.sock")
        server = self.start_server("--forwarded-allow-ips", "10.0.0.1", bind=f"unix:{path}", expect_port=False)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(5)
        sock.connect(path)
        with Conn(0, sock=sock) as c:
            doc = c.get("/proxy-info", headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}).json()
        self.assertEqual(doc["client_address"], "203.0.113.9")
        self.assertTrue(doc["peer_address"].startswith("unix"), doc)
        self.assertEqual(doc["scheme"], "https")
        self.assertTrue(server.alive())


class TracingTest(KeelTestCase):
    def test_span_attributes_name_the_forwarded_client_and_url(self):
        collector = Collector()
        self.addCleanup(collector.close)
        env = dict(os.environ, OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{collector.port}",
                   OTEL_BSP_SCHEDULE_DELAY="100")
        server = self.start_server("--root-path", "/api", env=env)
        keelproc.get(server.port, "/api/users/31", headers={"X-Forwarded-For": "203.0.113.31",
                                                            "X-Forwarded-Proto": "https",
                                                            "X-Forwarded-Host": "shop.example"})
        spans = collector.wait(lambda s: attrs(s).get("http.route") == "/users/{id:int}")
        self.assertTrue(spans, server.output_tail())
        a = attrs(spans[0])
        self.assertEqual(a["client.address"], "203.0.113.31")
        self.assertEqual(a["network.peer.address"], "127.0.0.1")
        self.assertEqual(a["url.scheme"], "https")
        self.assertEqual(a["url.path"], "/api/users/31")
        self.assertEqual(a["server.address"], "shop.example")
        self.assertEqual(int(a["server.port"]), 443)
        self.assertEqual(collector.problems, [])


class RootPathTest(KeelTestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = cls.start_class_server("--root-path", "/api")

    def test_routes_with_or_without_the_prefix(self):
        for target in ("/api/proxy-info", "/proxy-info"):  # the proxy passes the prefix on, or strips it
            doc = info(self.server.port, target=target)
            self.assertEqual(doc["path"], "/proxy-info", target)
            self.assertEqual(doc["root_path"], "/api", target)
        self.assertEqual(keelproc.get(self.server.port, "/api/users/3").json()["id"], 3)
        self.assertEqual(keelproc.get(self.server.port, "/api/health").status, 200)
        self.assertEqual(keelproc.get(self.server.port, "/apiusers/3").status, 404)

    def test_access_log_has_the_path_the_client_asked_for(self):
        keelproc.get(self.server.port, "/api/users/12")
        line = self.server.wait_for_stdout(lambda e: e.get("event") == "request_handled" and
                                           e.get("route") == "/users/{id:int}")
        self.assertIsNotNone(line, self.server.output_tail())
        self.assertEqual(line["path"], "/api/users/12")


class ProxyProtocolTest(KeelTestCase):
    """--proxy-protocol on the --bind listener; metrics on an admin listener that takes none."""

    @classmethod
    def setUpClass(cls):
        cls.server = cls.start_class_server("--proxy-protocol", "--header-timeout", "1s", "--metrics-bind",
                                            "127.0.0.1:0", listening=2)
        cls.admin_port = keelproc.port_of(cls.server.listening[1])

    def exchange(self, data: bytes, pieces: int = 1) -> dict:
        """Sends data (in pieces, with pauses) on a new connection; returns the JSON answer."""
        with Conn(self.server.port) as c:
            step = max(1, len(data) // pieces)
            for i in range(0, len(data), step):
                c.send(data[i:i + step])
                if pieces > 1:
                    time.sleep(0.02)
            r = c.read_response()
        self.assertEqual(r.status, 200, r)
        return r.json()

    def rejected(self) -> float:
        return value(scrape(self.admin_port).text, "http_requests_rejected_total", reason="proxy_protocol")

    def assertRejected(self, data: bytes, before: float, wait: float = 3.0):
        with Conn(self.server.port) as c:
            if data:
                c.send(data)
            self.assertClosedByServer(c, timeout=wait, allow_reset=True)  # no answer, not even a 400
        deadline = time.monotonic() + 2
        while self.rejected() < before + 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(self.rejected(), before + 1)

    def test_v1_tcp4_and_tcp6(self):
        doc = self.exchange(proxy_v1("203.0.113.7", 51234) + request_bytes())
        self.assertEqual(doc["peer_address"], "203.0.113.7:51234")
        self.assertEqual(doc["client_address"], "203.0.113.7:51234")
        doc = self.exchange(proxy_v1("2001:db8::7", 4711, "TCP6") + request_bytes())
        self.assertEqual(doc["peer_address"], "[2001:db8::7]:4711")

    def test_v2_tcp4_tcp6_with_tlvs(self):
        doc = self.exchange(proxy_v2("203.0.113.8", 40000) + request_bytes())
        self.assertEqual(doc["peer_address"], "203.0.113.8:40000")
        tlvs = tlv(0x02, b"shop.example") + tlv(0xE0, b"\xaa" * 300)
        doc = self.exchange(proxy_v2("2001:db8::8", 40001, tlvs=tlvs) + request_bytes())
        self.assertEqual(doc["peer_address"], "[2001:db8::8]:40001")

    def test_v2_local_and_unspec_keep_the_real_peer(self):
        for header in (proxy_v2("203.0.113.9", 1, local=True), proxy_v2(None), b"PROXY UNKNOWN\r\n"):
            doc = self.exchange(header + request_bytes())
            self.assertRegex(doc["peer_address"], r"^127\.0\.0\.1:\d+$", header)

    def test_header_split_over_several_packets(self):
        doc = self.exchange(proxy_v2("203.0.113.10", 1234, tlvs=tlv(0xE1, b"x" * 100)) + request_bytes(), pieces=9)
        self.assertEqual(doc["peer_address"], "203.0.113.10:1234")
        doc = self.exchange(proxy_v1("203.0.113.11", 1235) + request_bytes(), pieces=7)
        self.assertEqual(doc["peer_address"], "203.0.113.11:1235")

    def test_one_header_serves_the_whole_keep_alive_connection(self):
        with Conn(self.server.port) as c:
            c.send(proxy_v1("203.0.113.12", 999))
            first = c.get("/proxy-info").json()
            second = c.get("/proxy-info").json()
        self.assertEqual(first["peer_address"], "203.0.113.12:999")
        self.assertEqual(second["peer_address"], "203.0.113.12:999")

    def test_proxy_headers_are_judged_against_the_proxy_source(self):
        # An untrusted source: its X-Forwarded-For is ignored.
        doc = self.exchange(proxy_v1("203.0.113.13", 1) + request_bytes(headers={"X-Forwarded-For": "198.51.100.1"}))
        self.assertEqual(doc["client_address"], "203.0.113.13:1")
        # A trusted one (an L7 proxy behind an L4 balancer): read.
        doc = self.exchange(proxy_v1("127.0.0.1", 2) + request_bytes(headers={"X-Forwarded-For": "198.51.100.1"}))
        self.assertEqual(doc["client_address"], "198.51.100.1")
        self.assertEqual(doc["peer_address"], "127.0.0.1:2")

    def test_missing_header_closes_and_counts(self):
        self.assertRejected(request_bytes(), self.rejected())

    def test_malformed_headers_close_and_count(self):
        for bad in (b"PROXY TCP4 203.0.113.1 127.0.0.1 99999 80\r\n", b"PROXY TCP4 2001:db8::1 ::1 1 2\r\n",
                    b"PROXY TCP4 203.0.113.1 127.0.0.1 1 2 3\r\n", V2_SIGNATURE + b"\x31\x11\x00\x0c" + b"\x00" * 12,
                    V2_SIGNATURE + b"\x21\x11\x00\x04" + b"\x00" * 4, b"PROXY " + b"A" * 120):
            self.assertRejected(bad + request_bytes(), self.rejected())

    def test_too_slow_header_closes_and_counts(self):
        started = time.monotonic()
        self.assertRejected(b"PROXY TCP4 203.0.113.1", self.rejected(), wait=4.0)  # --header-timeout 1s
        self.assertLess(time.monotonic() - started, 4.0)

    def test_truncated_header_closes_and_counts(self):
        before = self.rejected()
        s = keelproc.connect_raw(self.server.port)
        s.sendall(proxy_v2("203.0.113.1", 1, tlvs=tlv(0xE0, b"x" * 50))[:40])
        s.shutdown(socket.SHUT_WR)
        s.settimeout(3)
        self.assertEqual(s.recv(100), b"")
        s.close()
        deadline = time.monotonic() + 2
        while self.rejected() < before + 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(self.rejected(), before + 1)

    def test_a_connection_that_sends_nothing_is_not_counted(self):
        before = self.rejected()
        socket.create_connection(("127.0.0.1", self.server.port)).close()  # a balancer's TCP check
        time.sleep(0.2)
        self.assertEqual(self.rejected(), before)
        self.assertTrue(self.server.alive())

    def test_admin_listener_takes_no_header(self):
        r = keelproc.get(self.admin_port, "/health")
        self.assertEqual(r.status, 200)


class ProxyProtocolTlsTest(KeelTestCase):
    """The PROXY header comes before the TLS ClientHello; the handshake reads what follows it."""

    def test_proxy_then_tls(self):
        try:
            import test_tls
        except ImportError as e:  # pragma: no cover
            self.skipTest(str(e))
        if shutil.which("openssl") is None:
            self.skipTest("openssl is not installed")
        test_tls.setUpModule()
        self.addCleanup(test_tls.tearDownModule)
        cert, key = test_tls.pki.localhost
        server = self.start_server("--proxy-protocol", "--certfile", cert, "--keyfile", key)
        ctx = test_tls.client_context()
        for header, peer in ((proxy_v2("203.0.113.20", 5555), "203.0.113.20:5555"),
                             (proxy_v1("2001:db8::20", 5556, "TCP6"), "[2001:db8::20]:5556")):
            raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            raw.sendall(header)
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(b"GET /proxy-info HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            self.assertTrue(head.startswith(b"HTTP/1.1 200"), data)
            doc = __import__("json").loads(body)
            self.assertEqual(doc["peer_address"], peer)
            self.assertEqual(doc["scheme"], "https")
        # A ClientHello without the header: closed, never a handshake.
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        with self.assertRaises((ssl.SSLError, ConnectionError, OSError)):
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                if not s.recv(100):
                    raise ConnectionError("closed")


if __name__ == "__main__":
    unittest.main()
