#!/usr/bin/env bash
# Builds the libFuzzer targets (the "fuzz" preset: clang, ASan + UBSan) and fuzzes the HTTP request
# parser for a while, then the W3C trace context parsers (traceparent, tracestate, X-Request-ID) for
# a quarter of that time, at most 30 s (at least 1 s): SECONDS + min(30, SECONDS/4) in all.
#   scripts/fuzz.sh [SECONDS]     default 60
# Environment: JOBS (build parallelism), FUZZ_ARGS (extra libFuzzer flags for both targets, e.g.
# "-jobs=2 -workers=2").
# The corpora grow in build/fuzz/corpus-work (request parser, seeded from
# tests/fuzz/corpus/request_parser on each run) and build/fuzz/corpus-work-tracecontext (seeded from
# tests/fuzz/corpus/tracecontext); crash, leak, timeout and OOM reproducers go to
# build/fuzz/artifacts/ (the trace context's named tracecontext-*), the logs to
# build/fuzz/fuzz-request_parser.log and build/fuzz/fuzz-tracecontext.log. Both targets run; exits
# non-zero when the fuzzer finds something in either.
# Reproduce a finding with: build/fuzz/tests/fuzz/fuzz_request_parser build/fuzz/artifacts/crash-...
#                       or: build/fuzz/tests/fuzz/fuzz_tracecontext build/fuzz/artifacts/tracecontext-crash-...
set -euo pipefail
secs=${1:-60}
case $secs in
  '' | *[!0-9]*)
    echo "usage: $0 [SECONDS]" >&2
    exit 2
    ;;
esac
tc_secs=$((secs / 4))
if [ "$tc_secs" -gt 30 ]; then tc_secs=30; fi
if [ "$tc_secs" -lt 1 ]; then tc_secs=1; fi
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

out=build/fuzz
artifacts=$out/artifacts

cmake --preset fuzz
# Only the fuzz targets: the keel library itself is not needed (nor instrumented) here.
cmake --build --preset fuzz --target fuzz_request_parser fuzz_tracecontext ${JOBS:+-j "$JOBS"}

mkdir -p "$artifacts"

# run_fuzzer LABEL BIN SEEDS WORK PREFIX SECONDS LOG [libFuzzer flags...]: fuzzes for SECONDS from a
# work corpus seeded with SEEDS; reproducers are named PREFIX*. Returns 0, or the fuzzer's status
# after listing what it found.
run_fuzzer() {
  local label=$1 bin=$2 seeds=$3 work=$4 prefix=$5 t=$6 log=$7
  shift 7
  mkdir -p "$work" || return
  cp "$seeds"/* "$work"/ || return
  echo "fuzzing the $label for ${t}s (corpus $work, artefacts $artifacts)"
  local rc=0
  # shellcheck disable=SC2086  # FUZZ_ARGS is a list of flags
  "$bin" "$work" \
    -max_total_time="$t" -timeout=10 "$@" \
    -artifact_prefix="$prefix" -print_final_stats=1 ${FUZZ_ARGS:-} 2>&1 | tee "$log" || rc=$?
  echo "---"
  grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true
  if [ "$rc" -ne 0 ]; then
    echo "FINDING ($label): the fuzzer exited with status $rc; reproducers:" >&2
    ls -l "$artifacts" >&2 || true
    grep -E '^(==[0-9]+==ERROR|SUMMARY|[a-z_]+_fuzz: check failed|artifact_prefix|Test unit written)' "$log" >&2 || true
    return "$rc"
  fi
  echo "no findings ($label)"
}

rc=0
run_fuzzer "request parser" "$out/tests/fuzz/fuzz_request_parser" tests/fuzz/corpus/request_parser \
  "$out/corpus-work" "$artifacts/" "$secs" "$out/fuzz-request_parser.log" \
  -max_len=8192 -dict=tests/fuzz/http.dict || rc=$?
tc_rc=0
run_fuzzer "trace context" "$out/tests/fuzz/fuzz_tracecontext" tests/fuzz/corpus/tracecontext \
  "$out/corpus-work-tracecontext" "$artifacts/tracecontext-" "$tc_secs" "$out/fuzz-tracecontext.log" \
  -max_len=4096 || tc_rc=$?
if [ "$rc" -ne 0 ]; then exit "$rc"; fi
if [ "$tc_rc" -ne 0 ]; then exit "$tc_rc"; fi
echo "no findings"
