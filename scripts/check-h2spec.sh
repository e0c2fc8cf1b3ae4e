#!/usr/bin/env bash
# HTTP/2 conformance: the whole h2spec suite (RFC 7540/9113 and RFC 7541 HPACK, 146 cases in
# h2spec 2.6.0) against keel over h2c with prior knowledge (a plaintext bind) and over h2 by ALPN
# (a TLS bind with a throwaway self-signed certificate). Prints each failed case's id (the form
# h2spec takes to rerun it: `h2spec -p PORT http2/5.1/1`) and fails if any case fails.
#   scripts/check-h2spec.sh [BINARY]                   keel-demo: build/release/apps/demo/keel-demo,
#                                                      else build/debug/apps/demo/keel-demo
#   scripts/check-h2spec.sh --peer nginx|h2o           the same suite against a reference server,
#                                                      started here the same way (to read keel's
#                                                      results against)
#   scripts/check-h2spec.sh --target HOST PORT [--tls] a server someone else started
# h2spec: H2SPEC_BIN if set, else build/h2spec/h2spec, else built there by the shared builder
# (${H2SPEC_BUILDER:-../shared/tools/build-h2spec.sh}, ~60 s, offline, from the Go packages
# scripts/install-deps.sh installs). Without the builder, or with its h2spec source incomplete,
# the check is skipped (exit 0) unless H2SPEC_REQUIRED=1.
# Environment (defaults): H2SPEC_MODES ("h2c tls"), H2SPEC_PATH (/), H2SPEC_CASE_TIMEOUT (2: h2spec's
#   -o, seconds to wait for an expected frame), H2SPEC_STRICT=1 (add -S: h2spec's strict cases),
#   H2SPEC_SOURCE (the builder's first argument: an h2spec git dir or source tree),
#   H2SPEC_SERVER_ARGS (more flags for keel-demo, word-split), H2SPEC_WAIVE (case ids, or MODE:ID,
#   space-separated, reported as WAIVED instead of failing the check: each one a decision to
#   write down, e.g. h2c:http2/3.5/2 where the plaintext port also speaks HTTP/1.1).
# Reports go to build/h2spec/: MODE.txt (h2spec's output), MODE.xml (JUnit), server-MODE.log,
# summary.txt. Exit: 0 every case passed (or h2spec unavailable and not required), 1 otherwise,
# 2 usage.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/build/h2spec
say() { echo "check-h2spec: $*" >&2; }
usage() { awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0" >&2; exit 2; }

kind=keel bin="" peer="" target_host="" target_port="" target_tls=0
case "${1:-}" in
  -h | --help) usage ;;
  --peer)
    kind=peer peer=${2:-}
    case $peer in nginx | h2o) ;; *) usage ;; esac
    ;;
  --target)
    kind=target target_host=${2:-} target_port=${3:-}
    if [ -z "$target_host" ] || ! [[ $target_port =~ ^[0-9]+$ ]]; then usage; fi
    [ "${4:-}" = --tls ] && target_tls=1
    ;;
  -*) usage ;;
  *) bin=${1:-} ;;
esac
modes=${H2SPEC_MODES:-h2c tls}
if [ "$kind" = target ]; then
  modes=h2c
  [ "$target_tls" = 1 ] && modes=tls
fi
for m in $modes; do case $m in h2c | tls) ;; *) say "H2SPEC_MODES takes h2c and/or tls, not '$m'"; exit 2 ;; esac; done
path=${H2SPEC_PATH:-/}
case_timeout=${H2SPEC_CASE_TIMEOUT:-2}

if [ "$kind" = keel ]; then
  if [ -z "$bin" ]; then
    for b in "$root/build/release/apps/demo/keel-demo" "$root/build/debug/apps/demo/keel-demo"; do
      [ -x "$b" ] && { bin=$b; break; }
    done
  fi
  [ -x "${bin:-}" ] || { say "no keel-demo binary (build the release or debug preset, or pass one)"; exit 1; }
fi
if [ "$kind" = peer ]; then
  command -v "$peer" >/dev/null || { say "missing $peer (scripts/install-deps.sh; nginx: ../shared/peers/peers.sh install)"; exit 1; }
fi
for tool in curl openssl timeout /usr/bin/python3; do
  command -v "$tool" >/dev/null || { say "missing $tool (scripts/install-deps.sh)"; exit 1; }
