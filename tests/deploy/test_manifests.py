"""Checks of the rendered Kubernetes manifests of deploy/k8s (stdlib unittest, no cluster).

Run:  cd tests/deploy && /usr/bin/python3 -m unittest -v test_manifests
Needs `kubectl` (for `kubectl kustomize`; skipped without it). The rendered YAML is turned into
JSON by `kubectl patch --local` (no cluster, no kubeconfig), so no YAML library is needed.
"""

import json
import os
import re
import shutil
import subprocess
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
KUBECTL = shutil.which("kubectl")


def parse_duration(value):
    """keel's durations: 500ms, 30s, 5m, 1h, or a bare number of seconds."""
    text = str(value).strip()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", text)
    if not m:
        raise ValueError(f"not a keel duration: {value!r}")
    return float(m.group(1)) * {None: 1, "ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def render(overlay):
    """The objects `kubectl kustomize deploy/k8s/overlays/<overlay>` renders, as dicts
    (`deploy/k8s/<dir>` when overlay is "../<dir>", e.g. "../argo-rollouts")."""
    env = dict(os.environ, KUBECONFIG=os.devnull)
    rendered = subprocess.run([KUBECTL, "kustomize", os.path.normpath(os.path.join(ROOT, "deploy", "k8s", "overlays", overlay))],
                              check=True, capture_output=True, text=True, env=env).stdout
    as_json = subprocess.run([KUBECTL, "patch", "--local", "-f", "-", "--type", "merge", "-p", "{}", "-o", "json"],
                             input=rendered, check=True, capture_output=True, text=True, env=env).stdout
    decoder, objects, pos = json.JSONDecoder(), [], 0
    while pos < len(as_json):
        if as_json[pos].isspace():
            pos += 1
            continue
        obj, pos = decoder.raw_decode(as_json, pos)
        objects.extend(obj["items"] if obj.get("kind") == "List" else [obj])
    return objects


def of_kind(objects, kind):
    return [o for o in objects if o["kind"] == kind]


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


class DurationTest(unittest.TestCase):
    def test_units(self):
        self.assertEqual(parse_duration("500ms"), 0.5)
        self.assertEqual(parse_duration("30s"), 30)
        self.assertEqual(parse_duration("5m"), 300)
        self.assertEqual(parse_duration("1h"), 3600)
        self.assertEqual(parse_duration("45"), 45)
        self.assertEqual(parse_duration(7), 7)
        for bad in ("", "5 s", "s", "1m30s", "-1s", "soon"):
            with self.assertRaises(ValueError, msg=bad):
                parse_duration(bad)


@unittest.skipIf(KUBECTL is None, "kubectl is not installed (deploy/validate.sh installs it)")
class RollingOverlayTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.objects = render("rolling")
        deployments = of_kind(cls.objects, "Deployment")
        assert len(deployments) == 1, [d["metadata"]["name"] for d in deployments]
        cls.deployment = deployments[0]
        cls.pod = cls.deployment["spec"]["template"]["spec"]
        cls.container = next(c for c in cls.pod["containers"] if c["name"] == "keel-demo")
        configmaps = {c["metadata"]["name"]: c for c in of_kind(cls.objects, "ConfigMap")}
        cls.env = {}
        for source in cls.container.get("envFrom", []):
            cls.env.update(configmaps[source["configMapRef"]["name"]]["data"])
        for var in cls.container.get("env", []):
            cls.env[var["name"]] = var.get("value")
        cls.ports = {p["name"]: p["containerPort"] for p in cls.container["ports"]}

    def port_number(self, port):
        return self.ports[port] if isinstance(port, str) else port

    def bind_port(self, variable):
        self.assertIn(variable, self.env)
        return int(self.env[variable].rsplit(":", 1)[1])

    def test_grace_period_covers_shutdown_delay_and_graceful_timeout(self):
        delay = parse_duration(self.env["KEEL_SHUTDOWN_DELAY"])
        graceful = parse_duration(self.env["KEEL_GRACEFUL_TIMEOUT"])
        self.assertGreater(delay, 0, "on Kubernetes the shutdown delay must cover endpoint propagation")
        self.assertGreaterEqual(self.pod["terminationGracePeriodSeconds"], delay + graceful + 5)

    def test_probes_use_keel_endpoints_on_the_listening_ports(self):
        http, admin = self.bind_port("KEEL_BIND"), self.bind_port("KEEL_METRICS_BIND")
        expected = {  # probe: (path, port keel serves it on)
            "startupProbe": ("/health/startup", http),
            "readinessProbe": ("/health/ready", http),  # the port the Service routes to
            "livenessProbe": ("/health", admin),  # not behind the traffic port's backlog
        }
        for probe, (path, port) in expected.items():
            with self.subTest(probe=probe):
                get = self.container[probe]["httpGet"]
                self.assertEqual(get["path"], path)
                self.assertEqual(self.port_number(get["port"]), port)
        self.assertEqual(self.ports["http"], http)
        self.assertEqual(self.ports["admin"], admin)
        # Liveness must leave keel's own supervision (--timeout, default 30 s) time to act first.
        live = self.container["livenessProbe"]
        self.assertGreater(live["periodSeconds"] * live["failureThreshold"],
                           parse_duration(self.env.get("KEEL_TIMEOUT", "30s")))

    def test_security_context(self):
        merged = dict(self.pod.get("securityContext", {}))
        merged.update(self.container.get("securityContext", {}))
        self.assertIs(merged.get("runAsNonRoot"), True)
        self.assertEqual(merged.get("runAsUser"), 10001)
        self.assertIs(merged.get("readOnlyRootFilesystem"), True)
        self.assertIs(merged.get("allowPrivilegeEscalation"), False)
        self.assertIn("ALL", merged.get("capabilities", {}).get("drop", []))
        self.assertEqual(merged.get("seccompProfile", {}).get("type"), "RuntimeDefault")
        self.assertFalse(merged.get("privileged", False))

    def test_secret_is_a_mounted_file_never_a_value(self):
        names = {v["name"] for v in self.container.get("env", [])} | set(self.env)
        self.assertNotIn("SECRET_KEY", names, "the key must come from a file")
        for var in self.container.get("env", []):
            self.assertNotIn("secretKeyRef", var.get("valueFrom", {}), f"{var['name']} reads a Secret into a variable")
        path = self.env["SECRET_KEY_FILE"]
        volumes = {v["name"]: v for v in self.pod["volumes"]}
        mount = next((m for m in self.container["volumeMounts"] if path.startswith(m["mountPath"].rstrip("/") + "/")), None)
        self.assertIsNotNone(mount, f"SECRET_KEY_FILE={path} is under no volume mount")
        self.assertTrue(mount.get("readOnly"))
        secret = volumes[mount["name"]].get("secret")
        self.assertIsNotNone(secret, f"{mount['name']} is not a Secret volume")
        key = os.path.relpath(path, mount["mountPath"])
        items = secret.get("items")
        if items:
            self.assertIn(key, [i["path"] for i in items])
        else:
            self.assertEqual(key, "secret_key")
        self.assertFalse(secret.get("optional", False), "a missing Secret must stop the pod, not start it keyless")

    def test_data_directory_is_writable_for_sqlite(self):
        url = self.env["DATABASE_URL"]
        if url.startswith("sqlite:"):
            directory = os.path.dirname(url[len("sqlite:"):])
            volumes = {v["name"]: v for v in self.pod["volumes"]}
            mount = next(m for m in self.container["volumeMounts"] if m["mountPath"] == directory)
            self.assertIn("emptyDir", volumes[mount["name"]])

    def test_no_service_links(self):
        # KEEL_DEMO_SERVICE_HOST & co. would be unknown KEEL_* variables: keel exits 78.
        self.assertIs(self.pod.get("enableServiceLinks"), False)

    def test_rolling_update_strategy(self):
        strategy = self.deployment["spec"]["strategy"]
        self.assertEqual(strategy["type"], "RollingUpdate")
        self.assertEqual(strategy["rollingUpdate"]["maxSurge"], 1)
        self.assertEqual(strategy["rollingUpdate"]["maxUnavailable"], 0)

    def test_prometheus_scrapes_the_admin_port(self):
        annotations = self.deployment["spec"]["template"]["metadata"]["annotations"]
        self.assertEqual(annotations["prometheus.io/scrape"], "true")
        self.assertEqual(int(annotations["prometheus.io/port"]), self.bind_port("KEEL_METRICS_BIND"))
        self.assertEqual(annotations["prometheus.io/path"], "/metrics")

    def test_service_routes_to_the_traffic_port(self):
        (service,) = of_kind(self.objects, "Service")
        labels = self.deployment["spec"]["template"]["metadata"]["labels"]
        self.assertTrue(selects(service["spec"]["selector"], labels))
        self.assertEqual([self.port_number(p["targetPort"]) for p in service["spec"]["ports"]], [self.ports["http"]])

    def test_pod_disruption_budget(self):
        (pdb,) = of_kind(self.objects, "PodDisruptionBudget")
        self.assertEqual(pdb["apiVersion"], "policy/v1")
        labels = self.deployment["spec"]["template"]["metadata"]["labels"]
        self.assertTrue(selects(pdb["spec"]["selector"]["matchLabels"], labels))
        self.assertTrue(pdb["spec"].get("maxUnavailable") == 1 or "minAvailable" in pdb["spec"])

    def test_horizontal_pod_autoscaler(self):
        (hpa,) = of_kind(self.objects, "HorizontalPodAutoscaler")
        self.assertEqual(hpa["apiVersion"], "autoscaling/v2")
        self.assertEqual(hpa["spec"]["scaleTargetRef"],
                         {"apiVersion": "apps/v1", "kind": "Deployment", "name": self.deployment["metadata"]["name"]})
        self.assertIn("cpu", [m["resource"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Resource"])
        self.assertGreaterEqual(hpa["spec"]["minReplicas"], 2, "one pod may be disrupted (PDB) while others serve")
        self.assertNotIn("replicas", self.deployment["spec"], "the HPA owns the replica count")
        self.assertIn("cpu", self.container["resources"]["requests"], "CPU utilisation is relative to the request")

    def test_workers_fit_the_cpu_limit(self):
        limit = self.container["resources"]["limits"]["cpu"]
        cores = float(limit[:-1]) / 1000 if limit.endswith("m") else float(limit)
        self.assertLessEqual(int(self.env["KEEL_WORKERS"]), max(1, round(cores)))


@unittest.skipIf(KUBECTL is None, "kubectl is not installed (deploy/validate.sh installs it)")
class ReleaseOverlaysTest(unittest.TestCase):
    def test_blue_green(self):
        objects = render("blue-green")
        deployments = {d["metadata"]["name"]: d for d in of_kind(objects, "Deployment")}
        self.assertEqual(set(deployments), {"keel-demo-blue", "keel-demo-green"})
        services = {s["metadata"]["name"]: s for s in of_kind(objects, "Service")}
        self.assertEqual(services["keel-demo"]["spec"]["selector"].get("slot"), "blue")
        self.assertEqual(services["keel-demo-preview"]["spec"]["selector"].get("slot"), "green")
        for slot in ("blue", "green"):
            dep = deployments[f"keel-demo-{slot}"]
            self.assertEqual(dep["spec"]["selector"]["matchLabels"].get("slot"), slot)
            live = selects(services["keel-demo"]["spec"]["selector"], dep["spec"]["template"]["metadata"]["labels"])
            self.assertEqual(live, slot == "blue")
        targets = sorted(h["spec"]["scaleTargetRef"]["name"] for h in of_kind(objects, "HorizontalPodAutoscaler"))
        self.assertEqual(targets, ["keel-demo-blue", "keel-demo-green"])

    def test_canary(self):
        objects = render("canary")
        deployments = {d["metadata"]["name"]: d for d in of_kind(objects, "Deployment")}
        self.assertEqual(set(deployments), {"keel-demo-stable", "keel-demo-canary"})
        canary, stable = deployments["keel-demo-canary"], deployments["keel-demo-stable"]
        self.assertEqual(canary["spec"]["replicas"], 1)
        self.assertEqual(canary["spec"]["template"]["metadata"]["labels"]["track"], "canary")
        self.assertEqual(stable["spec"]["template"]["metadata"]["labels"]["track"], "stable")
        (service,) = of_kind(objects, "Service")
        for dep in (canary, stable):  # one Service in front of both tracks
            self.assertTrue(selects(service["spec"]["selector"], dep["spec"]["template"]["metadata"]["labels"]))
        (hpa,) = of_kind(objects, "HorizontalPodAutoscaler")  # the canary keeps its single pod
        self.assertEqual(hpa["spec"]["scaleTargetRef"]["name"], "keel-demo-stable")
        self.assertEqual(hpa["spec"]["minReplicas"], 9)


@unittest.skipIf(KUBECTL is None, "kubectl is not installed (deploy/validate.sh installs it)")
class TlsOverlayTest(unittest.TestCase):
    """deploy/k8s/overlays/tls: overlays/rolling with the traffic listener speaking TLS."""

    MOUNT = "/etc/keel/tls"

    @classmethod
    def setUpClass(cls):
        cls.objects = render("tls")
        (cls.deployment,) = of_kind(cls.objects, "Deployment")
        cls.pod = cls.deployment["spec"]["template"]["spec"]
        cls.container = next(c for c in cls.pod["containers"] if c["name"] == "keel-demo")
        configmaps = {c["metadata"]["name"]: c for c in of_kind(cls.objects, "ConfigMap")}
        cls.env = {}
        for source in cls.container.get("envFrom", []):
            cls.env.update(configmaps[source["configMapRef"]["name"]]["data"])
        for var in cls.container.get("env", []):
            cls.env[var["name"]] = var.get("value")
        cls.ports = {p["name"]: p["containerPort"] for p in cls.container["ports"]}
        (cls.rolling,) = of_kind(render("rolling"), "Deployment")

    def bind_port(self, variable):
        return int(self.env[variable].rsplit(":", 1)[1])

    def test_certificate_and_key_are_keel_settings(self):
        with open(os.path.join(ROOT, "src", "app", "server_settings.cpp"), encoding="utf-8") as f:
            source = f.read()
        for setting in ("certfile", "keyfile"):
            self.assertRegex(source, rf'\btext\(\s*"{setting}"', f"keel has no setting {setting} (KEEL_{setting.upper()})")
        self.assertEqual(self.env["KEEL_CERTFILE"], f"{self.MOUNT}/tls.crt")
        self.assertEqual(self.env["KEEL_KEYFILE"], f"{self.MOUNT}/tls.key")

    def test_tls_secret_is_mounted_read_only_as_a_directory(self):
        volumes = {v["name"]: v for v in self.pod["volumes"]}
        for var in ("KEEL_CERTFILE", "KEEL_KEYFILE"):
            path = self.env[var]
            with self.subTest(var=var):
                # No mount may cover the file itself (a subPath mount never sees a renewal).
                for m in self.container["volumeMounts"]:
                    self.assertNotEqual(m["mountPath"].rstrip("/"), path, f"{path} is mounted on its own")
                    self.assertFalse(m.get("subPath") or m.get("subPathExpr"), f"{m['name']} uses subPath")
                mount = next(m for m in self.container["volumeMounts"] if path.startswith(m["mountPath"].rstrip("/") + "/"))
                self.assertEqual(mount["mountPath"], self.MOUNT)
                self.assertIs(mount.get("readOnly"), True)
                secret = volumes[mount["name"]].get("secret")
                self.assertIsNotNone(secret, f"{mount['name']} is not a Secret volume")
                self.assertEqual(secret["secretName"], "keel-demo-tls")
                self.assertFalse(secret.get("optional", False), "without the Secret the pod must wait, not start")
                key = os.path.relpath(path, mount["mountPath"])
                # The keys of a kubernetes.io/tls Secret, all projected (no items).
                self.assertIn(key, ("tls.crt", "tls.key"))
                self.assertNotIn("items", secret)
                # Readable by keel through the pod's fsGroup, by nobody else.
                self.assertEqual(secret.get("defaultMode"), 0o440)
        self.assertEqual(self.pod["securityContext"]["fsGroup"], self.pod["securityContext"]["runAsUser"])

    def test_probes_keep_working(self):
        traffic, admin = self.bind_port("KEEL_BIND"), self.bind_port("KEEL_METRICS_BIND")
        self.assertEqual(self.ports, {"https": traffic, "admin": admin})
        expected = {  # probe: (path, port, scheme): HTTPS on the TLS port, plain HTTP on the admin one
            "startupProbe": ("/health/startup", traffic, "HTTPS"),
            "readinessProbe": ("/health/ready", traffic, "HTTPS"),
            "livenessProbe": ("/health", admin, "HTTP"),
        }
        rolling = next(c for c in self.rolling["spec"]["template"]["spec"]["containers"] if c["name"] == "keel-demo")
        for probe, (path, port, scheme) in expected.items():
            with self.subTest(probe=probe):
                get = self.container[probe]["httpGet"]
                self.assertEqual(get["path"], path)
                self.assertEqual(self.ports.get(get["port"], get["port"]), port)
                self.assertEqual(get.get("scheme", "HTTP"), scheme)
                # Timing is the base's: only the port name and the scheme change.
                timing = {k: v for k, v in self.container[probe].items() if k != "httpGet"}
                self.assertEqual(timing, {k: v for k, v in rolling[probe].items() if k != "httpGet"})
        self.assertNotIn(self.env.get("KEEL_CERT_REQS"), ("required", "2"), "the kubelet has no client certificate")

    def test_service_speaks_https_to_the_tls_port(self):
        (service,) = of_kind(self.objects, "Service")
        self.assertTrue(selects(service["spec"]["selector"], self.deployment["spec"]["template"]["metadata"]["labels"]))
        (port,) = service["spec"]["ports"]
        self.assertEqual((port["name"], port.get("appProtocol"), port["port"]), ("https", "https", 443))
        self.assertEqual(self.ports.get(port["targetPort"], port["targetPort"]), self.bind_port("KEEL_BIND"))

    def test_prometheus_still_scrapes_the_plain_admin_port(self):
        annotations = self.deployment["spec"]["template"]["metadata"]["annotations"]
        self.assertEqual(int(annotations["prometheus.io/port"]), self.bind_port("KEEL_METRICS_BIND"))
        self.assertNotIn("prometheus.io/scheme", annotations)

    def test_nothing_else_differs_from_rolling(self):
        """The overlay is rolling + TLS: undo the TLS changes and the Deployments are equal."""
        tls = json.loads(json.dumps(self.deployment))
        spec = tls["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        spec["volumes"] = [v for v in spec["volumes"] if v["name"] != "tls"]
        container["volumeMounts"] = [m for m in container["volumeMounts"] if m["name"] != "tls"]
        for p in container["ports"]:
            if p["name"] == "https":
                p["name"] = "http"
        for probe in ("startupProbe", "readinessProbe"):
            container[probe]["httpGet"]["port"] = "http"
            del container[probe]["httpGet"]["scheme"]
        rolling = json.loads(json.dumps(self.rolling))
        for d in (tls, rolling):  # the ConfigMap's hash suffix differs: its content is tested above
            for source in d["spec"]["template"]["spec"]["containers"][0]["envFrom"]:
                source["configMapRef"]["name"] = "keel-demo-config"
        self.assertEqual(tls, rolling)


def upgrade_defaults():
    """keel upgrade's UpgradeRequest defaults (src/process/upgrade.hpp): name -> text of the value."""
    with open(os.path.join(ROOT, "src", "process", "upgrade.hpp"), encoding="utf-8") as f:
        text = f.read()
    body = text[text.index("struct UpgradeRequest"):]
    return {k: v.strip().strip('"') for k, v in re.findall(r"^\s*[\w:<>]+\s+(\w+)\s*=\s*([^;]+);", body[:body.index("};")], re.M)}


@unittest.skipIf(KUBECTL is None, "kubectl is not installed (deploy/validate.sh installs it)")
class ArgoRolloutsTest(unittest.TestCase):
    """deploy/k8s/argo-rollouts: keel upgrade's canary (--steps 10,25,50,100) as an Argo Rollout."""

    @classmethod
    def setUpClass(cls):
        cls.objects = render("../argo-rollouts")
        (cls.rollout,) = of_kind(cls.objects, "Rollout")
        (cls.template,) = of_kind(cls.objects, "AnalysisTemplate")
        cls.deployments = {d["metadata"]["name"]: d for d in of_kind(cls.objects, "Deployment")}
        cls.canary = cls.rollout["spec"]["strategy"]["canary"]

    def test_rollout_reuses_the_base_deployment_in_place(self):
        ref = self.rollout["spec"]["workloadRef"]
        self.assertEqual((ref["apiVersion"], ref["kind"]), ("apps/v1", "Deployment"))
        self.assertIn(ref["name"], self.deployments)
        self.assertNotIn("template", self.rollout["spec"])
        self.assertIn(ref.get("scaleDown"), ("onsuccess", "progressively"), "the Deployment's pods must go away")
        # Same name and selector as overlays/rolling's Deployment (immutable): applied over it in place.
        (rolling,) = of_kind(render("rolling"), "Deployment")
        dep = self.deployments[ref["name"]]
        self.assertEqual(dep["metadata"]["name"], rolling["metadata"]["name"])
        self.assertEqual(dep["spec"]["selector"], rolling["spec"]["selector"])
        self.assertNotIn("replicas", dep["spec"])
        labels = dep["spec"]["template"]["metadata"]["labels"]
        self.assertTrue(selects(self.rollout["spec"]["selector"]["matchLabels"], labels))
        self.assertNotIn("track", self.rollout["spec"]["selector"]["matchLabels"], "track is relabelled per role")

    def test_version_label_is_the_pod_template_hash(self):
        dep = self.deployments[self.rollout["spec"]["workloadRef"]["name"]]
        (container,) = dep["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e for e in container["env"]}
        self.assertEqual(env["KEEL_SERVICE_VERSION"]["valueFrom"]["fieldRef"]["fieldPath"],
                         "metadata.labels['rollouts-pod-template-hash']")

    def test_steps_mirror_upgrade_steps_10_25_50_each_analysed(self):
        steps = self.canary["steps"]
        self.assertEqual([s["setWeight"] for s in steps if "setWeight" in s], [10, 25, 50])
        kinds = [next(iter(s)) for s in steps]
        self.assertEqual(kinds, ["setWeight", "pause", "analysis"] * 3)
        for s in steps:
            if "analysis" in s:
                self.assertEqual([t["templateName"] for t in s["analysis"]["templates"]], [self.template["metadata"]["name"]])
                args = {a["name"]: a["valueFrom"] for a in s["analysis"]["args"]}
                self.assertEqual(args["canary-hash"], {"podTemplateHashValue": "Latest"})
                self.assertEqual(args["stable-hash"], {"podTemplateHashValue": "Stable"})
        self.assertIs(self.rollout["spec"].get("progressDeadlineAbort"), True, "a never-ready canary must abort")
        self.assertEqual(self.canary.get("maxUnavailable"), 0, "capacity never drops, as in the base Deployment")

    def test_services_and_track_labels(self):
        services = {s["metadata"]["name"]: s for s in of_kind(self.objects, "Service")}
        for role in ("stable", "canary"):
            svc = services[self.canary[f"{role}Service"]]
            self.assertEqual([p["targetPort"] for p in svc["spec"]["ports"]], ["http"])
            self.assertEqual(self.canary[f"{role}Metadata"]["labels"]["track"], role)
        self.assertNotEqual(self.canary["stableService"], self.canary["canaryService"])
        self.assertIn("keel-demo", services, "user traffic still goes through the Service keel-demo")

    def test_hpa_scales_the_rollout_with_enough_pods_for_10_percent(self):
        (hpa,) = of_kind(self.objects, "HorizontalPodAutoscaler")
        self.assertEqual(hpa["spec"]["scaleTargetRef"],
                         {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": self.rollout["metadata"]["name"]})
        self.assertNotIn("replicas", self.rollout["spec"])
        first = min(s["setWeight"] for s in self.canary["steps"] if "setWeight" in s)
        # Without traffic routing the weight is a share of pods: one canary pod must be <= first%.
        self.assertLessEqual(100 / hpa["spec"]["minReplicas"], first)

    def test_analysis_thresholds_are_upgrade_defaults(self):
        d = upgrade_defaults()
        args = {a["name"]: a.get("value") for a in self.template["spec"]["args"]}
        self.assertEqual(float(args["max-error-ratio"]), float(d["max_error_ratio"]))
        self.assertEqual(float(args["max-error-ratio-delta"]), float(d["max_error_ratio_delta"]))
        self.assertEqual(float(args["max-p99-ratio"]), float(d["max_p99_ratio"]))
        self.assertEqual(float(args["p99-floor"]), parse_duration(d["p99_floor"]))
        self.assertEqual(float(args["min-requests"]), float(d["min_requests"]))
        window = parse_duration(d["analysis_window"])
        metrics = {m["name"]: m for m in self.template["spec"]["metrics"]}
        self.assertEqual(set(metrics), {"error-ratio", "worker-crashes", "canary-requests", "p99-latency-ratio"})
        for m in metrics.values():
            self.assertEqual(m.get("failureLimit"), 0, m["name"])
            query = m["provider"]["prometheus"]["query"]
            for rng in re.findall(r"\[(\w+)\]", query):
                self.assertEqual(parse_duration(rng), window, m["name"])
            if m.get("count", 1) > 1:
                self.assertEqual(parse_duration(m["interval"]) * (m["count"] - 1), window, m["name"])
            else:
                self.assertEqual(parse_duration(m["initialDelay"]), window, m["name"])
        self.assertIn("{{args.max-error-ratio}}", metrics["error-ratio"]["successCondition"])
        self.assertIn("{{args.max-p99-ratio}}", metrics["p99-latency-ratio"]["successCondition"])
        self.assertIn("{{args.min-requests}}", metrics["canary-requests"]["successCondition"])

    def test_queries_separate_versions_and_skip_health_and_metrics_routes(self):
        for m in self.template["spec"]["metrics"]:
            query = m["provider"]["prometheus"]["query"]
            for selector in re.findall(r"(http_\w+)\{([^{}]*(?:\{\{[^}]*\}\}[^{}]*)*)\}", query):
                name, body = selector
                self.assertIn('route!~"/health|/health/ready|/health/startup|/metrics"', body, (m["name"], name))
                self.assertRegex(body, r'version="\{\{args\.(canary|stable)-hash\}\}"')


if __name__ == "__main__":
    unittest.main()
