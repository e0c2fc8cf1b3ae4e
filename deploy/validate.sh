#!/usr/bin/env bash
# Validates the deploy kit (deploy/), offline once its tools are installed:
#   Kubernetes   kubectl kustomize of every overlay (rolling, blue-green, canary, tls; + the
#                commented PostgreSQL variant) and of deploy/k8s/argo-rollouts, each document
#                against its API schema (strict: unknown fields are errors; Argo Rollouts'
#                Rollout/AnalysisTemplate too), cross-checks (keel settings as registered in
#                src/app/server_settings.cpp, secret as a file, TLS files in read-only Secret
#                volumes without subPath, probes and their schemes, grace period, references)
#   Argo         the canary analysis against keel's sources (metric names and labels, upgrade's
#                thresholds and window, excluded routes), its queries parsed by promtool and
#                unit-tested on synthetic series (tests/deploy/argo_analysis.test.yml)
#   Prometheus   promtool check config / check rules / test rules, metric names in every rule
#   Grafana      the dashboard JSON: ${datasource} everywhere, only known metrics, labels, variables
#   Compose      docker-compose config -q, secrets, healthchecks, settings, loopback-only ports
#   tests/deploy the unit tests of the rendered manifests, the static checks of the Dockerfile
# First run installs what is missing: Debian packages (kubectl via kubernetes-client, promtool
# via prometheus, docker-compose, python3-yaml, nodejs/npm) and the npm packages pinned in
# deploy/tools/package-lock.json into build/deploy-tools (never into the repository), and
# @kubernetes-models/argo-rollouts (ARGO_MODELS_VERSION below) into build/deploy-tools/argo-rollouts.
# Later runs reuse them and need no network. Exit status: 0 when everything passes, 1 otherwise.
#
# Usage: deploy/validate.sh            (from anywhere; run as root for the first install)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
ROOT=$PWD
TOOLS=$ROOT/build/deploy-tools
OUT=$TOOLS/out
PY=/usr/bin/python3
export KUBECONFIG=/dev/null   # kubectl never needs (or touches) a cluster here
# Schemas of the Argo Rollouts CRDs (generated from argo-rollouts' Go API types), pinned; installed
# beside the lock-file packages, in its own prefix (npm ci of the lock file would remove it; it
# brings its own, newer kubernetes-models, nested). Changing the version reinstalls it.
ARGO_MODELS_VERSION=2.0.0
ARGO_TOOLS=$TOOLS/argo-rollouts
started=$(date +%s.%N)

declare -a SUMMARY=()
FAILED=0
note() { printf '\n=== %s\n' "$*"; }
die() { printf 'validate.sh: %s\n' "$*" >&2; exit 1; }

# step NAME COMMAND...: runs one check, records PASS/FAIL and its duration, keeps going.
step() {
  local name=$1; shift
  local t0 t1 rc
  note "$name"
  t0=$(date +%s.%N)
  "$@"
  rc=$?
  t1=$(date +%s.%N)
  local took
  took=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1fs", b - a }')
  if [ "$rc" -eq 0 ]; then
    SUMMARY+=("PASS  $(printf '%-58s' "$name") $took")
  else
    SUMMARY+=("FAIL  $(printf '%-58s' "$name") $took")
    FAILED=1
    printf '>>> FAILED: %s (exit %s)\n' "$name" "$rc" >&2
  fi
}

# ---- tools ----------------------------------------------------------------------------------

APT_UPDATED=0
apt_install() {
  [ "$(id -u)" -eq 0 ] || die "missing $*: install them (apt-get install $*) or run as root"
  if [ "$APT_UPDATED" -eq 0 ]; then
    apt-get update -q >/dev/null || die "apt-get update failed"
    APT_UPDATED=1
  fi
  # policy-rc.d 101: packages (prometheus) must not start services; nothing here may listen.
  local guard=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && guard=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >"$TOOLS/apt.log" 2>&1
  local rc=$?
  [ "$guard" -eq 1 ] && rm -f /usr/sbin/policy-rc.d
  [ "$rc" -eq 0 ] || die "apt-get install $* failed (see $TOOLS/apt.log)"
}

