#!/usr/bin/env bash
# Installs dependencies, builds keel and runs the whole test suite (unit + process-level tests)
# twice: a normal debug build, and an AddressSanitizer + UndefinedBehaviorSanitizer build.
#   scripts/test.sh            both builds
#   TEST_PRESETS=debug scripts/test.sh   just one
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
jobs=$(nproc)
for preset in ${TEST_PRESETS:-debug asan}; do
  echo "=== build: $preset"
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset" -j"$jobs"
  echo "=== test: $preset"
  ctest --preset "$preset" -j"$jobs" --timeout 300
done
