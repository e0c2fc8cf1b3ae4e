"""Routing as seen on the wire: path parameters, 404/405, HEAD, OPTIONS, percent-decoding."""

import unittest

import keelproc
from keelproc import Conn, KeelTestCase


class RouterTest(KeelTestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = cls.start_class_server()
        cls.port = cls.server.port

    def get(self, target, headers=None):
        return keelproc.get(self.port, target, headers)

    def test_int_param(self):
        resp = self.get("/users/42")
        self.assertStatus(resp, 200)
        self.assertTrue(resp.header("Content-Type", "").startswith("application/json"), resp)
        self.assertEqual(resp.json(), {"id": 42, "route": "/users/{id:int}"})

    def test_int_param_with_query(self):
        resp = self.get("/users/7?verbose=1&x=%20")
        self.assertStatus(resp, 200)
        self.assertEqual(resp.json(), {"id": 7, "route": "/users/{id:int}"})

    def test_int_param_rejects_non_int(self):
        for target in ("/users/abc", "/users/4x2", "/users/"):
            resp = self.get(target)
            self.assertProblem(resp, 404, close=False)

    def test_percent_encoded_path(self):
        resp = self.get("/users/%34%32")
        self.assertStatus(resp, 200)
        self.assertEqual(resp.json(), {"id": 42, "route": "/users/{id:int}"})

    def test_path_param(self):
        resp = self.get("/files/a/b/c")
        self.assertStatus(resp, 200)
        self.assertEqual(resp.json(), {"rest": "a/b/c", "route": "/files/{rest:path}"})
        resp = self.get("/files/readme.txt")
        self.assertEqual(resp.json(), {"rest": "readme.txt", "route": "/files/{rest:path}"})
        resp = self.get("/files/dir%20name/x")
        self.assertStatus(resp, 200)
        self.assertEqual(resp.json()["rest"], "dir name/x")

    def test_not_found_is_problem_json(self):
        with Conn(self.port) as c:
            resp = c.get("/nope")
            doc = self.assertProblem(resp, 404, close=False)
            self.assertIsInstance(doc, dict)
            # A 404 is not a framing error: the connection stays usable.
            self.assertFalse(resp.has_token("Connection", "close"), resp)
            self.assertEqual(c.get("/plaintext").body, b"Hello, World!")

    def test_method_not_allowed(self):
        with Conn(self.port) as c:
            resp = c.request("POST", "/users/1", None, b"")
            self.assertProblem(resp, 405, close=False)
            allow = resp.tokens("Allow")
            self.assertIn("GET", allow, resp)
            self.assertIn("HEAD", allow, resp)
            self.assertNotIn("POST", allow, resp)
            resp = c.request("DELETE", "/plaintext")
            self.assertStatus(resp, 405)
            self.assertIn("GET", resp.tokens("Allow"))
            resp = c.request("GET", "/echo")
            self.assertStatus(resp, 405)
            self.assertIn("POST", resp.tokens("Allow"), resp)
            self.assertEqual(c.get("/plaintext").status, 200)

    def test_head_same_headers_no_body(self):
        with Conn(self.port) as c:
            get = c.get("/plaintext")
            head = c.request("HEAD", "/plaintext")
            self.assertStatus(head, 200)
            self.assertEqual(head.header("Content-Length"), "13")
            self.assertEqual(head.header("Content-Type"), get.header("Content-Type"))
            self.assertEqual(head.header("Server"), get.header("Server"))
            self.assertIsNotNone(head.header("Date"))
            names = lambda r: sorted(k.lower() for k, _ in r.headers)  # noqa: E731
            self.assertEqual(names(head), names(get))
            # No body bytes: the next response on the connection starts right away.
            resp = c.get("/json")
            self.assertStatus(resp, 200)
            self.assertEqual(resp.json(), {"message": "Hello, World!"})
            self.assertFalse(c.readable_within(0.2), "unexpected extra bytes after HEAD + GET")

    def test_head_pipelined(self):
        with Conn(self.port) as c:
            c.send(keelproc.build_request("HEAD", "/json") + keelproc.build_request("HEAD", "/plaintext") +
                   keelproc.build_request("GET", "/plaintext"))
            r1 = c.read_response("HEAD")
            r2 = c.read_response("HEAD")
            r3 = c.read_response("GET")
            self.assertEqual([r1.status, r2.status, r3.status], [200, 200, 200])
            self.assertEqual(r1.header("Content-Length"), str(len(b'{"message":"Hello, World!"}')))
            self.assertEqual(r3.body, b"Hello, World!")

    def test_head_on_big_and_stream(self):
        with Conn(self.port) as c:
            resp = c.request("HEAD", "/big?bytes=100000")
            self.assertStatus(resp, 200)
            self.assertEqual(resp.header("Content-Length"), "100000")
            resp = c.request("HEAD", "/stream?chunks=3&size=2")
            self.assertStatus(resp, 200)
            self.assertEqual(c.get("/plaintext").body, b"Hello, World!")
            self.assertFalse(c.readable_within(0.2))

    def test_options(self):
        with Conn(self.port) as c:
            resp = c.request("OPTIONS", "/plaintext")
            self.assertIn(resp.status, (200, 204), resp)
            allow = resp.tokens("Allow")
            self.assertIn("GET", allow, resp)
            self.assertIn("HEAD", allow, resp)
            if resp.status == 204:
                self.assertEqual(resp.body, b"")
            self.assertEqual(c.get("/plaintext").status, 200)

    def test_options_asterisk(self):
        with Conn(self.port) as c:
            resp = c.request("OPTIONS", "*")
            self.assertIn(resp.status, (200, 204), resp)
            self.assertEqual(c.get("/plaintext").status, 200)

    def test_absolute_form_target(self):
        resp = self.get(f"http://127.0.0.1:{self.port}/users/5")
        self.assertStatus(resp, 200)
        self.assertUserId(resp, 5)

    def test_route_never_reports_raw_path(self):
        resp = self.get("/users/00042")
        if resp.status == 200:
            self.assertEqual(resp.json()["route"], "/users/{id:int}")
        resp = self.get("/files/%2e%2e/etc/passwd")
        if resp.status == 200:
            self.assertEqual(resp.json()["route"], "/files/{rest:path}")


class BadRouteTemplateTest(KeelTestCase):
    """A route template keel cannot read is a configuration error named at startup (exit 78), not
    std::terminate and a core dump (issue 14, 15e)."""

    def test_unknown_parameter_type_exits_78_naming_the_route(self):
        import os
        env = dict(os.environ, TESTAPP_BAD_ROUTE="1")
        rc, out, err = keelproc.run_cli(keelproc.testapp(), "--bind", "127.0.0.1:0", env=env)
        self.assertEqual(rc, 78, f"stdout: {out}\nstderr: {err}")
        self.assertIn("GET /x/{id:integer}", err)
        self.assertIn("unknown parameter type 'integer'", err)
        self.assertNotIn("terminate", err)
        self.assertNotIn("listening", out, "the server started despite the bad route")


class MalformedJsonBodyTest(KeelTestCase):
    """A malformed JSON body's 400 is in keel's words, not the JSON library's (issue 14, 15e)."""

    def test_the_problem_detail_names_the_byte_not_the_library(self):
        server = self.start_server()
        for body, detail in (("{bad", "malformed JSON body at byte 2"),
                             ('{"a": 1', "malformed JSON body: unexpected end at byte 7"),
                             ("", "malformed JSON body: unexpected end at byte 0")):
            with self.subTest(body=body):
                resp = keelproc.get(server.port, "/json-type", method="POST",
                                    headers={"Content-Type": "application/json"}, body=body.encode())
                doc = self.assertProblem(resp, 400, close=False)
                self.assertEqual(doc["detail"], detail, doc)
                self.assertNotIn("json.exception", resp.text)


if __name__ == "__main__":
    unittest.main()
