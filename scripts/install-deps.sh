#!/usr/bin/env bash
# Installs everything keel needs to build, test and benchmark, from Debian 12 packages only.
# Idempotent: packages already present are left as they are; apt lists are fetched only when missing.
set -euo pipefail
packages=(
  build-essential cmake ninja-build pkg-config git
  g++ clang clang-format libclang-rt-14-dev
  nlohmann-json3-dev libcli11-dev libtomlplusplus-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libsqlite3-dev libpq-dev libhiredis-dev libcurl4-openssl-dev zlib1g-dev libssl-dev
  python3 curl wrk procps sqlite3 postgresql redis-server prometheus python3-prometheus-client
  python3-aiohttp  # the W3C Trace Context suite's harness (tests/process/test_tracing.py)
  slowhttptest libhttp-parser-dev
  openssl testssl.sh sslscan  # TLS: test certificates, the TLS conformance scans
  libnghttp2-dev  # HTTP/2 (src/http2/)
  nghttp2-client python3-h2  # HTTP/2 clients: h2load and nghttp; frame-level process tests
  h2o  # HTTP/2 benchmark peer (bench/compare_h2.sh)
  # h2spec (scripts/check-h2spec.sh, built offline by ../shared/tools/build-h2spec.sh in GOPATH
  # mode): the Go toolchain and the Debian packages of every module in h2spec 2.6.0's go.mod.
  golang-go golang-github-fatih-color-dev golang-github-spf13-cobra-dev golang-golang-x-net-dev
  golang-github-inconshreveable-mousetrap-dev golang-github-mattn-go-colorable-dev
  golang-github-mattn-go-isatty-dev golang-github-spf13-pflag-dev golang-golang-x-sys-dev
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  if [ -z "$(ls /var/lib/apt/lists/ 2>/dev/null | grep -v -e lock -e partial)" ]; then $SUDO apt-get update -qq; fi
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || {
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
fi
