#!/usr/bin/env bash
# keel used the way a service uses it (CI: .ci/run; docs/using-keel.md):
#   install   keel built on its own (Release; tests, benchmarks and demo off) and installed to a
#             temporary prefix: headers, libkeel.a, libkeel_checks.a, the CMake package, keel.pc
#   examples  each examples/<name>, configured from scratch against that prefix
#             (find_package(keel 0.1 CONFIG REQUIRED), no CMAKE_CXX_STANDARD: C++20 comes from
#             keel::keel), built with g++ and clang++ (-Wall -Wextra -Werror), started on
#             127.0.0.1 (ephemeral port), its endpoints checked with curl (status and body),
#             stopped with SIGTERM: exit code 0. pkg-config sees only libcurl and libnghttp2 meanwhile, so a
#             lookup of libpq/hiredis/sqlite3 without COMPONENTS checks would fail the configure
#   deb       the keel-dev Debian package (cpack) of that build, unpacked; hello built against it
#   package   find_package versions (0.1 and 0.1.0 yes; 0.2, 1.0 no), COMPONENTS checks (keel::checks
#             links and runs), an unknown component, checks without libpq & co (refused when
#             required, skipped when optional)
#   subdirectory, fetchcontent
#             tests/consumers/{add_subdirectory,fetchcontent}: keel from its source tree, configured
#             where pkg-config knows only libcurl, libnghttp2 and GTest/benchmark lookups are disabled; built
#             and run; their ctest lists only their own test; keel's sources get no -Werror; the
#             FetchContent one is a C++17 project
#   pkgconfig hello built with `g++ -std=c++20 main.cpp $(pkg-config --cflags --libs --static keel)`
#             and run; a keel::checks program with keel-checks.pc
# Exits non-zero with a message naming what failed. Temporary files are removed (KEEP_WORK=1 keeps
# them); every build, start and stop is bounded by a timeout.
#   JOBS=2                         parallel compile jobs
#   CONSUMER_COMPILERS="g++ clang++"  compilers the examples are built with
#   CONSUMERS_PREFIX=DIR                use an installed keel instead of building one (skips "install")
#   STEPS="install deb examples package subdirectory fetchcontent pkgconfig"   a subset
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
jobs=${JOBS:-2}
compilers=${CONSUMER_COMPILERS:-g++ clang++}
steps=" ${STEPS:-install deb examples package subdirectory fetchcontent pkgconfig} "
examples=(hello json_crud health_check custom_metric child_span api_key)
start_time=$SECONDS

# A live process (not a zombie waiting to be reaped).
alive() {
  local stat
  stat=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $stat != Z* ]]
}

work=$(mktemp -d /tmp/keel-consumers.XXXXXX)
server_pid=""
sink_pid=""
cleanup() {
  local rc=$? pid
  for pid in $server_pid $sink_pid; do  # SIGTERM first: a master stops its workers
    kill -TERM "$pid" 2>/dev/null || continue
    for _ in {1..50}; do
      alive "$pid" || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
  done
  if [[ ${KEEP_WORK:-0} == 1 ]]; then echo "check-consumers: work files kept in $work"; else rm -rf "$work"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
  echo "check-consumers: FAILED: $*" >&2
  exit 1
}
step() { echo "=== check-consumers: $* ($((SECONDS - start_time))s)"; }
want() { [[ $steps == *" $1 "* ]]; }

# run LOG TIMEOUT CMD...: runs CMD with its output in LOG; on failure shows the log's end.
run() {
  local log=$1 limit=$2
  shift 2
  if ! timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    fail "$* (log: $log)"
  fi
}

# pkg-config that knows only libcurl and libnghttp2 (what keel's core needs from it): a configure
# that looks up libpq, hiredis or sqlite3 through pkg-config fails in this environment.
core_pc=$work/pkgconfig-core
mkdir -p "$core_pc"
ln -s "$(pkg-config --variable=pcfiledir libcurl)/libcurl.pc" "$core_pc/"
ln -s "$(pkg-config --variable=pcfiledir libnghttp2)/libnghttp2.pc" "$core_pc/"
core_env=(env PKG_CONFIG_LIBDIR="$core_pc" PKG_CONFIG_PATH=)

# ---------------------------------------------------------------------------------------------
# Servers: started on 127.0.0.1:0, the port read from the "listening" log line.

