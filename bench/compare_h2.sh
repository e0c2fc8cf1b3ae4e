#!/usr/bin/env bash
# HTTP/2 throughput of keel-demo against nginx and h2o on /json ({"message":"Hello, World!"}),
# loopback only, the same number of workers each (1 by default):
#   bench/compare_h2.sh [WORKERS]
#   - h2: TLS with ALPN h2, the same certificate, TLS 1.2/1.3 and cipher list on all three, and
#     h2load offering one TLS 1.3 suite ($TLS13_CIPHER), so that a server preferring its own order
#     (nginx, h2o: AES-256) does not pay for a different cipher than one following the client's;
#   - h2c: HTTP/2 with prior knowledge on a plaintext port (keel's plaintext binds, nginx's
#     `listen ... http2` without ssl, h2o's plaintext listener).
# Load: h2load -c$CLIENTS -m$STREAMS -t1 -D$DURATION (16 connections x 32 concurrent streams),
# alternating keel nginx h2o keel nginx h2o ... for $ROUNDS rounds so that drift of the shared
# machine hits all alike; the medians of req/s and the ratios keel/nginx and keel/h2o.
# The servers, each answering /json from memory or as near as it gets, no access log:
#   - keel-demo: its /json handler (JsonWriter per request), KEEL_ACCESS_LOG=false,
#     --keep-alive-requests 0;
#   - nginx: `return 200 '{"message":"Hello, World!"}'` (as ../shared/peers/nginx.conf.in),
#     keepalive_requests raised from its default 1000, after which nginx sends GOAWAY and h2load,
#     which does not reconnect, loses the connection for the rest of the run;
#   - h2o: a static file (`file.file`, application/json, no ETag; h2o answers it from its open
#     file cache) — Debian's h2o has mruby, but an mruby handler returning the body measured
#     ~3x slower here (~110k against ~330k req/s h2c), so the file is the cheapest equivalent.
#     (h2o 2.2.5 signs handshakes in a separate "neverbleed" process and has no switch for it;
#     keep-alive throughput does not involve it.)
# Before measuring, each server must answer over HTTP/2 (curl --http2-prior-knowledge on h2c,
# curl --http2 -k on TLS): keel-demo without HTTP/2 makes the script stop with a clear error.
# Environment (defaults): ROUNDS (5), DURATION seconds per h2load run (5), CLIENTS (16),
#   STREAMS (32), MODES ("h2 h2c"), SERVERS ("keel nginx h2o"; "nginx h2o" measures the peers
#   alone), KEY (rsa: RSA 2048; ec: ECDSA P-256), BENCH_KEEL_PORT (18094), NGINX_PORT (18096),
#   H2O_PORT (18098) — each server's TLS port, its h2c port is the next one —, TLS13_CIPHER
#   (TLS_AES_128_GCM_SHA256, h2load's first choice), BENCH_DEMO
#   (build/release/apps/demo/keel-demo), BUILD=1 rebuilds it.
# The summary goes to stdout and to build/bench/h2-results.md (h2load's last output per server
# and mode next to it, build/bench/h2load-MODE-SERVER.txt).
# Default run: 2 modes x 3 servers x 5 rounds x 5 s = about 2.5 minutes.
set -euo pipefail
export SECRET_KEY=${SECRET_KEY:-bench-secret-key-not-for-production}
export DATABASE_URL=${DATABASE_URL:-sqlite:/tmp/keel-bench-demo.db}
export KEEL_ACCESS_LOG=false

here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
root=$(cd "$here/.." && pwd)
workers=${1:-1}
rounds=${ROUNDS:-5}
secs=${DURATION:-5}
clients=${CLIENTS:-16}
streams=${STREAMS:-32}
modes=${MODES:-h2 h2c}
servers=${SERVERS:-keel nginx h2o}
key_type=${KEY:-rsa}
tls13=${TLS13_CIPHER:-TLS_AES_128_GCM_SHA256}
demo=${BENCH_DEMO:-$root/build/release/apps/demo/keel-demo}
out=$root/build/bench
ciphers="ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
declare -A port=([keel]=${BENCH_KEEL_PORT:-18094} [nginx]=${NGINX_PORT:-18096} [h2o]=${H2O_PORT:-18098})
declare -A port_h2c=([keel]=$((port[keel] + 1)) [nginx]=$((port[nginx] + 1)) [h2o]=$((port[h2o] + 1)))

