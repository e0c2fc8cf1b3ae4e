#!/usr/bin/env bash
# Installs dependencies, builds the release binaries and runs the demo service in the
# foreground (Ctrl-C or SIGTERM stops it). Extra arguments go to keel-demo, e.g.
#   scripts/run-demo.sh --bind 0.0.0.0:8080 --workers 4
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j"$(nproc)" --target keel-demo
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--bind 127.0.0.1:8000 --workers 2)
exec build/release/apps/demo/keel-demo "${args[@]}"
