#!/usr/bin/env bash
# keel-demo against nginx over TLS, loopback only, both with the same certificate, protocols,
# cipher list, session tickets and worker count:
#   bench/compare_nginx_tls.sh [WORKERS]        default: 1
#   - keep-alive throughput: ../shared/peers/compare.sh over https (wrk -t1 -c$CONNECTIONS);
#   - new-handshake rate: `openssl s_time -new` (a full handshake per connection, no
#     resumption), alternating keel and nginx for $ROUNDS rounds of $DURATION s, medians.
# Environment (defaults): ROUNDS (5), DURATION (5), CONNECTIONS (64), KEY (rsa: RSA 2048; ec:
#   ECDSA P-256), BENCH_KEEL_PORT (18092), NGINX_PORT (18093), BENCH_DEMO
#   (build/release/apps/demo/keel-demo), BUILD=1 rebuilds it. Access logs off on both sides.
# The summary goes to stdout and to build/bench/tls-results.md.
set -euo pipefail
export SECRET_KEY=${SECRET_KEY:-bench-secret-key-not-for-production}
export DATABASE_URL=${DATABASE_URL:-sqlite:/tmp/keel-bench-demo.db}
export KEEL_ACCESS_LOG=false

here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
root=$(cd "$here/.." && pwd)
peers=${SHARED_PEERS:-$root/../shared/peers}
workers=${1:-1}
rounds=${ROUNDS:-5}
secs=${DURATION:-5}
conns=${CONNECTIONS:-64}
key_type=${KEY:-rsa}
keel_port=${BENCH_KEEL_PORT:-18092}
nginx_port=${NGINX_PORT:-18093}
demo=${BENCH_DEMO:-$root/build/release/apps/demo/keel-demo}
out=$root/build/bench
ciphers="ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

for tool in wrk nginx curl awk openssl; do
  command -v "$tool" >/dev/null || { echo "missing $tool (scripts/install-deps.sh, ../shared/peers/peers.sh install)" >&2; exit 1; }
done
if [ ! -x "$demo" ] || [ "${BUILD:-0}" = 1 ]; then
  (cd "$root" && cmake --preset release && cmake --build --preset release --target keel-demo)
fi
mkdir -p "$out"
tmp=$(mktemp -d /tmp/keel-bench-tls.XXXXXX)
keel_pid="" nginx_pid=""
cleanup() {
  [ -n "$keel_pid" ] && { kill -TERM "$keel_pid" 2>/dev/null || true; wait "$keel_pid" 2>/dev/null || true; }
  [ -n "$nginx_pid" ] && { kill "$nginx_pid" 2>/dev/null || true; }
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

make_certificate "$key_type" "$tmp" || exit 1


cat >"$tmp/nginx.conf" <<CONF
worker_processes $workers;
pid $tmp/nginx.pid;
error_log $tmp/nginx.err;
events { worker_connections 4096; }
http {
  access_log off;
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_ciphers $ciphers;
  ssl_prefer_server_ciphers on;
  ssl_session_tickets on;
  server {
    listen 127.0.0.1:$nginx_port ssl reuseport;
    ssl_certificate $tmp/cert.pem;
    ssl_certificate_key $tmp/key.pem;
    location = /plaintext { default_type text/plain; return 200 "Hello, World!"; }
    location = /json { default_type application/json; return 200 '{"message":"Hello, World!"}'; }
  }
}
CONF
nginx -e "$tmp/nginx.err" -c "$tmp/nginx.conf"
for _ in $(seq 1 50); do [ -s "$tmp/nginx.pid" ] && break; sleep 0.1; done
nginx_pid=$(cat "$tmp/nginx.pid")
wait_ready "https://127.0.0.1:$nginx_port/json" "$nginx_pid" nginx

setsid "$demo" --bind "127.0.0.1:$keel_port" --workers "$workers" --certfile "$tmp/cert.pem" --keyfile "$tmp/key.pem" \
  >"$out/keel-demo-tls.log" 2>&1 &
keel_pid=$!
wait_ready "https://127.0.0.1:$keel_port/json" "$keel_pid" keel-demo

rows=()
for ep in /plaintext /json; do
  echo "== $ep keep-alive over TLS, workers=$workers"
  log=$out/raw-tls-${ep#/}.txt
  "$peers/compare.sh" "https://127.0.0.1:$keel_port$ep" "https://127.0.0.1:$nginx_port$ep" "$rounds" "$secs" "$conns" | tee "$log"
  rows+=("$ep keep-alive|$(awk '/^median A/ {print $3}' "$log")|$(awk '/^median A/ {print $6}' "$log")|$(awk '/^ratio/ {print $3}' "$log")")
done

handshakes() {  # PORT -> full handshakes per second (s_time: "N connections in T real seconds")
  openssl s_time -connect "127.0.0.1:$1" -new -time "$secs" 2>/dev/null |
    awk '/connections in [0-9.]+ real seconds/ {for (i = 1; i <= NF; i++) if ($i == "in") {print $1 / $(i + 1); exit}}'
}
echo "== new handshakes (openssl s_time -new), workers=$workers, key=$key_type"
ha=() hb=()
for i in $(seq 1 "$rounds"); do
  x=$(handshakes "$keel_port"); y=$(handshakes "$nginx_port")
  ha+=("$x") hb+=("$y")
  echo "round $i  A $x  B $y"
done
ma=$(median "${ha[@]}") mb=$(median "${hb[@]}")
ratio=$(awk -v a="$ma" -v b="$mb" 'BEGIN {printf "%.3f", a/b}')
echo "median A $ma/s  B $mb/s"
echo "ratio A/B $ratio"
rows+=("new handshakes/s ($key_type)|$ma|$mb|$ratio")

{
  echo "# keel-demo vs nginx over TLS"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nginx -v 2>&1 | sed 's#.*/#nginx #'), $(openssl version | cut -d' ' -f1-2)," \
    "$workers worker(s) each, same certificate ($key_type), TLS 1.2/1.3, same ciphers, tickets on, no access log;" \
    "keep-alive: wrk -t1 -c$conns; handshakes: openssl s_time -new; $rounds alternating rounds of $secs s (medians)," \
    "loopback on $(nproc) cores shared with the load generator."
  echo
  echo "| measure | keel | nginx | ratio |"
  echo "|---|---:|---:|---:|"
  for r in "${rows[@]}"; do IFS='|' read -r m a b q <<<"$r"; echo "| $m | $a | $b | $q |"; done
} >"$out/tls-results.md"
echo
cat "$out/tls-results.md"