# start_server LOG CMD...: sets server_pid, base (http://127.0.0.1:PORT).
start_server() {
  server_log=$1
  shift
  "$@" --bind 127.0.0.1:0 >"$server_log" 2>&1 &
  server_pid=$!
  local deadline=$((SECONDS + 15))
  until grep -q '"event":"listening"' "$server_log"; do
    alive "$server_pid" || { cat "$server_log" >&2; fail "$* exited before listening"; }
    ((SECONDS < deadline)) || { cat "$server_log" >&2; fail "$*: no listening line within 15 s"; }
    sleep 0.1
  done
  local port
  port=$(sed -n 's/.*"event":"listening".*"address":"http:\/\/127\.0\.0\.1:\([0-9]*\)".*/\1/p' "$server_log" | head -n 1)
  [[ -n $port ]] || fail "$*: no 127.0.0.1 port in $(grep '"listening"' "$server_log")"
  base=http://127.0.0.1:$port
}

# stop_server: SIGTERM, then the exit code must be 0 within 20 s, and no error was logged.
stop_server() {
  kill -TERM "$server_pid"
  (sleep 20 && kill -KILL "$server_pid" 2>/dev/null) &
  local watchdog=$! rc=0
  wait "$server_pid" || rc=$?
  kill "$watchdog" 2>/dev/null || true
  wait "$watchdog" 2>/dev/null || true
  server_pid=""
  ((rc == 0)) || { tail -n 20 "$server_log" >&2; fail "exit code $rc after SIGTERM (137: still running after 20 s)"; }
  if grep -E '"level":"(error|critical)"' "$server_log" >&2; then fail "error lines in $server_log"; fi
}

# http STATUS BODY CURL_ARGS...: BODY is the exact body, or ~REGEX (bash). The response's headers
# are left in $work/headers for header().
http() {
  local want_status=$1 want_body=$2 status body
  shift 2
  status=$(curl -sS -m 5 -D "$work/headers" -o "$work/body" -w '%{http_code}' "$@") || fail "curl $*"
  body=$(cat "$work/body")
  [[ $status == "$want_status" ]] || fail "curl $*: status $status, expected $want_status; body: $body"
  if [[ $want_body == "~"* ]]; then
    [[ $body =~ ${want_body:1} ]] || fail "curl $*: body $body does not match ${want_body:1}"
  else
    [[ $body == "$want_body" ]] || fail "curl $*: body $body, expected $want_body"
  fi
}
# header NAME VALUE: the last response had this header, its value starting with VALUE
# ("Content-Type text/plain" also matches "text/plain; charset=utf-8").
header() {
  grep -qi "^$1: $2" "$work/headers" || fail "header $1: $2 expected in: $(cat "$work/headers")"
}
post_json() { http "$1" "$2" -X "${4:-POST}" -H 'Content-Type: application/json' -d "$3" "$base$5"; }

# ---------------------------------------------------------------------------------------------
# What each example must answer. $1: the binary; $2: a directory for its logs.

smoke_hello() {
  start_server "$2/hello.log" "$1" --workers 1
  http 200 'Hello, world!' "$base/hello/world"
  header Content-Type text/plain
  http 200 'Hello, wörld!' "$base/hello/w%C3%B6rld"
  http 200 '{"answer":42}' "$base/slow"
  http 404 '~"status":404' "$base/nope"
  stop_server
}

smoke_json_crud() {
  # The setting of its own, from the environment (the flag --max-title-length works the same).
  start_server "$2/json_crud.log" env JSON_CRUD_MAX_TITLE_LENGTH=12 "$1"
  http 200 '[]' "$base/todos"
  post_json 201 '{"done":false,"id":1,"title":"write docs"}' '{"title":"write docs"}' POST /todos
  header Location /todos/1
  post_json 422 '~"status":422,"detail":"title: 1 to 12 characters"' '{"title":"thirteen char"}' POST /todos
  header Content-Type application/problem+json
  post_json 422 "~\"detail\":\"unknown field 'due'\"" '{"title":"x","due":1}' POST /todos
  post_json 422 '~"detail":"done: must be true or false"' '{"title":"x","done":"yes"}' POST /todos
  post_json 422 '~"detail":"the body must be a JSON object"' '[1]' POST /todos
  post_json 400 '~"status":400' '{"title":' POST /todos
  http 415 '~"status":415' -X POST -d '{"title":"form"}' "$base/todos"
  post_json 201 '{"done":true,"id":2,"title":"ship"}' '{"title":"ship","done":true}' POST /todos
  post_json 200 '{"done":true,"id":1,"title":"docs"}' '{"title":"docs","done":true}' PUT /todos/1
  http 200 '{"done":true,"id":1,"title":"docs"}' "$base/todos/1"
  http 204 '' -X DELETE "$base/todos/1"
  http 404 '~"detail":"no todo 1"' "$base/todos/1"
  http 200 '[{"done":true,"id":2,"title":"ship"}]' "$base/todos"
  stop_server
}