install_tools() {
  mkdir -p "$TOOLS" "$OUT"
  local missing=()
  # kubectl: kustomize >= v4 is needed (`labels`, directories under `resources`). The cpp machine
  # image ships kubectl 1.32 (kustomize v5); elsewhere Debian's kubernetes-client provides one.
  command -v kubectl >/dev/null || missing+=(kubernetes-client)
  command -v promtool >/dev/null || missing+=(prometheus)
  command -v docker-compose >/dev/null || missing+=(docker-compose)
  "$PY" -c 'import yaml' 2>/dev/null || missing+=(python3-yaml)
  command -v node >/dev/null || missing+=(nodejs)
  command -v npm >/dev/null || missing+=(npm)
  if [ "${#missing[@]}" -gt 0 ]; then
    note "installing Debian packages: ${missing[*]}"
    apt_install "${missing[@]}"
  fi
  local kz
  kz=$(kubectl version --client 2>/dev/null | sed -n 's/^Kustomize Version: v\([0-9]*\).*/\1/p')
  if [ -z "$kz" ] || [ "$kz" -lt 4 ]; then
    die "kubectl $(kubectl version --client 2>/dev/null | head -1) embeds kustomize older than v4 (Debian bookworm's kubernetes-client 1.20 has v2.0.3); the overlays need kubectl >= 1.21"
  fi
  # npm packages, pinned by deploy/tools/package-lock.json, installed only when it changed.
  if ! cmp -s "$ROOT/deploy/tools/package-lock.json" "$TOOLS/package-lock.json" || [ ! -d "$TOOLS/node_modules/kubernetes-models" ]; then
    note "installing npm packages into build/deploy-tools (deploy/tools/package-lock.json)"
    cp "$ROOT/deploy/tools/package.json" "$ROOT/deploy/tools/package-lock.json" "$TOOLS/"
    (cd "$TOOLS" && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci failed in $TOOLS"
  fi
  # Argo Rollouts models: pinned version, installed when missing or different.
  local argo_pkg="$ARGO_TOOLS/node_modules/@kubernetes-models/argo-rollouts/package.json"
  if [ "$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$argo_pkg" 2>/dev/null)" != "$ARGO_MODELS_VERSION" ]; then
    note "installing @kubernetes-models/argo-rollouts@$ARGO_MODELS_VERSION into build/deploy-tools/argo-rollouts"
    rm -rf "$ARGO_TOOLS" && mkdir -p "$ARGO_TOOLS" || die "cannot create $ARGO_TOOLS"
    printf '{"name": "keel-deploy-tools-argo", "private": true, "license": "UNLICENSED"}\n' >"$ARGO_TOOLS/package.json"
    (cd "$ARGO_TOOLS" && npm install --no-audit --no-fund --loglevel=error --save-exact \
      "@kubernetes-models/argo-rollouts@$ARGO_MODELS_VERSION") || die "npm install @kubernetes-models/argo-rollouts failed in $ARGO_TOOLS"
  fi
  printf 'tools: %s | %s | %s | node %s | %s | %s\n' \
    "$(kubectl version --client 2>/dev/null | sed -n 's/^Kustomize Version: /kustomize /p')" \
    "$(promtool --version 2>&1 | head -1 | awk '{print "promtool " $3}')" \
    "$(docker-compose version --short 2>/dev/null | sed 's/^/docker-compose /')" \
    "$(node --version)" \
    "kubernetes-models $(sed -n 's/.*"version": "\(.*\)".*/\1/p' "$TOOLS/node_modules/kubernetes-models/package.json" | head -1)" \
    "@kubernetes-models/argo-rollouts $(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$argo_pkg")"
}

# ---- checks ---------------------------------------------------------------------------------

