"""A minimal OTLP/HTTP (JSON) trace sink for scripts/check-consumers.sh (standard library only).

  otlp_sink.py serve PORT_FILE SPANS_FILE    listen on 127.0.0.1 (ephemeral port, written to
                                             PORT_FILE); append every received span to SPANS_FILE,
                                             one JSON object per line
  otlp_sink.py check-child-span SPANS_FILE TRACE_ID CALLER_SPAN_ID
                                             examples/child_span: "build report" is a child of the
                                             request's SERVER span (itself a child of the caller's
                                             span), "SELECT orders" a CLIENT child of "build report"
"""

import gzip
import http.server
import json
import os
import sys
import time


def serve(port_file: str, spans_file: str) -> None:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            with open(spans_file, "a", encoding="utf-8") as out:
                for rs in json.loads(body).get("resourceSpans", []):
                    for ss in rs.get("scopeSpans", []):
                        for span in ss.get("spans", []):
                            out.write(json.dumps(span) + "\n")
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with open(port_file + ".tmp", "w", encoding="ascii") as f:
        f.write(str(server.server_address[1]))
    os.replace(port_file + ".tmp", port_file)
    server.serve_forever()


def check_child_span(spans_file: str, trace_id: str, caller_span_id: str) -> int:
    spans = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            with open(spans_file, encoding="utf-8") as f:
                spans = [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            spans = []
        names = {s.get("name") for s in spans if s.get("traceId") == trace_id}
        if {"GET /reports/{customer:int}", "build report", "SELECT orders"} <= names:
            break
        time.sleep(0.1)
    by_name = {s["name"]: s for s in spans if s.get("traceId") == trace_id}
    problems = []
    server = by_name.get("GET /reports/{customer:int}")
    report = by_name.get("build report")
    query = by_name.get("SELECT orders")
    if not (server and report and query):
        problems.append(f"spans of trace {trace_id} received: {sorted(by_name)}")
    else:
        # OTLP kinds: 1 INTERNAL, 2 SERVER, 3 CLIENT.
        if server.get("kind") != 2 or server.get("parentSpanId") != caller_span_id:
            problems.append(f"SERVER span: kind {server.get('kind')}, parent {server.get('parentSpanId')}")
        if report.get("kind") != 1 or report.get("parentSpanId") != server.get("spanId"):
            problems.append(f"'build report': kind {report.get('kind')}, parent {report.get('parentSpanId')}, "
                            f"expected INTERNAL under {server.get('spanId')}")
        if query.get("kind") != 3 or query.get("parentSpanId") != report.get("spanId"):
            problems.append(f"'SELECT orders': kind {query.get('kind')}, parent {query.get('parentSpanId')}, "
                            f"expected CLIENT under {report.get('spanId')}")
        attributes = {a["key"]: a["value"] for a in report.get("attributes", [])}
        if attributes.get("report.orders") != {"intValue": "21"}:
            problems.append(f"'build report' attributes: {attributes}")
    for p in problems:
        print(f"otlp_sink: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 5 and sys.argv[1] == "check-child-span":
        sys.exit(check_child_span(*sys.argv[2:]))
    else:
        sys.exit(__doc__)
