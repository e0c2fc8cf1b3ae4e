#!/usr/bin/env python3
"""Cross-checks of deploy/ that no schema validator catches (run by deploy/validate.sh).

  check_deploy.py dashboard FILE.json        Grafana dashboard: ${datasource} everywhere, known
                                             metrics/labels/variables in every expression (stdlib only)
  check_deploy.py rules FILE.yml...          Prometheus rules: known metrics and labels in every expr
  check_deploy.py prom-config FILE.yml --manifests RENDERED.yaml... [--derive OUT.yml]
                                             kubernetes_sd jobs: SD block, meta labels, annotations
                                             that the rendered pods really carry; --derive writes a
                                             copy without kubernetes_sd for a promtool built without
                                             Kubernetes discovery (Debian's)
  check_deploy.py k8s RENDERED.yaml...       keel settings in ConfigMaps/env (the settings keel
                                             registers, src/app/server_settings.cpp), secret as a
                                             file, TLS (certificate and key in a read-only Secret
                                             volume without subPath, probes' scheme, Service port
                                             protocol), probes, grace period, selectors and
                                             references (Argo Rollouts too: workloadRef, Services,
                                             HPA target)
  check_deploy.py argo RENDERED.yaml [--prometheus prometheus.yml] [--derive-rules OUT.yml]
                                             Argo Rollouts canary analysis against keel's sources:
                                             metric names/labels (src/metrics/http_metrics.cpp),
                                             thresholds and window (src/process/upgrade.hpp),
                                             excluded routes (include/keel/app.hpp), crash reasons
                                             (src/process/supervisor_policy.cpp), steps and arguments, the
                                             scrape config's labels; --derive-rules writes the
                                             queries as recording rules (for promtool)
  check_deploy.py compose FILE.yaml          secrets, healthchecks behind service_healthy, keel
                                             settings, loopback-only ports, mounted paths

The metric table below (KEEL_METRICS) is checked against keel's registrations
(src/metrics/http_metrics.cpp) by the dashboard, rules and argo commands: a metric or label keel
does not export is an error, one keel exports that the table lacks is a warning.

Exit status 0 when everything holds, 1 with every problem on stderr, 2 on usage errors.
The YAML commands need PyYAML (Debian python3-yaml); the dashboard command only the stdlib.
"""

import json
import os
import re
import sys

# ---- what keel exposes (docs/metrics.md, docs/configuration.md) ---------------------------

# Metric name -> its own labels (target labels come on top). Checked against keel's registrations
# (keel_exported_metrics(), src/metrics/http_metrics.cpp) by the commands that use it.
KEEL_METRICS = {
    # network_protocol_version: "1.0", "1.1", "2" (the RED series; sum it away like any label).
    "http_requests_total": {"method", "route", "status", "network_protocol_version", "version"},
    "http_requests_in_flight": {"network_protocol_version"},
    "http_requests_rejected_total": {"reason"},
    "http_connections_open": set(),
    "http_connections_accepted_total": set(),
    "keel_http2_connections_open": set(),
    "keel_http2_streams_open": set(),
    "keel_http2_connection_errors_total": {"reason"},
    "process_cpu_seconds_total": set(),
    "process_resident_memory_bytes": set(),
    "process_virtual_memory_bytes": set(),
    "process_open_fds": set(),
    "process_max_fds": set(),
    "process_start_time_seconds": set(),
    "keel_thread_pool_queue_depth": set(),
    "keel_workers": set(),
    "keel_worker_restarts_total": {"reason"},
    "keel_build_info": {"version", "commit"},
    "keel_log_dropped_total": set(),
    "keel_spans_dropped_total": set(),
    "keel_generation_info": {"generation", "version"},
    # TLS on the --bind listeners. The expiry gauge is Unix seconds, the minimum across workers
    # (a worker that has not reloaded yet keeps the older date), by the certificate's first name.
    "keel_tls_certificate_not_after_seconds": {"name"},
    "keel_tls_handshakes_total": {"resumed"},
    "keel_tls_handshake_failures_total": {"reason"},
}
KEEL_HISTOGRAMS = {
    "http_request_duration_seconds": {"method", "route", "network_protocol_version", "version"},
    "http_request_size_bytes": {"method", "route"},
    "http_response_size_bytes": {"method", "route"},
    "keel_event_loop_lag_seconds": set(),
    "keel_tls_handshake_duration_seconds": set(),
}
for _name, _labels in KEEL_HISTOGRAMS.items():
    KEEL_METRICS[_name + "_bucket"] = _labels | {"le"}
    KEEL_METRICS[_name + "_sum"] = set(_labels)
    KEEL_METRICS[_name + "_count"] = set(_labels)

# Labels the scrape configs of deploy/prometheus attach to every keel series.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "track", "slot", "node"}
# Series Prometheus itself writes per target, allowed in rules (not in the dashboard).
PROMETHEUS_SERIES = {"up": set()}

# keel's own settings (each is --x-y, file key x_y and env KEEL_X_Y) are read from the sources,
# keel_settings() below: keel warns about any other KEEL_* (an error with strict_env), and a
# manifest should not carry one. These must be among them, or the reading of the sources broke
# (not keel).
SETTINGS_EXPECTED = {"bind", "workers", "metrics_bind", "shutdown_delay", "graceful_timeout", "keep_alive",
                     "max_worker_memory", "certfile", "keyfile", "cert_reqs", "health_path"}
# Not settings, but KEEL_* variables keel reads (src/config/loader.hpp).
KEEL_ENV_EXTRA = {"KEEL_CONFIG", "KEEL_ENV_FILE"}
# keel-demo's settings (apps/demo/main.cpp): their own names, or the APP_ prefix.
DEMO_ENV = {"DATABASE_URL", "SECRET_KEY", "CACHE_URL", "APP_CACHE_TTL", "APP_FAULT_ERROR_RATIO",
            "APP_FAULT_LATENCY", "APP_FAULT_FAIL_STARTUP", "APP_FAULT_NEVER_READY"}
SECRET_SETTINGS_ENV = {"SECRET_KEY"}
HEALTH_PATHS = {"liveness": "/health", "readiness": "/health/ready", "startup": "/health/startup"}
# The container port names of the traffic listener (KEEL_BIND): "https" once it speaks TLS
# (deploy/k8s/overlays/tls), and the admin listener (KEEL_METRICS_BIND, always plain HTTP).
TRAFFIC_PORTS = ("http", "https")
ADMIN_PORT = "admin"

PROMQL_FUNCTIONS = {
    "abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh", "avg_over_time",
    "ceil", "changes", "clamp", "clamp_max", "clamp_min", "cos", "cosh", "count_over_time", "day_of_month",
    "day_of_week", "day_of_year", "days_in_month", "deg", "delta", "deriv", "exp", "floor", "histogram_count",
    "histogram_fraction", "histogram_quantile", "histogram_stddev", "histogram_stdvar", "histogram_sum",
    "holt_winters", "hour", "idelta", "increase", "irate", "label_join", "label_replace", "last_over_time",
    "ln", "log10", "log2", "mad_over_time", "max_over_time", "min_over_time", "minute", "month", "pi",
    "predict_linear", "present_over_time", "quantile_over_time", "rad", "rate", "resets", "round", "scalar",
    "sgn", "sin", "sinh", "sort", "sort_desc", "sqrt", "stddev_over_time", "stdvar_over_time",
    "sum_over_time", "tan", "tanh", "time", "timestamp", "vector", "year",
    # aggregations
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
    "quantile", "limitk", "limit_ratio",
}
PROMQL_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
                   "group_left", "group_right", "inf", "nan", "atan2", "start", "end"}
GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__interval_ms", "__range", "__range_s", "__range_ms",
                    "__from", "__to", "__dashboard", "__org", "__user"}


