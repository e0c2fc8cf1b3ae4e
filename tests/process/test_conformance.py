"""HTTP/1.1 conformance and request-smuggling suite: one table of raw requests, one test per case.

Every case is (id, raw request bytes, expected status(es) or None for "no response", whether the
server must close, the rule it checks). The runner sends the raw bytes on a fresh connection and,
in the same write, a marker request (GET /users/<n>, Connection: close). Then:

- keep-alive cases: the expected responses come first, then the marker's own response, then EOF
  -- so the marker was read as a request of its own, and nothing of the case leaked into it;
- closing cases: the expected responses come (the last one says Connection: close), then EOF
  with nothing else -- the marker, pipelined behind the request, is never answered.

That is the safety property the suite is about: a response is never attributed to the wrong
request. Cases that test bodies check the echoed bytes too (POST /echo answers with the decoded
body; GET /inspect with how the request line and Host were read).

The basic rejections of test_framing.py (CL+TE, CL lists, +5/-1, missing/duplicate Host, HTTP/2.0,
gzip+chunked, obs-fold, space before colon, bare LF, NUL/CR in values, fragments, garbage) are not
repeated here; this suite covers their variants and everything else. Policy and counts:
docs/conformance.md. Standard library only: `python3 -m unittest -v test_conformance`.
"""

from __future__ import annotations

import socket
import time
import unittest
from dataclasses import dataclass, field, replace
from typing import Callable

import keelproc
from keelproc import Conn, KeelTestCase

H = b"Host: 127.0.0.1"


def req(method: bytes = b"GET", target: bytes = b"/plaintext", lines=(), body: bytes = b"",
        version: bytes = b"HTTP/1.1", host: bool = True) -> bytes:
    """A request from raw pieces: header lines are given without CRLF and sent as they are."""
    head = method + b" " + target + b" " + version + b"\r\n"
    if host:
        head += H + b"\r\n"
    for line in lines:
        head += line + b"\r\n"
    return head + b"\r\n" + body


def post(*lines: bytes, body: bytes = b"", target: bytes = b"/echo") -> bytes:
    return req(b"POST", target, lines, body)


def chunked(body: bytes, *lines: bytes) -> bytes:
    """POST /echo with Transfer-Encoding: chunked and a raw (already encoded) body."""
    return post(b"Transfer-Encoding: chunked", *lines, body=body)


def get(target: bytes = b"/plaintext", *lines: bytes, version: bytes = b"HTTP/1.1") -> bytes:
    return req(b"GET", target, lines, version=version)


def user(n: int, *lines: bytes) -> bytes:
    return get(b"/users/%d" % n, *lines)


# ---------------------------------------------------------------------------------------------
# Response checks (each takes the test case and the response).

def body_is(expected: bytes) -> Callable:
    def check(t: KeelTestCase, r: keelproc.Response) -> None:
        t.assertEqual(r.body, expected, r)
    return check


def echo(expected: bytes, trailers: int | None = None) -> Callable:
    """POST /echo saw exactly this decoded body (and this many trailer fields)."""
    def check(t: KeelTestCase, r: keelproc.Response) -> None:
        t.assertEqual(r.body, expected, r)
        t.assertEqual(r.header("X-Body-Length"), str(len(expected)), r)
        if trailers is not None:
            t.assertEqual(r.header("X-Trailer-Count"), str(trailers), r)
    return check


def inspect(**want) -> Callable:
    """GET /inspect read the request line and Host like this."""
    def check(t: KeelTestCase, r: keelproc.Response) -> None:
        doc = r.json()
        t.assertEqual({k: doc.get(k) for k in want}, want, doc)
    return check


def is_user(n: int) -> Callable:
    def check(t: KeelTestCase, r: keelproc.Response) -> None:
        t.assertUserId(r, n)
    return check


def allow(*methods: str) -> Callable:
    def check(t: KeelTestCase, r: keelproc.Response) -> None:
        t.assertEqual(r.tokens("Allow"), set(methods), r)
    return check


# ---------------------------------------------------------------------------------------------
# The table.

@dataclass
class Case:
    id: str
    raw: bytes
    status: int | tuple | None  # status of each response to raw, in order; None: no response
    close: bool                 # the server must close after the last of them
    rule: str
    checks: tuple = ()          # per-response checks, aligned with status
    marker: str = "pipe"        # "pipe": marker in the same write as raw; "none": no marker
    read_as: tuple = ()         # request method per response when not GET (HEAD: no body)
    half_close: bool = False    # shut down our sending side after raw
    body_after_100: bytes | None = None  # send raw (a head), read 100 Continue, then send this
    server: str = "default"     # "timeouts": a server with 300 ms header/body timeouts
    split: int = 0              # > 0: deliver raw + marker in pieces of this many bytes
    category: str = ""
    statuses: tuple = field(init=False)

    def __post_init__(self):
        if self.status is None:
            self.statuses = ()
        elif isinstance(self.status, int):
            self.statuses = (self.status,)
        else:
            self.statuses = tuple(self.status)
        if not isinstance(self.checks, tuple):
            self.checks = (self.checks,)


CASES: list[Case] = []
_section = ""


def section(name: str) -> None:
    """Names the category of the cases that follow (docs/conformance.md counts them)."""
    global _section
    _section = name


def case(id: str, raw: bytes, status, close: bool, rule: str, check=None, **kw) -> None:
    if check is not None:
        kw["checks"] = check if isinstance(check, tuple) else (check,)
    CASES.append(Case(id, raw, status, close, rule, category=_section, **kw))


KEEP, CLOSE = False, True

# -- Baseline, persistence and pipelining ------------------------------------------------------
section("pipelining")
case("get_keepalive", get(), 200, KEEP,
     "RFC 9112 §9.3: HTTP/1.1 connections persist by default; the next request is answered on it",
     body_is(b"Hello, World!"))
case("pipelined_three_in_order", user(1) + user(2) + user(3), (200, 200, 200), KEEP,
     "RFC 9112 §9.3.2: pipelined responses MUST be sent in the order the requests were received",
     (is_user(1), is_user(2), is_user(3)))
case("pipelined_cl_body_then_get", post(b"Content-Length: 5", body=b"hello") + user(4), (200, 200), KEEP,
     "RFC 9112 §6.2/§9.3.2: a Content-Length body ends exactly after N bytes; the next request follows it",
     (echo(b"hello"), is_user(4)))
case("pipelined_chunked_then_get", chunked(b"3\r\nabc\r\n0\r\n\r\n") + user(5), (200, 200), KEEP,
     "RFC 9112 §7.1/§9.3.2: a chunked body ends at the last chunk and trailer section; the next request follows",
     (echo(b"abc", 0), is_user(5)))
case("pipelined_head_then_get", req(b"HEAD") + user(6), (200, 200), KEEP,
     "RFC 9110 §9.3.2: a HEAD response has no content; the next response is not mistaken for its body",
     (None, is_user(6)), read_as=("HEAD",))
case("pipelined_coroutine_handler_in_order", get(b"/sleep?ms=30") + user(7), (200, 200), KEEP,
     "RFC 9112 §9.3.2: order is kept even when the first handler suspends (coroutine) and the second is instant",
     (body_is(b"slept"), is_user(7)))
case("pipelined_offload_in_order", get(b"/offload?ms=20") + user(8), (200, 200), KEEP,
     "RFC 9112 §9.3.2: order is kept when the first handler runs on the thread pool",
     (body_is(b"offloaded 20"), is_user(8)))
case("pipelined_streamed_response_in_order", get(b"/stream?chunks=3&size=2") + user(9), (200, 200), KEEP,
     "RFC 9112 §9.3.2: a streamed (chunked) response is complete before the next response starts",
     (body_is(b"aabbcc"), is_user(9)))
case("pipelined_ok_then_invalid", user(10) + req(lines=(b"Content-Length: 1", b"Content-Length: 1")), (200, 400), CLOSE,
     "RFC 9112 §6.3(5): the invalid second request gets 400 and close; the marker behind it is never answered",
     (is_user(10), None))
case("pipelined_two_ok_then_cl_te", user(11) + user(12) +
     post(b"Content-Length: 5", b"Transfer-Encoding: chunked", body=b"0\r\n\r\n"), (200, 200, 400), CLOSE,
     "RFC 9112 §6.1: CL+TE after two good requests: both answered, then 400, close; nothing after is read",
     (is_user(11), is_user(12), None))
case("pipelined_coroutine_then_invalid", get(b"/sleep?ms=30") + req(lines=(b"Host: a",)), (200, 400), CLOSE,
     "RFC 9112 §3.2: a second Host is 400; it waits for the suspended handler's 200, then closes",
     (body_is(b"slept"), None))
case("connection_close_stops_processing", get(b"/plaintext", b"Connection: close"), 200, CLOSE,
     "RFC 9112 §9.6: after a 'close' request the server MUST NOT process further requests (marker unanswered)")
case("connection_keepalive_and_close", get(b"/plaintext", b"Connection: keep-alive, close"), 200, CLOSE,
     "RFC 9112 §9.6: 'close' wins over 'keep-alive' in the same Connection list")