smoke_health_check() {
  mkdir -p "$2/spool"
  start_server "$2/health_check.log" "$1" --workers 1 --spool-dir "$2/spool" --health-cache-ttl 0s
  http 200 '{"checks":{"spool":{"status":"ok"}},"status":"ok"}' "$base/health/ready"
  rmdir "$2/spool"  # (as root, permissions would not stop the probe file)
  http 503 '{"checks":{"spool":{"status":"failing"}},"status":"failing"}' "$base/health/ready"
  http 200 '{"status":"ok"}' "$base/health"  # liveness runs no check
  http 200 'serving' "$base/"
  grep -q '"event":"health_check_failed".*"check":"spool".*"error":"cannot write in ' "$server_log" ||
    fail "no health_check_failed line naming the spool directory"
  stop_server
  # A failing non-critical check: degraded, still 200.
  mkdir -p "$2/spool"
  start_server "$2/health_check_upstream.log" "$1" --workers 1 --spool-dir "$2/spool" \
    --upstream-url http://127.0.0.1:1/health
  http 200 '{"checks":{"spool":{"status":"ok"},"upstream":{"status":"failing"}},"status":"degraded"}' \
    "$base/health/ready"
  stop_server
}

smoke_custom_metric() {
  start_server "$2/custom_metric.log" "$1" --workers 2
  post_json 201 '{"amount":12.5,"payment":"card"}' '{"payment":"card","amount":12.5}' POST /orders
  post_json 201 '{"amount":30.0,"payment":"card"}' '{"payment":"card","amount":30}' POST /orders
  post_json 201 '{"amount":250.0,"payment":"invoice"}' '{"payment":"invoice","amount":250}' POST /orders
  post_json 422 '~"detail":"payment: \\"card\\" or \\"invoice\\""' '{"payment":"cash","amount":1}' POST /orders
  http 200 '~# TYPE shop_orders_total counter' "$base/metrics"
  local want
  for want in 'shop_orders_total{payment="card"} 2' 'shop_orders_total{payment="invoice"} 1' \
    'shop_order_amount_dollars_bucket{le="5"} 0' 'shop_order_amount_dollars_bucket{le="20"} 1' \
    'shop_order_amount_dollars_bucket{le="100"} 2' 'shop_order_amount_dollars_bucket{le="+Inf"} 3' \
    'shop_order_amount_dollars_sum 292.5' 'shop_order_amount_dollars_count 3' 'http_requests_total{'; do
    grep -qF "$want" "$work/body" || fail "/metrics has no line with: $want"$'\n'"$(grep shop_ "$work/body")"
  done
  stop_server
}

smoke_api_key() {
  start_server "$2/api_key.log" "$1" --workers 1 --api-keys key-1,key-2
  http 401 '~"detail":"an X-API-Key header is required"' "$base/reports"
  header WWW-Authenticate ApiKey
  header Content-Type application/problem+json
  http 403 '~"status":403,"detail":"unknown API key"' -H 'X-API-Key: key-3' "$base/reports"
  http 200 '["daily","weekly"]' -H 'X-API-Key: key-1' "$base/reports"
  header X-Authenticated api-key
  http 200 '{"report":"daily","rows":3}' -H 'X-API-Key: key-2' "$base/reports/daily"
  http 404 '~"status":404' -H 'X-API-Key: key-2' "$base/nope"  # the middleware wraps keel's 404 too
  header X-Authenticated api-key
  http 200 '{"status":"ok"}' "$base/health"  # operational endpoints need no key
  http 200 '~"status":"ok"' "$base/health/ready"
  stop_server
}