class Problems:
    def __init__(self):
        self.items = []

    def add(self, where, msg):
        self.items.append(f"{where}: {msg}")

    def finish(self, ok_message):
        if self.items:
            for p in self.items:
                print(p, file=sys.stderr)
            print(f"{len(self.items)} problem(s)", file=sys.stderr)
            return 1
        print(ok_message)
        return 0


# ---- PromQL -------------------------------------------------------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)?\s*\{([^{}]*)\}")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")
_TOKEN = re.compile(r"(\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[a-zA-Z]*)|([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")


def check_promql(expr, where, problems, metrics, extra_names=(), variables=None):
    """Every metric name, function and label of one PromQL expression must be known.

    metrics: name -> allowed own labels; extra_names: recorded series (any label of TARGET_LABELS
    and the grouping labels); variables: the dashboard's variable names (None: no $ allowed).
    """
    if variables is not None:
        for var in re.findall(r"\$\{?(\w+)", expr):
            if var not in variables and var not in GRAFANA_BUILTINS:
                problems.add(where, f"unknown dashboard variable ${var} in: {expr}")
    elif "$" in _STRING.sub('""', expr):
        problems.add(where, f"unexpected $ outside strings: {expr}")
    text = _STRING.sub('""', expr)
    all_labels = set(TARGET_LABELS)
    for labels in metrics.values():
        all_labels |= labels
    known_names = set(metrics) | set(extra_names)
    # Selectors: metric{label op "value", ...}
    for m in _SELECTOR.finditer(text):
        name, body = m.group(1), m.group(2)
        if not name or name in PROMQL_FUNCTIONS or name in PROMQL_KEYWORDS:
            problems.add(where, f"selector without a metric name: {{{body}}} in: {expr}")
            continue
        allowed = (metrics.get(name, set()) | TARGET_LABELS) if name in metrics else all_labels
        for matcher in filter(None, (x.strip() for x in body.split(","))):
            label = re.match(r"([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)", matcher)
            if not label:
                problems.add(where, f"cannot parse matcher '{matcher}' in: {expr}")
            elif label.group(1) not in allowed:
                problems.add(where, f"label '{label.group(1)}' is not a label of {name} in: {expr}")
    for m in _GROUPING.finditer(text):
        for label in filter(None, (x.strip() for x in m.group(2).split(","))):
            if label not in all_labels:
                problems.add(where, f"unknown label '{label}' in {m.group(1)}(...) in: {expr}")
    # Metric names and functions, with selectors' bodies, ranges and groupings removed.
    text = _GROUPING.sub(" ", text)
    text = re.sub(r"\{[^{}]*\}", " ", text)
    text = re.sub(r"\[[^\[\]]*\]", " ", text)
    for m in _TOKEN.finditer(text):
        if m.group(1):  # number or duration
            continue
        ident, call = m.group(2), m.group(3)
        if ident in PROMQL_KEYWORDS:
            continue
        if call:
            if ident not in PROMQL_FUNCTIONS:
                problems.add(where, f"unknown function {ident}() in: {expr}")
        elif ident not in known_names:
            problems.add(where, f"unknown metric '{ident}' in: {expr}")


# ---- Grafana dashboard --------------------------------------------------------------------

def iter_panels(panels):
    for p in panels:
        yield p
        yield from iter_panels(p.get("panels", []))


def cmd_dashboard(path):
    problems = Problems()
    check_metrics_table(problems)
    try:
        with open(path, encoding="utf-8") as f:
            dash = json.load(f)
    except (OSError, ValueError) as e:
        problems.add(path, f"not valid JSON: {e}")
        return problems.finish("")
    want = {"type": "prometheus", "uid": "${datasource}"}
    variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
    ds_var = variables.get("datasource")
    if not ds_var or ds_var.get("type") != "datasource" or ds_var.get("query") != "prometheus":
        problems.add(path, "templating needs a variable 'datasource' of type datasource, query prometheus")
    for name in ("route", "instance"):
        if name not in variables:
            problems.add(path, f"templating needs a variable '{name}'")
    for name, var in variables.items():
        if var.get("type") != "query":
            continue
        if var.get("datasource") != want:
            problems.add(path, f"variable {name}: datasource must be {want}, got {var.get('datasource')}")
        query = var.get("query")
        query = query.get("query") if isinstance(query, dict) else query
        m = re.fullmatch(r"\s*label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*", query or "")
        if not m:
            problems.add(path, f"variable {name}: expected label_values(<selector>, <label>), got {query!r}")
            continue
        check_promql(m.group(1), f"{path}: variable {name}", problems, KEEL_METRICS, variables=set(variables))
    ids = set()
    n_panels = n_targets = 0
    for panel in iter_panels(dash.get("panels", [])):
        n_panels += 1
        where = f"{path}: panel {panel.get('id')} '{panel.get('title')}'"
        if panel.get("id") in ids:
            problems.add(where, "duplicate panel id")
        ids.add(panel.get("id"))
        if panel.get("datasource") != want:
            problems.add(where, f"datasource must be {want}, got {panel.get('datasource')}")
        if "gridPos" not in panel:
            problems.add(where, "no gridPos")
        if panel.get("type") == "row":
            continue
        targets = panel.get("targets") or []
        if not targets:
            problems.add(where, "no query")
        refids = [t.get("refId") for t in targets]
        if len(set(refids)) != len(refids):
            problems.add(where, f"duplicate refId in {refids}")
        for t in targets:
            n_targets += 1
            if t.get("datasource") != want:
                problems.add(where, f"target {t.get('refId')}: datasource must be {want}, got {t.get('datasource')}")
            if not t.get("expr"):
                problems.add(where, f"target {t.get('refId')}: empty expr")
                continue
            check_promql(t["expr"], where, problems, KEEL_METRICS, variables=set(variables))
    return problems.finish(f"dashboard: {n_panels} panels, {n_targets} queries, {len(variables)} variables: "
                           f"datasource ${{datasource}} everywhere, only known keel metrics")


# ---- YAML helpers -------------------------------------------------------------------------

def load_yaml_docs(path):
    import yaml  # Debian python3-yaml

    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def parse_duration(value):
    """keel/compose durations: 500ms, 30s, 5m, 1h, 1m30s, or a bare number of seconds."""
    text = str(value).strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|s|m|h|d)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {value!r}")
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600, "d": 86400}
    return sum(float(n) * scale[u] for n, u in parts)


# ---- Prometheus rules ---------------------------------------------------------------------

def cmd_rules(paths):
    problems = Problems()
    check_metrics_table(problems)
    metrics = dict(KEEL_METRICS)
    metrics.update(PROMETHEUS_SERIES)
    n = 0
    for path in paths:
        docs = load_yaml_docs(path)
        groups = docs[0].get("groups", []) if docs else []
        recorded = {r["record"] for g in groups for r in g.get("rules", []) if "record" in r}
        for g in groups:
            for r in g.get("rules", []):
                n += 1
                name = r.get("record") or r.get("alert")
                check_promql(r.get("expr", ""), f"{path}: {g.get('name')}/{name}", problems, metrics, recorded)
                if "alert" in r:
                    for key in ("summary", "description"):
                        if not r.get("annotations", {}).get(key):
                            problems.add(f"{path}: {name}", f"annotation {key} missing")
                    if r.get("labels", {}).get("severity") not in ("critical", "warning", "info"):
                        problems.add(f"{path}: {name}", "label severity must be critical, warning or info")
    return problems.finish(f"rules: {n} rules name only known keel metrics and labels")


# ---- Prometheus config: kubernetes_sd ------------------------------------------------------

K8S_SD_KEYS = {"api_server", "role", "kubeconfig_file", "namespaces", "selectors", "attach_metadata",
               "basic_auth", "authorization", "oauth2", "proxy_url", "no_proxy", "proxy_from_environment",
               "proxy_connect_header", "tls_config", "follow_redirects", "enable_http2"}
