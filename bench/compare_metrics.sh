#!/usr/bin/env bash
# The cost of keel's built-in metrics: keel-demo with metrics on (A, the default) against the same
# binary with them off (B, --metrics-path ''), same workers, same run, alternating A B A B.
#   bench/compare_metrics.sh [WORKERS]          default: 1
# Also times a scrape of /metrics. Environment (defaults): ROUNDS (5), DURATION (5),
#   CONNECTIONS (64), PORT_ON (18094), PORT_OFF (18095), BENCH_DEMO (build/release/apps/demo/keel-demo).
set -euo pipefail
export SECRET_KEY=${SECRET_KEY:-bench-secret-key-not-for-production}
export DATABASE_URL=${DATABASE_URL:-sqlite:/tmp/keel-bench-demo.db}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
peers=${SHARED_PEERS:-$root/../shared/peers}
workers=${1:-1}
demo=${BENCH_DEMO:-$root/build/release/apps/demo/keel-demo}
on=${PORT_ON:-18094}
off=${PORT_OFF:-18095}
[ -x "$demo" ] || (cd "$root" && cmake --preset release >/dev/null && cmake --build --preset release --target keel-demo)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
"$demo" --bind 127.0.0.1:$on --workers "$workers" >/dev/null 2>&1 & pids+=($!)
"$demo" --bind 127.0.0.1:$off --workers "$workers" --metrics-path '' >/dev/null 2>&1 & pids+=($!)
for port in $on $off; do
  for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$port/plaintext" >/dev/null && break; sleep 0.1; done
done
echo "== /plaintext, $workers worker(s): A = metrics on, B = metrics off"
"$peers/compare.sh" "http://127.0.0.1:$on/plaintext" "http://127.0.0.1:$off/plaintext" "${ROUNDS:-5}" "${DURATION:-5}" "${CONNECTIONS:-64}"
echo "== scrape"
curl -s -o /dev/null -w "series lines: %{size_download} bytes, time %{time_total}s\n" "http://127.0.0.1:$on/metrics"
curl -s "http://127.0.0.1:$on/metrics" | grep -vc '^#' | sed 's/^/samples: /'