done
mkdir -p "$out"
tmp="" work="" server_pid="" h2spec_pid=""
stop_server() {
  [ -n "$server_pid" ] || return 0
  kill -TERM "$server_pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}
cleanup() {
  [ -z "$h2spec_pid" ] || { kill -TERM "$h2spec_pid" 2>/dev/null || true; wait "$h2spec_pid" 2>/dev/null || true; }
  stop_server
  [ -z "$work" ] || { chmod -R u+w "$work" 2>/dev/null || true; rm -rf "$work"; }  # sources copied read-only
  [ -z "$tmp" ] || rm -rf "$tmp"
  [ -z "${patched:-}" ] || { chmod -R u+w "$patched" 2>/dev/null || true; rm -rf "$patched"; }
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# -- h2spec -----------------------------------------------------------------------------------
skip_or_fail() {  # MESSAGE: no h2spec to run
  if [ "${H2SPEC_REQUIRED:-0}" = 1 ]; then say "$1 (H2SPEC_REQUIRED=1)"; exit 1; fi
  say "SKIPPED: $1 (set H2SPEC_REQUIRED=1 to make this an error)"
  exit 0
}
works() { [ -x "$1" ] && "$1" --version >/dev/null 2>&1; }
h2spec=""
if [ -n "${H2SPEC_BIN:-}" ]; then
  works "$H2SPEC_BIN" || { say "H2SPEC_BIN=$H2SPEC_BIN does not run"; exit 1; }
  h2spec=$H2SPEC_BIN
elif works "$out/h2spec"; then
  h2spec=$out/h2spec
else
  builder=${H2SPEC_BUILDER:-../shared/tools/build-h2spec.sh}
  [[ $builder = /* ]] || builder=$root/$builder
  [ -f "$builder" ] || skip_or_fail "no h2spec builder at $builder (../shared lies beside the checkout on the team's machines; or set H2SPEC_BUILDER, H2SPEC_BIN)"
  src_args=()
  [ -n "${H2SPEC_SOURCE:-}" ] && src_args=("$H2SPEC_SOURCE")
  # The shared source tree of h2spec 2.6.0 was copied without cmd/h2spec/ (h2spec's .gitignore
  # line 'h2spec' also matches that directory): keel's own command (tests/h2spec/main.go, the
  # same flags) is put in its place, in a copy, and built against the shared library.
  default_src=$(cd "$(dirname "$builder")" && pwd)/h2spec-src
  if [ -z "${H2SPEC_SOURCE:-}" ] && [ -f "$default_src/go.mod" ] && [ ! -d "$default_src/cmd/h2spec" ]; then
    patched=$(mktemp -d /tmp/keel-h2spec-src.XXXXXX)
    cp -a "$default_src/." "$patched/"
    mkdir -p "$patched/cmd/h2spec"
    cp "$root/tests/h2spec/main.go" "$patched/cmd/h2spec/main.go"
    src_args=("$patched")
  fi
  say "building h2spec into $out (${builder#"$root/"}, ~60 s)"
  work=$(mktemp -d /tmp/keel-h2spec-build.XXXXXX)
  # The builder installs nothing here: scripts/install-deps.sh has the Go packages.
  if ! H2SPEC_OUT="$out" H2SPEC_SRC="$work/src" H2SPEC_GOPATH="$work/gopath" H2SPEC_NO_APT=1 \
    timeout -k 5 600 bash "$builder" "${src_args[@]}" >"$out/build.log" 2>&1; then
    tail -n 15 "$out/build.log" >&2
    say "building h2spec failed (build/h2spec/build.log)"
    exit 1
  fi
  h2spec=$out/h2spec
fi
strict=()
[ "${H2SPEC_STRICT:-0}" = 1 ] && strict=(-S)
ncases=$("$h2spec" --dryrun "${strict[@]}" | grep -cE '^ +[0-9]+: ' || true)
say "$("$h2spec" --version | head -1 | sed 's/^Version: /h2spec /'), $ncases cases"

# -- servers ----------------------------------------------------------------------------------
tmp=$(mktemp -d /tmp/keel-h2spec.XXXXXX)
chmod 755 "$tmp"  # a server's unprivileged workers still reach the certificate and the document root

if [ "$kind" != target ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -keyout "$tmp/key.pem" -out "$tmp/cert.pem" \
    -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" >/dev/null 2>&1
  mkdir -p "$tmp/www"
  printf 'Hello, World!\n' >"$tmp/www/index.html"
  chmod 644 "$tmp/www/index.html" "$tmp/cert.pem"
fi
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

start_server() {  # MODE PORT LOG: starts keel-demo or the peer, sets server_pid
  local mode=$1 port=$2 log=$3
  case ${peer:-$kind} in
    keel)
      local tls=()
      [ "$mode" = tls ] && tls=(--certfile "$tmp/cert.pem" --keyfile "$tmp/key.pem")
      # shellcheck disable=SC2086  # H2SPEC_SERVER_ARGS is a list of flags
      SECRET_KEY=h2spec-secret-key DATABASE_URL=sqlite:$tmp/db.sqlite \
        setsid "$bin" --bind "127.0.0.1:$port" --workers 1 "${tls[@]}" --no-access-log ${H2SPEC_SERVER_ARGS:-} \
        >"$log" 2>&1 &
      server_pid=$!
      ;;
    nginx)
      local listen="listen 127.0.0.1:$port http2;"
      [ "$mode" = tls ] && listen="listen 127.0.0.1:$port ssl http2;
    ssl_certificate $tmp/cert.pem;
    ssl_certificate_key $tmp/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;"
      cat >"$tmp/nginx-$mode.conf" <<CONF
worker_processes 1;
daemon off;
pid $tmp/nginx-$mode.pid;
error_log $log;
events { worker_connections 1024; }
http {
  access_log off;
  server {
    $listen
    location / { default_type text/plain; return 200 "Hello, World!"; }
  }
}
CONF
      setsid nginx -e "$log" -c "$tmp/nginx-$mode.conf" >>"$log" 2>&1 &
      server_pid=$!
      ;;
    h2o)
      local ssl=""
      [ "$mode" = tls ] && ssl="
      ssl:
        certificate-file: $tmp/cert.pem
        key-file: $tmp/key.pem
        minimum-version: TLSv1.2
        ocsp-update-interval: 0"
      # user: root, else h2o drops to nobody before it writes its pid file into our 0700 tmp
      cat >"$tmp/h2o-$mode.conf" <<CONF
user: root
pid-file: $tmp/h2o-$mode.pid
error-log: $log
num-threads: 1
hosts:
  default:
    listen:
      host: 127.0.0.1
      port: $port$ssl
    paths:
      /:
        file.dir: $tmp/www
CONF
      setsid h2o -c "$tmp/h2o-$mode.conf" >>"$log" 2>&1 &
      server_pid=$!
      ;;
  esac
}

wait_ready() {  # URL: HTTP/1.1 or h2c prior knowledge (nginx's h2c port speaks nothing else)
  local health=$1
  for _ in $(seq 1 100); do
    curl -ks -o /dev/null --max-time 1 "$health" && return 0
    curl -ks -o /dev/null --max-time 1 --http2-prior-knowledge "$health" && return 0
    if [ -n "$server_pid" ] && ! kill -0 "$server_pid" 2>/dev/null; then return 1; fi
    sleep 0.1
  done
  return 1
}

speaks_h2() {  # MODE URL: prints what went wrong when the server does not answer over HTTP/2
  local mode=$1 url=$2 v rc=0 how
  if [ "$mode" = h2c ]; then
    how="curl --http2-prior-knowledge"
    v=$(curl -s -o /dev/null --max-time 3 -w '%{http_version}' --http2-prior-knowledge "$url") || rc=$?
  else
    how="curl --http2 -k"
    v=$(curl -sk -o /dev/null --max-time 3 -w '%{http_version}' --http2 "$url") || rc=$?
  fi
  [ "$v" = 2 ] && return 0
  if [ "$rc" = 7 ]; then
    echo "nothing answers at $url ($how: could not connect)"
  elif [ "$mode" = h2c ]; then
    echo "no HTTP/2 answer to the h2c preface ($how: exit $rc, HTTP version '${v:-none}'): h2c with prior knowledge is not served on this plaintext port"
  else
    echo "ALPN did not select h2 ($how: exit $rc, HTTP version '${v:-none}'): h2 is not offered on this TLS port"
  fi
  return 1
}

# -- runs -------------------------------------------------------------------------------------
what=$kind
case $kind in target) what="the server at $target_host:$target_port" ;; keel) what="keel-demo (${bin#"$root/"})" ;; peer) what=$("$peer" -v 2>&1 | head -1 | sed -E 's#^nginx version: ##; s#^h2o version #h2o/#') ;; esac
summary=$out/summary.txt
{
  echo "h2spec against $what, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "$("$h2spec" --version | head -1), $ncases cases, -o $case_timeout${strict:+ -S}, path $path"
} >"$summary"
failed=0
for mode in $modes; do
  scheme=http tls_args=()
  [ "$mode" = tls ] && { scheme=https; tls_args=(-t -k); }
  log=$out/server-$mode.log
  if [ "$kind" = target ]; then
    host=$target_host port=$target_port
    : >"$log"
  else
    host=127.0.0.1 port=$(free_port)
    start_server "$mode" "$port" "$log"
    health=$scheme://127.0.0.1:$port/
    [ "$kind" = keel ] && health=$scheme://127.0.0.1:$port/health
    if ! wait_ready "$health"; then
      say "$mode: $what did not start on port $port:"; tail -n 20 "$log" >&2
      failed=1; stop_server; echo "$mode: server did not start" >>"$summary"; continue
    fi
  fi
  echo "== $mode: $what on $host:$port"
  if ! why=$(speaks_h2 "$mode" "$scheme://$host:$port$path"); then
    say "$mode: $why"
    echo "$mode: not HTTP/2 — $why" >>"$summary"
    failed=1; stop_server; continue
  fi
  rm -f "$out/$mode.xml"
  rc=0
  # In the background so that INT/TERM stop the script at once (a foreground child defers them).
  timeout -k 5 900 "$h2spec" -h "$host" -p "$port" -P "$path" -o "$case_timeout" "${tls_args[@]}" "${strict[@]}" \
    -j "$out/$mode.xml" >"$out/$mode.txt" 2>&1 &
  h2spec_pid=$!
  wait "$h2spec_pid" || rc=$?
  h2spec_pid=""
  alive=1
  if [ "$kind" != target ] && ! kill -0 "$server_pid" 2>/dev/null; then alive=0; fi
  stop_server
  grep -E '^[0-9]+ tests, ' "$out/$mode.txt" || true
  # Each failed case as ID (the testsuite's package and the case's position in it), its title
  # and what the server did instead; the counts; exit 1 on a failure, 3 on an incomplete run.
  prc=0
  /usr/bin/python3 - "$out/$mode.xml" "$mode" "$ncases" "$rc" "${H2SPEC_WAIVE:-}" >>"$summary" <<'PY' || prc=$?
import sys, xml.etree.ElementTree as ET
path, mode, expected, rc = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
waive = {w.split(":", 1)[1] if ":" in w else w for w in sys.argv[5].split()
         if ":" not in w or w.split(":", 1)[0] == mode}
try:
    root = ET.parse(path).getroot()
except (OSError, ET.ParseError) as e:
    print(f"{mode}: h2spec wrote no report (exit {rc}: {e})")
    sys.exit(3)
total = passed = skipped = 0
bad, waived, seen = [], [], set()
for suite in root.iter("testsuite"):
    for i, case in enumerate(suite.findall("testcase"), 1):
        total += 1
        cid = f"{suite.get('package')}/{i}"
        seen.add(cid)
        err = case.find("error")
        if err is None:
            err = case.find("failure")
        if err is not None:
            lines = [l.strip() for l in (err.text or "").strip().splitlines() if l.strip()]
            line = f"{cid}  {case.get('classname')}  [got: {lines[-1] if lines else '?'}]"
            (waived if cid in waive else bad).append(line)
        elif case.find("skipped") is not None:
            skipped += 1
        else:
            passed += 1
print(f"{mode}: {total} cases, {passed} passed, {skipped} skipped, {len(bad) + len(waived)} failed"
      + (f" ({len(waived)} of them waived by H2SPEC_WAIVE)" if waived else ""))
for b in bad:
    print(f"  FAIL {b}")
for w in waived:
    print(f"  WAIVED {w}")
for w in sorted(waive - {w.split()[0] for w in waived}):
    print(f"  note: {w} is waived but " + ("passed: take it out of H2SPEC_WAIVE" if w in seen else "is no h2spec case"))
if total != expected or rc not in (0, 1):
    print(f"{mode}: INCOMPLETE: {total} of {expected} cases reported, h2spec exit {rc}")
    sys.exit(3)
sys.exit(1 if bad else 0)
PY
  if [ "$alive" = 0 ]; then
    echo "$mode: the server was no longer running at the end of the suite (build/h2spec/server-$mode.log)" >>"$summary"
    failed=1
  fi
  [ "$prc" = 0 ] || failed=1
done
echo
cat "$summary"
if [ "$failed" != 0 ]; then
  say "FAILED (build/h2spec/: MODE.txt has h2spec's explanation of each case)"
  exit 1
fi
if [ -n "${H2SPEC_WAIVE:-}" ]; then say "passed over: $modes, with H2SPEC_WAIVE='$H2SPEC_WAIVE' (see the summary)"
else say "every case passed over: $modes"; fi