case("connection_close_uppercase", get(b"/plaintext", b"connection: CLOSE"), 200, CLOSE,
     "RFC 9110 §7.6.1: connection options are case-insensitive tokens")
case("connection_invalid_list", get(b"/plaintext", b'Connection: close, "x"'), 400, CLOSE,
     "RFC 9110 §7.6.1: Connection = #connection-option (tokens); keel rejects a malformed list (400, close)")
case("http10_closes_by_default", get(b"/plaintext", version=b"HTTP/1.0"), 200, CLOSE,
     "RFC 9112 §9.3: an HTTP/1.0 request without keep-alive ends the connection")
case("http10_keepalive", get(b"/plaintext", b"Connection: keep-alive", version=b"HTTP/1.0"), 200, KEEP,
     "RFC 9112 §9.3: an HTTP/1.0 request with the keep-alive connection option persists")
case("http10_cl_body_keepalive", req(b"POST", b"/echo", (b"Connection: keep-alive", b"Content-Length: 2"), b"hi",
                                     version=b"HTTP/1.0", host=False), 200, KEEP,
     "RFC 9112 §6.2: HTTP/1.0 bodies are framed by Content-Length; Host is optional in 1.0", echo(b"hi"))
case("leading_crlf_ignored", b"\r\n" + get(b"/users/13"), 200, KEEP,
     "RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request-line", is_user(13))
case("four_leading_crlf_ignored", b"\r\n" * 4 + get(b"/users/14"), 200, KEEP,
     "RFC 9112 §2.2: keel ignores up to four empty lines before the request-line", is_user(14))
case("five_leading_crlf_rejected", b"\r\n" * 5 + get(), 400, CLOSE,
     "RFC 9112 §2.2: keel bounds the empty lines it skips at four; more is 400 and close")
case("get_without_framing_has_no_body", get(b"/users/15") + user(16), (200, 200), KEEP,
     "RFC 9112 §6.3(7): a request without CL/TE has a zero-length body: the bytes after it are the next request (CL.0)",
     (is_user(15), is_user(16)))
case("post_without_framing_has_no_body", post() + user(17), (200, 200), KEEP,
     "RFC 9112 §6.3(7): POST without CL/TE has no body; the following bytes are a request of their own",
     (echo(b""), is_user(17)))
SMUGGLED_LINE = b"GET /users/666 HTTP/1.1"
SMUGGLED_REQ = SMUGGLED_LINE + b"\r\nHost: x\r\n\r\n"
case("get_with_cl_body_consumed", get(b"/plaintext", b"Content-Length: %d" % len(SMUGGLED_LINE)) + SMUGGLED_LINE,
     200, KEEP,
     "RFC 9112 §6.3(6) / PortSwigger CL.0: a GET's Content-Length body is consumed, never run as a request")
case("get_with_chunked_body_consumed", req(b"GET", b"/plaintext", (b"Transfer-Encoding: chunked",),
                                           b"17\r\nGET /users/666 HTTP/1.1\r\n0\r\n\r\n"), 200, KEEP,
     "RFC 9112 §6.3(4) / PortSwigger CL.0: a GET's chunked body is consumed, never run as a request")
case("smuggled_request_in_cl_body", post(b"Content-Length: %d" % len(SMUGGLED_REQ), body=SMUGGLED_REQ),
     200, KEEP, "RFC 9112 §6.2: a request inside a Content-Length body is data, not a request", echo(SMUGGLED_REQ))
case("cl_short_rest_is_next_request", post(b"Content-Length: 3", body=b"abc") + user(18), (200, 200), KEEP,
     "RFC 9112 §6.3(6): exactly Content-Length bytes are body; what follows is parsed as the next request",
     (echo(b"abc"), is_user(18)))
