"""TLS on the --bind listeners: handshakes with TLS 1.2 and 1.3 (and older ones refused), ALPN,
SNI choosing among several certificates, client certificates (required, optional), session
resumption on another worker and after a HUP, certificate rotation by replacing the files (under
load, with no failed request) and a bad new pair rejected, plain HTTP sent to the TLS port, the
handshake timeout, configuration errors, and what handlers, logs and metrics see of it all."""

import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest

import keelproc
from keelproc import KeelTestCase

EX_CONFIG = 78


def openssl(*args: str, cwd: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


class Pki:
    """A throwaway CA, server certificates for localhost and other.test, and a client certificate."""

    def __init__(self, directory: str):
        self.dir = directory
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
                "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=keel test CA", cwd=directory)
        self.ca = self.path("ca.pem")

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def issue(self, name: str, cn: str, sans: str | None = None, client: bool = False, days: int = 2) -> tuple[str, str]:
        """A key and a CA-signed certificate: returns (certfile, keyfile)."""
        key, csr, cert, ext = (self.path(f"{name}.{s}") for s in ("key", "csr", "pem", "ext"))
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", csr,
                "-subj", f"/CN={cn}", cwd=self.dir)
        with open(ext, "w") as f:
            if sans:
                f.write(f"subjectAltName={sans}\n")
            f.write("extendedKeyUsage=" + ("clientAuth" if client else "serverAuth") + "\n")
        openssl("x509", "-req", "-in", csr, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", str(days),
                "-out", cert, "-extfile", ext, cwd=self.dir)
        return cert, key


_tmp = None
pki: Pki | None = None


def setUpModule():
    global _tmp, pki
    _tmp = tempfile.mkdtemp(prefix="keel-tls-")
    pki = Pki(_tmp)
    pki.localhost = pki.issue("localhost", "localhost", "DNS:localhost,IP:127.0.0.1")
    pki.other = pki.issue("other", "other.test", "DNS:other.test,DNS:*.wild.test")
    pki.client = pki.issue("client", "alice", client=True)


def tearDownModule():
    shutil.rmtree(_tmp, ignore_errors=True)


def client_context(alpn=("http/1.1",), version: ssl.TLSVersion | None = None, cert=None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=pki.ca)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    if version is not None:
        ctx.minimum_version = version
        ctx.maximum_version = version
    if cert is not None:
        ctx.load_cert_chain(*cert)
    return ctx


class TlsResult:
    def __init__(self, status: int, headers: dict, body: bytes, sock: ssl.SSLSocket, peer_der: bytes):
        self.status = status
        self.headers = headers
        self.body = body
        self.version = sock.version()
        self.alpn = sock.selected_alpn_protocol()
        self.session = sock.session
        self.session_reused = sock.session_reused
        self.peer_der = peer_der

    def json(self):
        return json.loads(self.body)


def tls_get(port: int, path: str = "/tls", ctx: ssl.SSLContext | None = None, server_hostname: str = "localhost",
            session=None, timeout: float = 10.0) -> TlsResult:
    """One HTTPS request on a new connection (Connection: close), read to EOF."""
    ctx = ctx or client_context()
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    with ctx.wrap_socket(raw, server_hostname=server_hostname, session=session) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {server_hostname}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
        return TlsResult(status, headers, body, s, s.getpeercert(binary_form=True))


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def der_of(pem_file: str) -> bytes:
    with open(pem_file) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def metric_value(port: int, name: str, labels: str = "", ctx: ssl.SSLContext | None = None) -> float | None:
    body = tls_get(port, "/metrics", ctx=ctx).body.decode()
    want = name + ("{" + labels + "}" if labels else "")
    for line in body.splitlines():
        if line.startswith(want + " "):
            return float(line.split(" ")[-1])
    return None


