#!/usr/bin/env bash
# Installs dependencies, builds the release binaries and runs the demo service in the
# foreground (Ctrl-C or SIGTERM stops it). Extra arguments go to keel-demo, e.g.
#   scripts/run-demo.sh --bind 0.0.0.0:8080 --workers 4
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j"$(nproc)" --target keel-demo
# keel-demo requires a secret key and has no default for it: a development value is generated per
# run (never committed); set SECRET_KEY or SECRET_KEY_FILE yourself to keep one.
if [ -z "${SECRET_KEY:-}" ] && [ -z "${SECRET_KEY_FILE:-}" ]; then
  SECRET_KEY="dev-$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
  export SECRET_KEY
fi
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--bind 127.0.0.1:8000 --workers 2)
exec build/release/apps/demo/keel-demo "${args[@]}"
