#!/usr/bin/env bash
# GET /api/users/{id} on SQLite: keel-demo (A) against FastAPI + gunicorn/uvicorn + sqlite3 (B,
# bench/fastapi_users.py), same database file, same worker count, alternating A B A B with
# ../shared/peers/compare.sh; then keel-demo with its Redis cache (A) against the same B.
#   bench/compare_users.sh [WORKERS]       default 2
# Environment (defaults): ROUNDS (5), DURATION (5), CONNECTIONS (64), USERS (1000 rows),
#   BENCH_DEMO (build/release/apps/demo/keel-demo).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
peers=${SHARED_PEERS:-$root/../shared/peers}
workers=${1:-2}
demo=${BENCH_DEMO:-$root/build/release/apps/demo/keel-demo}
tmp=$(mktemp -d /tmp/keel-users-bench.XXXXXX)
db=$tmp/users.db
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
[ -x "$demo" ] || (cd "$root" && cmake --preset release >/dev/null && cmake --build --preset release --target keel-demo)
export SECRET_KEY=bench-secret-key-not-for-production
# The schema comes from keel-demo's own migration; then rows.
DATABASE_URL="sqlite:$db" "$demo" --bind 127.0.0.1:18096 --workers 1 >/dev/null 2>&1 &
p=$!
for _ in $(seq 1 50); do curl -sf http://127.0.0.1:18096/health/ready >/dev/null && break; sleep 0.1; done
kill "$p"; wait "$p" 2>/dev/null || true
python3 - "$db" "${USERS:-1000}" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.executemany("INSERT INTO users (name, email, created_at, updated_at) VALUES (?, ?, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')",
              [(f"user {i}", f"user{i}@example.com") for i in range(int(sys.argv[2]))])
c.commit()
PY
redis_port=18097
redis-server --port $redis_port --bind 127.0.0.1 --save '' --appendonly no --daemonize no >/dev/null 2>&1 &
pids+=($!)
DATABASE_URL="sqlite:$db" "$demo" --bind 127.0.0.1:18094 --workers "$workers" --no-access-log >/dev/null 2>&1 &
pids+=($!)
DATABASE_URL="sqlite:$db" CACHE_URL="redis://127.0.0.1:$redis_port" "$demo" --bind 127.0.0.1:18098 \
  --workers "$workers" --no-access-log >/dev/null 2>&1 &
pids+=($!)
(cd "$here" && USERS_DB="$db" setsid /usr/bin/python3 /usr/bin/gunicorn -w "$workers" -k uvicorn.workers.UvicornWorker \
  -b 127.0.0.1:18095 fastapi_users:app >"$tmp/gunicorn.log" 2>&1 &)
for port in 18094 18095 18098; do
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/api/users/1" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -sf "http://127.0.0.1:$port/api/users/1" >/dev/null || { echo "server on $port did not answer" >&2; tail -5 "$tmp/gunicorn.log" >&2; exit 1; }
done
echo "== GET /api/users/1, $workers workers: A = keel-demo (SQLite), B = FastAPI (SQLite)"
"$peers/compare.sh" http://127.0.0.1:18094/api/users/1 http://127.0.0.1:18095/api/users/1 "${ROUNDS:-5}" "${DURATION:-5}" "${CONNECTIONS:-64}"
echo "== GET /api/users/1, $workers workers: A = keel-demo (Redis cache), B = FastAPI (SQLite)"
"$peers/compare.sh" http://127.0.0.1:18098/api/users/1 http://127.0.0.1:18095/api/users/1 "${ROUNDS:-5}" "${DURATION:-5}" "${CONNECTIONS:-64}"
pkill -f "gunicorn.*fastapi_users:app" || true