OVERLAYS=(rolling blue-green canary tls)

render_overlays() {
  local rc=0 o
  for o in "${OVERLAYS[@]}"; do
    if kubectl kustomize "deploy/k8s/overlays/$o" >"$OUT/$o.yaml" 2>"$OUT/$o.err"; then
      printf '%-12s %s documents\n' "$o" "$(grep -c '^kind:' "$OUT/$o.yaml")"
    else
      cat "$OUT/$o.err" >&2; rc=1
    fi
  done
  # The Argo Rollouts canary (not an overlay: it replaces the Deployment controller).
  if kubectl kustomize deploy/k8s/argo-rollouts >"$OUT/argo-rollouts.yaml" 2>"$OUT/argo-rollouts.err"; then
    printf '%-12s %s documents\n' "argo" "$(grep -c '^kind:' "$OUT/argo-rollouts.yaml")"
  else
    cat "$OUT/argo-rollouts.err" >&2; rc=1
  fi
  # The PostgreSQL variant shown commented out in overlays/rolling: uncommented in a copy.
  rm -rf "$OUT/k8s-postgres" && cp -r deploy/k8s "$OUT/k8s-postgres"
  local k="$OUT/k8s-postgres/overlays/rolling/kustomization.yaml"
  sed -i -e 's/^# patches:$/patches:/' -e '/^patches:$/,$ s/^# //' "$k"
  if kubectl kustomize "$OUT/k8s-postgres/overlays/rolling" >"$OUT/rolling-postgres.yaml" 2>"$OUT/rolling-postgres.err" \
     && grep -q 'DATABASE_URL_FILE' "$OUT/rolling-postgres.yaml" && ! grep -q '^  DATABASE_URL:' "$OUT/rolling-postgres.yaml"; then
    printf '%-12s %s documents (commented PostgreSQL variant)\n' "rolling+pg" "$(grep -c '^kind:' "$OUT/rolling-postgres.yaml")"
  else
    cat "$OUT/rolling-postgres.err" >&2; echo "the commented PostgreSQL variant of overlays/rolling does not render as documented" >&2; rc=1
  fi
  return $rc
}

RENDERS=("$OUT/rolling.yaml" "$OUT/blue-green.yaml" "$OUT/canary.yaml" "$OUT/tls.yaml" "$OUT/rolling-postgres.yaml" "$OUT/argo-rollouts.yaml")

k8s_schema() {
  node deploy/tools/validate-k8s.mjs --modules "$TOOLS/node_modules" --modules "$ARGO_TOOLS/node_modules" \
    "${RENDERS[@]}" deploy/k8s/base/secret.example.yaml
}

k8s_consistency() {
  "$PY" deploy/tools/check_deploy.py k8s "${RENDERS[@]}"
}

prom_config() {
  local rc=0 log="$OUT/promtool-config.log"
  if promtool check config deploy/prometheus/prometheus.yml >"$log" 2>&1; then
    cat "$log"
  elif grep -q 'field kubernetes_sd_configs not found' "$log"; then
    echo "this promtool is built without Kubernetes discovery (Debian removes it): checking prometheus.yml"
    echo "with kubernetes_sd_configs swapped for a static stand-in; the SD block is checked on its own"
    "$PY" deploy/tools/check_deploy.py prom-config deploy/prometheus/prometheus.yml \
      --manifests "$OUT/rolling.yaml" "$OUT/blue-green.yaml" "$OUT/canary.yaml" "$OUT/tls.yaml" "$OUT/argo-rollouts.yaml" \
      --derive "$OUT/prometheus.derived.yml" || rc=1
    promtool check config "$OUT/prometheus.derived.yml" || rc=1
  else
    cat "$log" >&2; rc=1
  fi
  if [ ! -f "$OUT/prometheus.derived.yml" ]; then
    "$PY" deploy/tools/check_deploy.py prom-config deploy/prometheus/prometheus.yml \
      --manifests "$OUT/rolling.yaml" "$OUT/blue-green.yaml" "$OUT/canary.yaml" "$OUT/tls.yaml" "$OUT/argo-rollouts.yaml" || rc=1
  fi
  promtool check config deploy/prometheus/prometheus.compose.yml || rc=1
  return $rc
}