POD_META = re.compile(
    r"__meta_kubernetes_(namespace|pod_(name|ip|uid|phase|ready|node_name|host_ip|controller_kind|"
    r"controller_name|container_(init|name|id|image|port_name|port_number|port_protocol)|"
    r"(label|labelpresent|annotation|annotationpresent)_[a-zA-Z0-9_]+))$")


def sanitize(name):
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def cmd_prom_config(path, manifests, derive):
    problems = Problems()
    config = load_yaml_docs(path)[0]
    pods = []
    for m in manifests:
        for doc in load_yaml_docs(m):
            if doc.get("kind") == "Deployment":
                pods.append((f"{m}: Deployment {doc['metadata']['name']}", doc["spec"]["template"]))
    n_k8s = 0
    for job in config.get("scrape_configs", []):
        sds = job.get("kubernetes_sd_configs")
        if not sds:
            continue
        n_k8s += 1
        where = f"{path}: job {job.get('job_name')}"
        for sd in sds:
            for key in set(sd) - K8S_SD_KEYS:
                problems.add(where, f"kubernetes_sd_configs: unknown key {key}")
            if sd.get("role") != "pod":
                problems.add(where, f"kubernetes_sd_configs: role {sd.get('role')!r}: this job's relabelling expects pod")
        used_annotations = {}
        for rc in job.get("relabel_configs", []):
            for label in rc.get("source_labels", []):
                if label.startswith("__meta_kubernetes_") and not POD_META.match(label):
                    problems.add(where, f"{label} is not a meta label of the pod role")
                m = re.match(r"__meta_kubernetes_pod_annotation_(\w+)$", label)
                if m:
                    used_annotations[m.group(1)] = rc
            try:
                re.compile(rc.get("regex", "(.*)"))
            except re.error as e:
                problems.add(where, f"regex {rc.get('regex')!r}: {e}")
        # The annotations the job keys on must be on the pods deploy/k8s renders, and the port
        # annotation must name keel's admin (metrics) port.
        for name, template in pods:
            ann = {sanitize(k): v for k, v in (template.get("metadata", {}).get("annotations") or {}).items()}
            for a in ("prometheus_io_scrape", "prometheus_io_port", "prometheus_io_path"):
                if a in used_annotations and a not in ann:
                    problems.add(name, f"pod template lacks the annotation the scrape job reads as {a}")
            if ann.get("prometheus_io_scrape") != "true":
                problems.add(name, "pod template is not annotated prometheus.io/scrape: \"true\"")
            ports = {str(p.get("containerPort")): p.get("name")
                     for c in template["spec"]["containers"] for p in c.get("ports", [])}
            if ann.get("prometheus_io_port") not in ports:
                problems.add(name, f"prometheus.io/port {ann.get('prometheus_io_port')} is not a container port ({sorted(ports)})")
            if ann.get("prometheus_io_path") not in (None, "/metrics"):
                problems.add(name, f"prometheus.io/path {ann.get('prometheus_io_path')} is not keel's /metrics")
    if derive:
        import yaml

        base = os.path.dirname(os.path.abspath(path))
        derived = dict(config)
        derived["rule_files"] = [os.path.join(base, r) for r in config.get("rule_files", [])]
        derived["scrape_configs"] = []
        for job in config.get("scrape_configs", []):
            job = dict(job)
            if job.pop("kubernetes_sd_configs", None) is not None:
                job["static_configs"] = [{"targets": ["127.0.0.1:9100"]}]  # stand-in, never scraped
            derived["scrape_configs"].append(job)
        with open(derive, "w", encoding="utf-8") as f:
            f.write(f"# Generated by deploy/tools/check_deploy.py from {path}: kubernetes_sd_configs\n"
                    "# replaced for a promtool built without Kubernetes discovery.\n")
            yaml.safe_dump(derived, f, sort_keys=False)
    return problems.finish(f"prometheus config: {n_k8s} kubernetes_sd job(s): role pod, valid meta labels, "
                           f"annotations present on {len(pods)} rendered pod template(s)")


# ---- rendered Kubernetes manifests ----------------------------------------------------------

def check_env_names(names, where, problems):
    try:
        known = keel_env()
    except (OSError, ValueError) as e:
        problems.add(where, f"cannot check KEEL_* variables: {e}")
        return
    for name in names:
        if name.startswith("KEEL_") and name not in known and name[:-5] not in known:
            problems.add(where, f"{name}: not a keel setting (keel exits 78 on unknown KEEL_* variables)")
        if name.startswith("APP_") and name not in DEMO_ENV and name[:-5] not in DEMO_ENV:
            problems.add(where, f"{name}: not a keel-demo setting (keel ignores it with a warning)")
        if name in SECRET_SETTINGS_ENV:
            problems.add(where, f"{name}: a secret passed as a value; use {name}_FILE and a mounted secret")


def _mount_of(container, path):
    """The volume mount whose directory holds path (the deepest one), or None."""
    best = None
    for m in container.get("volumeMounts", []):
        if path.startswith(m["mountPath"].rstrip("/") + "/") and (best is None or len(m["mountPath"]) > len(best["mountPath"])):
            best = m
    return best


def check_tls_file(where, var, path, pod, container, problems):
    """A file keel watches for rotation (certificate, key, CA bundle): in a Secret volume mounted
    read-only, as a directory (no subPath: the kubelet never updates a subPath mount)."""
    for m in container.get("volumeMounts", []):
        if m["mountPath"].rstrip("/") == path.rstrip("/"):
            if m.get("subPath") or m.get("subPathExpr"):
                problems.add(where, f"{var}={path} is a subPath mount of volume {m['name']}: subPath mounts never receive "
                                    "Secret updates, so a renewed certificate would be served only after a restart; mount the directory")
            else:
                problems.add(where, f"{var}={path} is a mount point, not a file inside a mounted Secret volume")
            return
    mount = _mount_of(container, path)
    if mount is None:
        problems.add(where, f"{var}={path} is not inside a mounted volume")
        return
    volume = next((v for v in pod.get("volumes", []) if v["name"] == mount["name"]), {})
    secret = volume.get("secret")
    if secret is None:
        problems.add(where, f"{var}={path} is on volume {mount['name']}, which is not a Secret volume")
        return
    if not mount.get("readOnly"):
        problems.add(where, f"{var}={path}: volume {mount['name']} must be mounted readOnly")
    if mount.get("subPath") or mount.get("subPathExpr"):
        problems.add(where, f"{var}={path}: volume {mount['name']} is mounted with subPath, which never receives Secret updates")
    key = os.path.relpath(path, mount["mountPath"])
    items = secret.get("items")
    if items and key not in [i["path"] for i in items]:
        problems.add(where, f"{var}={path}: Secret volume {mount['name']} projects no item with path {key}")
    elif not items and "/" in key:
        problems.add(where, f"{var}={path}: a Secret volume without items has no subdirectories ({key})")
    if secret.get("optional"):
        problems.add(where, f"{var}={path}: Secret {secret.get('secretName')} is optional; without it keel cannot start "
                            "(TLS needs certfile and keyfile): let the pod wait for the Secret instead")


def check_tls(where, pod, container, env, problems):
    """TLS of the --bind listeners (KEEL_CERTFILE/KEEL_KEYFILE): True when it is on."""
    certfile, keyfile = env.get("KEEL_CERTFILE"), env.get("KEEL_KEYFILE")
    if not certfile and not keyfile:
        for var in ("KEEL_KEYFILE_PASSWORD_FILE", "KEEL_CA_CERTS", "KEEL_CERT_REQS", "KEEL_TLS_CERTIFICATES"):
            if env.get(var):
                problems.add(where, f"{var} is set without KEEL_CERTFILE/KEEL_KEYFILE: the listeners do not speak TLS")
        return False
    if not (certfile and keyfile):
        problems.add(where, "TLS needs both KEEL_CERTFILE and KEEL_KEYFILE (keel refuses to start with only one)")
    for var in ("KEEL_CERTFILE", "KEEL_KEYFILE", "KEEL_KEYFILE_PASSWORD_FILE", "KEEL_CA_CERTS"):
        if env.get(var):
            check_tls_file(where, var, env[var], pod, container, problems)
    return True


