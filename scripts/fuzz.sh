#!/usr/bin/env bash
# Builds the libFuzzer targets (the "fuzz" preset: clang, ASan + UBSan) and runs each one for a
# bounded time, one after the other, single-process. docs/fuzzing.md describes the targets.
#   scripts/fuzz.sh [SECONDS] [TARGET...]
# Without targets, all of them share the budget by weight, the request parser getting the most:
#   request_parser SECONDS/2, parser_differential and http2 SECONDS/4, chunked SECONDS/8, and
#   router, dotenv, toml, log_json, tracecontext SECONDS/12 each (at least 1 s): about 1.55 x
#   SECONDS of fuzzing in all. CI (.ci/run) passes 120: ~185 s of fuzzing, ~6 min with the build.
# With targets, each named one runs for SECONDS. SECONDS defaults to 60.
#   scripts/fuzz.sh 3600                       the long run: ~93 min, 30 of them on the parser
#   scripts/fuzz.sh 1800 parser_differential   one target for 30 min
# Targets: request_parser parser_differential http2 chunked router dotenv toml log_json tracecontext.
# Environment: JOBS (build parallelism), FUZZ_ARGS (extra libFuzzer flags for every target, e.g.
# "-jobs=2 -workers=2" on a machine of your own).
# Each target's corpus grows in build/fuzz/corpus-work-<target> (the request parser's in
# build/fuzz/corpus-work), seeded from tests/fuzz/corpus/<target> on each run; crash, leak,
# timeout and OOM reproducers go to build/fuzz/artifacts/<target>-* (the request parser's
# unprefixed), the logs to build/fuzz/fuzz-<target>.log. Every target runs; the script exits
# non-zero when the fuzzer found something in any of them, and prints how to reproduce it:
#   build/fuzz/tests/fuzz/fuzz_<target> build/fuzz/artifacts/<target>-crash-...
# (FUZZ_DIFF_VERBOSE=1 in front for the differential target prints both parsers' view,
# FUZZ_H2_VERBOSE=1 for the http2 target the requests, the server's frames and the steps.)
set -euo pipefail
secs=${1:-60}
case $secs in
  '' | *[!0-9]*)
    echo "usage: $0 [SECONDS] [TARGET...]" >&2
    exit 2
    ;;
esac
shift || true
explicit=0
if [ $# -gt 0 ]; then explicit=1; fi
all_targets=(request_parser parser_differential http2 chunked router dotenv toml log_json tracecontext)
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then targets=("${all_targets[@]}"); fi
for t in "${targets[@]}"; do
  case " ${all_targets[*]} " in
    *" $t "*) ;;
    *)
      echo "unknown target '$t' (one of: ${all_targets[*]})" >&2
      exit 2
      ;;
  esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=build/fuzz
artifacts=$out/artifacts
start=$(date +%s)

cmake --preset fuzz
# Only the fuzz targets: the keel library itself is not needed (nor instrumented) here.
build_targets=()
for t in "${targets[@]}"; do build_targets+=("fuzz_$t"); done
cmake --build --preset fuzz --target "${build_targets[@]}" ${JOBS:+-j "$JOBS"}
echo "=== fuzz targets built in $(($(date +%s) - start))s"
mkdir -p "$artifacts"

# seconds_for TARGET: its share of SECONDS (all of it when targets were named).
seconds_for() {
  local t
  if [ "$explicit" = 1 ]; then
    echo "$secs"
    return
  fi
  case $1 in
    request_parser) t=$((secs / 2)) ;;
    parser_differential | http2) t=$((secs / 4)) ;;
    chunked) t=$((secs / 8)) ;;
    *) t=$((secs / 12)) ;;
  esac
  if [ "$t" -lt 1 ]; then t=1; fi
  echo "$t"
}
# Per-target libFuzzer flags: input size and dictionary.
flags_for() {
  case $1 in
    request_parser) echo "-max_len=8192 -dict=tests/fuzz/http.dict" ;;
    parser_differential) echo "-max_len=4096 -dict=tests/fuzz/http.dict" ;;
    chunked) echo "-max_len=4096 -dict=tests/fuzz/http.dict" ;;
    router) echo "-max_len=2048 -dict=tests/fuzz/router.dict" ;;
    dotenv) echo "-max_len=2048 -dict=tests/fuzz/dotenv.dict" ;;
    toml) echo "-max_len=4096 -dict=tests/fuzz/toml.dict" ;;
    log_json) echo "-max_len=1024" ;;
    tracecontext) echo "-max_len=4096" ;;
    http2) echo "-max_len=16384 -dict=tests/fuzz/http2.dict" ;;
  esac
}

failed=()
for t in "${targets[@]}"; do
  bin=$out/tests/fuzz/fuzz_$t
  if [ "$t" = request_parser ]; then
    work=$out/corpus-work
    prefix=$artifacts/
  else
    work=$out/corpus-work-$t
    prefix=$artifacts/$t-
  fi
  log=$out/fuzz-$t.log
  s=$(seconds_for "$t")
  mkdir -p "$work"
  # The seeds, not the scripts that make them (tests/fuzz/corpus/http2/make_seeds.py).
  find tests/fuzz/corpus/"$t" -maxdepth 1 -type f ! -name '*.py' -exec cp {} "$work"/ \;
  echo "=== fuzzing $t for ${s}s (corpus $work, reproducers ${prefix}*)"
  rc=0
  # shellcheck disable=SC2046,SC2086  # the flag lists are word lists
  "$bin" "$work" -max_total_time="$s" -timeout=10 $(flags_for "$t") \
    -artifact_prefix="$prefix" -print_final_stats=1 ${FUZZ_ARGS:-} >"$log" 2>&1 || rc=$?
  grep -E '^#[0-9]+[[:space:]]+(DONE|INITED)|^stat::(number_of_executed_units|average_exec_per_sec)' "$log" |
    tail -n 3 || true
  if [ "$rc" -ne 0 ]; then
    echo "FINDING ($t): the fuzzer exited with status $rc (log $log); reproducers:" >&2
    ls -l "$prefix"* >&2 2>/dev/null || true
    grep -E '^(==[0-9]+==ERROR|SUMMARY|[a-z_]+: check failed|[a-z_]+: unexplained|.*runtime error|artifact_prefix|Test unit written)' "$log" >&2 || true
    grep -oE 'Test unit written to [^ ]+' "$log" | awk '{print $5}' | while read -r f; do
      if [ "$t" = parser_differential ]; then
        echo "reproduce: FUZZ_DIFF_VERBOSE=1 $bin $f" >&2
      elif [ "$t" = http2 ]; then
        echo "reproduce: FUZZ_H2_VERBOSE=1 $bin $f" >&2
      else
        echo "reproduce: $bin $f" >&2
      fi
    done
    failed+=("$t")
    continue
  fi
  if [ "$t" = parser_differential ]; then
    # The disagreements the documented rules explain, over the corpus the run produced.
    echo "explained keel / http-parser disagreements in the corpus, by rule:"
    FUZZ_DIFF_RULES=1 "$bin" "$work" -runs=0 2>&1 | sed -n 's/^diff-rule: //p' | sort | uniq -c | sort -rn || true
  fi
  echo "no findings ($t)"
done

echo "=== fuzzing finished in $(($(date +%s) - start))s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "FINDINGS in: ${failed[*]}" >&2
  exit 1
fi
echo "no findings"
