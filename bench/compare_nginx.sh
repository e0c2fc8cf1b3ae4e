#!/usr/bin/env bash
# Throughput of keel-demo against nginx on the TechEmpower-style endpoints, loopback only.
#   bench/compare_nginx.sh [WORKERS...]        default: 1 2
# For each worker count both servers run with that many workers/processes, and for /plaintext and
# /json it measures keel (A) against nginx (B), alternating A B A B so that drift of the shared
# machine hits both alike:
#   - without pipelining: ../shared/peers/compare.sh (wrk -t1 -c$CONNECTIONS);
#   - with $DEPTH-deep pipelining: wrk -t1 -c$CONNECTIONS -s bench/pipeline.lua.
# The summary goes to stdout and, as markdown, to build/bench/results.md (raw output next to it).
# Environment (defaults): ROUNDS (3), DURATION seconds per wrk run (5), CONNECTIONS (64),
#   DEPTH (16), BENCH_KEEL_PORT (18090), NGINX_PORT (18091; not peers.sh's 18081, whose reuseport
#   listener would share the load), BENCH_DEMO (build/release/apps/demo/keel-demo),
#   BUILD=1 rebuild keel-demo even when it exists,
#   SELF_TEST=1 measure nginx against itself (A = B = nginx; checks this script without keel).
# keel-demo takes its settings from the environment as usual, e.g. KEEL_ACCESS_LOG=false to
#   compare with nginx's peer configuration, which logs nothing.
# Default run: 2 worker counts x 4 comparisons x (2 x 3 x 5 s + checks) = about 5 minutes.
set -euo pipefail
export SECRET_KEY=${SECRET_KEY:-bench-secret-key-not-for-production}
export DATABASE_URL=${DATABASE_URL:-sqlite:/tmp/keel-bench-demo.db}

here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
root=$(cd "$here/.." && pwd)
peers=${SHARED_PEERS:-$root/../shared/peers}
workers_list=${*:-1 2}
rounds=${ROUNDS:-3}
secs=${DURATION:-5}
conns=${CONNECTIONS:-64}
depth=${DEPTH:-16}
keel_port=${BENCH_KEEL_PORT:-18090}
nginx_port=${NGINX_PORT:-18091}
demo=${BENCH_DEMO:-$root/build/release/apps/demo/keel-demo}
self_test=${SELF_TEST:-0}
out=$root/build/bench
lua=$here/pipeline.lua

for tool in wrk nginx curl awk; do
  command -v "$tool" >/dev/null || { echo "missing $tool (scripts/install-deps.sh, ../shared/peers/peers.sh install)" >&2; exit 1; }
done
if [ ! -x "$peers/compare.sh" ] || [ ! -f "$peers/nginx.conf.in" ]; then
  echo "no compare.sh/nginx.conf.in in $peers" >&2
  exit 1
fi

if [ "$self_test" != 1 ] && { [ ! -x "$demo" ] || [ "${BUILD:-0}" = 1 ]; }; then
  (cd "$root" && cmake --preset release && cmake --build --preset release --target keel-demo)
fi

if [ "$self_test" != 1 ] && [ -n "$(find "$root/src" "$root/include" "$root/apps" -newer "$demo" -print -quit)" ]; then
  echo "warning: $demo is older than the sources; BUILD=1 rebuilds it" >&2
fi

mkdir -p "$out"
tmp=$(mktemp -d /tmp/keel-bench.XXXXXX)
keel_pid=""
nginx_pid=""

