"""Request framing over raw sockets: pipelining, chunked uploads, Expect: 100-continue, and the
requests the server must refuse (each answered with a problem+json status, then close)."""

import time
import unittest

import keelproc
from keelproc import Conn, KeelTestCase, build_request, chunked


class PipeliningTest(KeelTestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = cls.start_class_server()
        cls.port = cls.server.port

    def test_100_pipelined_gets_in_one_send(self):
        with Conn(self.port, timeout=10) as c:
            c.send(b"".join(build_request("GET", f"/users/{i}") for i in range(1, 101)))
            for i in range(1, 101):
                resp = c.read_response()
                self.assertStatus(resp, 200)
                self.assertEqual(resp.json(), {"id": i, "route": "/users/{id:int}"}, f"response #{i} out of order")
            # The connection is still in sync afterwards.
            self.assertEqual(c.get("/plaintext").body, b"Hello, World!")
            self.assertFalse(c.readable_within(0.2), "extra bytes after the pipelined responses")

    def test_pipelined_mixed_with_bodies(self):
        reqs = [
            build_request("GET", "/users/1"),
            build_request("POST", "/echo", {"Content-Type": "text/a"}, b"first body"),
            build_request("GET", "/users/2"),
            build_request("POST", "/echo", {"Transfer-Encoding": "chunked", "Content-Type": "text/b"},
                          chunked(b"chu", b"nked", trailers={"X-T": "1"})),
            build_request("HEAD", "/plaintext"),
            build_request("POST", "/echo", {"Content-Type": "text/c"}, b"x" * 70000),
            build_request("GET", "/stream?chunks=3&size=2"),
            build_request("POST", "/echo", {"Content-Length": "0"}),
            build_request("GET", "/users/3"),
        ]
        with Conn(self.port, timeout=10) as c:
            c.send(b"".join(reqs))
            r = c.read_response()
            self.assertUserId(r, 1)
            r = c.read_response()
            self.assertEqual((r.status, r.body, r.header("Content-Type")), (200, b"first body", "text/a"))
            r = c.read_response()
            self.assertUserId(r, 2)
            r = c.read_response()
            self.assertEqual((r.status, r.body, r.header("Content-Type")), (200, b"chunked", "text/b"))
            self.assertEqual(r.header("X-Trailer-Count"), "1")
            r = c.read_response("HEAD")
            self.assertEqual((r.status, r.header("Content-Length")), (200, "13"))
            r = c.read_response()
            self.assertEqual((r.status, len(r.body), r.header("Content-Type")), (200, 70000, "text/c"))
            r = c.read_response()
            self.assertEqual((r.status, r.body), (200, b"aabbcc"))
            r = c.read_response()
            self.assertEqual((r.status, r.body), (200, b""))
            r = c.read_response()
            self.assertUserId(r, 3)
            self.assertFalse(c.readable_within(0.2))

    def test_pipelined_requests_split_at_odd_boundaries(self):
        data = b"".join(build_request("GET", f"/users/{i}") for i in range(1, 21))
        with Conn(self.port, timeout=10) as c:
            for i in range(0, len(data), 37):
                c.send(data[i:i + 37])
                time.sleep(0.002)
            for i in range(1, 21):
                self.assertUserId(c.read_response(), i)

    def test_pipelined_error_stops_processing(self):
        # A request that cannot be framed ends the connection; what follows is never answered.
        with Conn(self.port) as c:
            c.send(build_request("GET", "/users/1") +
                   b"GET /users/2 HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab" +
                   build_request("GET", "/users/3"))
            self.assertUserId(c.read_response(), 1)
            self.assertProblem(c.read_response(), 400)
            self.assertClosedByServer(c, allow_reset=True)

    def test_leading_empty_lines_tolerated(self):
        with Conn(self.port) as c:
            c.send(b"\r\n" + build_request("GET", "/plaintext"))
            self.assertEqual(c.read_response().body, b"Hello, World!")


class ChunkedUploadTest(KeelTestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = cls.start_class_server()
        cls.port = cls.server.port

    BODY = (b"5;name=value\r\nhello\r\n"
            b"1 ; quoted=\"a b;c\"\r\n \r\n"
            b"6;flag\r\nworld!\r\n"
            b"A\r\n0123456789\r\n"
            b"0;last=1\r\nX-Checksum: abc\r\nX-Other: 2\r\n\r\n")
    EXPECTED = b"hello world!0123456789"

    def head(self):
        return (b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/x-chunks\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n")

    def check(self, resp):
        self.assertStatus(resp, 200)
        self.assertEqual(resp.body, self.EXPECTED)
        self.assertEqual(resp.header("X-Body-Length"), str(len(self.EXPECTED)))
        self.assertEqual(resp.header("X-Trailer-Count"), "2")
        self.assertEqual(resp.header("Content-Type"), "text/x-chunks")

    def test_chunked_upload(self):
        with Conn(self.port) as c:
            c.send(self.head() + self.BODY)
            self.check(c.read_response())
            # Keep-alive continues after a chunked request.
            self.assertEqual(c.get("/plaintext").body, b"Hello, World!")

    def test_chunked_upload_slowly(self):
        with Conn(self.port, timeout=10) as c:
            head = self.head()
            c.send(head[:7])
            time.sleep(0.05)
            c.send(head[7:40])
            time.sleep(0.05)
            c.send(head[40:])
            time.sleep(0.05)
            c.send_slowly(self.BODY, piece=1, delay=0.005)
            self.check(c.read_response())
            self.assertEqual(c.get("/plaintext").body, b"Hello, World!")

    def test_chunked_no_trailers_uppercase_hex(self):
        data = b"x" * 0x1AB
        with Conn(self.port) as c:
            c.send(build_request("POST", "/echo", {"Transfer-Encoding": "chunked"}, b"1AB\r\n" + data + b"\r\n0\r\n\r\n"))
            resp = c.read_response()
            self.assertStatus(resp, 200)
            self.assertEqual(resp.body, data)
            self.assertEqual(resp.header("X-Trailer-Count"), "0")

    def test_chunked_large(self):
        pieces = [bytes([65 + i % 26]) * 10000 for i in range(50)]
        with Conn(self.port, timeout=10) as c:
            c.send(build_request("POST", "/echo", {"Transfer-Encoding": "chunked"}, chunked(*pieces)))
            resp = c.read_response()
            self.assertStatus(resp, 200)
            self.assertEqual(resp.body, b"".join(pieces))

    def test_malformed_chunked(self):
        cases = {
            "bad hex size": b"zz\r\nhello\r\n0\r\n\r\n",
            "missing CRLF after data": b"5\r\nhelloXX0\r\n\r\n",
            "bare LF size line": b"5\nhello\r\n0\r\n\r\n",
            "size overflow": b"fffffffffffffffff\r\n",
        }
        for name, body in cases.items():
            with self.subTest(name), Conn(self.port) as c:
                c.send(build_request("POST", "/echo", {"Transfer-Encoding": "chunked"}, body))
                resp = c.read_response()
                self.assertIn(resp.status, (400, 413), resp)
                self.assertProblem(resp, resp.status)
                self.assertClosedByServer(c, allow_reset=True)


class ExpectContinueTest(KeelTestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = cls.start_class_server()
        cls.port = cls.server.port

    def test_expect_100_continue(self):
        with Conn(self.port) as c:
            c.send(b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n"
                   b"Content-Type: text/plain\r\nContent-Length: 11\r\n\r\n")
            interim = c.read_exact(len(b"HTTP/1.1 100 Continue\r\n\r\n"), timeout=3)
            self.assertEqual(interim, b"HTTP/1.1 100 Continue\r\n\r\n")
            c.send(b"hello world")
            resp = c.read_response()
            self.assertStatus(resp, 200)
            self.assertEqual(resp.body, b"hello world")
            # And the connection carries on.
            self.assertEqual(c.get("/plaintext").body, b"Hello, World!")

    def test_expect_100_continue_chunked(self):
        with Conn(self.port) as c:
            c.send(b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n")
            resp = c.read_response(timeout=3)
            self.assertEqual(resp.status, 100, resp)
            c.send(chunked(b"abc", b"def"))
            resp = c.read_response()
            self.assertStatus(resp, 200)
            self.assertEqual(resp.body, b"abcdef")

    def test_expect_with_body_already_sent(self):
        # A client that does not wait: whatever interim response comes, the 200 follows.
        with Conn(self.port) as c:
            c.send(build_request("POST", "/echo", {"Expect": "100-continue"}, b"eager"))
            resp = c.read_response()
            if resp.status == 100:
                resp = c.read_response()
            self.assertStatus(resp, 200)
            self.assertEqual(resp.body, b"eager")

    def test_expect_without_body_gets_no_100(self):
        with Conn(self.port) as c:
            resp = c.request("GET", "/plaintext", {"Expect": "100-continue"})
            self.assertStatus(resp, 200)

    def test_unknown_expectation(self):
        with Conn(self.port) as c:
            c.send(build_request("POST", "/echo", {"Expect": "teapot"}, b""))
            self.assertProblem(c.read_response(), 417)
            self.assertClosedByServer(c)


class RejectionTest(KeelTestCase):
    """Requests whose framing cannot be trusted: status, problem+json, Connection: close, close."""

    @classmethod
    def setUpClass(cls):
        cls.server = cls.start_class_server()
        cls.port = cls.server.port

    def expect_rejected(self, raw: bytes, status: int):
        with Conn(self.port) as c:
            c.send(raw)
            resp = c.read_response()
            self.assertProblem(resp, status)
            self.assertClosedByServer(c)
        # The server survives every rejection.
        self.assertEqual(keelproc.get(self.port, "/plaintext").status, 200)

    def test_content_length_and_transfer_encoding(self):
        self.expect_rejected(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400)

    def test_duplicate_content_length_different(self):
        self.expect_rejected(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400)

    def test_duplicate_content_length_same(self):
        self.expect_rejected(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400)

    def test_content_length_list(self):
        self.expect_rejected(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello", 400)

    def test_content_length_not_a_number(self):
        self.expect_rejected(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello", 400)
        self.expect_rejected(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400)

    def test_missing_host_http11(self):
        self.expect_rejected(b"GET /plaintext HTTP/1.1\r\n\r\n", 400)

    def test_duplicate_host(self):
        self.expect_rejected(b"GET /plaintext HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400)

    def test_http10_without_host_is_fine(self):
        with Conn(self.port) as c:
            c.send(b"GET /plaintext HTTP/1.0\r\n\r\n")
            self.assertStatus(c.read_response(), 200)

    def test_http2_version(self):
        self.expect_rejected(b"GET /plaintext HTTP/2.0\r\nHost: x\r\n\r\n", 505)

    def test_http_version_garbage(self):
        self.expect_rejected(b"GET /plaintext HTTP/1.1x\r\nHost: x\r\n\r\n", 400)
        self.expect_rejected(b"GET /plaintext FTP/1.1\r\nHost: x\r\n\r\n", 400)

    def test_transfer_encoding_gzip_chunked(self):
        self.expect_rejected(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                             b"5\r\nhello\r\n0\r\n\r\n", 501)

    def test_transfer_encoding_not_chunked_last(self):
        self.expect_rejected(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400)
        self.expect_rejected(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n", 400)

    def test_transfer_encoding_http10(self):
        self.expect_rejected(b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400)

    def test_obs_fold(self):
        self.expect_rejected(b"GET /plaintext HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n  b\r\n\r\n", 400)

    def test_space_before_colon(self):
        self.expect_rejected(b"GET /plaintext HTTP/1.1\r\nHost: x\r\nX-Bad : a\r\n\r\n", 400)

    def test_bare_lf(self):
        self.expect_rejected(b"GET /plaintext HTTP/1.1\nHost: x\n\n", 400)

    def test_control_character_in_header(self):
        self.expect_rejected(b"GET /plaintext HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400)
        self.expect_rejected(b"GET /plaintext HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", 400)

    def test_invalid_method_and_target(self):
        self.expect_rejected(b"G(T /plaintext HTTP/1.1\r\nHost: x\r\n\r\n", 400)
        self.expect_rejected(b"GET /plain text HTTP/1.1\r\nHost: x\r\n\r\n", 400)
        self.expect_rejected(b"GET /a#frag HTTP/1.1\r\nHost: x\r\n\r\n", 400)

    def test_garbage(self):
        self.expect_rejected(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(64)) + b"\r\n\r\n", 400)


if __name__ == "__main__":
    unittest.main()