[[ $workers =~ ^[1-9][0-9]*$ ]] || { echo "usage: bench/compare_h2.sh [WORKERS]" >&2; exit 2; }
for m in $modes; do case $m in h2 | h2c) ;; *) echo "MODES takes h2 and/or h2c, not '$m'" >&2; exit 2 ;; esac; done
for s in $servers; do case $s in keel | nginx | h2o) ;; *) echo "SERVERS takes keel, nginx and/or h2o, not '$s'" >&2; exit 2 ;; esac; done
has() { [[ " $servers " = *" $1 "* ]]; }
for tool in h2load curl awk openssl timeout; do
  command -v "$tool" >/dev/null || { echo "missing $tool (scripts/install-deps.sh)" >&2; exit 1; }
done
has nginx && { command -v nginx >/dev/null || { echo "missing nginx (../shared/peers/peers.sh install)" >&2; exit 1; }; }
has h2o && { command -v h2o >/dev/null || { echo "missing h2o (scripts/install-deps.sh)" >&2; exit 1; }; }
if has keel; then
  if [ ! -x "$demo" ] || [ "${BUILD:-0}" = 1 ]; then
    (cd "$root" && cmake --preset release && cmake --build --preset release --target keel-demo)
  fi
  if [ -d "$root/src" ] && [ -n "$(find "$root/src" "$root/include" "$root/apps" -newer "$demo" -print -quit)" ]; then
    echo "warning: $demo is older than the sources; BUILD=1 rebuilds it" >&2
  fi
fi
mkdir -p "$out"
tmp=$(mktemp -d /tmp/keel-bench-h2.XXXXXX)
chmod 755 "$tmp"  # nginx's and h2o's workers read under it
declare -A pid=()
cleanup() {
  local s
  for s in "${!pid[@]}"; do kill -TERM "${pid[$s]}" 2>/dev/null || true; done
  for s in "${!pid[@]}"; do
    for _ in $(seq 1 50); do kill -0 "${pid[$s]}" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "${pid[$s]}" 2>/dev/null || true
    wait "${pid[$s]}" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

make_certificate "$key_type" "$tmp" || exit 1
chmod 644 "$tmp/cert.pem"
printf '%s' '{"message":"Hello, World!"}' >"$tmp/json"
chmod 644 "$tmp/json"

url() {  # MODE SERVER
  if [ "$1" = h2 ]; then echo "https://127.0.0.1:${port[$2]}/json"; else echo "http://127.0.0.1:${port_h2c[$2]}/json"; fi
}

if has nginx; then
  cat >"$tmp/nginx.conf" <<CONF
worker_processes $workers;
daemon off;
pid $tmp/nginx.pid;
error_log $tmp/nginx.err;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000000;
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_ciphers $ciphers;
  ssl_prefer_server_ciphers on;
  ssl_session_tickets on;
  server {
    listen 127.0.0.1:${port[nginx]} ssl http2;
    listen 127.0.0.1:${port_h2c[nginx]} http2;
    ssl_certificate $tmp/cert.pem;
    ssl_certificate_key $tmp/key.pem;
    location = /json { default_type application/json; return 200 '{"message":"Hello, World!"}'; }
  }
}
CONF
  setsid nginx -e "$tmp/nginx.err" -c "$tmp/nginx.conf" >"$out/nginx-h2.log" 2>&1 &
  pid[nginx]=$!
  wait_ready "$(url h2 nginx)" "${pid[nginx]}" nginx
fi