# The AnalysisTemplate's queries: against keel's sources (check_deploy.py argo), then as recording
# rules (arguments resolved) through promtool: parsed, and unit-tested on synthetic canary/stable
# series (tests/deploy/argo_analysis.test.yml, copied next to the derived rules it reads).
argo_analysis() {
  rm -f "$OUT/argo-analysis.rules.yml"
  "$PY" deploy/tools/check_deploy.py argo "$OUT/argo-rollouts.yaml" --prometheus deploy/prometheus/prometheus.yml \
    --derive-rules "$OUT/argo-analysis.rules.yml" || return 1
  cp tests/deploy/argo_analysis.test.yml "$OUT/argo_analysis.test.yml" || return 1
  promtool check rules "$OUT/argo-analysis.rules.yml" && (cd "$OUT" && promtool test rules argo_analysis.test.yml)
}

prom_rules() {
  promtool check rules deploy/prometheus/rules/*.yml && "$PY" deploy/tools/check_deploy.py rules deploy/prometheus/rules/*.yml
}

prom_tests() {
  (cd deploy/prometheus && promtool test rules tests/*.test.yml)
}

dashboard() {
  "$PY" deploy/tools/check_deploy.py dashboard deploy/grafana/keel-dashboard.json || return 1
  "$PY" - <<'EOF'
import sys, yaml
for f in ("deploy/grafana/provisioning/datasources/prometheus.yaml", "deploy/grafana/provisioning/dashboards/keel.yaml"):
    doc = yaml.safe_load(open(f))
    assert doc.get("apiVersion") == 1, f"{f}: apiVersion 1 expected"
    print(f"{f}: ok")
EOF
}

compose() {
  # KEEL_SECRET_KEY_PATH: the example stands in for the real (git-ignored) secret file.
  (cd deploy/compose && KEEL_SECRET_KEY_PATH=./secret_key.example docker-compose -f compose.yaml config -q) \
    && echo "docker-compose config -q: ok" \
    && "$PY" deploy/tools/check_deploy.py compose deploy/compose/compose.yaml
}

# test_image.DockerfileTest only: the static checks of the Dockerfile (instant). The image build
# and run (test_image.BuildAndTestScript, deploy/docker/build-and-test.sh) take minutes: not here.
unit_tests() {
  (cd tests/deploy && "$PY" -m unittest test_manifests test_image.DockerfileTest 2>&1)
}

rm -f "$OUT/prometheus.derived.yml"
install_tools
step "kustomize: render overlays (rolling, blue-green, canary, tls) + argo" render_overlays
step "kubernetes: API schema, strict fields (kubernetes-models)" k8s_schema
step "kubernetes: keel settings, secret, probes, references" k8s_consistency
step "argo rollouts: analysis vs keel sources, promtool test" argo_analysis
step "prometheus: promtool check config (+ kubernetes_sd)" prom_config
step "prometheus: promtool check rules + metric names" prom_rules
step "prometheus: promtool test rules" prom_tests
step "grafana: dashboard + provisioning" dashboard
step "compose: docker-compose config + consistency" compose
step "tests/deploy: test_manifests, test_image.DockerfileTest" unit_tests

ended=$(date +%s.%N)
printf '\n=== summary\n'
printf '%s\n' "${SUMMARY[@]}"
printf 'total %s\n' "$(awk -v a="$started" -v b="$ended" 'BEGIN { printf "%.1fs", b - a }')"
if [ "$FAILED" -ne 0 ]; then
  echo "deploy/validate.sh: FAILED" >&2
  exit 1
fi
echo "deploy/validate.sh: all checks passed"