def check_probe_schemes(where, container, env, ports, tls, problems):
    """Probes on the traffic port speak what it speaks (HTTPS with TLS: keel answers plain HTTP
    there with a 400); the admin listener (KEEL_METRICS_BIND) is plain HTTP whatever TLS does."""
    def bind_port(var):
        m = re.search(r":(\d+)$", str(env.get(var, "")).split(",")[0].strip())
        return int(m.group(1)) if m else None

    traffic, admin = bind_port("KEEL_BIND"), bind_port("KEEL_METRICS_BIND")
    for kind in HEALTH_PATHS:
        get = (container.get(f"{kind}Probe") or {}).get("httpGet")
        if not get:
            continue
        port = ports.get(get.get("port"), get.get("port"))
        scheme = get.get("scheme", "HTTP")
        if port == admin and scheme != "HTTP":
            problems.add(where, f"{kind}Probe: scheme {scheme} on the admin port {port}: the admin listener is plain HTTP")
        elif port == traffic and tls and scheme != "HTTPS":
            problems.add(where, f"{kind}Probe: scheme {scheme} on the TLS port {port}: keel answers plain HTTP there with 400; use scheme: HTTPS")
        elif port == traffic and not tls and scheme != "HTTP":
            problems.add(where, f"{kind}Probe: scheme {scheme} on port {port}, which speaks plain HTTP (no KEEL_CERTFILE)")
        if port == traffic and tls and str(env.get("KEEL_CERT_REQS", "none")) in ("required", "2"):
            problems.add(where, f"{kind}Probe on the TLS port with KEEL_CERT_REQS=required: the kubelet presents no client "
                                "certificate; probe the admin port")