if has h2o; then
  # user: root, else h2o drops to nobody before writing its pid file into the 0700-created tmp
  cat >"$tmp/h2o.conf" <<CONF
user: root
pid-file: $tmp/h2o.pid
error-log: $tmp/h2o.err
num-threads: $workers
hosts:
  default:
    listen:
      host: 127.0.0.1
      port: ${port[h2o]}
      ssl:
        certificate-file: $tmp/cert.pem
        key-file: $tmp/key.pem
        minimum-version: TLSv1.2
        cipher-suite: $ciphers
        cipher-preference: server
        ocsp-update-interval: 0
    listen:
      host: 127.0.0.1
      port: ${port_h2c[h2o]}
    paths:
      /json:
        file.file: $tmp/json
        file.mime.setdefaulttype: application/json
        file.etag: OFF
CONF
  setsid h2o -c "$tmp/h2o.conf" >"$out/h2o-h2.log" 2>&1 &
  pid[h2o]=$!
  wait_ready "$(url h2 h2o)" "${pid[h2o]}" h2o
fi

if has keel; then
  setsid "$demo" --bind "https://127.0.0.1:${port[keel]}" --bind "http://127.0.0.1:${port_h2c[keel]}" \
    --workers "$workers" --certfile "$tmp/cert.pem" --keyfile "$tmp/key.pem" --keep-alive-requests 0 \
    >"$out/keel-demo-h2.log" 2>&1 &
  pid[keel]=$!
  wait_ready "$(url h2 keel)" "${pid[keel]}" keel-demo
fi

# Every server must answer /json over HTTP/2 in every mode before anything is measured.
bad=0
for mode in $modes; do
  for s in $servers; do
    u=$(url "$mode" "$s") rc=0
    if [ "$mode" = h2c ]; then
      v=$(curl -s -o /dev/null --max-time 3 -w '%{http_version}' --http2-prior-knowledge "$u") || rc=$?
      want="curl --http2-prior-knowledge $u"
    else
      v=$(curl -sk -o /dev/null --max-time 3 -w '%{http_version}' --http2 "$u") || rc=$?
      want="curl --http2 -k $u"
    fi
    if [ "$v" != 2 ]; then
      echo "$s does not speak HTTP/2 ($mode): $want gave HTTP version '${v:-none}', curl exit $rc" >&2
      bad=1
    fi
  done
done
if [ "$bad" != 0 ]; then
  has keel && echo "(keel-demo without HTTP/2 support cannot be measured; SERVERS='nginx h2o' measures the peers alone)" >&2
  exit 1
fi

# One h2load run: prints "REQ_PER_S FAILED NON2XX"; its output stays in build/bench/.
h2run() {  # MODE SERVER
  local log=$out/h2load-$1-$2.txt tls=()
  [ "$1" = h2 ] && tls=(--tls13-ciphers="$tls13")
  timeout -k 5 $((secs + 60)) h2load -c "$clients" -m "$streams" -t 1 -D "$secs" "${tls[@]}" "$(url "$1" "$2")" >"$log" 2>&1 || true
  awk '/^finished in/ {rps = $4}
       /^requests:/ {for (i = 1; i < NF; i++) if ($(i + 1) ~ /^(failed|errored|timeout)/) f += $i}
       /^status codes:/ {for (i = 3; i < NF; i++) if ($(i + 1) ~ /^[345]xx/) n += $i}
       END {print (rps == "" ? 0 : rps), f + 0, n + 0}' "$log"
}
# The header bytes live in "traffic: X (N) total, Y (M) headers (space savings ...), ...".
h2headers() {  # LOG -> header bytes on the wire per response
  awk '/^traffic:/ {for (i = 1; i <= NF; i++) if ($i ~ /^headers/) {h = $(i - 1); gsub(/[()]/, "", h)}}
       /^requests:/ {ok = $8}
       END {print (ok > 0 && h != "" ? int(h / ok + 0.5) : "?")}' "$1"
}
tls_of() {  # LOG -> "TLSv1.3 TLS_AES_128_GCM_SHA256" (h2 mode)
  awk '/^TLS Protocol:/ {p = $3} /^Cipher:/ {c = $2} END {if (p != "") print p, c}' "$1"
}

