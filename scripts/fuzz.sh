#!/usr/bin/env bash
# Builds the libFuzzer targets (the "fuzz" preset: clang, ASan + UBSan) and fuzzes the HTTP request
# parser for a while.
#   scripts/fuzz.sh [SECONDS]     default 60
# Environment: JOBS (build parallelism), FUZZ_ARGS (extra libFuzzer flags, e.g. "-jobs=2 -workers=2").
# The corpus grows in build/fuzz/corpus-work (seeded from tests/fuzz/corpus/request_parser on each
# run); crash, leak, timeout and OOM reproducers go to build/fuzz/artifacts/, the log to
# build/fuzz/fuzz-request_parser.log. Exits non-zero when the fuzzer finds something.
# Reproduce a finding with: build/fuzz/tests/fuzz/fuzz_request_parser build/fuzz/artifacts/crash-...
set -euo pipefail
secs=${1:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

out=build/fuzz
bin=$out/tests/fuzz/fuzz_request_parser
seeds=tests/fuzz/corpus/request_parser
work=$out/corpus-work
artifacts=$out/artifacts
log=$out/fuzz-request_parser.log

cmake --preset fuzz
# Only the fuzz target: the keel library itself is not needed (nor instrumented) here.
cmake --build --preset fuzz --target fuzz_request_parser ${JOBS:+-j "$JOBS"}

mkdir -p "$work" "$artifacts"
cp "$seeds"/* "$work"/

echo "fuzzing the request parser for ${secs}s (corpus $work, artefacts $artifacts)"
rc=0
# shellcheck disable=SC2086  # FUZZ_ARGS is a list of flags
"$bin" "$work" \
  -max_total_time="$secs" -max_len=8192 -timeout=10 -dict=tests/fuzz/http.dict \
  -artifact_prefix="$artifacts/" -print_final_stats=1 ${FUZZ_ARGS:-} 2>&1 | tee "$log" || rc=$?

echo "---"
grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true
if [ "$rc" -ne 0 ]; then
  echo "FINDING: the fuzzer exited with status $rc; reproducers:" >&2
  ls -l "$artifacts" >&2 || true
  grep -E '^(==[0-9]+==ERROR|SUMMARY|request_parser_fuzz: check failed|artifact_prefix|Test unit written)' "$log" >&2 || true
  exit "$rc"
fi
echo "no findings"