class HandshakeTest(KeelTestCase):
    @classmethod
    def setUpClass(cls):
        cert, key = pki.localhost
        other = ":".join(pki.other)
        cls.server = cls.start_class_server("--certfile", cert, "--keyfile", key, "--tls-certificate", other,
                                            "--tls-handshake-timeout", "700ms")

    def test_tls13_request_and_what_the_handler_sees(self):
        r = tls_get(self.server.port, ctx=client_context(alpn=("http/1.1",)))
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.version, "TLSv1.3")
        self.assertEqual(r.alpn, "http/1.1")
        doc = r.json()
        self.assertEqual(doc["scheme"], "https")
        self.assertEqual(doc["tls"]["version"], "TLSv1.3")
        self.assertTrue(doc["tls"]["cipher"].startswith("TLS_"), doc)
        self.assertEqual(doc["tls"]["server_name"], "localhost")
        self.assertEqual(doc["tls"]["alpn"], "http/1.1")
        self.assertEqual(doc["tls"]["client_subject"], "")
        self.assertEqual(r.peer_der, der_of(pki.localhost[0]))
        # The access log line carries the TLS parameters.
        line = self.server.wait_for_stdout(lambda e: e.get("event") == "request_handled" and e.get("path") == "/tls"
                                           and e.get("tls_version") == "TLSv1.3")
        self.assertIsNotNone(line, self.server.output_tail())
        self.assertTrue(line["tls_cipher"].startswith("TLS_"), line)

    def test_tls12_with_an_intermediate_cipher(self):
        r = tls_get(self.server.port, ctx=client_context(version=ssl.TLSVersion.TLSv1_2))
        self.assertEqual(r.status, 200)
        self.assertEqual(r.version, "TLSv1.2")
        cipher = r.json()["tls"]["cipher"]
        self.assertIn("ECDHE", cipher)
        self.assertIn("GCM", cipher + "CHACHA20" if "CHACHA20" in cipher else cipher)

    def test_tls11_is_refused_and_counted(self):
        before = metric_value(self.server.port, "keel_tls_handshake_failures_total", 'reason="protocol_version"') or 0
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        with self.assertRaises((ssl.SSLError, ConnectionResetError)):
            tls_get(self.server.port, ctx=ctx)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            now = metric_value(self.server.port, "keel_tls_handshake_failures_total", 'reason="protocol_version"') or 0
            if now > before:
                break
            time.sleep(0.1)
        self.assertGreater(now, before)

    def test_alpn_http10_is_accepted(self):
        r = tls_get(self.server.port, ctx=client_context(alpn=("http/1.0",)))
        self.assertEqual(r.status, 200)
        self.assertEqual(r.alpn, "http/1.0")

    def test_alpn_without_a_common_protocol_fails_the_handshake(self):
        with self.assertRaises(ssl.SSLError) as cm:
            tls_get(self.server.port, ctx=client_context(alpn=("h3", "spdy/3")))
        self.assertIn("NO_APPLICATION_PROTOCOL", str(cm.exception).upper().replace(" ", "_"))

    def test_sni_chooses_the_certificate(self):
        self.assertEqual(tls_get(self.server.port, server_hostname="other.test").peer_der, der_of(pki.other[0]))
        self.assertEqual(tls_get(self.server.port, server_hostname="api.wild.test").peer_der, der_of(pki.other[0]),
                         "a wildcard name matches one label")
        self.assertEqual(tls_get(self.server.port, server_hostname="localhost").peer_der, der_of(pki.localhost[0]))
        # An unknown name gets the default certificate (and the client's check of it fails).
        ctx = client_context()
        ctx.check_hostname = False
        self.assertEqual(tls_get(self.server.port, ctx=ctx, server_hostname="unknown.test").peer_der,
                         der_of(pki.localhost[0]))

    def test_plain_http_to_the_tls_port_gets_a_400(self):
        with socket.create_connection(("127.0.0.1", self.server.port), timeout=5) as s:
            s.sendall(b"GET /tls HTTP/1.1\r\nHost: localhost\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
        self.assertTrue(data.startswith(b"HTTP/1.1 400 "), data)
        self.assertIn(b"this port speaks HTTPS", data)

    def test_a_silent_client_is_closed_at_the_handshake_timeout(self):
        before = metric_value(self.server.port, "keel_tls_handshake_failures_total", 'reason="timeout"') or 0
        with socket.create_connection(("127.0.0.1", self.server.port), timeout=5) as s:
            start = time.monotonic()
            self.assertEqual(s.recv(1), b"", "closed without a byte")
            waited = time.monotonic() - start
        self.assertGreater(waited, 0.5)
        self.assertLess(waited, 3.0)
        self.assertEqual(metric_value(self.server.port, "keel_tls_handshake_failures_total", 'reason="timeout"'),
                         before + 1)

    def test_metrics_count_handshakes_and_expose_certificate_expiry(self):
        tls_get(self.server.port)
        self.assertGreater(metric_value(self.server.port, "keel_tls_handshakes_total", 'resumed="false"'), 0)
        self.assertGreater(metric_value(self.server.port, "keel_tls_handshake_duration_seconds_count"), 0)
        not_after = metric_value(self.server.port, "keel_tls_certificate_not_after_seconds", 'name="localhost"')
        cert = ssl._ssl._test_decode_cert(pki.localhost[0])
        self.assertEqual(not_after, ssl.cert_time_to_seconds(cert["notAfter"]))
        self.assertIsNotNone(
            metric_value(self.server.port, "keel_tls_certificate_not_after_seconds", 'name="other.test"'))

    def test_the_healthcheck_subcommand_speaks_tls_to_a_tls_listener(self):
        cert, key = pki.localhost
        rc, out, err = keelproc.run_cli(keelproc.testapp(), "--bind", f"127.0.0.1:{self.server.port}", "--certfile",
                                        cert, "--keyfile", key, "healthcheck")
        self.assertEqual(rc, 0, out + err)
        rc, out, err = keelproc.run_cli(keelproc.testapp(), "healthcheck", "--url",
                                        f"https://127.0.0.1:{self.server.port}/health")
        self.assertEqual(rc, 0, out + err)
        # Plain HTTP to the TLS port is a 400: the probe would be wrong, and says so.
        rc, out, err = keelproc.run_cli(keelproc.testapp(), "healthcheck", "--url",
                                        f"http://127.0.0.1:{self.server.port}/health")
        self.assertEqual(rc, 1)
        self.assertIn("400", err)

    def test_binds_may_mix_plaintext_and_tls(self):
        cert, key = pki.localhost
        server = self.start_server("--certfile", cert, "--keyfile", key, "--bind", "127.0.0.1:0", "--bind",
                                   "http://127.0.0.1:0", "--bind", "https://127.0.0.1:0", listening=3)
        schemes = sorted(a.split("://")[0] for a in server.listening)
        self.assertEqual(schemes, ["http", "https", "https"], server.listening)
        for address in server.listening:
            port = keelproc.port_of(address)
            if address.startswith("https://"):
                self.assertEqual(tls_get(port).json()["scheme"], "https")
            else:
                with keelproc.Conn(port) as c:
                    self.assertEqual(c.request("GET", "/tls").json()["scheme"], "http")

    def test_an_https_bind_without_a_certificate_is_a_configuration_error(self):
        rc, out, err = keelproc.run_cli(keelproc.testapp(), "--bind", "https://127.0.0.1:0")
        self.assertEqual(rc, EX_CONFIG, out + err)
        self.assertIn("https://127.0.0.1:0 is https: it needs certfile and keyfile", out + err)

    def test_the_admin_listener_stays_plaintext(self):
        cert, key = pki.localhost
        server = self.start_server("--certfile", cert, "--keyfile", key, "--metrics-bind", "127.0.0.1:0", listening=2)
        admin_port = keelproc.port_of(server.listening[1])
        with keelproc.Conn(admin_port) as c:
            self.assertStatus(c.request("GET", "/metrics"), 200)
        self.assertEqual(tls_get(server.port).status, 200)


class ClientCertificateTest(KeelTestCase):
    def start(self, reqs: str):
        cert, key = pki.localhost
        return self.start_server("--certfile", cert, "--keyfile", key, "--ca-certs", pki.ca, "--cert-reqs", reqs)

    def test_required_refuses_a_client_without_a_certificate(self):
        server = self.start("required")
        with self.assertRaises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
            # TLS 1.3: the refusal may only show when the client reads.
            tls_get(server.port)
        r = tls_get(server.port, ctx=client_context(cert=pki.client))
        self.assertEqual(r.status, 200)
        tls = r.json()["tls"]
        self.assertEqual(tls["client_subject"], "CN=alice")
        self.assertEqual(tls["client_issuer"], "CN=keel test CA")
        self.assertEqual(ssl.PEM_cert_to_DER_cert(tls["client_certificate_pem"]), der_of(pki.client[0]))

    def test_required_refuses_a_certificate_from_another_ca(self):
        server = self.start("required")
        stranger_dir = tempfile.mkdtemp(prefix="keel-tls-stranger-")
        self.addCleanup(shutil.rmtree, stranger_dir, ignore_errors=True)
        stranger = Pki(stranger_dir).issue("mallory", "mallory", client=True)
        with self.assertRaises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
            tls_get(server.port, ctx=client_context(cert=stranger))
        self.server_failure_counted(server, "client_certificate")

    def server_failure_counted(self, server, reason):
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if (metric_value(server.port, "keel_tls_handshake_failures_total", f'reason="{reason}"',
                             ctx=client_context(cert=pki.client)) or 0) >= 1:
                return
            time.sleep(0.1)
        self.fail(f"no handshake failure counted as {reason}")

    def test_optional_accepts_both_and_verifies_what_is_sent(self):
        server = self.start("optional")
        self.assertEqual(tls_get(server.port).json()["tls"]["client_subject"], "")
        self.assertEqual(tls_get(server.port, ctx=client_context(cert=pki.client)).json()["tls"]["client_subject"],
                         "CN=alice")

    def test_cert_reqs_without_ca_certs_is_a_configuration_error(self):
        cert, key = pki.localhost
        rc, out, err = keelproc.run_cli(keelproc.testapp(), "--bind", "127.0.0.1:0", "--certfile", cert, "--keyfile",
                                        key, "--cert-reqs", "required")
        self.assertEqual(rc, EX_CONFIG, out + err)
        self.assertIn("needs ca_certs", out + err)


class ConfigurationErrorTest(KeelTestCase):
    def run_bad(self, *flags) -> str:
        rc, out, err = keelproc.run_cli(keelproc.testapp(), "--bind", "127.0.0.1:0", *flags)
        self.assertEqual(rc, EX_CONFIG, out + err)
        return out + err

    def test_certfile_without_keyfile(self):
        self.assertIn("certfile is set but keyfile is not", self.run_bad("--certfile", pki.localhost[0]))

    def test_missing_file_is_named(self):
        out = self.run_bad("--certfile", "/nonexistent/cert.pem", "--keyfile", pki.localhost[1])
        self.assertIn("/nonexistent/cert.pem", out)

    def test_key_that_does_not_match(self):
        out = self.run_bad("--certfile", pki.localhost[0], "--keyfile", pki.other[1])
        self.assertIn("does not match", out)
        self.assertIn(pki.other[1], out)

    def test_bad_cipher_list(self):
        out = self.run_bad("--certfile", pki.localhost[0], "--keyfile", pki.localhost[1], "--ciphers", "NOPE-CIPHER")
        self.assertIn("ciphers", out)

    def test_bad_cert_reqs_and_pair_syntax(self):
        self.assertIn("cert_reqs", self.run_bad("--cert-reqs", "sometimes"))
        self.assertIn("CERTFILE:KEYFILE", self.run_bad("--tls-certificate", "only-one-file.pem"))

    def test_encrypted_key_needs_its_password(self):
        d = tempfile.mkdtemp(prefix="keel-tls-enc-")
        self.addCleanup(shutil.rmtree, d, ignore_errors=True)
        enc = os.path.join(d, "enc.key")
        openssl("pkey", "-in", pki.localhost[1], "-aes256", "-passout", "pass:s3cret-pass", "-out", enc, cwd=d)
        out = self.run_bad("--certfile", pki.localhost[0], "--keyfile", enc)
        self.assertIn("is encrypted: set keyfile_password_file", out)
        wrong = os.path.join(d, "wrong")
        with open(wrong, "w") as f:
            f.write("not-it\n")
        self.assertIn("cannot decrypt", self.run_bad("--certfile", pki.localhost[0], "--keyfile", enc,
                                                     "--keyfile-password-file", wrong))
        right = os.path.join(d, "right")
        with open(right, "w") as f:
            f.write("s3cret-pass\n")
        server = self.start_server("--certfile", pki.localhost[0], "--keyfile", enc, "--keyfile-password-file", right)
        self.assertEqual(tls_get(server.port).status, 200)
        self.assertNotIn("s3cret-pass", "\n".join(server.stdout_snapshot()) + server.stderr_text())


class ResumptionTest(KeelTestCase):
    def start_two_workers(self):
        cert, key = pki.localhost
        return self.start_server("--certfile", cert, "--keyfile", key, "--workers", "2")

    def resume_on_another_worker(self, version):
        # One connection per worker: the first stays open, so with --worker-connections 1 its
        # worker steps aside and the second connection reaches the other worker.
        cert, key = pki.localhost
        server = self.start_server("--certfile", cert, "--keyfile", key, "--workers", "2", "--worker-connections", "1")
        # A full worker steps aside only while a sibling is ready to take the connection.
        self.assertIsNotNone(server.wait_for_stdout(lambda e: e.get("event") == "workers_ready", timeout=15),
                             server.output_tail())
        ctx = client_context(version=version)
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        first = ctx.wrap_socket(raw, server_hostname="localhost")
        self.addCleanup(first.close)
        first.sendall(b"GET /tls HTTP/1.1\r\nHost: localhost\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < int(
                re.search(rb"Content-Length: (\d+)", data, re.I).group(1)):
            chunk = first.recv(65536)
            self.assertTrue(chunk, "the first connection closed")
            data += chunk
        first_pid = json.loads(data.partition(b"\r\n\r\n")[2])["pid"]
        self.assertIsNotNone(first.session)
        r = tls_get(server.port, ctx=ctx, session=first.session)
        doc = r.json()
        self.assertNotEqual(doc["pid"], first_pid, "the second connection reached the busy worker")
        self.assertTrue(r.session_reused, f"{version}: a ticket from worker {first_pid} resumes on {doc['pid']}")
        self.assertTrue(doc["tls"]["resumed"])

    def test_tls13_ticket_resumes_on_another_worker(self):
        self.resume_on_another_worker(ssl.TLSVersion.TLSv1_3)

    def test_tls12_ticket_resumes_on_another_worker(self):
        self.resume_on_another_worker(ssl.TLSVersion.TLSv1_2)

    def test_ticket_resumes_after_a_hup(self):
        server = self.start_two_workers()
        ctx = client_context()
        first = tls_get(server.port, ctx=ctx)
        old_pids = set(keelproc.child_pids(server.pid))
        server.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            pids = set(keelproc.child_pids(server.pid))
            if len(pids) == 2 and not pids & old_pids:
                break
            time.sleep(0.1)
        else:
            self.fail(f"the workers were not replaced after HUP: {old_pids} -> {pids}")
        r = tls_get(server.port, ctx=ctx, session=first.session)
        self.assertNotIn(r.json()["pid"], old_pids)
        self.assertTrue(r.session_reused, "a ticket issued before the HUP resumes on a new worker")
        self.assertGreater(metric_value(server.port, "keel_tls_handshakes_total", 'resumed="true"'), 0)


    def test_ticket_resumes_on_the_next_generation_after_an_upgrade(self):
        cert, key = pki.localhost
        # --strict-env: the secret's hand-over variable is keel's own, not an unknown KEEL_ one.
        server = self.start_server("--certfile", cert, "--keyfile", key, "--workers", "2", "--strict-env")
        ctx = client_context()
        first = tls_get(server.port, ctx=ctx)
        old_master = server.pid
        server.send_signal(signal.SIGUSR2)  # the master re-executes itself; the new one takes over
        started = server.wait_for_stdout(lambda e: e.get("event") == "upgrade_started", timeout=10)
        self.assertIsNotNone(started, server.output_tail())
        new_master = started["new_master"]
        self.assertIsNotNone(server.wait_for_stdout(lambda e: e.get("event") == "upgrade_succeeded", timeout=20),
                             server.output_tail())
        self.assertEqual(server.wait(20), 0, "the old master did not exit\n" + server.output_tail())
        r = tls_get(server.port, ctx=ctx, session=first.session)
        worker = r.json()["pid"]
        self.assertEqual(parent_of(worker), new_master,
                         f"worker {worker} is not the new master's (old master {old_master})")
        self.assertTrue(r.session_reused, "a ticket issued by the old generation resumes on the new one")


    def test_each_listener_keeps_its_scheme_across_an_upgrade(self):
        def free_port():
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                return s.getsockname()[1]
        tls_port, plain_port = free_port(), free_port()
        cert, key = pki.localhost
        server = self.start_server("--certfile", cert, "--keyfile", key, "--workers", "2", "--bind",
                                   f"127.0.0.1:{tls_port}", "--bind", f"http://127.0.0.1:{plain_port}", listening=2)
        server.send_signal(signal.SIGUSR2)
        new_master = server.wait_for_stdout(lambda e: e.get("event") == "upgrade_started", timeout=10)["new_master"]
        self.assertIsNotNone(server.wait_for_stdout(lambda e: e.get("event") == "listening" and
                                                    e.get("pid") == new_master and e.get("tls") is False, timeout=10),
                             server.output_tail())
        self.assertEqual(server.wait(20), 0, server.output_tail())
        self.assertEqual(tls_get(tls_port).json()["scheme"], "https")
        with keelproc.Conn(plain_port) as c:
            self.assertEqual(c.request("GET", "/tls").json()["scheme"], "http")


class RotationTest(KeelTestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="keel-tls-rot-")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        # A Kubernetes secret mount: files behind a symlink the kubelet swaps atomically.
        self.version_dir("v1", pki.localhost)
        os.symlink("v1", os.path.join(self.dir, "live"))
        self.certfile = os.path.join(self.dir, "live", "tls.crt")
        self.keyfile = os.path.join(self.dir, "live", "tls.key")

    def version_dir(self, name, pair):
        d = os.path.join(self.dir, name)
        os.mkdir(d)
        shutil.copy(pair[0], os.path.join(d, "tls.crt"))
        shutil.copy(pair[1], os.path.join(d, "tls.key"))

    def swap(self, name):
        tmp = os.path.join(self.dir, "live.tmp")
        os.symlink(name, tmp)
        os.rename(tmp, os.path.join(self.dir, "live"))

    def test_replaced_files_are_served_within_seconds_without_a_failed_request(self):
        server = self.start_server("--certfile", self.certfile, "--keyfile", self.keyfile, "--workers", "2")
        renewed = pki.issue("renewed", "localhost", "DNS:localhost,IP:127.0.0.1")
        self.version_dir("v2", renewed)
        failures, seen_new, stop = [], [], threading.Event()

        def load():
            while not stop.is_set():
                try:
                    r = tls_get(server.port, "/plaintext")
                    if r.status != 200:
                        failures.append(r.status)
                    if r.peer_der == der_of(renewed[0]):
                        seen_new.append(time.monotonic())
                except Exception as e:  # noqa: BLE001 - every failure counts
                    failures.append(repr(e))

        threads = [threading.Thread(target=load) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            time.sleep(1.0)
            swapped_at = time.monotonic()
            self.swap("v2")
            deadline = swapped_at + 8
            while time.monotonic() < deadline and not seen_new:
                time.sleep(0.1)
            time.sleep(1.5)  # both workers, and more requests after the switch
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=15)
        self.assertEqual(failures, [], "no request may fail during a rotation")
        self.assertTrue(seen_new, "the new certificate was never served")
        self.assertLess(seen_new[0] - swapped_at, 4.0)
        for _ in range(6):  # every worker serves the new one now
            self.assertEqual(tls_get(server.port).peer_der, der_of(renewed[0]))
        self.assertIsNotNone(server.wait_for_stdout(lambda e: e.get("event") == "certificate_loaded" and
                                                     e.get("certfile") == self.certfile, timeout=1))

    def test_a_bad_new_pair_is_rejected_and_the_old_one_keeps_serving(self):
        server = self.start_server("--certfile", self.certfile, "--keyfile", self.keyfile)
        # The new certificate with a key that is not its own.
        d = os.path.join(self.dir, "bad")
        os.mkdir(d)
        shutil.copy(pki.other[0], os.path.join(d, "tls.crt"))
        shutil.copy(pki.localhost[1], os.path.join(d, "tls.key"))
        self.swap("bad")
        line = server.wait_for_stdout(lambda e: e.get("event") == "certificate_reload_failed", timeout=6)
        self.assertIsNotNone(line, server.output_tail())
        self.assertIn("does not match", line["error"])
        self.assertIn(self.keyfile, line["error"])
        self.assertEqual(tls_get(server.port).peer_der, der_of(pki.localhost[0]))
        # Fixed files are picked up again.
        self.version_dir("v3", pki.other)
        self.swap("v3")
        lenient = client_context()
        lenient.check_hostname = False  # the old certificate does not name other.test
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            if tls_get(server.port, ctx=lenient, server_hostname="other.test").peer_der == der_of(pki.other[0]):
                break
            time.sleep(0.2)
        else:
            self.fail("the fixed pair was not loaded")

    def test_hup_reloads_a_single_process(self):
        server = self.start_server("--certfile", self.certfile, "--keyfile", self.keyfile)
        # Same path, new content, mtime forced back: only the HUP can tell.
        st = os.stat(os.path.join(self.dir, "v1", "tls.crt"))
        renewed = pki.issue("renewed-hup", "localhost", "DNS:localhost,IP:127.0.0.1")
        for src, dst in ((renewed[0], "tls.crt"), (renewed[1], "tls.key")):
            path = os.path.join(self.dir, "v1", dst)
            shutil.copy(src, path)
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        server.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if tls_get(server.port).peer_der == der_of(renewed[0]):
                break
            time.sleep(0.1)
        else:
            self.fail("HUP did not load the new certificate")


class HandshakeFloodTest(KeelTestCase):
    def test_a_handshake_flood_does_not_starve_established_connections(self):
        cert, key = pki.localhost
        server = self.start_server("--certfile", cert, "--keyfile", key, "--keep-alive-requests", "0")
        ctx = client_context()
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        conn = ctx.wrap_socket(raw, server_hostname="localhost")
        self.addCleanup(conn.close)
        flood = [subprocess.Popen(["openssl", "s_time", "-connect", f"127.0.0.1:{server.port}", "-new", "-time", "4"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
        latencies = []
        try:
            time.sleep(0.5)
            end = time.monotonic() + 3
            while time.monotonic() < end:
                t0 = time.monotonic()
                conn.sendall(b"GET /plaintext HTTP/1.1\r\nHost: localhost\r\n\r\n")
                data = b""
                while not data.endswith(b"Hello, World!"):
                    chunk = conn.recv(4096)
                    self.assertTrue(chunk, "the established connection was closed")
                    data += chunk
                latencies.append(time.monotonic() - t0)
        finally:
            for p in flood:
                p.wait(timeout=20)
        handshakes = metric_value(server.port, "keel_tls_handshakes_total", 'resumed="false"')
        self.assertGreater(handshakes, 100, "the flood made handshakes")
        latencies.sort()
        p99 = latencies[int(len(latencies) * 0.99) - 1]
        self.assertGreater(len(latencies), 50)
        self.assertLess(p99, 0.25, f"requests on an established connection waited {p99 * 1000:.0f} ms (p99) "
                                   f"during {handshakes:.0f} handshakes")


if __name__ == "__main__":
    unittest.main()