case("upgrade_h2c_ignored", get(b"/users/19", b"Connection: Upgrade, HTTP2-Settings", b"Upgrade: h2c",
                                b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"), 200, KEEP,
     "RFC 9110 §7.8: a server MAY ignore Upgrade; keel stays HTTP/1.1 (no 101), so no h2c smuggling", is_user(19))
case("upgrade_websocket_ignored", get(b"/users/20", b"Connection: Upgrade", b"Upgrade: websocket",
                                      b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="),
     200, KEEP, "RFC 9110 §7.8 / websocket smuggling: no 101 is sent, the connection stays HTTP", is_user(20))

# -- Request line: method ------------------------------------------------------------------------
section("method")
case("method_lowercase", req(b"get"), 405, KEEP,
     "RFC 9110 §9.1: methods are case-sensitive: 'get' is not GET (405 with Allow, connection kept)",
     allow("GET", "HEAD", "OPTIONS"))
case("method_unknown", req(b"FOO"), 405, KEEP,
     "RFC 9110 §9.1 (SHOULD 501 for an unrecognized method): keel's router only knows paths, so it answers 405 + Allow",
     allow("GET", "HEAD", "OPTIONS"))
case("method_extension_token", req(b"M-SEARCH"), 405, KEEP,
     "RFC 9110 §9.1: any token is a syntactically valid method")
case("method_long_within_line_limit", req(b"A" * 8000), 405, KEEP,
     "RFC 9112 §3: a long method within the request-line limit is just an unknown method")
case("method_over_line_limit", req(b"A" * 9000), 414, CLOSE,
     "RFC 9112 §3: request-line over keel's 8 KiB limit: 414 and close")
case("method_paren", req(b"GE(T"), 400, CLOSE,
     "RFC 9112 §3.1: method = token; '(' is not a tchar: 400, close")
case("method_at_sign", req(b"G@T"), 400, CLOSE, "RFC 9112 §3.1: method = token; '@' is not a tchar")
case("method_nul", req(b"G\x00T"), 400, CLOSE, "RFC 9112 §3.1 / RFC 9110 §5.6.2: NUL in the method")
case("method_non_ascii", req(b"G\xc3\x89T"), 400, CLOSE, "RFC 9112 §3.1: non-ASCII bytes are not tchars")
case("request_line_leading_space", b" " + get(), 400, CLOSE,
     "RFC 9112 §3: request-line = method SP ...: a leading space leaves an empty method")
case("request_line_tab_separator", b"GET\t/plaintext HTTP/1.1\r\nHost: x\r\n\r\n", 400, CLOSE,
     "RFC 9112 §3: the separator is exactly one SP; keel does not split on other whitespace")
case("request_line_double_space_target", b"GET  /plaintext HTTP/1.1\r\nHost: x\r\n\r\n", 400, CLOSE,
     "RFC 9112 §3 (MAY parse on whitespace boundaries): keel is strict, two SP is 400")
case("request_line_double_space_version", b"GET /plaintext  HTTP/1.1\r\nHost: x\r\n\r\n", 400, CLOSE,
     "RFC 9112 §3: exactly one SP before HTTP-version")
case("request_line_trailing_space", b"GET /plaintext HTTP/1.1 \r\nHost: x\r\n\r\n", 400, CLOSE,
     "RFC 9112 §3: nothing may follow HTTP-version")
case("request_line_cr_before_crlf", b"GET /plaintext HTTP/1.1\r\r\nHost: x\r\n\r\n", 400, CLOSE,
     "RFC 9112 §2.2: a bare CR is invalid")
case("http09_simple_request", b"GET /plaintext\r\n\r\n", 400, CLOSE,
     "RFC 9112 §3 / RFC 9110 §2.5: HTTP/0.9 requests have no version; keel does not speak 0.9")
case("empty_request_target", b"GET  HTTP/1.1\r\nHost: x\r\n\r\n", 400, CLOSE,
     "RFC 9112 §3.2: the request-target is not empty")

# -- Request line: HTTP version ------------------------------------------------------------------
section("version")
case("version_1_2", req(version=b"HTTP/1.2"), 505, CLOSE,
     "RFC 9110 §2.5 says SHOULD treat HTTP/1.2 as 1.1; keel deliberately answers 505 to any version but 1.0/1.1 "
     "(docs/http.md)")
case("version_1_9", req(version=b"HTTP/1.9"), 505, CLOSE, "RFC 9110 §2.5: keel answers 505 for HTTP/1.x, x > 1")
case("version_3_0", req(version=b"HTTP/3.0"), 505, CLOSE, "RFC 9110 §15.6.6: major version not supported: 505")
case("version_0_9", req(version=b"HTTP/0.9"), 505, CLOSE, "RFC 9110 §15.6.6: HTTP/0.9 in a request-line: 505")
case("version_leading_zero_major", req(version=b"HTTP/01.1"), 400, CLOSE,
     "RFC 9112 §2.3: HTTP-version = HTTP-name '/' DIGIT '.' DIGIT: one digit each")
case("version_two_digit_minor", req(version=b"HTTP/1.01"), 400, CLOSE, "RFC 9112 §2.3: exactly one minor digit")
case("version_lowercase", req(version=b"http/1.1"), 400, CLOSE, "RFC 9112 §2.3: HTTP-name is case-sensitive")
case("version_no_minor", req(version=b"HTTP/1"), 400, CLOSE, "RFC 9112 §2.3: the minor version is required")
case("version_https_name", req(version=b"HTTPS/1.1"), 400, CLOSE, "RFC 9112 §2.3: HTTP-name is 'HTTP'")
case("version_space_after_slash", b"GET /plaintext HTTP/ 1.1\r\nHost: x\r\n\r\n", 400, CLOSE,
     "RFC 9112 §2.3: no whitespace inside HTTP-version")
case("version_comma", req(version=b"HTTP/1,1"), 400, CLOSE, "RFC 9112 §2.3: '.' separates the digits")

# -- Request target ------------------------------------------------------------------------------
section("target")
case("target_nul", req(target=b"/plain\x00text"), 400, CLOSE, "RFC 9112 §3.2 / RFC 3986: NUL in the request-target")
case("target_tab", req(target=b"/plain\ttext"), 400, CLOSE, "RFC 9112 §3.2: no whitespace in the request-target")
case("target_bare_cr", req(target=b"/plain\rtext"), 400, CLOSE, "RFC 9112 §2.2/§3.2: bare CR in the request-target")
case("target_del", req(target=b"/plain\x7ftext"), 400, CLOSE, "RFC 3986 §2: DEL is not a URI character")
case("target_ctl", req(target=b"/plain\x01text"), 400, CLOSE, "RFC 3986 §2: control bytes are not URI characters")
case("target_relative", req(target=b"plaintext"), 400, CLOSE,
     "RFC 9112 §3.2: a relative reference is none of the four request-target forms")
case("target_obs_text_lenient", req(target=b"/caf\xc3\xa9"), 404, KEEP,
     "RFC 9112 §3 (SHOULD 400 for an invalid request-line): keel accepts obs-text in the target (no framing impact) "
     "and routes it: 404")
case("target_bad_percent_encoding", req(target=b"/users/%zz"), 400, KEEP,
     "RFC 3986 §2.1: a malformed %-escape fails routing only: 400 without closing (framing is intact)")
case("target_percent_nul", req(target=b"/users/1%00"), 400, KEEP,
     "RFC 3986 §2.1: keel refuses a decoded NUL in a path segment: 400, connection kept")
case("target_encoded_slash_stays_in_segment", req(target=b"/files/a%2Fb"), 200, KEEP,
     "RFC 3986 §2.2: %2F is data, not a separator: routed as one segment",
     lambda t, r: t.assertEqual(r.json()["rest"], "a/b"))
case("asterisk_options", req(b"OPTIONS", b"*"), 204, KEEP,
     "RFC 9112 §3.2.4 / RFC 9110 §9.3.7: OPTIONS * is the server-wide form: 204 with Allow",
     allow("GET", "HEAD", "OPTIONS", "POST"))
case("asterisk_get", req(b"GET", b"*"), 400, CLOSE, "RFC 9112 §3.2.4: asterisk-form is only for OPTIONS")
case("asterisk_post", req(b"POST", b"*", (b"Content-Length: 0",)), 400, CLOSE,
     "RFC 9112 §3.2.4: asterisk-form is only for OPTIONS")
case("options_path", req(b"OPTIONS", b"/echo"), 204, KEEP, "RFC 9110 §9.3.7: OPTIONS on a path: 204 with its Allow",
     allow("POST", "OPTIONS"))
case("authority_form_get", req(b"GET", b"127.0.0.1:80"), 400, CLOSE,
     "RFC 9112 §3.2.3: authority-form is only for CONNECT")
case("connect_authority_form", req(b"CONNECT", b"example.com:443", host=False).replace(
    b"\r\n\r\n", b"\r\nHost: example.com:443\r\n\r\n", 1), 405, CLOSE,
     "RFC 9110 §9.3.6: keel opens no tunnels: 405 and close, so optimistic tunnel bytes are never read as requests "
     "(fixed: was a keep-alive 404)", lambda t, r: t.assertEqual(r.header_all("Allow"), [""], r))
case("connect_without_port", req(b"CONNECT", b"example.com"), 400, CLOSE,
     "RFC 9112 §3.2.3: authority-form = uri-host ':' port (fixed: was accepted)")
case("connect_bad_authority", req(b"CONNECT", b"ex\\ample.com:443"), 400, CLOSE,
     "RFC 9112 §3.2.3 / RFC 3986 §3.2.2: '\\' is not a host character (fixed: was accepted)")
case("connect_origin_form", req(b"CONNECT", b"/plaintext"), 405, CLOSE,
     "RFC 9110 §9.3.6: CONNECT takes authority-form; keel routes an origin-form CONNECT like any method without a "
     "route (405 + Allow) and closes: what follows a CONNECT head may be tunnel bytes to a proxy in front "
     "(fixed: the connection was kept; found by the differential fuzzer)")
case("absolute_form_overrides_host", req(b"GET", b"http://example.com/inspect?a=1"), 200, KEEP,
     "RFC 9112 §3.2.2: with absolute-form the server MUST ignore Host and use the target's authority",
     inspect(host="example.com", path="/inspect", query="a=1"))
case("absolute_form_https_upper_scheme_port", req(b"GET", b"HTTPS://Example.COM:8443/inspect"), 200, KEEP,
     "RFC 3986 §3.1: the scheme is case-insensitive; the authority keeps its port",
     inspect(host="Example.COM:8443", path="/inspect"))
case("absolute_form_ipv6", req(b"GET", b"http://[::1]:8080/inspect"), 200, KEEP,
     "RFC 3986 §3.2.2: an IP-literal authority", inspect(host="[::1]:8080"))
case("absolute_form_userinfo", req(b"GET", b"http://user@example.com/inspect"), 400, CLOSE,
     "RFC 9110 §4.2.4: userinfo in an http(s) URI is invalid; keel rejects it")
case("absolute_form_ftp_scheme", req(b"GET", b"ftp://example.com/inspect"), 400, CLOSE,
     "RFC 9112 §3.2.2: keel serves only http and https URIs")
case("absolute_form_empty_authority", req(b"GET", b"http:///inspect"), 400, CLOSE,
     "RFC 9110 §4.2.1: an http URI with an empty host MUST be rejected")
case("absolute_form_backslash_authority", req(b"GET", b"http://ho\\st/inspect"), 400, CLOSE,
     "RFC 3986 §3.2.2: '\\' is not a host character; proxies split such authorities differently (fixed: was "
     "accepted)")
case("absolute_form_two_colons", req(b"GET", b"http://a:b:c/inspect"), 400, CLOSE,
     "RFC 3986 §3.2.3: port = *DIGIT; a second ':' makes the authority invalid (fixed: was accepted)")
case("absolute_form_bad_port", req(b"GET", b"http://example.com:80x/inspect"), 400, CLOSE,
     "RFC 3986 §3.2.3: port = *DIGIT (fixed: was accepted)")
case("absolute_form_without_host_http11", req(b"GET", b"http://example.com/inspect", host=False), 400, CLOSE,
     "RFC 9112 §3.2: an HTTP/1.1 request without Host is 400, even in absolute-form")
case("absolute_form_http10_without_host", req(b"GET", b"http://example.com/inspect", host=False,
                                              version=b"HTTP/1.0"), 200, CLOSE,
     "RFC 9112 §3.2.2: HTTP/1.0 needs no Host; the authority comes from the target",
     inspect(host="example.com", version_minor=0))
case("absolute_form_invalid_host_header", req(b"GET", b"http://example.com/inspect", host=False).replace(
    b"\r\n\r\n", b"\r\nHost: a b\r\n\r\n", 1), 400, CLOSE,
     "RFC 9112 §3.2: a Host with an invalid value is 400 even when absolute-form makes it unused")

# -- Host ------------------------------------------------------------------------------------------
section("host")


def with_host(value: bytes, target: bytes = b"/inspect", version: bytes = b"HTTP/1.1") -> bytes:
    return b"GET " + target + b" " + version + b"\r\nHost: " + value + b"\r\n\r\n"


case("host_missing_with_body", req(b"POST", b"/echo", (b"Content-Length: 5",), b"hello", host=False), 400, CLOSE,
     "RFC 9112 §3.2: an HTTP/1.1 request without Host MUST be answered 400; its body is not parsed as a request")
case("host_duplicate_identical", req(lines=(H,)), 400, CLOSE,
     "RFC 9112 §3.2: more than one Host field line is 400, even with equal values")
case("host_duplicate_http10", b"GET /inspect HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n", 400, CLOSE,
     "RFC 9112 §3.2: 'any request message' with two Host lines, HTTP/1.0 included")
case("host_comma_list", with_host(b"a, b"), 400, CLOSE, "RFC 9110 §7.2: Host is a single uri-host[:port], not a list")
case("host_quoted", with_host(b'"example.com"'), 400, CLOSE,
     "RFC 9112 §3.2: Host with an invalid value (quotes) MUST be 400 (fixed: was accepted)")
case("host_angle_brackets", with_host(b"<script>"), 400, CLOSE,
     "RFC 9112 §3.2 / RFC 3986 §3.2.2: '<' '>' are not host characters (fixed: was accepted)")
case("host_two_colons", with_host(b"a:b:c"), 400, CLOSE,
     "RFC 3986 §3.2.3: port = *DIGIT; 'a:b:c' is no uri-host[:port] (fixed: was accepted)")
case("host_non_digit_port", with_host(b"example.com:80x"), 400, CLOSE, "RFC 3986 §3.2.3: port = *DIGIT (fixed)")
case("host_empty_name_with_port", with_host(b":80"), 400, CLOSE,
     "RFC 9110 §4.2.1: an empty host identifier is invalid (fixed: was accepted)")
case("host_obs_text", with_host(b"caf\xc3\xa9.example"), 400, CLOSE,
     "RFC 3986 §3.2.2: a reg-name is ASCII (IDNs travel as A-labels) (fixed: was accepted)")
case("host_bad_percent", with_host(b"a%4"), 400, CLOSE, "RFC 3986 §2.1: pct-encoded = '%' HEXDIG HEXDIG (fixed)")
case("host_unterminated_ip_literal", with_host(b"[::1"), 400, CLOSE, "RFC 3986 §3.2.2: IP-literal = '[' ... ']' (fixed)")
case("host_ctl", with_host(b"exa\x01mple.com"), 400, CLOSE, "RFC 9110 §5.5: CTL in a field value; not a host either")
case("host_backslash", with_host(b"example.com\\x"), 400, CLOSE,
     "RFC 9112 §3.2: '\\' is not a host character (split differently by other parsers)")
case("host_ipv6_port", with_host(b"[::1]:8080"), 200, KEEP, "RFC 3986 §3.2.2: IP-literal with a port",
     inspect(host="[::1]:8080"))
case("host_empty_value", with_host(b""), 200, KEEP,
     "RFC 9112 §3.2: an empty Host is what a client sends for a URI without authority: accepted", inspect(host=""))
case("host_ows_trimmed", b"GET /inspect HTTP/1.1\r\nHost: \t example.com:81 \t\r\n\r\n", 200, KEEP,
     "RFC 9110 §5.5: leading/trailing OWS is not part of the value", inspect(host="example.com:81"))
case("host_name_case_insensitive", b"GET /inspect HTTP/1.1\r\nhOsT: example.com\r\n\r\n", 200, KEEP,
     "RFC 9110 §5.1: field names are case-insensitive", inspect(host="example.com"))
case("host_pct_encoded_and_sub_delims", with_host(b"a%41b!$&'()*+,;=.example"), 200, KEEP,
     "RFC 3986 §3.2.2: reg-name = *( unreserved / pct-encoded / sub-delims )")

# -- Header field syntax ---------------------------------------------------------------------------
section("fields")
case("space_before_colon_content_length", post(b"Content-Length : 5", body=b"hello"), 400, CLOSE,
     "RFC 9112 §5.1: a server MUST reject whitespace between field name and colon (CL hidden from keel, seen by "
     "others)")
case("tab_before_colon", get(b"/plaintext", b"X-A\t: 1"), 400, CLOSE, "RFC 9112 §5.1: no whitespace before the colon")
case("space_before_colon_host", b"GET /plaintext HTTP/1.1\r\nHost : x\r\n\r\n", 400, CLOSE,
     "RFC 9112 §5.1: 'Host :' is rejected, not treated as a missing Host")
case("obs_fold_tab", get(b"/plaintext", b"X-A: a", b"\tb"), 400, CLOSE,
     "RFC 9112 §5.2: obs-fold (HTAB continuation) in a request: keel rejects with 400")
case("obs_fold_content_length", post(b"Content-Length:", b" 5", body=b"hello"), 400, CLOSE,
     "RFC 9112 §5.2: a Content-Length value folded onto a continuation line is rejected")
case("whitespace_before_first_field", b"GET /plaintext HTTP/1.1\r\n Host: x\r\n\r\n", 400, CLOSE,
     "RFC 9112 §2.2: whitespace between the start-line and the first field: MUST reject or ignore the line; keel "
     "rejects")
case("field_name_space", get(b"/plaintext", b"X A: 1"), 400, CLOSE, "RFC 9110 §5.1: field-name = token; no SP")
case("field_name_at", get(b"/plaintext", b"X@A: 1"), 400, CLOSE, "RFC 9110 §5.6.2: '@' is not a tchar")
case("field_name_paren", get(b"/plaintext", b"X(A): 1"), 400, CLOSE, "RFC 9110 §5.6.2: '(' ')' are not tchars")
case("field_name_slash", get(b"/plaintext", b"X/A: 1"), 400, CLOSE, "RFC 9110 §5.6.2: '/' is not a tchar")
case("field_name_equals", get(b"/plaintext", b"X=A: 1"), 400, CLOSE, "RFC 9110 §5.6.2: '=' is not a tchar")
case("field_name_brackets", get(b"/plaintext", b"X[A]: 1"), 400, CLOSE, "RFC 9110 §5.6.2: '[' ']' are not tchars")
case("field_name_nul", get(b"/plaintext", b"X\x00A: 1"), 400, CLOSE, "RFC 9110 §5.1: NUL in a field name")
case("field_name_non_ascii", get(b"/plaintext", b"X\xc3\xa9: 1"), 400, CLOSE, "RFC 9110 §5.1: non-ASCII field name")
case("field_name_del", get(b"/plaintext", b"X\x7f: 1"), 400, CLOSE, "RFC 9110 §5.1: DEL in a field name")
case("field_name_bare_cr", get(b"/plaintext", b"X\rA: 1"), 400, CLOSE, "RFC 9112 §2.2: bare CR in a field name")
case("field_name_empty", get(b"/plaintext", b": 1"), 400, CLOSE, "RFC 9110 §5.1: field-name = token (1*tchar)")
case("field_missing_colon", get(b"/plaintext", b"NoColonHere"), 400, CLOSE, "RFC 9112 §5: field-line needs ':'")
case("field_value_ctl_01", get(b"/plaintext", b"X-A: a\x01b"), 400, CLOSE,
     "RFC 9110 §5.5: CTLs in values are invalid (MAY be kept); keel rejects them all")
case("field_value_escape", get(b"/plaintext", b"X-A: \x1b[0m"), 400, CLOSE, "RFC 9110 §5.5: ESC in a field value")
case("field_value_vt", get(b"/plaintext", b"X-A: a\x0bb"), 400, CLOSE, "RFC 9110 §5.5: VT in a field value")
case("field_value_ff", get(b"/plaintext", b"X-A: a\x0cb"), 400, CLOSE, "RFC 9110 §5.5: FF in a field value")
case("field_value_del", get(b"/plaintext", b"X-A: a\x7fb"), 400, CLOSE, "RFC 9110 §5.5: DEL in a field value")
case("field_value_bare_cr_at_end", get(b"/plaintext", b"X-A: a\r"), 400, CLOSE,
     "RFC 9112 §2.2: a bare CR before CRLF is invalid")
case("field_value_obs_text", get(b"/users/21", b"X-A: caf\xc3\xa9 \x80\xff"), 200, KEEP,
     "RFC 9110 §5.5: obs-text (0x80-0xFF) is allowed in field values", is_user(21))
case("field_value_tab_inside", get(b"/users/22", b"X-A: a\tb"), 200, KEEP,
     "RFC 9110 §5.5: HTAB is allowed inside a value", is_user(22))
case("field_value_empty", get(b"/users/23", b"X-A:"), 200, KEEP, "RFC 9110 §5.5: field-value may be empty",
     is_user(23))
case("field_name_all_tchars", get(b"/users/24", b"!#$%&'*+-.^_`|~09azAZ: v"), 200, KEEP,
     "RFC 9110 §5.6.2: every tchar is valid in a field name", is_user(24))

# -- Line endings (keel: CRLF only) ----------------------------------------------------------------
section("line-endings")
case("lf_request_line_only", b"GET /plaintext HTTP/1.1\nHost: x\r\n\r\n", 400, CLOSE,
     "RFC 9112 §2.2: a recipient MAY accept a bare LF; keel never does (a front end that does would frame differently)")
case("lf_one_field_line", get(b"/plaintext", b"X-A: a\nX-B: b"), 400, CLOSE,
     "RFC 9112 §2.2: keel rejects a bare LF inside the header section")
case("lf_end_of_head", b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\n", 400, CLOSE,
     "RFC 9112 §2.2: the head ends with CRLF CRLF; a bare LF there is 400")
case("lf_hides_transfer_encoding", b"POST /echo HTTP/1.1\r\nHost: x\r\nX: y\nTransfer-Encoding: chunked\r\n"
                                   b"Content-Length: 5\r\n\r\n0\r\n\r\n", 400, CLOSE,
     "RFC 9112 §2.2 / PortSwigger TE.TE: a TE line behind a bare LF: one parser sees it, another does not: 400")
case("lf_leading_empty_line", b"\n" + get(), 400, CLOSE, "RFC 9112 §2.2: keel skips only CRLF empty lines")
case("cr_alone_as_line_end", b"GET /plaintext HTTP/1.1\rHost: x\r\n\r\n", 400, CLOSE,
     "RFC 9112 §2.2: a bare CR MUST be rejected or replaced by SP; keel rejects")

# -- Content-Length ----------------------------------------------------------------------------------
section("content-length")
case("cl_list_different", post(b"Content-Length: 5, 6", body=b"hello!"), 400, CLOSE,
     "RFC 9112 §6.3(5): a CL list with different values is an unrecoverable framing error: 400, close")
case("cl_duplicate_case_variants", post(b"content-length: 5", b"CONTENT-LENGTH: 5", body=b"hello"), 400, CLOSE,
     "RFC 9112 §6.3(5) allows merging equal values; keel rejects any second Content-Length line (stricter)")
case("cl_duplicate_one_empty", post(b"Content-Length: 5", b"Content-Length:", body=b"hello"), 400, CLOSE,
     "RFC 9112 §6.3(5): a second, empty Content-Length is invalid")
case("cl_plus_zero", post(b"Content-Length: +0"), 400, CLOSE, "RFC 9110 §8.6: Content-Length = 1*DIGIT; no sign")
case("cl_minus_zero", post(b"Content-Length: -0"), 400, CLOSE, "RFC 9110 §8.6: Content-Length = 1*DIGIT; no sign")
case("cl_leading_zeros", post(b"Content-Length: 0005", body=b"hello"), 200, KEEP,
     "RFC 9110 §8.6: 1*DIGIT allows leading zeros: 0005 is 5", echo(b"hello"))
case("cl_18_digits_leading_zeros", post(b"Content-Length: 000000000000000005", body=b"hello"), 200, KEEP,
     "RFC 9110 §8.6: up to 18 digits are parsed exactly", echo(b"hello"))
case("cl_19_digits", post(b"Content-Length: 0000000000000000005", body=b"hello"), 400, CLOSE,
     "RFC 9112 §6.3(5) / RFC 9110 §8.6 (anticipate overflow): keel refuses more than 18 digits, even leading zeros")
case("cl_huge", post(b"Content-Length: 99999999999999999999999999"), 400, CLOSE,
     "RFC 9110 §8.6: a value that would overflow is invalid: 400, never wrapped around")
case("cl_hex", post(b"Content-Length: 0x5", body=b"hello"), 400, CLOSE, "RFC 9110 §8.6: decimal digits only")
case("cl_trailing_letter", post(b"Content-Length: 5a", body=b"hello"), 400, CLOSE, "RFC 9110 §8.6: 1*DIGIT")
case("cl_exponent", post(b"Content-Length: 1e1", body=b"helloworld"), 400, CLOSE, "RFC 9110 §8.6: 1*DIGIT")
case("cl_decimal_point", post(b"Content-Length: 5.0", body=b"hello"), 400, CLOSE, "RFC 9110 §8.6: 1*DIGIT")
case("cl_inner_space", post(b"Content-Length: 5 5", body=b"hello"), 400, CLOSE, "RFC 9110 §8.6: 1*DIGIT")
case("cl_empty", post(b"Content-Length:"), 400, CLOSE, "RFC 9110 §8.6: an empty Content-Length is invalid")
case("cl_unicode_digit", post(b"Content-Length: \xef\xbc\x95", body=b"hello"), 400, CLOSE,
     "RFC 9110 §8.6: DIGIT is ASCII 0-9 (fullwidth 5 is not)")
case("cl_nul", post(b"Content-Length: 5\x00", body=b"hello"), 400, CLOSE, "RFC 9110 §5.5: NUL in a field value")
case("cl_ows", post(b"Content-Length: \t 5 \t", body=b"hello"), 200, KEEP,
     "RFC 9110 §5.5: OWS around the value is not part of it", echo(b"hello"))
case("cl_zero", post(b"Content-Length: 0"), 200, KEEP, "RFC 9110 §8.6: Content-Length: 0 is an empty body", echo(b""))
case("cl_over_body_limit", post(b"Content-Length: 1048577"), 413, CLOSE,
     "RFC 9110 §15.5.14: over keel's 1 MiB body limit: 413 before any body byte is read, close")
case("cl_18_nines_over_limit", post(b"Content-Length: 999999999999999999"), 413, CLOSE,
     "RFC 9110 §15.5.14: the largest accepted numeral, far over the limit: 413")

# -- CL.TE / TE.CL -------------------------------------------------------------------------------------
section("cl-te")
case("te_then_cl", post(b"Transfer-Encoding: chunked", b"Content-Length: 5", body=b"0\r\n\r\n"), 400, CLOSE,
     "RFC 9112 §6.1/§6.3(3): TE with CL (TE first) is rejected and the connection closed")
case("cl_te_classic", post(b"Content-Length: 13", b"Transfer-Encoding: chunked", body=b"0\r\n\r\nSMUGGLED"), 400,
     CLOSE, "PortSwigger CL.TE: CL says 13, chunked says 5: 400 and close, 'SMUGGLED' never parsed")
case("te_cl_classic", post(b"Content-Length: 3", b"Transfer-Encoding: chunked",
                           body=b"8\r\nSMUGGLED\r\n0\r\n\r\n"), 400, CLOSE,
     "PortSwigger TE.CL: CL says 3, chunked says more: 400 and close")
case("cl_zero_with_te", post(b"Content-Length: 0", b"Transfer-Encoding: chunked", body=b"0\r\n\r\n"), 400, CLOSE,
     "RFC 9112 §6.1: CL: 0 does not make TE+CL acceptable")
case("cl_te_smuggled_get", post(b"Content-Length: 4", b"Transfer-Encoding: chunked",
                                body=b"5c\r\nGPOST / HTTP/1.1\r\n\r\n0\r\n\r\n"), 400, CLOSE,
     "PortSwigger TE.CL (GPOST variant): rejected before any body byte is interpreted")
case("te_xchunked_with_cl", post(b"Content-Length: 5", b"Transfer-Encoding: xchunked", body=b"hello"), 400, CLOSE,
     "PortSwigger TE.TE: an unknown coding with CL is still TE+CL: 400, close")
case("te_http10_with_cl", req(b"POST", b"/echo", (b"Transfer-Encoding: chunked", b"Content-Length: 5"),
                              b"0\r\n\r\n", version=b"HTTP/1.0", host=False), 400, CLOSE,
     "RFC 9112 §6.1: TE in HTTP/1.0 means faulty framing even with CL: close")
case("te_http10_identity", req(b"POST", b"/echo", (b"Transfer-Encoding: identity",), b"", version=b"HTTP/1.0",
                               host=False), 400, CLOSE, "RFC 9112 §6.1: any TE in an HTTP/1.0 request: 400 and close")
case("cl_in_obs_fold_with_te", post(b"Transfer-Encoding: chunked", b"X: a", b" Content-Length: 5",
                                    body=b"0\r\n\r\n"), 400, CLOSE,
     "RFC 9112 §5.2 / PortSwigger TE.TE: a CL hidden in a folded line is rejected with the fold")

# -- Transfer-Encoding obfuscation (TE.TE) --------------------------------------------------------------
section("te-obfuscation")
OK_CHUNKS = b"5\r\nhello\r\n0\r\n\r\n"
case("te_xchunked", post(b"Transfer-Encoding: xchunked", body=OK_CHUNKS), 400, CLOSE,
     "RFC 9112 §6.3(4): final coding not chunked: 400 and close (PortSwigger TE.TE 'xchunked')")
case("te_leading_space", post(b"Transfer-Encoding:  chunked", body=OK_CHUNKS), 200, KEEP,
     "RFC 9110 §5.5: leading OWS is not part of the value: ' chunked' is chunked", echo(b"hello"))
case("te_leading_tab", post(b"Transfer-Encoding:\tchunked", body=OK_CHUNKS), 200, KEEP,
     "RFC 9110 §5.5: HTAB is OWS: chunked", echo(b"hello"))
case("te_trailing_space_tab", post(b"Transfer-Encoding: chunked \t", body=OK_CHUNKS), 200, KEEP,
     "RFC 9110 §5.5: trailing OWS is not part of the value", echo(b"hello"))
case("te_no_space", post(b"Transfer-Encoding:chunked", body=OK_CHUNKS), 200, KEEP,
     "RFC 9112 §5: OWS after the colon is optional", echo(b"hello"))
case("te_uppercase", post(b"TRANSFER-ENCODING: CHUNKED", body=OK_CHUNKS), 200, KEEP,
     "RFC 9112 §7 / RFC 9110 §5.1: field names and coding names are case-insensitive", echo(b"hello"))
case("te_chunked_identity", post(b"Transfer-Encoding: chunked, identity", body=OK_CHUNKS), 400, CLOSE,
     "RFC 9112 §6.3(4): chunked is not the final coding: 400 and close")
case("te_identity_chunked", post(b"Transfer-Encoding: identity, chunked", body=OK_CHUNKS), 501, CLOSE,
     "RFC 9112 §6.1: 'identity' is no registered coding (removed in RFC 7230): unknown coding, 501 and close")
case("te_chunked_twice_one_line", post(b"Transfer-Encoding: chunked, chunked", body=OK_CHUNKS), 400, CLOSE,
     "RFC 9112 §6.1: a sender MUST NOT apply chunked more than once: 400")
case("te_duplicate_chunked", post(b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked", body=OK_CHUNKS),
     400, CLOSE, "RFC 9110 §5.3 / PortSwigger TE.TE: two TE lines combine to 'chunked, chunked': 400")
case("te_duplicate_chunked_identity", post(b"Transfer-Encoding: chunked", b"Transfer-Encoding: identity",
                                           body=OK_CHUNKS), 400, CLOSE,
     "PortSwigger TE.TE: combined 'chunked, identity' does not end in chunked: 400, close")
case("te_duplicate_identity_chunked", post(b"Transfer-Encoding: identity", b"Transfer-Encoding: chunked",
                                           body=OK_CHUNKS), 501, CLOSE,
     "PortSwigger TE.TE: combined 'identity, chunked': unknown coding before chunked: 501, close")
case("te_duplicate_chunked_xchunked", post(b"Transfer-Encoding: chunked", b"Transfer-Encoding: x",
                                           body=OK_CHUNKS), 400, CLOSE,
     "PortSwigger TE.TE: a second TE line with a bogus coding: not chunked-final, 400")
case("te_space_before_colon", post(b"Transfer-Encoding : chunked", body=OK_CHUNKS), 400, CLOSE,
     "RFC 9112 §5.1 / PortSwigger TE.TE 'Transfer-Encoding : chunked': MUST reject whitespace before the colon")
case("te_space_before_colon_with_cl", post(b"Content-Length: 5", b"Transfer-Encoding : chunked",
                                           body=b"hello"), 400, CLOSE,
     "RFC 9112 §5.1: the malformed TE line is rejected, not ignored in favour of CL")
case("te_obs_fold_value", post(b"Transfer-Encoding:", b" chunked", body=OK_CHUNKS), 400, CLOSE,
     "RFC 9112 §5.2 / PortSwigger TE.TE: TE value on an obs-fold line: 400")
case("te_obs_fold_line", post(b"X-A: a", b" Transfer-Encoding: chunked", b"Content-Length: 5", body=b"hello"),
     400, CLOSE, "RFC 9112 §5.2 / PortSwigger TE.TE: TE header inside a folded line: 400")
case("te_vertical_tab", post(b"Transfer-Encoding:\x0bchunked", body=OK_CHUNKS), 400, CLOSE,
     "PortSwigger TE.TE: VT is not OWS (RFC 9110 §5.6.3): CTL in the value, 400")
case("te_name_vertical_tab", post(b"Transfer-Encoding\x0b: chunked", b"Content-Length: 5", body=b"hello"), 400,
     CLOSE, "PortSwigger TE.TE: a CTL after the name is not a tchar: 400")
case("te_obs_text_prefix", post(b"Transfer-Encoding: \xffchunked", body=OK_CHUNKS), 400, CLOSE,
     "RFC 9110 §5.6.2: obs-text is not part of a coding token: 400")
case("te_nul_suffix", post(b"Transfer-Encoding: chunked\x00", body=OK_CHUNKS), 400, CLOSE,
     "RFC 9110 §5.5: NUL in the value: 400")
case("te_quoted", post(b'Transfer-Encoding: "chunked"', body=OK_CHUNKS), 400, CLOSE,
     "RFC 9112 §7: transfer-coding is a token, not a quoted-string")
case("te_chunk_abbrev", post(b"Transfer-Encoding: chunk", body=OK_CHUNKS), 400, CLOSE,
     "RFC 9112 §7: 'chunk' is not chunked: final coding not chunked, 400")
case("te_parameter", post(b"Transfer-Encoding: chunked;q=1", body=OK_CHUNKS), 400, CLOSE,
     "RFC 9112 §7: chunked takes no parameters; keel refuses coding parameters")
case("te_gzip_only", post(b"Transfer-Encoding: gzip", body=b"x"), 400, CLOSE,
     "RFC 9112 §6.3(4): a request whose final coding is not chunked: 400 and close")
case("te_empty_value", post(b"Transfer-Encoding:", body=OK_CHUNKS), 400, CLOSE,
     "RFC 9112 §6.1: Transfer-Encoding = #transfer-coding; empty means no chunked final coding: 400")
case("te_trailing_comma", post(b"Transfer-Encoding: chunked,", body=OK_CHUNKS), 200, KEEP,
     "RFC 9110 §5.6.1: recipients MUST accept empty list elements: 'chunked,' is chunked", echo(b"hello"))
case("te_leading_comma", post(b"Transfer-Encoding: , chunked", body=OK_CHUNKS), 200, KEEP,
     "RFC 9110 §5.6.1: empty list elements are ignored", echo(b"hello"))
case("te_underscore_name_is_not_te", post(b"Transfer_Encoding: chunked", body=OK_CHUNKS), (200, 400), CLOSE,
     "RFC 9110 §5.1: 'Transfer_Encoding' is another field: no body (§6.3(7)); the chunk bytes are then an invalid "
     "request: 400, close", (echo(b""), None))

# -- Chunked: chunk size -------------------------------------------------------------------------------
section("chunk-size")
case("chunk_size_0x_prefix", chunked(b"0x5\r\nhello\r\n0\r\n\r\n"), 400, CLOSE,
     "RFC 9112 §7.1: chunk-size = 1*HEXDIG; '0x' is not part of it")
case("chunk_size_leading_space", chunked(b" 5\r\nhello\r\n0\r\n\r\n"), 400, CLOSE,
     "RFC 9112 §7.1: no whitespace before chunk-size")
case("chunk_size_leading_tab", chunked(b"\t5\r\nhello\r\n0\r\n\r\n"), 400, CLOSE,
     "RFC 9112 §7.1: no whitespace before chunk-size")
case("chunk_size_trailing_space", chunked(b"5 \r\nhello\r\n0\r\n\r\n"), 400, CLOSE,
     "RFC 9112 §7.1.1: BWS is allowed only before ';' of an extension, not at the end of the line")
case("chunk_size_negative", chunked(b"-5\r\nhello\r\n0\r\n\r\n"), 400, CLOSE, "RFC 9112 §7.1: 1*HEXDIG, no sign")
case("chunk_size_plus", chunked(b"+5\r\nhello\r\n0\r\n\r\n"), 400, CLOSE, "RFC 9112 §7.1: 1*HEXDIG, no sign")
case("chunk_size_empty", chunked(b"\r\nhello\r\n0\r\n\r\n"), 400, CLOSE, "RFC 9112 §7.1: at least one HEXDIG")
case("chunk_size_17_digits_leading_zeros", chunked(b"00000000000000005\r\nhello\r\n0\r\n\r\n"), 400, CLOSE,
     "RFC 9112 §7.1 (anticipate overflow): keel refuses more than 16 hex digits, even leading zeros")
case("chunk_size_16_digits", chunked(b"0000000000000005\r\nhello\r\n0\r\n\r\n"), 200, KEEP,
     "RFC 9112 §7.1: 16 hex digits fit 64 bits and are parsed exactly", echo(b"hello"))
case("chunk_size_max_uint64", chunked(b"ffffffffffffffff\r\nhello\r\n0\r\n\r\n"), 413, CLOSE,
     "RFC 9112 §7.1: 2^64-1 is read without overflow and is over the body limit: 413")
case("chunk_size_over_body_limit", chunked(b"100001\r\n"), 413, CLOSE,
     "RFC 9110 §15.5.14: one chunk over the 1 MiB limit: 413 before its data arrives")
case("chunk_size_uppercase_hex", chunked(b"A\r\n0123456789\r\n0\r\n\r\n"), 200, KEEP,
     "RFC 5234: HEXDIG is case-insensitive", echo(b"0123456789"))
case("chunk_size_leading_zero_last_chunk", chunked(b"5\r\nhello\r\n000\r\n\r\n"), 200, KEEP,
     "RFC 9112 §7.1: last-chunk = 1*('0'): '000' ends the body", echo(b"hello"))
case("chunk_size_non_hex_suffix", chunked(b"5g\r\nhello\r\n0\r\n\r\n"), 400, CLOSE,
     "RFC 9112 §7.1: 'g' is neither HEXDIG nor an extension")
case("chunk_data_longer_than_size", chunked(b"3\r\nhello\r\n0\r\n\r\n"), 400, CLOSE,
     "RFC 9112 §7.1: chunk-data is followed by CRLF; extra bytes are a framing error (TE.CL-style)")
case("chunk_data_lf_only", chunked(b"5\r\nhello\n0\r\n\r\n"), 400, CLOSE,
     "RFC 9112 §7.1 / Funky chunks: chunk-data must end with CRLF, not a bare LF")
case("chunk_data_cr_only", chunked(b"5\r\nhello\r0\r\n\r\n"), 400, CLOSE,
     "RFC 9112 §7.1 / Funky chunks: chunk-data must end with CRLF, not a bare CR")
case("chunk_body_contains_last_chunk", chunked(b"c\r\n0\r\n\r\nGET /x \r\n0\r\n\r\n"), 200, KEEP,
     "RFC 9112 §7.1: chunk-data is opaque: a '0\\r\\n\\r\\n' inside it ends nothing", echo(b"0\r\n\r\nGET /x "))
case("chunked_missing_last_chunk", chunked(b"5\r\nhello\r\n"), 400, CLOSE,
     "RFC 9112 §7.1: the pipelined marker is read as the next chunk-size line, invalid: 400; the marker is not "
     "answered")
case("chunked_missing_final_crlf", chunked(b"5\r\nhello\r\n0\r\n"), 400, CLOSE,
     "RFC 9112 §7.1.2: the marker's request-line is read as a trailer field line, invalid: 400; never answered")
case("chunked_many_small_chunks", chunked(b"1\r\na\r\n" * 200 + b"0\r\n\r\n"), 200, KEEP,
     "RFC 9112 §7.1: many chunks decode to their concatenation", echo(b"a" * 200))

# -- Chunked: extensions -----------------------------------------------------------------------------
section("chunk-ext")
case("chunk_ext_token_value", chunked(b"5;name=value\r\nhello\r\n0\r\n\r\n"), 200, KEEP,
     "RFC 9112 §7.1.1: chunk-ext-name '=' token: ignored by keel", echo(b"hello"))
case("chunk_ext_name_only", chunked(b"5;flag\r\nhello\r\n0\r\n\r\n"), 200, KEEP,
     "RFC 9112 §7.1.1: the value is optional", echo(b"hello"))
case("chunk_ext_bws", chunked(b"5 ; a = b\r\nhello\r\n0\r\n\r\n"), 200, KEEP,
     "RFC 9112 §7.1.1: BWS around ';' and '=' is allowed", echo(b"hello"))
case("chunk_ext_quoted_with_delims", chunked(b'5;a="x;y=z\\"w"\r\nhello\r\n0\r\n\r\n'), 200, KEEP,
     "RFC 9112 §7.1.1 / RFC 9110 §5.6.4: ';', '=', escaped '\"' inside a quoted-string do not end it",
     echo(b"hello"))
case("chunk_ext_many", chunked(b'5;a;b=c;d="e";f=g\r\nhello\r\n0;last=1\r\n\r\n'), 200, KEEP,
     "RFC 9112 §7.1.1: several extensions, also on the last chunk", echo(b"hello"))
case("chunk_ext_within_line_limit", chunked(b"5;a=" + b"b" * 4000 + b"\r\nhello\r\n0\r\n\r\n"), 200, KEEP,
     "RFC 9112 §7.1.1: keel accepts chunk lines up to 4 KiB", echo(b"hello"))
case("chunk_ext_huge", chunked(b"5;a=" + b"b" * 5000 + b"\r\nhello\r\n0\r\n\r\n"), 400, CLOSE,
     "RFC 9112 §7.1.1: a server ought to limit extension length and answer 4xx: over 4 KiB, 400 and close")
case("chunk_ext_huge_quoted", chunked(b'5;a="' + b"x" * 5000 + b'"\r\nhello\r\n0\r\n\r\n'), 400, CLOSE,
     "RFC 9112 §7.1.1: the limit also applies inside a quoted-string")
case("chunk_ext_bare_lf", chunked(b"5;a=b\nhello\r\n0\r\n\r\n"), 400, CLOSE,
     "Funky chunks (TERM.EXT/EXT.TERM): a bare LF inside an extension never ends the chunk line: 400")
case("chunk_ext_bare_lf_in_quoted", chunked(b'5;a="b\nc"\r\nhello\r\n0\r\n\r\n'), 400, CLOSE,
     "Funky chunks: a bare LF inside a quoted extension value: 400")
case("chunk_ext_bare_cr", chunked(b"5;a=b\rc\r\nhello\r\n0\r\n\r\n"), 400, CLOSE,
     "RFC 9112 §2.2: bare CR in an extension: 400")
case("chunk_ext_unterminated_quote", chunked(b'5;a="abc\r\nhello\r\n0\r\n\r\n'), 400, CLOSE,
     "RFC 9110 §5.6.4: an unterminated quoted-string")
case("chunk_ext_empty_name", chunked(b"5;=v\r\nhello\r\n0\r\n\r\n"), 400, CLOSE, "RFC 9112 §7.1.1: ext-name = token")
case("chunk_ext_empty_value", chunked(b"5;a=\r\nhello\r\n0\r\n\r\n"), 400, CLOSE,
     "RFC 9112 §7.1.1: '=' must be followed by a token or quoted-string")
case("chunk_ext_nul", chunked(b"5;a=b\x00\r\nhello\r\n0\r\n\r\n"), 400, CLOSE, "RFC 9112 §7.1.1: NUL is not a tchar")
case("chunk_ext_space_in_token", chunked(b"5;a=b c\r\nhello\r\n0\r\n\r\n"), 400, CLOSE,
     "RFC 9112 §7.1.1: a token value ends at whitespace; what follows must be ';'")
case("chunk_ext_semicolon_only", chunked(b"5;\r\nhello\r\n0\r\n\r\n"), 400, CLOSE,
     "RFC 9112 §7.1.1: ';' must be followed by an extension name")

# -- Chunked: trailers ---------------------------------------------------------------------------------
section("trailers")
case("trailer_valid", chunked(b"5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-Other: 2\r\n\r\n"), 200, KEEP,
     "RFC 9112 §7.1.2: trailer fields are parsed and kept apart from the header section", echo(b"hello", 2))
case("trailer_content_length_ignored", chunked(b"5\r\nhello\r\n0\r\nContent-Length: 50\r\n\r\n"), 200, KEEP,
     "RFC 9110 §6.5.1: framing fields in trailers are not merged into the header section: no effect on framing",
     echo(b"hello", 1))
case("trailer_transfer_encoding_ignored", chunked(b"5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n"), 200,
     KEEP, "RFC 9110 §6.5.1: a TE trailer does not re-frame anything", echo(b"hello", 1))
case("trailer_host_ignored", chunked(b"5\r\nhello\r\n0\r\nHost: evil.example\r\n\r\n"), 200, KEEP,
     "RFC 9110 §6.5.1: routing fields in trailers are not merged (Host stays the header's)", echo(b"hello", 1))
case("trailer_obs_fold", chunked(b"0\r\nX-A: a\r\n b\r\n\r\n"), 400, CLOSE, "RFC 9112 §5.2: obs-fold in trailers")
case("trailer_bare_lf", chunked(b"0\r\nX-A: a\n\r\n"), 400, CLOSE, "RFC 9112 §2.2: bare LF in the trailer section")
case("trailer_space_before_colon", chunked(b"0\r\nX-A : a\r\n\r\n"), 400, CLOSE,
     "RFC 9112 §5.1: whitespace before the colon, in trailers too")
case("trailer_nul", chunked(b"0\r\nX-A: a\x00b\r\n\r\n"), 400, CLOSE, "RFC 9110 §5.5: NUL in a trailer value")
case("trailer_missing_colon", chunked(b"0\r\nNoColon\r\n\r\n"), 400, CLOSE, "RFC 9112 §5: field-line needs ':'")
case("trailer_field_too_long", chunked(b"0\r\nX: " + b"a" * 8200 + b"\r\n\r\n"), 431, CLOSE,
     "RFC 6585 §5: a trailer field over the 8 KiB field limit: 431")
case("trailer_count_over_limit", chunked(b"0\r\n" + b"".join(b"T%d: v\r\n" % i for i in range(99)) + b"\r\n"), 431,
     CLOSE, "RFC 6585 §5: header + trailer fields over keel's 100-field limit: 431")

# -- Expect ------------------------------------------------------------------------------------------
section("expect")
case("expect_100_awaited", post(b"Expect: 100-continue", b"Content-Length: 5"), (100, 200), KEEP,
     "RFC 9110 §10.1.1: 100 Continue before the body is read, then the final response", (None, echo(b"hello")),
     body_after_100=b"hello")
case("expect_100_mixed_case_chunked", post(b"Expect: 100-Continue", b"Transfer-Encoding: chunked"), (100, 200), KEEP,
     "RFC 9110 §10.1.1: the expectation is case-insensitive; works with a chunked body", (None, echo(b"hello")),
     body_after_100=OK_CHUNKS)
case("expect_100_then_bad_chunk", post(b"Expect: 100-continue", b"Transfer-Encoding: chunked"), (100, 400), CLOSE,
     "RFC 9110 §10.1.1 / RFC 9112 §7.1: an invalid body after 100 Continue is still 400 and close",
     body_after_100=b"zz\r\nhello\r\n0\r\n\r\n")
case("expect_100_body_sent_early", post(b"Expect: 100-continue", b"Content-Length: 5", body=b"hello"), 200, KEEP,
     "RFC 9110 §10.1.1: a server MAY omit 100 if the content already arrived (an interim 100 is tolerated)",
     echo(b"hello"))
case("expect_100_over_body_limit", post(b"Expect: 100-continue", b"Content-Length: 2000000"), 413, CLOSE,
     "RFC 9110 §10.1.1: a final status instead of 100 when the body would be refused: 413, no 100, close")
case("expect_100_http10_ignored", req(b"POST", b"/echo", (b"Expect: 100-continue", b"Content-Length: 2"), b"hi",
                                      version=b"HTTP/1.0", host=False), 200, CLOSE,
     "RFC 9110 §10.1.1: a 100-continue expectation in HTTP/1.0 MUST be ignored: no 100", echo(b"hi"))
case("expect_100_cl_zero", post(b"Expect: 100-continue", b"Content-Length: 0"), 200, KEEP,
     "RFC 9110 §10.1.1: no content, nothing to continue: the final response directly", echo(b""))
case("expect_list_with_unknown", post(b"Expect: 100-continue, x-foo", b"Content-Length: 5", body=b"hello"), 417,
     CLOSE, "RFC 9110 §10.1.1: a member other than 100-continue MAY get 417; keel closes")
case("expect_with_cl_te", post(b"Expect: 100-continue", b"Content-Length: 5", b"Transfer-Encoding: chunked",
                               body=OK_CHUNKS), 400, CLOSE,
     "RFC 9112 §6.1: framing is checked before the expectation: 400, no 100")

# -- Limits (docs/http.md defaults) ------------------------------------------------------------------
section("limits")
case("request_line_at_limit", b"GET /files/" + b"a" * (8192 - 20) + b" HTTP/1.1\r\nHost: x\r\n\r\n", 200, KEEP,
     "docs/http.md: a request-line of exactly 8 KiB is accepted")
case("request_line_over_limit", b"GET /files/" + b"a" * (8193 - 20) + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, CLOSE,
     "RFC 9110 §15.5.15: one byte over keel's 8 KiB request-line limit: 414, close")
case("header_field_at_limit", get(b"/users/25", b"X: " + b"a" * (8192 - 3)), 200, KEEP,
     "docs/http.md: a field line of exactly 8 KiB is accepted", is_user(25))
case("header_field_over_limit", get(b"/plaintext", b"X: " + b"a" * (8193 - 3)), 431, CLOSE,
     "RFC 6585 §5: one field line over 8 KiB: 431, close")
case("header_count_at_limit", get(b"/users/26", *(b"X-%d: v" % i for i in range(99))), 200, KEEP,
     "docs/http.md: 100 header fields (Host included) are accepted", is_user(26))
case("header_count_over_limit", get(b"/plaintext", *(b"X-%d: v" % i for i in range(100))), 431, CLOSE,
     "RFC 6585 §5: 101 header fields: 431, close")
case("header_block_over_limit", get(b"/plaintext", *(b"X-%d: " % i + b"v" * 8000 for i in range(9))), 431, CLOSE,
     "RFC 6585 §5: request line + fields over keel's 64 KiB head limit: 431, close")

# -- Incomplete requests, timeouts ---------------------------------------------------------------------
section("incomplete")
case("eof_in_request_line", b"GET /plain", None, CLOSE,
     "RFC 9112 §8: an incomplete request at EOF is never answered; the server just closes", marker="none",
     half_close=True)
case("eof_in_headers", b"GET /plaintext HTTP/1.1\r\nHost: x\r\n", None, CLOSE,
     "RFC 9112 §8: an incomplete head at EOF: no response, close", marker="none", half_close=True)
case("eof_in_cl_body", post(b"Content-Length: 10", body=b"hello"), None, CLOSE,
     "RFC 9112 §8: a body shorter than Content-Length at EOF is incomplete: never handled", marker="none",
     half_close=True)
case("eof_in_chunked_body", chunked(b"5\r\nhello\r\n"), None, CLOSE,
     "RFC 9112 §8: a chunked body without its last chunk at EOF is incomplete: never handled", marker="none",
     half_close=True)
case("eof_after_request_and_partial", user(27) + b"GET /users/28 HTT", 200, CLOSE,
     "RFC 9112 §9.6: the complete request is answered; the partial one is dropped at EOF", is_user(27),
     marker="none", half_close=True)
case("timeout_head", b"GET /plaintext HTTP/1.1\r\nHost: x\r\n", 408, CLOSE,
     "RFC 9110 §15.5.9: a head not completed within --header-timeout: 408 and close", marker="none",
     server="timeouts")
case("timeout_cl_body_absorbs_marker", post(b"Content-Length: 500", body=b"hello"), 408, CLOSE,
     "RFC 9112 §6.2 / PortSwigger 0.CL (back-end half): the declared body swallows the marker as data: 408, close",
     server="timeouts")
case("timeout_chunked_absorbs_marker", chunked(b"200\r\nhello"), 408, CLOSE,
     "RFC 9112 §7.1: the marker is chunk-data of an unfinished chunk, never a request: 408, close",
     server="timeouts")

# -- The same cases delivered in 7-byte pieces ---------------------------------------------------------
# Every short case again, trickled: the parser sees each request in many partial reads (and the
# connection compacts and grows its buffer in between), so no verdict may depend on read boundaries.
TABLE_CASES = len(CASES)
CASES += [replace(c, id=c.id + "__split7", split=7) for c in CASES[:TABLE_CASES]
          if c.marker == "pipe" and c.server == "default" and c.body_after_100 is None and not c.half_close
          and len(c.raw) <= 2048]

MARKER_BASE = 9000


class ConformanceTest(KeelTestCase):
    """One test per case of CASES (generated below)."""

    @classmethod
    def setUpClass(cls):
        cls.servers = {
            "default": cls.start_class_server(),
            "timeouts": cls.start_class_server("--header-timeout", "300ms", "--body-timeout", "300ms"),
        }

    @staticmethod
    def marker_request(n: int) -> bytes:
        return b"GET /users/%d HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" % n

    def run_case(self, c: Case, marker: int) -> None:
        server = self.servers[c.server]
        ctx = f"[{c.id}] {c.rule}"
        with Conn(server.port, timeout=5) as conn:
            marker_bytes = self.marker_request(marker) if c.marker != "none" else b""
            if c.body_after_100 is not None:
                conn.send(c.raw)
                interim = conn.read_response()
                self.assertEqual(interim.status, 100, f"{ctx}: expected 100 Continue, got {interim!r}")
                conn.send(c.body_after_100 + marker_bytes)
                expected = c.statuses[1:]
                checks = c.checks[1:]
            elif c.split:
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                data = c.raw + marker_bytes
                try:
                    for i in range(0, len(data), c.split):
                        conn.send(data[i:i + c.split])
                        time.sleep(0.0003)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the server may close (after answering) before the last pieces
                expected = c.statuses
                checks = c.checks
            else:
                conn.send(c.raw + marker_bytes)
                expected = c.statuses
                checks = c.checks
            if c.half_close:
                conn.sock.shutdown(socket.SHUT_WR)
            tolerate_100 = b"expect: 100-continue" in c.raw.lower() and c.body_after_100 is None
            responses = []
            for i, status in enumerate(expected):
                method = c.read_as[i] if i < len(c.read_as) else "GET"
                try:
                    resp = conn.read_response(method=method)
                    if tolerate_100 and resp.status == 100:
                        resp = conn.read_response(method=method)
                except (keelproc.ProtocolError, OSError) as e:
                    self.fail(f"{ctx}: response #{i + 1} (expected {status}) missing: {e}\n{server.output_tail(5)}")
                responses.append(resp)
                self.assertEqual(resp.status, status, f"{ctx}: response #{i + 1}: {resp!r}")
                if i < len(checks) and checks[i] is not None:
                    checks[i](self, resp)
                last = i == len(expected) - 1
                if status >= 400:
                    # Error responses are problem documents (keel's policy), closing or not.
                    self.assertProblem(resp, status, close=c.close and last)
                if last and c.close and not c.half_close:  # after a half-close the close may not be announced
                    self.assertTrue(resp.has_token("Connection", "close"), f"{ctx}: no Connection: close: {resp!r}")
                elif status >= 200:
                    self.assertFalse(resp.has_token("Connection", "close"), f"{ctx}: unexpected close: {resp!r}")
            if c.close:
                # The error (or closing) response is the last thing on the connection: the pipelined
                # marker is never answered.
                state = conn.wait_closed(timeout=3)
                self.assertEqual(state, "eof", f"{ctx}: expected EOF after the last response, got {state} "
                                               f"{getattr(conn, 'extra', b'')[:300]!r}")
                return
            resp = conn.read_response()
            self.assertEqual(resp.status, 200, f"{ctx}: marker response: {resp!r}")
            self.assertEqual(resp.json(), {"id": marker, "route": "/users/{id:int}"},
                             f"{ctx}: the response after the case's responses is not the marker's")
            state = conn.wait_closed(timeout=3)
            self.assertEqual(state, "eof", f"{ctx}: bytes after the marker response: "
                                           f"{getattr(conn, 'extra', b'')[:300]!r}")

    def test_zzz_servers_survived(self):
        for name, server in self.servers.items():
            self.assertTrue(server.alive(), server.output_tail())
            self.assertEqual(keelproc.get(server.port, "/plaintext").status, 200, name)


def _make_test(c: Case, n: int):
    def test(self):
        self.run_case(c, MARKER_BASE + n)
    test.__doc__ = f"{c.rule}"
    return test


_seen = set()
for _n, _c in enumerate(CASES):
    assert _c.id not in _seen, f"duplicate case id {_c.id}"
    _seen.add(_c.id)
    assert len(_c.checks) <= max(1, len(_c.statuses)), _c.id
    assert _c.close or _c.marker == "pipe", f"{_c.id}: a keep-alive case needs its marker"
    setattr(ConformanceTest, f"test_{_n:03d}_{_c.id}", _make_test(_c, _n))


if __name__ == "__main__":
    unittest.main()