declare -A rps=() notes=() hdr=() tlsinfo=() all=()
for mode in $modes; do
  echo "== $mode /json, workers=$workers, h2load -c$clients -m$streams -t1 -D$secs, $rounds rounds"
  declare -A runs=()
  for i in $(seq 1 "$rounds"); do
    line="round $i"
    for s in $servers; do
      read -r r f n _ < <(h2run "$mode" "$s")
      runs[$s]="${runs[$s]:-} $r"
      line+="  $s $r"
      if [ "$f" != 0 ] || [ "$n" != 0 ]; then
        notes[$mode-$s]="${notes[$mode-$s]:-}round $i: $f failed/errored requests, $n non-2xx; "
        line+=" (!: $f failed, $n non-2xx)"
      fi
    done
    echo "$line"
  done
  for s in $servers; do
    # shellcheck disable=SC2086  # the list of this server's rates
    rps[$mode-$s]=$(median ${runs[$s]})
    all[$mode-$s]=${runs[$s]# }
    hdr[$mode-$s]=$(h2headers "$out/h2load-$mode-$s.txt")
    [ "$mode" = h2 ] && tlsinfo[$s]=$(tls_of "$out/h2load-$mode-$s.txt")
  done
  unset runs
done

ratio() {  # A B -> A/B, or a dash when either is missing
  if [ -n "${1:-}" ] && [ -n "${2:-}" ]; then awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.3f", a / b; else printf "—"}'
  else echo "—"; fi
}
fmt() { if [ -n "${1:-}" ]; then printf "%.0f" "$1"; else echo "—"; fi; }
{
  echo "# HTTP/2: keel-demo vs nginx vs h2o on /json"
  echo
  versions=""
  has keel && versions+="keel-demo (${demo#"$root/"}), "
  has nginx && versions+="$(nginx -v 2>&1 | sed 's#.*/#nginx #'), "
  has h2o && versions+="$(h2o --version | head -1 | sed 's/ version / /'), "
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $versions$(h2load --version | head -1 | sed 's/^h2load //'), $(openssl version | cut -d' ' -f1-2);" \
    "$workers worker(s)/thread(s) each, no access log; h2load -c$clients -m$streams -t1 -D$secs, $rounds alternating rounds" \
    "(medians); h2: the same certificate ($key_type), TLS 1.2/1.3, same ciphers, h2load offering $tls13 alone; h2c: prior knowledge;" \
    "loopback on $(nproc) cores shared with the load generator. Goal (issue): keel/nginx >= 1.5, keel/h2o >= 1.0."
  echo
  echo "| mode | keel req/s | nginx req/s | h2o req/s | keel / nginx | keel / h2o | h2o / nginx |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  for mode in $modes; do
    k=${rps[$mode-keel]:-} n=${rps[$mode-nginx]:-} h=${rps[$mode-h2o]:-}
    echo "| $mode | $(fmt "$k") | $(fmt "$n") | $(fmt "$h") | $(ratio "$k" "$n") | $(ratio "$k" "$h") | $(ratio "$h" "$n") |"
  done
  echo
  for mode in $modes; do
    line="- $mode rounds:"
    for s in $servers; do line+=" $s ${all[$mode-$s]// /, };"; done
    echo "${line%;}"
  done
  for s in $servers; do
    line="- $s: response header bytes on the wire (HPACK, last round):"
    for mode in $modes; do line+=" $mode ${hdr[$mode-$s]}"; done
    [ -n "${tlsinfo[$s]:-}" ] && line+="; negotiated ${tlsinfo[$s]}"
    echo "$line"
  done
  for k in "${!notes[@]}"; do echo "- WARNING $k: ${notes[$k]}(build/bench/h2load-$k.txt)"; done
} >"$out/h2-results.md"
echo
cat "$out/h2-results.md"
