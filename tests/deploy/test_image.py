"""The container image of deploy/docker (stdlib unittest).

Run:  cd tests/deploy && /usr/bin/python3 -m unittest -v test_image

- DockerfileTest: static checks of deploy/docker/Dockerfile and .dockerignore (always run, instant).
- BuildAndTestScript: runs deploy/docker/build-and-test.sh (podman build + run, no Docker daemon)
  and checks its result. Skipped, with the reason, unless podman is installed and works here and
  the test runs as root; it never installs anything itself: run the script once (as root) first,
  which installs the podman tool set and makes the local base image. With the base image, layer
  cache and build cache in place a run takes ~10 s; a source change recompiles what changed
  (-j2); the very first run takes ~5 min.
"""

import os
import re
import shutil
import subprocess
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DOCKERFILE = os.path.join(ROOT, "deploy", "docker", "Dockerfile")
SCRIPT = os.path.join(ROOT, "deploy", "docker", "build-and-test.sh")


def instructions(path):
    """(INSTRUCTION, arguments) pairs of a Dockerfile, continuation lines joined, comments dropped."""
    out, current = [], ""
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.rstrip("\n")
            if line.lstrip().startswith("#"):
                continue
            if line.endswith("\\"):
                current += line[:-1] + " "
                continue
            current += line
            if current.strip():
                word, _, rest = current.strip().partition(" ")
                out.append((word.upper(), rest.strip()))
            current = ""
    return out


class DockerfileTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.ins = instructions(DOCKERFILE)
        froms = [i for i, (k, _) in enumerate(cls.ins) if k == "FROM"]
        cls.runtime = cls.ins[froms[-1]:]  # the last stage is the image

    def args(self, kind, stage=None):
        return [a for k, a in (stage or self.ins) if k == kind]

    def test_base_image_argument(self):
        self.assertIn("BASE_IMAGE=debian:bookworm-slim", self.args("ARG"))
        self.assertEqual(self.args("FROM")[0], "${BASE_IMAGE} AS builder")

    def test_builder_builds_release_without_tests_or_benchmarks(self):
        run = " ".join(self.args("RUN"))
        # clang: GCC 12 miscompiles some co_await forms (the Dockerfile's builder comment).
        self.assertIn("cmake --preset clang-release", run)
        self.assertIn("-DKEEL_BUILD_TESTS=OFF", run)
        self.assertIn("-DKEEL_BUILD_BENCH=OFF", run)
        self.assertIn("--target keel-demo", run)
        self.assertIn("--no-install-recommends", run)
        for heavy in ("g++", "libgtest", "libgmock", "libbenchmark", "postgresql ", "redis-server"):
            self.assertNotIn(heavy, run)

    def test_builder_has_the_libraries_keel_links(self):
        # find_package(OpenSSL 3 REQUIRED) since TLS: libssl-dev by name, not through libpq-dev.
        run = " ".join(self.args("RUN"))
        for dev in ("libssl-dev", "libcurl4-openssl-dev", "libpq-dev", "libsqlite3-dev", "libhiredis-dev", "zlib1g-dev"):
            self.assertRegex(run, rf"(^|\s){re.escape(dev)}(\s|$)")
        # The runtime tree is the binary's ldd closure: libssl.so.3/libcrypto.so.3 come with it.
        self.assertIn('ldd "$bin"', run)

    def test_runtime_stage(self):
        self.assertEqual(self.runtime[0], ("FROM", "scratch"))
        self.assertEqual(self.args("USER", self.runtime), ["10001:10001"])
        self.assertEqual(self.args("STOPSIGNAL", self.runtime), ["SIGTERM"])
        self.assertEqual(self.args("ENTRYPOINT", self.runtime), ['["/usr/local/bin/keel-demo"]'])
        self.assertEqual(sorted(" ".join(self.args("EXPOSE", self.runtime)).split()), ["8000", "9100"])
        (health,) = self.args("HEALTHCHECK", self.runtime)
        self.assertTrue(health.endswith('CMD ["/usr/local/bin/keel-demo", "healthcheck"]'), health)
        env = " ".join(self.args("ENV", self.runtime))
        self.assertIn("KEEL_BIND=0.0.0.0:8000", env)
        self.assertIn("DATABASE_URL=sqlite:/data/keel-demo.db", env)

    def test_no_secret_in_the_image(self):
        text = " ".join(a for k, a in self.ins if k in ("ENV", "ARG", "LABEL"))
        self.assertNotRegex(text, r"SECRET")

    def test_dockerignore(self):
        with open(os.path.join(ROOT, ".dockerignore"), encoding="utf-8") as f:
            entries = {line.strip() for line in f if line.strip() and not line.startswith("#")}
        for needed in (".git", "build"):
            self.assertIn(needed, entries)
        # What the builder copies must stay in the context.
        for k, a in self.ins:
            if k == "COPY" and not a.startswith("--from"):
                for src in a.split()[:-1]:
                    self.assertNotIn(src.rstrip("/"), entries, f"COPY {src} is excluded by .dockerignore")


def podman_unusable():
    """Why the image test cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (rootful podman)"
    if shutil.which("podman") is None:
        return "podman is not installed: run deploy/docker/build-and-test.sh once as root (it installs it)"
    try:
        subprocess.run(["podman", "info"], check=True, capture_output=True, timeout=60)
    except (subprocess.SubprocessError, OSError) as e:
        return f"podman does not work here: {e}"
    return None


class BuildAndTestScript(unittest.TestCase):
    def test_build_and_run(self):
        reason = podman_unusable()
        if reason:
            self.skipTest(reason)
        proc = subprocess.run(["bash", SCRIPT], capture_output=True, text=True, timeout=3600)
        out = proc.stdout + proc.stderr
        self.assertEqual(proc.returncode, 0, out[-4000:])
        self.assertIn("build-and-test.sh: PASS", out)
        size = int(re.search(r"image \S+: (\d+) bytes", out).group(1))
        self.assertLessEqual(size, 30_000_000)
        for line in ("podman healthcheck run: healthy", '"event":"graceful_shutdown"', "exit code 0"):
            self.assertIn(line, out)


if __name__ == "__main__":
    unittest.main()