smoke_child_span() {
  local spans=$2/spans.jsonl trace=4bf92f3577b34da6a3ce929d0e0e4736 caller=00f067aa0ba902b7
  rm -f "$work/sink.port" "$spans"
  python3 "$root/tests/consumers/otlp_sink.py" serve "$work/sink.port" "$spans" &
  sink_pid=$!
  local deadline=$((SECONDS + 10))
  until [[ -s $work/sink.port ]]; do
    if ((SECONDS >= deadline)) || ! alive "$sink_pid"; then fail "the OTLP sink did not start"; fi
    sleep 0.1
  done
  start_server "$2/child_span.log" env OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$(cat "$work/sink.port")" \
    OTEL_BSP_SCHEDULE_DELAY=100 "$1" --workers 1
  http 200 '{"customer":7,"orders":21}' -H "traceparent: 00-$trace-$caller-01" "$base/reports/7"
  grep -q "\"event\":\"report_built\".*\"trace_id\":\"$trace\"" "$server_log" || fail "no report_built line in the trace"
  stop_server  # a worker sends its queued spans on shutdown
  python3 "$root/tests/consumers/otlp_sink.py" check-child-span "$spans" "$trace" "$caller" ||
    fail "child_span: the spans exported are not nested as expected"
  kill "$sink_pid"
  wait "$sink_pid" 2>/dev/null || true
  sink_pid=""
}

# ---------------------------------------------------------------------------------------------

# README's Hello world is examples/hello/main.cpp, verbatim.
readme_hello=$(awk '/^## Hello world/{s=1} s && /^```cpp$/{c=1; next} c && /^```$/{exit} c' README.md)
[[ $readme_hello == "$(cat examples/hello/main.cpp)" ]] ||
  fail "README.md's Hello world differs from examples/hello/main.cpp (it must show it verbatim)"

prefix=${CONSUMERS_PREFIX:-$work/prefix}
if want install && [[ -z ${CONSUMERS_PREFIX:-} ]]; then
  step "install: build keel (Release, no tests/bench/demo) and install it to a temporary prefix"
  # Configured for /usr (Debian's multiarch library directory, as for the Debian package) and
  # installed elsewhere with --prefix: the package and keel.pc must be relocatable.
  run "$work/keel-configure.log" 300 cmake -S . -B "$work/keel-build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DKEEL_BUILD_TESTS=OFF -DKEEL_BUILD_BENCH=OFF -DKEEL_BUILD_DEMO=OFF -DCMAKE_INSTALL_PREFIX=/usr
  run "$work/keel-build.log" 1800 cmake --build "$work/keel-build" -j"$jobs"
  run "$work/keel-install.log" 120 cmake --install "$work/keel-build" --prefix "$prefix"
  libdir=$(sed -n 's/^CMAKE_INSTALL_LIBDIR:PATH=//p' "$work/keel-build/CMakeCache.txt")
  for f in include/keel/keel.hpp include/keel/checks.hpp "$libdir/libkeel.a" "$libdir/libkeel_checks.a" \
    "$libdir/cmake/keel/keelConfig.cmake" "$libdir/cmake/keel/keelConfigVersion.cmake" \
    "$libdir/cmake/keel/keelTargets.cmake" "$libdir/cmake/keel/keelChecksTargets.cmake" \
    "$libdir/pkgconfig/keel.pc" "$libdir/pkgconfig/keel-checks.pc"; do
    [[ -f $prefix/$f ]] || fail "not installed: $f"
  done
fi
if want deb && [[ -z ${CONSUMERS_PREFIX:-} ]]; then
  step "deb: the keel-dev Debian package (CPack), unpacked; hello built with clang++ against it"
  run "$work/deb.log" 300 cpack --config "$work/keel-build/CPackConfig.cmake" -B "$work/deb"
  deb=$(find "$work/deb" -maxdepth 1 -name 'keel-dev_*.deb' | head -n 1)
  [[ -n $deb && $(dpkg-deb -f "$deb" Package) == keel-dev ]] || fail "no keel-dev package in $work/deb"
  dpkg-deb -x "$deb" "$work/deb/root"
  for f in usr/include/keel/keel.hpp usr/lib/x86_64-linux-gnu/libkeel.a usr/lib/x86_64-linux-gnu/libkeel_checks.a \
    usr/lib/x86_64-linux-gnu/cmake/keel/keelConfig.cmake usr/lib/x86_64-linux-gnu/pkgconfig/keel.pc; do
    [[ -f $work/deb/root/$f ]] || fail "keel-dev has no /$f: $(dpkg-deb -c "$deb")"
  done
  run "$work/deb/configure.log" 120 cmake -S examples/hello -B "$work/deb/hello" -G Ninja \
    -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_PREFIX_PATH="$work/deb/root/usr"
  run "$work/deb/build.log" 300 cmake --build "$work/deb/hello"
  smoke_hello "$work/deb/hello/hello" "$work/deb"
