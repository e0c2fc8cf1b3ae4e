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
  check_deploy.py k8s RENDERED.yaml...       keel settings in ConfigMaps/env, secret as a file,
                                             probes, grace period, selectors and references
  check_deploy.py compose FILE.yaml          secrets, healthchecks behind service_healthy, keel
                                             settings, loopback-only ports, mounted paths

Exit status 0 when everything holds, 1 with every problem on stderr, 2 on usage errors.
The YAML commands need PyYAML (Debian python3-yaml); the dashboard command only the stdlib.
"""

import json
import os
import re
import sys

# ---- what keel exposes (docs/metrics.md, docs/configuration.md) ---------------------------

# Metric name -> its own labels (target labels come on top). "to come": the logging/tracing work.
KEEL_METRICS = {
    "http_requests_total": {"method", "route", "status"},
    "http_requests_in_flight": set(),
    "http_requests_rejected_total": {"reason"},
    "http_connections_open": set(),
    "http_connections_accepted_total": set(),
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
    "keel_log_dropped_total": set(),  # to come
    "keel_spans_dropped_total": set(),  # to come
    "keel_generation_info": set(),  # to come
}
KEEL_HISTOGRAMS = {
    "http_request_duration_seconds": {"method", "route"},
    "http_request_size_bytes": {"method", "route"},
    "http_response_size_bytes": {"method", "route"},
    "keel_event_loop_lag_seconds": set(),
}
for _name, _labels in KEEL_HISTOGRAMS.items():
    KEEL_METRICS[_name + "_bucket"] = _labels | {"le"}
    KEEL_METRICS[_name + "_sum"] = set(_labels)
    KEEL_METRICS[_name + "_count"] = set(_labels)

# Labels the scrape configs of deploy/prometheus attach to every keel series.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "track", "slot", "node"}
# Series Prometheus itself writes per target, allowed in rules (not in the dashboard).
PROMETHEUS_SERIES = {"up": set()}

# keel's own settings: each is --x-y, file key x_y and env KEEL_X_Y; keel rejects any other KEEL_*.
KEEL_SETTINGS = {
    "bind", "unix_socket_mode", "workers", "backlog", "reuse_port", "keep_alive", "header_timeout",
    "body_timeout", "write_timeout", "graceful_timeout", "shutdown_delay", "timeout", "max_requests",
    "max_requests_jitter", "max_worker_lifetime", "max_worker_memory", "pid_file", "control_socket",
    "reload", "reload_extra_files", "limit_concurrency", "worker_connections", "limit_request_line",
    "limit_request_fields", "limit_request_field_size", "limit_request_header_size",
    "limit_request_body", "server_header", "threads", "thread_queue", "health_path",
    "readiness_path", "startup_path", "health_cache_ttl", "metrics_bind",
}
KEEL_ENV = {"KEEL_" + s.upper() for s in KEEL_SETTINGS} | {"KEEL_CONFIG", "KEEL_ENV_FILE"}
# keel-demo's settings (apps/demo/main.cpp): their own names, or the APP_ prefix.
DEMO_ENV = {"DATABASE_URL", "SECRET_KEY", "CACHE_URL", "APP_CACHE_TTL", "APP_FAULT_ERROR_RATIO",
            "APP_FAULT_LATENCY", "APP_FAULT_FAIL_STARTUP", "APP_FAULT_NEVER_READY"}
SECRET_SETTINGS_ENV = {"SECRET_KEY"}
HEALTH_PATHS = {"liveness": "/health", "readiness": "/health/ready", "startup": "/health/startup"}

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
    for name in names:
        if name.startswith("KEEL_") and name not in KEEL_ENV and name[:-5] not in KEEL_ENV:
            problems.add(where, f"{name}: not a keel setting (keel exits 78 on unknown KEEL_* variables)")
        if name.startswith("APP_") and name not in DEMO_ENV and name[:-5] not in DEMO_ENV:
            problems.add(where, f"{name}: not a keel-demo setting (unknown APP_* variables are errors)")
        if name in SECRET_SETTINGS_ENV:
            problems.add(where, f"{name}: a secret passed as a value; use {name}_FILE and a mounted secret")


def cmd_k8s(paths):
    problems = Problems()
    n_dep = 0
    for path in paths:
        docs = load_yaml_docs(path)
        by_kind = {}
        for d in docs:
            by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
        configmaps = by_kind.get("ConfigMap", {})
        deployments = by_kind.get("Deployment", {})
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
                secret_file = env.get("SECRET_KEY_FILE")
                mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
                secret_volumes = {v["name"] for v in pod.get("volumes", []) if "secret" in v}
                if not secret_file:
                    problems.add(where, "SECRET_KEY_FILE is not set")
                elif not any(secret_file.startswith(mounts[v].rstrip("/") + "/") for v in secret_volumes if v in mounts):
                    problems.add(where, f"SECRET_KEY_FILE={secret_file} is not inside a mounted Secret volume")
                for key, port in (("KEEL_BIND", "http"), ("KEEL_METRICS_BIND", "admin")):
                    bind = env.get(key, "")
                    if not bind.endswith(f":{ports.get(port)}"):
                        problems.add(where, f"{key}={bind} does not listen on the container port '{port}' ({ports.get(port)})")
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
                    names = {cp.get("name") for c in d["spec"]["template"]["spec"]["containers"] for cp in c.get("ports", [])}
                    if isinstance(p.get("targetPort"), str) and p["targetPort"] not in names:
                        problems.add(f"{path}: Service {name}", f"targetPort {p['targetPort']} is not a port of {d['metadata']['name']}")
        targeted = {}
        for name, hpa in by_kind.get("HorizontalPodAutoscaler", {}).items():
            ref = hpa["spec"]["scaleTargetRef"]
            targeted.setdefault(ref.get("name"), []).append(name)
            if ref.get("kind") != "Deployment" or ref.get("name") not in deployments:
                problems.add(f"{path}: HorizontalPodAutoscaler {name}", f"scaleTargetRef {ref} is not a rendered Deployment")
            elif ref.get("name") != name:
                # Each HPA is named like its Deployment; a mismatch is how kustomize's
                # name-reference fix-up pointing at a sibling Deployment shows.
                problems.add(f"{path}: HorizontalPodAutoscaler {name}", f"targets Deployment {ref.get('name')}, not its namesake")
            elif "replicas" in deployments[ref["name"]]["spec"]:
                problems.add(f"{path}: Deployment {ref['name']}", "sets replicas although an HPA owns it (every apply resets the HPA's choice)")
        for dep, hpas in targeted.items():
            if len(hpas) > 1:
                problems.add(f"{path}: Deployment {dep}", f"scaled by several HPAs {hpas}: they would fight")
        for name, pdb in by_kind.get("PodDisruptionBudget", {}).items():
            sel = pdb["spec"]["selector"].get("matchLabels", {})
            if not any(all(d["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in sel.items())
                       for d in deployments.values()):
                problems.add(f"{path}: PodDisruptionBudget {name}", "selects no Deployment's pods")
    return problems.finish(f"kubernetes consistency: {n_dep} Deployments in {len(paths)} renderings: keel settings known, "
                           "secret as a file, probes on keel's paths, grace period, references resolve")


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
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