def check_rollout(path, name, ro, deployments, services, hpas, problems):
    """An Argo Rollout (canary) of a rendered Deployment: what the API server cannot know."""
    where = f"{path}: Rollout {name}"
    spec = ro.get("spec", {})
    ref = spec.get("workloadRef")
    if ref:
        if "template" in spec:
            problems.add(where, "has both workloadRef and template")
        if (ref.get("apiVersion"), ref.get("kind")) != ("apps/v1", "Deployment") or ref.get("name") not in deployments:
            problems.add(where, f"workloadRef {ref} is not a rendered Deployment")
            return
        dep = deployments[ref["name"]]
        template = dep["spec"]["template"]
        # The Deployment only holds the template: Argo must scale it to 0, and nothing may set it back.
        if ref.get("scaleDown") not in ("onsuccess", "progressively") and dep["spec"].get("replicas") != 0:
            problems.add(where, f"workloadRef.scaleDown {ref.get('scaleDown')!r}: the Deployment {ref['name']} would keep "
                                "its own pods running beside the Rollout's (use onsuccess or progressively, or replicas 0)")
        if dep["spec"].get("replicas") not in (None, 0):
            problems.add(f"{path}: Deployment {ref['name']}", "sets replicas although a Rollout replaces it (every apply brings its pods back)")
        for hname, hpa in hpas.items():
            t = hpa["spec"]["scaleTargetRef"]
            if t.get("kind") == "Deployment" and t.get("name") == ref["name"]:
                problems.add(f"{path}: HorizontalPodAutoscaler {hname}", f"scales Deployment {ref['name']}, which Rollout {name} replaces: target the Rollout")
    else:
        template = spec.get("template")
        if not template:
            problems.add(where, "neither workloadRef nor template")
            return
    labels = template.get("metadata", {}).get("labels", {})
    selector = spec.get("selector", {}).get("matchLabels", {})
    if not selector or not selects(selector, labels):
        problems.add(where, f"selector {selector} does not select the pod template's labels {labels}")
    canary = spec.get("strategy", {}).get("canary")
    if canary is None:
        problems.add(where, "not a canary Rollout (strategy.canary)")
        return
    pod_labels = {}
    for role in ("stable", "canary"):
        extra = (canary.get(f"{role}Metadata") or {}).get("labels", {})
        for k in set(extra) & set(selector):
            problems.add(where, f"{role}Metadata relabels {k}, a key of the Rollout's selector")
        pod_labels[role] = {**labels, **extra}
    svc_names = [canary.get("stableService"), canary.get("canaryService")]
    if all(svc_names) and svc_names[0] == svc_names[1]:
        problems.add(where, "stableService and canaryService must differ")
    for role, svc in zip(("stable", "canary"), svc_names):
        if not svc:
            continue
        if svc not in services:
            problems.add(where, f"{role}Service {svc} is not in the rendered output")
        elif not selects(services[svc]["spec"].get("selector", {}), pod_labels[role]):
            problems.add(where, f"{role}Service {svc} does not select the {role} pods {pod_labels[role]}")
    weights = [st["setWeight"] for st in canary.get("steps", []) if "setWeight" in st]
    if weights != sorted(set(weights)) or any(not 0 < w < 100 for w in weights):
        problems.add(where, f"setWeight steps {weights}: expected increasing weights between 0 and 100")


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def cmd_k8s(paths):
    problems = Problems()
    n_dep = n_rollouts = n_tls = 0
    for path in paths:
        docs = load_yaml_docs(path)
        by_kind = {}
        for d in docs:
            by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
        configmaps = by_kind.get("ConfigMap", {})
        deployments = by_kind.get("Deployment", {})
        traffic = {}  # Deployment -> (TLS on, traffic container port)
        for cm_name, cm in configmaps.items():
            check_env_names((cm.get("data") or {}).keys(), f"{path}: ConfigMap {cm_name}", problems)
        for name, dep in deployments.items():
            n_dep += 1
            where = f"{path}: Deployment {name}"
            pod = dep["spec"]["template"]["spec"]
            labels = dep["spec"]["template"]["metadata"].get("labels", {})
            if any(labels.get(k) != v for k, v in dep["spec"]["selector"]["matchLabels"].items()):
                problems.add(where, "selector does not match the pod template's labels")
            if pod.get("enableServiceLinks") is not False:
                problems.add(where, "enableServiceLinks must be false: service links inject KEEL_* variables keel rejects")
            env = {}
            for c in pod["containers"]:
                for ef in c.get("envFrom", []):
                    ref = ef.get("configMapRef", {}).get("name")
                    if ref not in configmaps:
                        problems.add(where, f"envFrom ConfigMap {ref} is not in the rendered output")
                    else:
                        env.update(configmaps[ref].get("data") or {})
                for e in c.get("env", []):
                    env[e["name"]] = e.get("value")
                check_env_names([e["name"] for e in c.get("env", [])], where, problems)
                ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
                for kind, path_ in HEALTH_PATHS.items():
                    probe = c.get(f"{kind}Probe")
                    if not probe:
                        problems.add(where, f"no {kind}Probe")
                    elif probe.get("httpGet", {}).get("path") != path_:
                        problems.add(where, f"{kind}Probe must GET {path_}")
                    elif probe["httpGet"].get("port") not in ports and probe["httpGet"].get("port") not in ports.values():
                        problems.add(where, f"{kind}Probe port {probe['httpGet'].get('port')} is not a container port")
                tls = check_tls(where, pod, c, env, problems)
                check_probe_schemes(where, c, env, ports, tls, problems)
                secret_file = env.get("SECRET_KEY_FILE")
                mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
                secret_volumes = {v["name"] for v in pod.get("volumes", []) if "secret" in v}
                if not secret_file:
                    problems.add(where, "SECRET_KEY_FILE is not set")
                elif not any(secret_file.startswith(mounts[v].rstrip("/") + "/") for v in secret_volumes if v in mounts):
                    problems.add(where, f"SECRET_KEY_FILE={secret_file} is not inside a mounted Secret volume")
                # The traffic port is named for what it speaks: "https" with TLS, else "http".
                traffic_name = "https" if tls else "http"
                wrong = [n for n in TRAFFIC_PORTS if n != traffic_name and n in ports]
                if wrong:
                    problems.add(where, f"container port '{wrong[0]}': the traffic listener speaks "
                                        f"{'TLS' if tls else 'plain HTTP'}, name it '{traffic_name}'")
                for key, port in (("KEEL_BIND", traffic_name), ("KEEL_METRICS_BIND", ADMIN_PORT)):
                    bind = env.get(key, "")
                    if not bind.endswith(f":{ports.get(port)}"):
                        problems.add(where, f"{key}={bind} does not listen on the container port '{port}' ({ports.get(port)})")
                traffic[name] = (tls, ports.get(traffic_name))
                n_tls += tls
            try:
                need = parse_duration(env.get("KEEL_SHUTDOWN_DELAY", 0)) + parse_duration(env.get("KEEL_GRACEFUL_TIMEOUT", "30s")) + 1
                if pod.get("terminationGracePeriodSeconds", 30) <= need:
                    problems.add(where, f"terminationGracePeriodSeconds {pod.get('terminationGracePeriodSeconds', 30)} <= shutdown delay + graceful timeout + 1 s = {need:g}")
            except ValueError as e:
                problems.add(where, str(e))
        for name, svc in by_kind.get("Service", {}).items():
            sel = svc["spec"].get("selector", {})
            matching = [d for d in deployments.values()
                        if all(d["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in sel.items())]
            if not matching:
                problems.add(f"{path}: Service {name}", f"selector {sel} matches no Deployment's pods")
            for p in svc["spec"]["ports"]:
                for d in matching:
                    cports = {cp.get("name"): cp["containerPort"] for c in d["spec"]["template"]["spec"]["containers"]
                              for cp in c.get("ports", [])}
                    if isinstance(p.get("targetPort"), str) and p["targetPort"] not in cports:
                        problems.add(f"{path}: Service {name}", f"targetPort {p['targetPort']} is not a port of {d['metadata']['name']}")
                    # Meshes, ingress controllers and Gateway implementations pick the protocol
                    # to the pods from appProtocol (or the port name's prefix).
                    tls, port = traffic.get(d["metadata"]["name"], (False, None))
                    if port is None or cports.get(p.get("targetPort"), p.get("targetPort")) != port:
                        continue
                    says_https = p.get("appProtocol") == "https" or str(p.get("name", "")).split("-")[0] == "https"
                    if tls and not (p.get("appProtocol") == "https" and says_https):
                        problems.add(f"{path}: Service {name}", f"port {p.get('name')} reaches {d['metadata']['name']}'s TLS "
                                     "listener: set appProtocol: https (and name it https)")
                    elif not tls and says_https:
                        problems.add(f"{path}: Service {name}", f"port {p.get('name')} says https, but "
                                     f"{d['metadata']['name']} serves plain HTTP (no KEEL_CERTFILE)")
        rollouts = by_kind.get("Rollout", {})
        n_rollouts += len(rollouts)
        for name, ro in rollouts.items():
            check_rollout(path, name, ro, deployments, by_kind.get("Service", {}), by_kind.get("HorizontalPodAutoscaler", {}), problems)
        targeted = {}
        scalable = {("apps/v1", "Deployment"): deployments, ("argoproj.io/v1alpha1", "Rollout"): rollouts}
        for name, hpa in by_kind.get("HorizontalPodAutoscaler", {}).items():
            ref = hpa["spec"]["scaleTargetRef"]
            kind = ref.get("kind")
            targets = scalable.get((ref.get("apiVersion"), kind), {})
            targeted.setdefault((kind, ref.get("name")), []).append(name)
            if ref.get("name") not in targets:
                problems.add(f"{path}: HorizontalPodAutoscaler {name}", f"scaleTargetRef {ref} is not a rendered Deployment or Rollout")
            elif ref.get("name") != name:
                # Each HPA is named like its Deployment; a mismatch is how kustomize's
                # name-reference fix-up pointing at a sibling Deployment shows.
                problems.add(f"{path}: HorizontalPodAutoscaler {name}", f"targets {kind} {ref.get('name')}, not its namesake")
            elif "replicas" in targets[ref["name"]]["spec"]:
                problems.add(f"{path}: {kind} {ref['name']}", "sets replicas although an HPA owns it (every apply resets the HPA's choice)")
        for (kind, target), hpas in targeted.items():
            if len(hpas) > 1:
                problems.add(f"{path}: {kind} {target}", f"scaled by several HPAs {hpas}: they would fight")
        for name, pdb in by_kind.get("PodDisruptionBudget", {}).items():
            sel = pdb["spec"]["selector"].get("matchLabels", {})
            if not any(all(d["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in sel.items())
                       for d in deployments.values()):
                problems.add(f"{path}: PodDisruptionBudget {name}", "selects no Deployment's pods")
    try:
        n_settings = len(keel_settings())
    except (OSError, ValueError):
        n_settings = "?"  # reported per variable by check_env_names
    return problems.finish(f"kubernetes consistency: {n_dep} Deployments ({n_tls} with TLS), {n_rollouts} Rollout(s) in "
                           f"{len(paths)} renderings: keel settings known ({n_settings} in src/app/server_settings.cpp), "
                           "secret as a file, TLS files in read-only Secret volumes without subPath, probes on keel's paths "
                           "and schemes, grace period, references resolve")


# ---- Argo Rollouts: the canary analysis against keel's own sources ---------------------------

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
# Stand-ins for the arguments the Rollout fills in at run time, in the derived recording rules
# (tests/deploy/argo_analysis.test.yml writes its input series with these).
ARG_STANDINS = {"namespace": "keel-demo", "canary-hash": "canary0", "stable-hash": "stable0"}
# The analysis arguments that carry `keel upgrade`'s thresholds: argument -> UpgradeRequest field.
UPGRADE_ARGS = {"max-error-ratio": "max_error_ratio", "max-error-ratio-delta": "max_error_ratio_delta",
                "max-p99-ratio": "max_p99_ratio", "p99-floor": "p99_floor", "min-requests": "min_requests"}
# Worker exit reasons keel does not count as crashes (supervisor_policy.cpp: `expected` exits).
EXPECTED_EXIT_REASONS = {"recycled", "scaled_down", "rolling_restart", "shutdown"}
_ARG_REF = re.compile(r"\{\{\s*args\.([A-Za-z0-9_.-]+)\s*\}\}")


def read_source(rel):
    with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
        return f.read()


_SETTINGS_CACHE = {}


def keel_settings(rel="src/app/server_settings.cpp"):
    """The names of keel's settings, from their registrations in server_settings.cpp: the builders
    duration/size/integer/boolean/text/list("name", ...), spec = {.name = "name"} and the
    std::tuple{"name", ...} lists. Raises ValueError when the expected ones are not all found."""
    if rel not in _SETTINGS_CACHE:
        text = read_source(rel)
        names = set(re.findall(r'\b(?:duration|size|integer|boolean|text|list)\(\s*"([a-z][a-z0-9_]*)"', text))
        names |= set(re.findall(r'\.name\s*=\s*"([a-z][a-z0-9_]*)"', text))
        names |= set(re.findall(r'std::tuple\{\s*"([a-z][a-z0-9_]*)"', text))
        missing = SETTINGS_EXPECTED - names
        if missing:
            raise ValueError(f"{rel}: cannot find the settings {sorted(missing)} (has the registration changed?)")
        _SETTINGS_CACHE[rel] = names
    return _SETTINGS_CACHE[rel]


def keel_env():
    return {"KEEL_" + s.upper() for s in keel_settings()} | KEEL_ENV_EXTRA


def check_metrics_table(problems, where="deploy/tools/check_deploy.py"):
    """KEEL_METRICS against keel's registrations: an entry keel does not export (or with other
    labels) is a problem; a metric keel exports that the table lacks is printed as a warning."""
    exported = keel_exported_metrics()
    for name, labels in KEEL_METRICS.items():
        if name not in exported:
            problems.add(where, f"KEEL_METRICS has {name}, which src/metrics/http_metrics.cpp does not register")
        elif exported[name] != labels:
            problems.add(where, f"KEEL_METRICS[{name}] = {sorted(labels)}, but keel exports {sorted(exported[name])}")
    for name in sorted(set(exported) - set(KEEL_METRICS)):
        print(f"warning: keel exports {name}, which KEEL_METRICS in {where} does not list "
              "(rules and dashboards cannot use it yet)")


def keel_exported_metrics(rel="src/metrics/http_metrics.cpp"):
    """Series name -> labels, from the registrations m.counter/gauge/histogram("name", "help", {labels})."""
    text = read_source(rel)
    out = {}
    reg = re.compile(r'\bm\.(counter|gauge|histogram)\(\s*"([A-Za-z_:][A-Za-z0-9_:]*)"\s*,\s*'
                     r'(?:"(?:[^"\\]|\\.)*"\s*)+(?:,\s*\{([^{}]*)\})?')
    for kind, name, labels in reg.findall(text):
        labelset = set(re.findall(r'"([A-Za-z_][A-Za-z0-9_]*)"', labels or ""))
        if kind == "histogram":
            out[name + "_bucket"] = labelset | {"le"}
            out[name + "_sum"] = set(labelset)
            out[name + "_count"] = set(labelset)
        else:
            out[name] = labelset
    return out


def keel_upgrade_defaults(rel="src/process/upgrade.hpp"):
    """UpgradeRequest's field defaults: name -> value (numbers as float, strings as str)."""
    text = read_source(rel)
    body = text[text.index("struct UpgradeRequest"):]
    body = body[:body.index("};")]
    out = {}
    for name, value in re.findall(r"^\s*[\w:<>]+\s+(\w+)\s*=\s*([^;]+);", body, re.M):
        value = value.strip()
        if value.startswith('"'):
            out[name] = value.strip('"')
        elif re.fullmatch(r"[0-9.eE+-]+", value):
            out[name] = float(value)
    return out


def keel_excluded_routes(rel="include/keel/app.hpp"):
    """The routes keel's upgrade analysis leaves out: the defaults of the health and metrics paths."""
    text = read_source(rel)
    out = {}
    for field in ("health_path", "readiness_path", "startup_path", "metrics_path"):
        m = re.search(rf'std::string\s+{field}\s*=\s*"([^"]*)"', text)
        if m:
            out[field] = m.group(1)
    return out


def keel_exit_reasons(rel="src/process/supervisor_policy.cpp"):
    text = read_source(rel)
    start = text.index("const char* reason_name(")
    body = text[start:text.index("\n}\n", start)]
    return set(re.findall(r'return "([a-z_]+)";', body))


def resolve_args(text, values):
    return _ARG_REF.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def _selectors(expr):
    """(metric name, {label: (op, value)}) of every selector of a PromQL expression."""
    # {{args.x}} hides as \x01x\x02 meanwhile: its braces are not a selector's.
    text = _ARG_REF.sub(lambda m: "\x01" + m.group(1) + "\x02", expr)
    out = []
    for m in _SELECTOR.finditer(text):
        matchers = {}
        for mm in re.finditer(r'([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"', m.group(2)):
            value = mm.group(3).replace("\x01", "{{args.").replace("\x02", "}}")
            matchers[mm.group(1)] = (mm.group(2), value)
        out.append((m.group(1) or "", matchers))
    return out


def check_analysis_template(path, name, at, exported, defaults, excluded, reasons, app, problems, rules):
    where = f"{path}: AnalysisTemplate {name}"
    spec = at.get("spec", {})
    args = {}
    for a in spec.get("args", []):
        if a["name"] in args:
            problems.add(where, f"argument {a['name']} declared twice")
        args[a["name"]] = a.get("value")
    # Thresholds: exactly keel upgrade's defaults.
    for arg, field in UPGRADE_ARGS.items():
        want = defaults.get(field)
        if arg not in args:
            problems.add(where, f"no argument {arg} (keel upgrade's {field} = {want})")
            continue
        try:
            have = float(args[arg])
            want_value = parse_duration(want) if isinstance(want, str) else want
        except (TypeError, ValueError) as e:
            problems.add(where, f"argument {arg}: {e}")
            continue
        if abs(have - want_value) > 1e-12:
            problems.add(where, f"argument {arg} = {args[arg]}, but keel upgrade's {field} defaults to {want} "
                                "(src/process/upgrade.hpp)")
    window = parse_duration(defaults.get("analysis_window", "60s"))
    excluded_paths = set(excluded.values())
    used_args = set()
    metrics = spec.get("metrics", [])
    if not metrics:
        problems.add(where, "no metrics")
    for metric in metrics:
        mwhere = f"{where}: metric {metric.get('name')}"
        prom = (metric.get("provider") or {}).get("prometheus")
        if prom is None:
            problems.add(mwhere, "not a Prometheus metric")
            continue
        query = prom.get("query", "")
        cond = metric.get("successCondition", "")
        refs = set(_ARG_REF.findall(query)) | set(_ARG_REF.findall(cond))
        used_args |= refs
        for r in sorted(refs - set(args)):
            problems.add(mwhere, f"{{{{args.{r}}}}} is not a declared argument")
        if not cond:
            problems.add(mwhere, "no successCondition")
        elif "result[0]" in cond and "len(result)" not in cond and not re.search(r"\bor\s+on\s*\(\s*\)\s*vector\(", query):
            problems.add(mwhere, "result[0] without len(result) == 0 || ... on a query that may return nothing "
                                 "(an empty result is a measurement error, not a verdict)")
        # keel: the first failing check rolls back.
        if str(metric.get("failureLimit", 0)) != "0":
            problems.add(mwhere, f"failureLimit {metric.get('failureLimit')}: keel rolls back on the first failed check (0)")
        # Timing: the measurements cover exactly one analysis window.
        count = int(str(metric.get("count", 0)) or 0)
        try:
            if count > 1:
                span = parse_duration(metric.get("interval", "0s")) * (count - 1) + parse_duration(metric.get("initialDelay", "0s"))
                if span != window:
                    problems.add(mwhere, f"interval x (count - 1) = {span:g} s, not keel's analysis window {window:g} s")
            elif count == 1:
                if parse_duration(metric.get("initialDelay", "0s")) != window:
                    problems.add(mwhere, f"a single measurement must come at the end of the {window:g} s window (initialDelay)")
            else:
                problems.add(mwhere, "no count: a step's analysis would never end")
        except ValueError as e:
            problems.add(mwhere, str(e))
        resolved = resolve_args(query, {**{k: v for k, v in args.items() if v is not None}, **ARG_STANDINS})
        check_promql(resolved, mwhere, problems, exported)
        for rng in re.findall(r"\[([^\[\]]+)\]", _STRING.sub('""', resolved)):
            try:
                if parse_duration(rng) != window:
                    problems.add(mwhere, f"range [{rng}] is not keel's analysis window ({defaults.get('analysis_window')})")
            except ValueError as e:
                problems.add(mwhere, str(e))
        for q in re.findall(r"histogram_quantile\(\s*([0-9.]+)", query):
            if float(q) != 0.99:
                problems.add(mwhere, f"histogram_quantile({q}): keel compares p99")
        for metric_name, matchers in _selectors(query):
            swhere = f"{mwhere}: {metric_name}"
            if matchers.get("namespace", ("", ""))[0] != "=" or matchers["namespace"][1] != "{{args.namespace}}":
                problems.add(swhere, 'selector without namespace="{{args.namespace}}"')
            if matchers.get("job") != ("=", app):
                problems.add(swhere, f'selector without job="{app}" (the scrape job names targets by app.kubernetes.io/name)')
            if metric_name.startswith(("http_requests_total", "http_request_duration_seconds")):
                op, regex = matchers.get("route", ("", ""))
                if op != "!~" or set(regex.split("|")) != excluded_paths:
                    problems.add(swhere, f"route must exclude exactly keel's {sorted(excluded_paths)} "
                                         f"(route!~\"{'|'.join(sorted(excluded_paths))}\"), got {op}\"{regex}\"")
            if metric_name.startswith(("http_requests_total", "http_request_duration_seconds", "keel_generation_info")):
                if matchers.get("version", ("", ""))[1] not in ("{{args.canary-hash}}", "{{args.stable-hash}}"):
                    problems.add(swhere, 'selector without version="{{args.canary-hash}}" or "{{args.stable-hash}}": '
                                         "canary and stable would be mixed")
            if "status" in matchers and matchers["status"] != ("=~", "5.."):
                problems.add(swhere, f'status {matchers["status"]}: keel counts 5xx as errors (status=~"5..")')
            if metric_name == "keel_worker_restarts_total":
                op, regex = matchers.get("reason", ("", ""))
                chosen = set(regex.split("|")) if op == "=~" else set()
                crash = reasons - EXPECTED_EXIT_REASONS
                if chosen != crash:
                    problems.add(swhere, f"reason must select exactly keel's unasked exits {sorted(crash)} "
                                         f"(src/process/supervisor_policy.cpp), got {sorted(chosen)}")
        rules.append({"record": sanitize(f"{name}:{metric['name']}").replace("__", "_"), "expr": resolved})
    for arg in sorted(set(args) - used_args):
        problems.add(where, f"argument {arg} is declared but never used")
    return args


def check_rollout_analysis(path, name, ro, templates, app_of, problems):
    """Each setWeight is analysed before the next; the arguments reach the template right."""
    where = f"{path}: Rollout {name}"
    steps = ro["spec"].get("strategy", {}).get("canary", {}).get("steps", [])
    pending = None
    n = 0
    for i, st in enumerate(steps):
        if "setWeight" in st:
            if pending is not None:
                problems.add(where, f"setWeight {pending} is never analysed (step {i} raises the weight first)")
            pending = st["setWeight"]
        analysis = st.get("analysis")
        if not analysis:
            continue
        n += 1
        pending = None
        passed = {}
        for a in analysis.get("args", []):
            vf = a.get("valueFrom") or {}
            if "podTemplateHashValue" in vf:
                passed[a["name"]] = ("hash", vf["podTemplateHashValue"])
            elif "fieldRef" in vf:
                passed[a["name"]] = ("field", vf["fieldRef"].get("fieldPath"))
            else:
                passed[a["name"]] = ("value", a.get("value"))
        want = {"canary-hash": ("hash", "Latest"), "stable-hash": ("hash", "Stable"),
                "namespace": ("field", "metadata.namespace")}
        for arg, value in want.items():
            if passed.get(arg) != value:
                problems.add(where, f"step {i}: argument {arg} must be {value[0]} {value[1]}, got {passed.get(arg)}")
        for t in analysis.get("templates", []):
            tname = t.get("templateName")
            if t.get("clusterScope"):
                continue
            if tname not in templates:
                problems.add(where, f"step {i}: AnalysisTemplate {tname} is not in the rendered output")
                continue
            missing = [a for a, v in templates[tname].items() if v is None and a not in passed]
            if missing:
                problems.add(where, f"step {i}: arguments {missing} of {tname} have no value")
    if pending is not None:
        problems.add(where, f"setWeight {pending} is never analysed before full promotion")
    if n == 0:
        problems.add(where, "no analysis step")
    return n


def check_version_label(path, ro, deployments, problems):
    """keel's `version` label must be the revision's pod-template hash (what the analysis selects)."""
    ref = ro["spec"].get("workloadRef")
    template = deployments[ref["name"]]["spec"]["template"] if ref and ref.get("name") in deployments else ro["spec"].get("template")
    if not template:
        return None
    for c in template["spec"]["containers"]:
        for e in c.get("env", []):
            if e["name"] == "KEEL_SERVICE_VERSION":
                field = ((e.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
                if field != "metadata.labels['rollouts-pod-template-hash']":
                    problems.add(f"{path}: Rollout {ro['metadata']['name']}",
                                 f"KEEL_SERVICE_VERSION must come from metadata.labels['rollouts-pod-template-hash'], "
                                 f"got {e.get('value') or field!r}: the analysis selects version = the pod-template hash")
                return template.get("metadata", {}).get("labels", {}).get("app.kubernetes.io/name")
    problems.add(f"{path}: Rollout {ro['metadata']['name']}", "the pod template does not set KEEL_SERVICE_VERSION "
                 "(keel's `version` label would be empty for canary and stable alike)")
    return template.get("metadata", {}).get("labels", {}).get("app.kubernetes.io/name")


def check_scrape_labels(prom_path, used_labels, problems):
    """The kubernetes_sd job must keep keel's own labels (a target label `version` would turn keel's
    into exported_version) and provide the target labels the analysis selects on."""
    config = load_yaml_docs(prom_path)[0]
    for job in config.get("scrape_configs", []):
        if not job.get("kubernetes_sd_configs"):
            continue
        where = f"{prom_path}: job {job.get('job_name')}"
        targets = {rc.get("target_label") for rc in job.get("relabel_configs", []) if rc.get("target_label")}
        for label in ("version", "route", "status", "method", "le", "reason", "generation"):
            if label in targets:
                problems.add(where, f"relabels a target label {label}: keel's own {label} would become exported_{label}")
        for label in used_labels:
            if label not in targets:
                problems.add(where, f"sets no target label {label}, which the analysis queries select on")
        if job.get("honor_labels"):
            problems.add(where, "honor_labels: true lets scraped labels override namespace/job/pod")
        job_rc = [rc for rc in job.get("relabel_configs", []) if rc.get("target_label") == "job"]
        if not any("__meta_kubernetes_pod_label_app_kubernetes_io_name" in rc.get("source_labels", []) for rc in job_rc):
            problems.add(where, "job is not taken from the pod label app.kubernetes.io/name")


def cmd_argo(paths, prom_path, derive_rules):
    problems = Problems()
    exported = keel_exported_metrics()
    defaults = keel_upgrade_defaults()
    excluded = keel_excluded_routes()
    reasons = keel_exit_reasons()
    for need in ("http_requests_total", "http_request_duration_seconds_bucket", "keel_generation_info"):
        if need not in exported:
            problems.add("src/metrics/http_metrics.cpp", f"{need} is not registered there any more")
    for field in list(UPGRADE_ARGS.values()) + ["analysis_window"]:
        if field not in defaults:
            problems.add("src/process/upgrade.hpp", f"UpgradeRequest has no default for {field}")
    if len(excluded) != 4:
        problems.add("include/keel/app.hpp", f"cannot read the default health/metrics paths ({excluded})")
    # The table the dashboard and rule checks use must agree with what keel exports.
    check_metrics_table(problems)
    rules, n_templates, n_steps, used_labels = [], 0, 0, set()
    for path in paths:
        by_kind = {}
        for d in load_yaml_docs(path):
            by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
        rollouts = by_kind.get("Rollout", {})
        if not rollouts:
            problems.add(path, "no Rollout rendered")
        deployments = by_kind.get("Deployment", {})
        template_args = {}
        apps = {check_version_label(path, ro, deployments, problems) for ro in rollouts.values()}
        apps.discard(None)
        app = apps.pop() if len(apps) == 1 else "keel-demo"
        for name, at in by_kind.get("AnalysisTemplate", {}).items():
            n_templates += 1
            template_args[name] = check_analysis_template(path, name, at, exported, defaults, excluded, reasons,
                                                          app, problems, rules)
            for metric in at["spec"].get("metrics", []):
                for _, matchers in _selectors((metric.get("provider", {}).get("prometheus") or {}).get("query", "")):
                    used_labels |= set(matchers) & TARGET_LABELS
        for name, ro in rollouts.items():
            n_steps += check_rollout_analysis(path, name, ro, template_args, app, problems)
    if prom_path:
        check_scrape_labels(prom_path, sorted(used_labels), problems)
    if derive_rules:
        import yaml

        with open(derive_rules, "w", encoding="utf-8") as f:
            f.write("# Generated by deploy/tools/check_deploy.py argo: the AnalysisTemplate queries as recording\n"
                    f"# rules, arguments resolved (defaults; run-time ones as {ARG_STANDINS}).\n")
            yaml.safe_dump({"groups": [{"name": "argo-analysis", "rules": rules}]}, f, sort_keys=False, width=1000)
    return problems.finish(
        f"argo rollouts: {n_templates} AnalysisTemplate(s), {len(rules)} queries, {n_steps} analysis steps: keel's metric "
        f"names and labels, routes {sorted(excluded.values())} excluded, thresholds = keel upgrade's defaults "
        f"(error ratio {defaults.get('max_error_ratio')} +{defaults.get('max_error_ratio_delta')}, p99 x{defaults.get('max_p99_ratio')}, "
        f"floor {defaults.get('p99_floor')}, {defaults.get('min_requests'):g} requests, window {defaults.get('analysis_window')})")


# ---- compose --------------------------------------------------------------------------------

def cmd_compose(path):
    problems = Problems()
    doc = load_yaml_docs(path)[0]
    base = os.path.dirname(os.path.abspath(path))
    services = doc.get("services", {})
    secrets = doc.get("secrets", {})
    volumes = doc.get("volumes", {}) or {}
    for name, svc in services.items():
        where = f"{path}: service {name}"
        for dep, spec in (svc.get("depends_on") or {}).items() if isinstance(svc.get("depends_on"), dict) else []:
            if dep not in services:
                problems.add(where, f"depends_on {dep}: no such service")
            elif spec.get("condition") == "service_healthy" and "healthcheck" not in services[dep]:
                problems.add(where, f"depends_on {dep} with service_healthy, but {dep} has no healthcheck")
        for s in svc.get("secrets", []):
            src = s["source"] if isinstance(s, dict) else s
            if src not in secrets:
                problems.add(where, f"secret {src} is not defined at the top level")
        for p in svc.get("ports", []):
            if not str(p).startswith("127.0.0.1:"):
                problems.add(where, f"port {p} is not bound to 127.0.0.1")
        for v in svc.get("volumes", []):
            src = str(v).split(":")[0]
            if src.startswith((".", "/")):
                if not os.path.exists(os.path.join(base, src)):
                    problems.add(where, f"mounted path {src} does not exist")
            elif src not in volumes:
                problems.add(where, f"named volume {src} is not declared")
        env = svc.get("environment") or {}
        if isinstance(env, list):
            env = dict(e.split("=", 1) if "=" in e else (e, None) for e in env)
        if name == "keel-demo":
            check_env_names(env.keys(), where, problems)
            # The image comes from another part of the repository: warn, do not fail.
            build = svc.get("build") or {}
            dockerfile = os.path.join(base, build.get("context", "."), build.get("dockerfile", "Dockerfile"))
            if not os.path.exists(dockerfile):
                print(f"warning: {where}: {os.path.relpath(dockerfile)} does not exist yet (the image cannot be built)")
            else:
                with open(dockerfile, encoding="utf-8") as f:
                    text = f.read()
                test = " ".join(map(str, (svc.get("healthcheck") or {}).get("test", [])))
                uses_binary = "keel-demo" in test and "healthcheck" in test
                if not uses_binary and not any(tool in test and re.search(rf"\b{tool}\b", text)
                                               for tool in ("curl", "wget")):
                    print(f"warning: {where}: the healthcheck needs curl or wget, which {os.path.relpath(dockerfile)} does not seem to install")
                if not re.search(r"^\s*USER\s+10001\b", text, re.M):
                    print(f"warning: {where}: {os.path.relpath(dockerfile)} does not set USER 10001 (compose and Kubernetes run it as 10001)")
            targets = {s["target"] if isinstance(s, dict) else s for s in svc.get("secrets", [])}
            secret_file = env.get("SECRET_KEY_FILE", "")
            if not secret_file.startswith("/run/secrets/") or secret_file[len("/run/secrets/"):] not in targets:
                problems.add(where, f"SECRET_KEY_FILE={secret_file} is not one of the service's secrets (/run/secrets/<target>)")
            if "healthcheck" not in svc:
                problems.add(where, "no healthcheck")
            try:
                need = parse_duration(env.get("KEEL_SHUTDOWN_DELAY", 0)) + parse_duration(env.get("KEEL_GRACEFUL_TIMEOUT", "30s")) + 1
                if parse_duration(svc.get("stop_grace_period", "10s")) <= need:
                    problems.add(where, f"stop_grace_period must exceed shutdown delay + graceful timeout + 1 s = {need:g}")
            except ValueError as e:
                problems.add(where, str(e))
        for arg in svc.get("command", []) if isinstance(svc.get("command"), list) else []:
            m = re.match(r"--config\.file=/etc/prometheus/(.+)", str(arg))
            if m and not os.path.exists(os.path.join(base, "..", "prometheus", m.group(1))):
                problems.add(where, f"prometheus config {m.group(1)} is not in deploy/prometheus")
    for name, s in secrets.items():
        f = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(s.get("file", "")))
        if not f:
            problems.add(f"{path}: secret {name}", "no file")
    return problems.finish(f"compose: {len(services)} services: secrets, healthchecks, keel settings, "
                           "loopback ports, mounted paths consistent")


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, args = argv[1], argv[2:]
    if cmd == "dashboard" and len(args) == 1:
        return cmd_dashboard(args[0])
    if cmd == "rules" and args:
        return cmd_rules(args)
    if cmd == "prom-config" and args:
        manifests, derive, i = [], None, 1
        while i < len(args):
            if args[i] == "--derive":
                derive = args[i + 1]
                i += 2
            elif args[i] == "--manifests":
                i += 1
                while i < len(args) and not args[i].startswith("--"):
                    manifests.append(args[i])
                    i += 1
            else:
                print(f"unexpected argument {args[i]}", file=sys.stderr)
                return 2
        return cmd_prom_config(args[0], manifests, derive)
    if cmd == "k8s" and args:
        return cmd_k8s(args)
    if cmd == "compose" and len(args) == 1:
        return cmd_compose(args[0])
    if cmd == "argo" and args:
        paths, prom, derive, i = [], None, None, 0
        while i < len(args):
            if args[i] in ("--prometheus", "--derive-rules") and i + 1 < len(args):
                if args[i] == "--prometheus":
                    prom = args[i + 1]
                else:
                    derive = args[i + 1]
                i += 2
            elif args[i].startswith("--"):
                print(f"unexpected argument {args[i]}", file=sys.stderr)
                return 2
            else:
                paths.append(args[i])
                i += 1
        if paths:
            return cmd_argo(paths, prom, derive)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