fi

pc_dir=$(dirname "$(find "$prefix" -name keel.pc -path '*/pkgconfig/*' | head -n 1)")
[[ -f $pc_dir/keel.pc ]] || fail "no keel.pc under $prefix"

if want examples; then
  for compiler in $compilers; do
    for example in "${examples[@]}"; do
      step "examples: $example with $compiler"
      dir=$work/examples/$compiler/$example
      mkdir -p "$dir"
      run "$dir/configure.log" 120 "${core_env[@]}" cmake -S "examples/$example" -B "$dir/build" -G Ninja \
        -DCMAKE_CXX_COMPILER="$compiler" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_CXX_FLAGS="-Wall -Wextra -Werror"
      # GCC < 13: the co_await note is for this service's author, so keel's package shows it.
      if "$compiler" --version | grep -q '^g++.* 12\.'; then
        grep -q "keel: GCC 12" "$dir/configure.log" || fail "$example: the GCC 12 co_await warning did not reach the consumer"
      fi
      run "$dir/build.log" 300 cmake --build "$dir/build"
      # keel::keel's interface link option: named stack traces on --timeout.
      grep -q -- '-rdynamic' "$dir/build/build.ninja" || fail "$example is not linked with -rdynamic"
      "smoke_$example" "$dir/build/$example" "$dir"
    done
  done
fi

if want package; then
  step "package: find_package versions and components"
  pkg() {  # pkg NAME EXPECT(ok|fail) PATTERN ENV... -- CMAKE_ARGS...: configure tests/consumers/package
    local name=$1 expect=$2 pattern=$3 envs=() rc=0
    shift 3
    while [[ $1 != -- ]]; do envs+=("$1"); shift; done
    shift
    timeout 120 env "${envs[@]}" cmake -S tests/consumers/package -B "$work/package/$name" -G Ninja \
      -DCMAKE_PREFIX_PATH="$prefix" "$@" >"$work/package-$name.log" 2>&1 || rc=$?
    if [[ $expect == ok ]] && ((rc != 0)); then cat "$work/package-$name.log" >&2; fail "package $name: configure failed"; fi
    if [[ $expect == fail ]] && ((rc == 0)); then fail "package $name: configure succeeded, expected a failure"; fi
    grep -q "$pattern" "$work/package-$name.log" || { cat "$work/package-$name.log" >&2; fail "package $name: no '$pattern'"; }
  }
  pkg v0.1.0 ok "keel::keel defined" -- -DKEEL_VERSION=0.1.0
  pkg v0.2 fail 'version: 0.1.0' -- -DKEEL_VERSION=0.2
  pkg v1.0 fail 'version: 0.1.0' -- -DKEEL_VERSION=1.0
  pkg bogus fail "unknown component 'bogus'" -- -DKEEL_VERSION=0.1 -DKEEL_COMPONENTS=bogus
  pkg checks-missing fail 'component checks: it needs libpq' PKG_CONFIG_LIBDIR="$core_pc" PKG_CONFIG_PATH= -- \
    -DKEEL_VERSION=0.1 -DKEEL_COMPONENTS=checks
  pkg checks-optional ok 'keel::checks not defined' PKG_CONFIG_LIBDIR="$core_pc" PKG_CONFIG_PATH= -- \
    -DKEEL_VERSION=0.1 -DKEEL_OPTIONAL_COMPONENTS=checks
  pkg checks ok 'keel::checks defined' -- -DKEEL_VERSION=0.1 -DKEEL_COMPONENTS=checks
  run "$work/package-checks-build.log" 300 cmake --build "$work/package/checks"
  run "$work/package-checks-run.log" 30 "$work/package/checks/checks_probe"
