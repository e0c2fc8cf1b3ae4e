#!/usr/bin/env bash
# Installs dependencies, builds keel and runs the whole test suite (unit + process-level tests)
# on the debug build (~10 min on 2 cores). CI (.ci/run) runs it again on the AddressSanitizer +
# UndefinedBehaviorSanitizer build.
#   scripts/test.sh                          the debug build
#   TEST_PRESETS="debug asan" scripts/test.sh   both, as CI does
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
jobs=$(nproc)
for preset in ${TEST_PRESETS:-debug}; do
  echo "=== build: $preset"
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset" -j"$jobs"
  echo "=== test: $preset"
  ctest --preset "$preset" -j"$jobs" --timeout 300
done