stop_nginx() {
  if [ -n "$nginx_pid" ]; then
    kill "$nginx_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$nginx_pid" 2>/dev/null || break; sleep 0.1; done
    nginx_pid=""
  fi
}
stop_keel() {
  if [ -n "$keel_pid" ]; then
    kill -TERM "$keel_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$keel_pid" 2>/dev/null || break; sleep 0.1; done
    # Still there after 10 s: kill the process group it was started in (its workers included).
    kill -0 "$keel_pid" 2>/dev/null && { echo "keel-demo did not stop on SIGTERM, killing it" >&2; kill -KILL -- "-$keel_pid" 2>/dev/null || true; }
    wait "$keel_pid" 2>/dev/null || true
    keel_pid=""
  fi
}
cleanup() {
  stop_keel
  stop_nginx
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() { ! curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$1/"; }

start_nginx() {  # WORKERS
  port_free "$nginx_port" || { echo "port $nginx_port is already in use" >&2; exit 1; }
  local dir=$tmp/nginx-$1
  mkdir -p "$dir"
  sed -e "s#@DIR@#$dir#g" -e "s#@PORT@#$nginx_port#" -e "s#@WORKERS@#$1#" "$peers/nginx.conf.in" >"$dir/nginx.conf"
  nginx -e "$dir/nginx.err" -c "$dir/nginx.conf"
  for _ in $(seq 1 50); do [ -s "$dir/nginx.pid" ] && break; sleep 0.1; done
  nginx_pid=$(cat "$dir/nginx.pid")
  wait_ready "http://127.0.0.1:$nginx_port/json" "$nginx_pid" nginx
}

start_keel() {  # WORKERS
  port_free "$keel_port" || { echo "port $keel_port is already in use" >&2; exit 1; }
  setsid "$demo" --bind "127.0.0.1:$keel_port" --workers "$1" >"$out/keel-demo-w$1.log" 2>&1 &
  keel_pid=$!
  wait_ready "http://127.0.0.1:$keel_port/json" "$keel_pid" keel-demo
}

# One pipelined wrk run; prints Requests/sec, warns about errors on stderr.
wrk_pipelined() {  # URL
  local res
  res=$(wrk -t1 -c"$conns" -d"${secs}s" -s "$lua" "$1" -- "$depth")
  grep -E "Non-2xx|Socket errors" <<<"$res" | sed "s#^#$1: #" >&2 || true
  awk '/Requests\/sec/ {print $2}' <<<"$res"
}

# Same output shape as compare.sh: rounds, "median A x rps  B y rps", "ratio A/B r".
compare_pipelined() {  # URL_A URL_B
  local ra=() rb=() x y ma mb i
  for i in $(seq 1 "$rounds"); do
    x=$(wrk_pipelined "$1")
    y=$(wrk_pipelined "$2")
    ra+=("$x") rb+=("$y")
    echo "round $i  A $x  B $y"
  done
  ma=$(median "${ra[@]}")
  mb=$(median "${rb[@]}")
  echo "median A $ma rps  B $mb rps"
  awk -v a="$ma" -v b="$mb" 'BEGIN {printf "ratio A/B %.3f\n", a/b}'
}

rows=()
measure() {  # ENDPOINT MODE WORKERS URL_A URL_B
  local log=$out/raw-${1#/}-$2-w$3.txt ka kb ratio
  echo "== $1  $2  workers=$3"
  if [ "$2" = pipelined ]; then
    compare_pipelined "$4" "$5" | tee "$log"
  else
    "$peers/compare.sh" "$4" "$5" "$rounds" "$secs" "$conns" | tee "$log"
  fi
  ka=$(awk '/^median A/ {print $3}' "$log")
  kb=$(awk '/^median A/ {print $6}' "$log")
  ratio=$(awk '/^ratio A\/B/ {print $3}' "$log")
  rows+=("$1|$2|$3|$ka|$kb|$ratio")
}

if [ "$self_test" = 1 ]; then
  echo "SELF_TEST=1: A and B are both nginx; the keel column is nginx too" >&2
fi
for w in $workers_list; do
  start_nginx "$w"
  nginx_base=http://127.0.0.1:$nginx_port
  if [ "$self_test" = 1 ]; then
    keel_base=$nginx_base
  else
    start_keel "$w"
    keel_base=http://127.0.0.1:$keel_port
  fi
  for ep in /plaintext /json; do
    measure "$ep" "c$conns" "$w" "$keel_base$ep" "$nginx_base$ep"
    measure "$ep" pipelined "$w" "$keel_base$ep" "$nginx_base$ep"
  done
  stop_keel
  stop_nginx
done

a_name=keel
[ "$self_test" = 1 ] && a_name="nginx (self-test)"
{
  echo "# keel-demo vs nginx"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nginx -v 2>&1 | sed 's#.*/##' | sed 's#^#nginx #'), wrk -t1 -c$conns," \
    "${rounds} alternating rounds of ${secs} s per server (medians), pipelined = depth $depth," \
    "loopback on $(nproc) cores shared with the load generator."
  [ "$self_test" = 1 ] && echo && echo "**Self-test: the keel column is nginx as well.**"
  echo
  echo "| endpoint | mode | workers | $a_name rps | nginx rps | ratio |"
  echo "|---|---|---:|---:|---:|---:|"
  for r in "${rows[@]}"; do
    IFS='|' read -r ep mode w ka kb ratio <<<"$r"
    echo "| $ep | $mode | $w | $ka | $kb | $ratio |"
  done
} >"$out/results.md"

echo
printf '%-11s %-10s %7s %14s %14s %7s\n' endpoint mode workers "$([ "$self_test" = 1 ] && echo nginx-A || echo keel) rps" "nginx rps" ratio
for r in "${rows[@]}"; do
  IFS='|' read -r ep mode w ka kb ratio <<<"$r"
  printf '%-11s %-10s %7s %14s %14s %7s\n' "$ep" "$mode" "$w" "$ka" "$kb" "$ratio"
done
echo "written to $out/results.md"