fi

# A consumer that builds keel from source, in the environment without libpq & co.
source_consumer() {  # source_consumer NAME COMPILER
  local name=$1 compiler=$2 dir=$work/$1
  mkdir -p "$dir"
  run "$dir/configure.log" 300 "${core_env[@]}" cmake -S "tests/consumers/$name" -B "$dir/build" -G Ninja --no-warn-unused-cli \
    -DKEEL_SOURCE_DIR="$root" -DCMAKE_CXX_COMPILER="$compiler" \
    -DCMAKE_DISABLE_FIND_PACKAGE_GTest=ON -DCMAKE_DISABLE_FIND_PACKAGE_benchmark=ON
  # Cache entries only (not the comments, which are the options' help texts).
  if grep -Ev '^(//|#|CMAKE_DISABLE_FIND_PACKAGE_)' "$dir/build/CMakeCache.txt" |
    grep -Ei 'libpq|hiredis|sqlite3|GTest|benchmark' >&2; then
    fail "$name: keel looked up a dependency it does not need"
  fi
  if grep -E '^KEEL_(BUILD_TESTS|BUILD_BENCH|BUILD_DEMO|BUILD_CHECKS|WERROR|INSTALL):BOOL=ON' "$dir/build/CMakeCache.txt" >&2; then
    fail "$name: a KEEL_ option defaults to ON for a consumer"
  fi
  if "$compiler" --version | grep -q '^g++.* 12\.'; then
    grep -q "keel: GCC 12" "$dir/configure.log" || fail "$name: the GCC 12 co_await warning did not reach the consumer"
  fi
  run "$dir/build.log" 1800 cmake --build "$dir/build" -j"$jobs"
  if grep -q -- '-Werror' "$dir/build/build.ninja"; then fail "$name: keel's sources are built with -Werror"; fi
  # C++20 reaches the consumer's own target through keel::keel (the consumer asks for none, or 17).
  ninja -C "$dir/build" -t commands hello | grep 'examples/hello/main\.cpp' | grep -Eq -- '-std=(gnu|c)\+\+20' ||
    fail "$name: hello is not compiled as C++20"
  (cd "$dir/build" && ctest -N) >"$dir/ctest.log"
  grep -q '^Total Tests: 1$' "$dir/ctest.log" || { cat "$dir/ctest.log" >&2; fail "$name: ctest lists more than the consumer's own test"; }
  run "$dir/ctest-run.log" 60 ctest --test-dir "$dir/build" --output-on-failure
  smoke_hello "$dir/build/hello" "$dir"
}
if want subdirectory; then
  step "subdirectory: add_subdirectory(keel) with g++, no libpq/hiredis/sqlite3/GTest/benchmark"
  source_consumer add_subdirectory g++
fi
if want fetchcontent; then
  step "fetchcontent: FetchContent_Declare(keel SOURCE_DIR ...) with clang++, a C++17 project"
  source_consumer fetchcontent clang++
fi

if want pkgconfig; then
  step "pkgconfig: g++ with pkg-config --cflags --libs --static keel (and keel-checks)"
  export PKG_CONFIG_PATH=$pc_dir
  [[ $(pkg-config --modversion keel) == "$(sed -n 's/^project(keel VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)" ]] ||
    fail "pkg-config --modversion keel: $(pkg-config --modversion keel)"
  mkdir -p "$work/pkgconfig"
  # shellcheck disable=SC2046  # the flags are words
  run "$work/pkgconfig/build.log" 300 g++ -std=c++20 -o "$work/pkgconfig/hello" examples/hello/main.cpp \
    $(pkg-config --cflags --libs --static keel)
  smoke_hello "$work/pkgconfig/hello" "$work/pkgconfig"
  # shellcheck disable=SC2046
  run "$work/pkgconfig/checks-build.log" 300 g++ -std=c++20 -o "$work/pkgconfig/checks_probe" \
    tests/consumers/package/checks_probe.cpp $(pkg-config --cflags --libs --static keel-checks)
  run "$work/pkgconfig/checks-run.log" 30 "$work/pkgconfig/checks_probe"
  unset PKG_CONFIG_PATH
fi

step "passed in $((SECONDS - start_time))s"
