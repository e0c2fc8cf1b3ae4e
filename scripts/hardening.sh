#!/usr/bin/env bash
# The hardening suite (tests/hardening/, docs/security.md "Hardening suite"): slow and abusive
# clients (slowhttptest slow headers / slow body / slow read at 1,000 connections, a connection
# flood past the cap, EMFILE), a mixed-load soak, and fault scenarios (a worker SIGKILLed every
# second, the master SIGKILLed, a slow / 429 / absent tracing collector, a stuck log pipe), each
# against a 2-worker keel-testapp (release build) with its production defaults.
#
#   scripts/hardening.sh                 everything, 60 s soak (the CI run, about 5 minutes)
#   scripts/hardening.sh all 600         everything, 10-minute soak
#   scripts/hardening.sh soak 600        only the soak, 10 minutes (the documented manual run)
#   scripts/hardening.sh slow | faults   only that part
#
# Assumes scripts/install-deps.sh ran (slowhttptest, python3). Builds keel-testapp in the release
# preset unless HARDENING_APP names a binary. JOBS: build parallelism (default: nproc).
# HARDENING_KEEP_LOGS=1 keeps each server's log directory (/tmp/keel-hardening-*).
# Exits non-zero when a test fails or a part overruns its time bound; prints a summary of the
# measured numbers either way.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

what=${1:-all}
soak_seconds=${2:-60}
case $what in
  all | slow | soak | faults) ;;
  *)
    echo "usage: $0 [all|slow|soak|faults] [SOAK_SECONDS]" >&2
    exit 2
    ;;
esac
case $soak_seconds in
  '' | *[!0-9]*)
    echo "usage: $0 [all|slow|soak|faults] [SOAK_SECONDS]" >&2
    exit 2
    ;;
esac

start=$(date +%s)
python=/usr/bin/python3
[ -x "$python" ] || python=$(command -v python3)
if [ "$what" = all ] || [ "$what" = slow ]; then
  command -v slowhttptest >/dev/null || {
    echo "slowhttptest is not installed: run scripts/install-deps.sh" >&2
    exit 1
  }
fi

if [ -z "${HARDENING_APP:-}" ]; then
  echo "=== build: keel-testapp (release preset)"
  cmake --preset release >/dev/null
  cmake --build --preset release -j"${JOBS:-$(nproc)}" --target keel-testapp
  export HARDENING_APP=$root/build/release/tests/keel-testapp
fi
build_done=$(date +%s)

results=$(mktemp /tmp/keel-hardening-results.XXXXXX)
trap 'rm -f "$results"' EXIT
export HARDENING_RESULTS=$results HARDENING_SOAK_SECONDS=$soak_seconds PYTHONDONTWRITEBYTECODE=1

failed=()
# run PART BOUND_SECONDS MODULE...: one unittest run, killed (and failed) past its bound.
run() {
  local part=$1 bound=$2
  shift 2
  echo "=== hardening: $part (at most ${bound}s)"
  local t0 rc=0
  t0=$(date +%s)
  (cd "$root/tests/hardening" && timeout --kill-after=10 "$bound" "$python" -m unittest -v "$@") || rc=$?
  echo "=== hardening: $part: $([ $rc -eq 0 ] && echo passed || echo "FAILED (exit $rc)") in $(($(date +%s) - t0))s"
  [ $rc -eq 0 ] || failed+=("$part")
}

if [ "$what" = all ] || [ "$what" = slow ]; then run slow-clients 300 test_slow_clients; fi
if [ "$what" = all ] || [ "$what" = soak ]; then run soak $((soak_seconds + 120)) test_soak; fi
if [ "$what" = all ] || [ "$what" = faults ]; then run faults 300 test_faults; fi

echo "=== hardening summary (build $((build_done - start))s, tests $(($(date +%s) - build_done))s)"
"$python" - "$results" <<'EOF'
import json
import sys

# The numbers worth reading first, per test; anything else is in the RESULT lines above.
KEYS = {
    "slow_headers": ["availability_pct", "failed", "p50_ms", "p99_ms", "max_ms", "peak_connected",
                     "attack_ended_at_s", "peak_worker_rss_mb", "client_stall_max_ms", "machine_cpu_busy_pct"],
    "slow_body": ["availability_pct", "failed", "p50_ms", "p99_ms", "max_ms", "peak_connected", "held_at_end",
                  "peak_worker_rss_mb", "client_stall_max_ms", "machine_cpu_busy_pct"],
    "slow_read": ["availability_pct", "failed", "p50_ms", "p99_ms", "max_ms", "peak_connected",
                  "peak_worker_rss_mb", "peak_kernel_sendq_mb", "client_stall_max_ms", "machine_cpu_busy_pct"],
    "connection_cap_balance": ["cap", "held", "first_503_with_open", "per_worker", "refused_503"],
    "connection_flood": ["cap", "held_before_flood", "flood", "refused_503", "admitted", "refuse_p50_ms",
                         "refuse_p99_ms", "refuse_max_ms"],
    "emfile": ["worker_cpu_pct", "master_cpu_pct", "worker_fds", "knocks"],
    "soak": ["seconds", "requests", "rps", "failed", "deliberate_disconnect_errors", "keep_alive_closes_by_server",
             "pipelined_resent", "worker_rss_warm_mb", "worker_rss_growth_mb", "fds_baseline", "fds_after",
             "unexpected_log_lines"],
    "worker_sigkill_every_second": ["kills", "requests", "failed", "failure_bound", "availability_pct",
                                    "max_gap_without_success_s", "respawn_delays_s"],
    "master_sigkill": ["workers_exited_within_s", "last_success_after_kill_s", "port_refuses_afterwards"],
    "master_sigkill_shutdown_delay": ["workers_exited_within_s", "last_success_after_kill_s"],
    "log_pipe_stuck": ["availability_pct", "p99_ms", "respawned_within_s", "sigterm_exit_s"],
}
for name in ("absent", "slow", "429"):
    KEYS[f"tracing_collector_{name}"] = ["availability_pct", "p99_ms", "max_ms", "spans_generated",
                                         "keel_spans_dropped_total", "worker_rss_growth_mb", "sigterm_exit_s"]

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
if not rows:
    print("(no results recorded)")
for r in rows:
    name = r["test"]
    keys = KEYS.get(name) or [k for k, v in r.items() if k != "test" and not isinstance(v, (list, dict))]
    if "first_run_p99_ms" in r:
        keys = keys + ["first_run_p99_ms"]
    if name.endswith("_first_run"):
        keys = [k for k in ("p99_ms", "max_ms", "client_stall_max_ms", "machine_cpu_busy_pct", "load1") if k in r]
    print(f"{name:32s} " + "  ".join(f"{k}={r.get(k)}" for k in keys if k in r))
EOF
total=$(($(date +%s) - start))
if [ ${#failed[@]} -gt 0 ]; then
  echo "=== hardening: FAILED: ${failed[*]} (${total}s)"
  exit 1
fi
echo "=== hardening: all passed (${total}s)"
