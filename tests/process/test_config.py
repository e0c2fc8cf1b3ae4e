"""Configuration through the real binary: the five sources and their precedence, .env and
NAME_FILE secrets, `config` / `config --json` / `config --check`, every problem reported at once
with exit code 78, secrets never printed, and HUP re-reading the configuration in a running master
(new workers get the new values; an invalid file is rejected and the old configuration kept)."""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest
from pathlib import Path

import deps
import keelproc
from keelproc import KeelTestCase

SECRET = "hunter2-do-not-print"


def clean_env(**extra) -> dict:
    """The environment without any KEEL_/APP_ variable of the caller, plus extra."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEEL_", "APP_")) and
           k not in ("PORT", "WEB_CONCURRENCY")}
    env.update(extra)
    return env


class ConfigTest(KeelTestCase):
    def setUp(self):
        self.dir = Path(tempfile.mkdtemp(prefix="keel-config-"))
        self.addCleanup(shutil.rmtree, self.dir, True)

    def write(self, name: str, text: str) -> str:
        path = self.dir / name
        path.write_text(text)
        return str(path)

    def config_json(self, *flags, env=None) -> dict:
        rc, out, err = keelproc.run_cli(keelproc.testapp(), "config", "--json", *flags, env=env or clean_env(),
                                        cwd=self.dir)
        self.assertEqual(rc, 0, err)
        return {s["name"]: s for s in json.loads(out)["settings"]}

    # -- precedence ---------------------------------------------------------------------------

    def test_each_source_overrides_the_ones_below(self):
        config = self.write("keel.toml", "keep_alive = \"2s\"\nlimit_request_body = \"2KiB\"\nworkers = 3\n"
                                         "[app]\nmessage = \"from file\"\n")
        # The implicit ./.env: in the working directory, read without --env-file.
        self.write(".env", "# dev settings\nexport KEEL_LIMIT_REQUEST_BODY=3KiB\nKEEL_TESTAPP_MESSAGE=\"from \\\"dotenv\\\"\"\n")
        env = clean_env(KEEL_CONFIG=config, KEEL_TESTAPP_MESSAGE="from env", KEEL_WORKERS="2")
        settings = self.config_json("--workers", "1", env=env)
        self.assertEqual((settings["keep_alive"]["value"], settings["keep_alive"]["origin"]),
                         ("2s", f"{config}:1"))
        self.assertEqual((settings["limit_request_body"]["value"], settings["limit_request_body"]["origin"]),
                         ("3KiB", ".env:2"))
        self.assertEqual((settings["message"]["value"], settings["message"]["origin"]), ("from env", "env KEEL_TESTAPP_MESSAGE"))
        self.assertEqual((settings["workers"]["value"], settings["workers"]["origin"]), ("1", "flag --workers"))
        self.assertEqual(settings["backlog"]["origin"], "default")
        self.assertEqual(settings["message"]["file_key"], "app.message")

        # The running server uses exactly those values.
        server = self.start_server("--workers", "1", env=env, cwd=self.dir)
        opts = keelproc.get(server.port, "/options").json()
        self.assertEqual(opts["keep_alive_ms"], 2000)
        self.assertEqual(opts["limit_request_body"], 3072)
        self.assertEqual(keelproc.get(server.port, "/settings/message").text, "from env")
        env.pop("KEEL_TESTAPP_MESSAGE")
        server.stop()
        server = self.start_server("--workers", "1", env=env, cwd=self.dir)
        self.assertEqual(keelproc.get(server.port, "/settings/message").text, 'from "dotenv"')
        # The body limit from .env is enforced: 3 KiB + 1 is too large.
        resp = keelproc.get(server.port, "/", method="POST", body=b"x" * 3073)
        self.assertEqual(resp.status, 413)

    def test_conventional_variables(self):
        settings = self.config_json(env=clean_env(PORT="5123", WEB_CONCURRENCY="3"))
        self.assertEqual((settings["bind"]["value"], settings["bind"]["origin"]), ("0.0.0.0:5123", "env PORT"))
        self.assertEqual((settings["workers"]["value"], settings["workers"]["origin"]), ("3", "env WEB_CONCURRENCY"))
        settings = self.config_json(env=clean_env(PORT="5123", KEEL_BIND="127.0.0.1:7000"))
        self.assertEqual(settings["bind"]["value"], "127.0.0.1:7000")

    def test_bool_flags_have_a_negative_form(self):
        settings = self.config_json("--no-access-log", "--reuse-port")
        self.assertEqual((settings["access_log"]["value"], settings["access_log"]["origin"]),
                         ("false", "flag --access-log"))
        self.assertEqual(settings["reuse_port"]["value"], "true")
        rc, _, err = keelproc.run_cli(keelproc.testapp(), "--no-acess-log", env=clean_env())
        self.assertEqual(rc, 78)
        self.assertIn("did you mean --no-access-log?", err)

    def test_repeated_list_flags_and_file_arrays(self):
        config = self.write("keel.toml", 'bind = ["127.0.0.1:7001", "unix:/tmp/keel-x.sock"]\n')
        settings = self.config_json("--config", config)
        self.assertEqual(settings["bind"]["value"], "127.0.0.1:7001,unix:/tmp/keel-x.sock")
        settings = self.config_json("--config", config, "--bind", "127.0.0.1:1", "-b", "[::1]:2")
        self.assertEqual(settings["bind"]["value"], "127.0.0.1:1,[::1]:2")

    # -- secrets ------------------------------------------------------------------------------

    def test_file_secrets_are_used_and_never_printed(self):
        secret_file = self.write("token", SECRET + "\n")
        env = clean_env(KEEL_TESTAPP_API_TOKEN_FILE=secret_file)
        rc, out, err = keelproc.run_cli(keelproc.testapp(), "config", env=env, cwd=self.dir)
        self.assertEqual(rc, 0, err)
        self.assertNotIn(SECRET, out + err)
        self.assertRegex(out, r"api_token\s+= \*{8}\s+# env KEEL_TESTAPP_API_TOKEN_FILE \(" + str(secret_file))
        rc, out, err = keelproc.run_cli(keelproc.testapp(), "config", "--json", env=env, cwd=self.dir)
        self.assertNotIn(SECRET, out + err)
        self.assertEqual({s["name"]: s for s in json.loads(out)["settings"]}["api_token"]["value"], "********")
        server = self.start_server(env=env, cwd=self.dir)
        # The trailing newline of the file is not part of the value.
        self.assertEqual(keelproc.get(server.port, "/settings/api_token").text, str(len(SECRET)))
        server.stop()
        self.assertNotIn(SECRET, "\n".join(server.stdout_snapshot()) + server.stderr_text())

    def test_a_secret_set_twice_is_an_error_that_does_not_show_it(self):
        rc, out, err = keelproc.run_cli(keelproc.testapp(), "config", "--json",
                                        env=clean_env(KEEL_TESTAPP_API_TOKEN=SECRET, KEEL_TESTAPP_API_TOKEN_FILE="/nonexistent"),
                                        cwd=self.dir)
        self.assertEqual(rc, 78)
        self.assertIn("both KEEL_TESTAPP_API_TOKEN and KEEL_TESTAPP_API_TOKEN_FILE are set", err)
        self.assertNotIn(SECRET, out + err)

    def test_url_passwords_are_never_printed(self):
        # The OTLP endpoints are URL settings of type string: `config` and the logs showed them whole.
        dead = deps.free_port()  # no collector: export failures are logged too
        env = clean_env(OTEL_EXPORTER_OTLP_ENDPOINT=f"http://tenant:{SECRET}@127.0.0.1:{dead}",
                        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=f"http://tenant:{SECRET}@127.0.0.1:{dead}/v1/traces",
                        OTEL_BSP_SCHEDULE_DELAY="50")
        rc, out, err = keelproc.run_cli(keelproc.testapp(), "config", env=env, cwd=self.dir)
        self.assertEqual(rc, 0, err)
        self.assertNotIn(SECRET, out + err)
        self.assertRegex(out, r"otel_exporter_otlp_endpoint\s+= http://tenant:\*\*\*@127\.0\.0\.1:")
        settings = self.config_json(env=env)
        self.assertEqual(settings["otel_exporter_otlp_traces_endpoint"]["value"],
                         f"http://tenant:***@127.0.0.1:{dead}/v1/traces")
        server = self.start_server("--log-level", "debug", env=env, cwd=self.dir)
        for _ in range(3):
            keelproc.get(server.port, "/plaintext")
        server.stop()
        logs = "\n".join(server.stdout_snapshot()) + server.stderr_text()
        self.assertIn("listening", logs)
        self.assertNotIn(SECRET, logs)

    def test_malformed_percent_escapes_in_urls_are_rejected(self):
        # libpq and others echo a component with a bad escape, password and all, in their errors.
        rc, out, err = keelproc.run_cli(keelproc.testapp(), env=clean_env(
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://tenant:{SECRET}%zz@127.0.0.1:4318"), cwd=self.dir)
        self.assertEqual(rc, 78, err)
        self.assertIn("otel_exporter_otlp_endpoint (env OTEL_EXPORTER_OTLP_ENDPOINT)", err)
        self.assertIn("percent-escape", err)
        self.assertNotIn(SECRET, out + err)

    # -- .env sets settings only --------------------------------------------------------------

    def test_dotenv_cannot_set_hand_over_variables(self):
        # Any pid in a .env used to be sent SIGTERM once the workers served (KEEL_UPGRADE_FROM), and
        # KEEL_GENERATION made the service a never-promoted candidate.
        victim = subprocess.Popen(["sleep", "60"])
        self.addCleanup(victim.wait)
        self.addCleanup(victim.kill)
        self.write(".env", f"KEEL_UPGRADE_FROM={victim.pid}\nKEEL_GENERATION=5\nLD_PRELOAD=/nonexistent/evil.so\n"
                           "KEEL_KEEP_ALIVE=7s\n")
        ctl = str(self.dir / "ctl")
        server = self.start_server("--workers", "2", "--control-socket", ctl, env=clean_env(), cwd=self.dir)
        if server.wait_for_stdout(lambda e: e.get("event") == "workers_ready", timeout=10) is None:
            self.fail("no workers_ready log line\n" + server.output_tail())
        # The master answers its control socket in the loop that handled workers_ready: by now the
        # SIGTERM would have been sent.
        rc, out, err = keelproc.run_cli(keelproc.testapp(), "status", "--json", "--control-socket", ctl,
                                        env=clean_env())
        self.assertEqual(rc, 0, err)
        status = json.loads(out)
        self.assertEqual((status["generation"], status["role"]), (1, "primary"))
        self.assertIsNone(victim.poll(), "a pid named in .env was signalled")
        ignored = [e for e in map(keelproc.parse_log_line, server.stdout_snapshot())
                   if e and e.get("event") == "env_file_entry_ignored"]
        self.assertEqual([e["origin"] for e in ignored], [".env:1", ".env:2", ".env:3"], server.output_tail())
        self.assertIn("KEEL_UPGRADE_FROM is set only by a keel master", ignored[0]["reason"])
        self.assertIn("LD_PRELOAD is never taken from a .env file", ignored[2]["reason"])
        rc, _, err = keelproc.run_cli(keelproc.testapp(), "config", "--check", env=clean_env(), cwd=self.dir)
        self.assertEqual(rc, 0, err)
        self.assertIn("warning: (.env:3): LD_PRELOAD is never taken from a .env file; ignored", err)
        # A real setting in the same file still applies.
        settings = self.config_json(env=clean_env())
        self.assertEqual((settings["keep_alive"]["value"], settings["keep_alive"]["origin"]), ("7s", ".env:4"))

    # -- unknown variables, the app prefix, the harness and scripts (issue 14, point 15) -------

    def test_an_unknown_prefixed_variable_is_a_warning_with_a_suggestion(self):
        # APP_ENV is set by many platforms; keel-demo's settings use the APP_ prefix.
        server = keelproc.start(keelproc.demo(), "--log-format", "json",
                                env=clean_env(APP_ENV="production", KEEL_WORKRS="2", KEEL_TEST_PRESETS="debug"))
        self.addCleanup(server.stop)
        warnings = {}
        for name in ("APP_ENV", "KEEL_WORKRS", "KEEL_TEST_PRESETS"):
            event = server.wait_for_stdout(lambda e, n=name: e.get("event") == "unknown_variable" and
                                           e.get("variable") == n)
            self.assertIsNotNone(event, f"no unknown_variable warning for {name}\n" + server.output_tail())
            warnings[name] = event
        self.assertEqual(warnings["KEEL_WORKRS"]["level"], "warning")
        self.assertEqual(warnings["KEEL_WORKRS"]["did_you_mean"], "KEEL_WORKERS")
        self.assertEqual(warnings["KEEL_WORKRS"]["origin"], "env KEEL_WORKRS")
        self.assertEqual(keelproc.get(server.port, "/health").status, 200)
        # `config` says the same on stderr and still exits 0.
        rc, _, err = keelproc.run_cli(keelproc.testapp(), "config", env=clean_env(KEEL_WORKRS="2"))
        self.assertEqual(rc, 0, err)
        self.assertIn("warning: (env KEEL_WORKRS) unknown variable KEEL_WORKRS (did you mean KEEL_WORKERS?)", err)

    def test_strict_env_makes_an_unknown_variable_fatal(self):
        for flags, extra in ((["--strict-env"], {}), ([], {"KEEL_STRICT_ENV": "true"})):
            with self.subTest(flags=flags, env=extra):
                rc, out, err = keelproc.run_cli(keelproc.testapp(), *flags,
                                                env=clean_env(KEEL_WORKRS="2", **extra), cwd=self.dir)
                self.assertEqual(rc, 78, err)
                self.assertIn("(env KEEL_WORKRS): unknown variable KEEL_WORKRS (did you mean KEEL_WORKERS?)", err)
                self.assertEqual(out, "")

    def test_the_app_prefix_comes_from_the_program_name(self):
        # keel-testapp sets no prefix: KEEL_TESTAPP_; keel-demo keeps APP_ explicitly.
        settings = self.config_json(env=clean_env(KEEL_TESTAPP_MESSAGE="from env"))
        self.assertEqual(settings["message"]["env"], "KEEL_TESTAPP_MESSAGE")
        self.assertEqual(settings["message"]["value"], "from env")
        rc, out, err = keelproc.run_cli(keelproc.demo(), "config", "--json", env=clean_env(), cwd=self.dir)
        self.assertEqual(rc, 0, err)
        demo = {s["name"]: s for s in json.loads(out)["settings"]}
        self.assertEqual(demo["fault_latency"]["env"], "APP_FAULT_LATENCY")

    def test_the_harness_starts_servers_without_the_callers_keel_variables(self):
        # What `KEEL_TEST_PRESETS=debug scripts/test.sh` used to export into every server.
        for name, value in (("KEEL_TEST_PRESETS", "debug"), ("APP_ENV", "production"), ("KEEL_WORKERS", "7")):
            self.addCleanup(os.environ.pop, name, None)
            os.environ[name] = value
        server = keelproc.start(keelproc.testapp(), "--strict-env", env=dict(os.environ, KEEL_TESTAPP_MESSAGE="set"))
        self.addCleanup(server.stop)
        environ = Path(f"/proc/{server.pid}/environ").read_bytes().split(b"\0")
        names = {e.split(b"=", 1)[0].decode() for e in environ if e}
        self.assertFalse({"KEEL_TEST_PRESETS", "APP_ENV", "KEEL_WORKERS"} & names, sorted(names))
        self.assertIn("KEEL_TESTAPP_MESSAGE", names)  # what the test itself sets stays
        self.assertEqual(keelproc.get(server.port, "/settings/message").text, "set")

    def test_scripts_use_no_variable_keel_would_read(self):
        # A KEEL_* (or APP_*) knob of a script, exported, would be an unknown variable to every server.
        known = {"KEEL_CONFIG", "KEEL_ENV_FILE"}
        for binary in (keelproc.testapp(), keelproc.demo()):
            rc, out, err = keelproc.run_cli(binary, "config", "--json", env=clean_env(), cwd=self.dir)
            self.assertEqual(rc, 0, err)
            known |= {s["env"] for s in json.loads(out)["settings"]}
        root = Path(keelproc.REPO_ROOT)
        files = [root / ".ci" / "run", *sorted((root / "scripts").glob("*.sh")), *sorted((root / "bench").glob("*.sh")),
                 *sorted((root / "bench").glob("*.py"))]
        self.assertGreater(len(files), 5)
        import re
        found = {}
        for f in files:
            for name in re.findall(r"\b((?:KEEL|APP)_[A-Z0-9_]*[A-Z0-9])", f.read_text()):
                if name not in known and name.removesuffix("_FILE") not in known:
                    found.setdefault(name, f.relative_to(root).as_posix())
        self.assertEqual(found, {}, "script knobs keel would read as (unknown) configuration")

    # -- errors -------------------------------------------------------------------------------

    def test_every_problem_at_once_then_exit_78(self):
        config = self.write("keel.toml", "workers = 0\ngracefull_timeout = \"5s\"\n[app]\nmesage = \"x\"\n")
        self.write("bad.env", "GOOD=1\nthis line is not an assignment\nKEEL_BACKLOG=lots\n")
        env = clean_env(KEEL_GRACEFUL_TIMEOUT="soon", KEEL_WORKRS="2", KEEL_CONFIG=config)
        t0 = time.monotonic()
        rc, out, err = keelproc.run_cli(keelproc.testapp(), "--strict-env", "--env-file", str(self.dir / "bad.env"),
                                        "--keep-alive", "5q", "--bind", "127.0.0.1:99999", env=env, cwd=self.dir)
        self.assertEqual(rc, 78, err)
        self.assertLess(time.monotonic() - t0, 5)
        expected = [
            f"workers ({config}:1): expected an integer from 1 to 1024, got '0'",
            f"({config}:2): unknown key 'gracefull_timeout' (did you mean 'graceful_timeout'?)",
            f"({config}:4): unknown key 'app.mesage' (did you mean 'app.message'?)",
            "bad.env:2)",
            "backlog (" + str(self.dir / "bad.env") + ":3): expected an integer from 1 to 65535, got 'lots'",
            "graceful_timeout (env KEEL_GRACEFUL_TIMEOUT): expected a duration",
            "(env KEEL_WORKRS): unknown variable KEEL_WORKRS (did you mean KEEL_WORKERS?)",
            "keep_alive (flag --keep-alive): expected a duration",
            "bind (flag --bind): invalid bind address '127.0.0.1:99999'",
        ]
        for e in expected:
            self.assertIn(e, err)
        self.assertIn(f"invalid configuration ({len(expected)} problems)", err)
        self.assertEqual(out, "")  # nothing started, nothing logged

    def test_unknown_flag_suggests_the_right_one(self):
        rc, _, err = keelproc.run_cli(keelproc.testapp(), "--graceful-timout", "3s", env=clean_env())
        self.assertEqual(rc, 78)
        self.assertIn("unknown flag --graceful-timout (did you mean --graceful-timeout?)", err)

    def test_a_subcommands_unknown_flag_is_named_with_the_subcommand(self):
        # --strategy is upgrade's own flag: only --pid is unknown, and upgrade finds the master by
        # its control socket.
        rc, out, err = keelproc.run_cli(keelproc.demo(), "upgrade", "--pid", "/tmp/keel.pid", "--strategy", "canary",
                                        env=clean_env())
        self.assertEqual(rc, 78, err)
        self.assertEqual(err.strip().splitlines()[-1].split(": error: ", 1)[1],
                         "upgrade: unknown flag --pid (did you mean --control-socket?)")
        rc, _, err = keelproc.run_cli(keelproc.testapp(), "status", "--json", "--contrl-socket", "/tmp/x",
                                      env=clean_env())
        self.assertEqual(rc, 78, err)
        self.assertIn("status: unknown flag --contrl-socket (did you mean --control-socket?)", err)
        self.assertNotIn("--json", err)
        # Flags before the subcommand are still the application's.
        rc, _, err = keelproc.run_cli(keelproc.testapp(), "--wrkers", "2", "config", env=clean_env())
        self.assertEqual(rc, 78, err)
        self.assertIn("unknown flag --wrkers (did you mean --workers?)", err)
        self.assertNotIn("config:", err)

    def test_missing_named_files_are_errors(self):
        rc, _, err = keelproc.run_cli(keelproc.testapp(), "config", "--check", "--config", "/nonexistent/keel.toml",
                                      "--env-file", "/nonexistent/.env", env=clean_env())
        self.assertEqual(rc, 78)
        self.assertIn("cannot read /nonexistent/keel.toml", err)
        self.assertIn("cannot read /nonexistent/.env", err)

    def test_a_file_key_defined_twice_names_both_lines(self):
        # toml++ lets a dotted key and a quoted key with a dot both through; they name the same
        # setting, and neither may win silently.
        config = self.write("keel.toml", "[app]\ngreeting.x = 1\n\"greeting.x\" = 2\n")
        rc, _, err = keelproc.run_cli(keelproc.testapp(), "config", "--check", "--config", config, env=clean_env())
        self.assertEqual(rc, 78)
        self.assertIn(f"({config}:3): key 'app.greeting.x' is defined twice (lines 2 and 3)", err)

    def test_check_validates_and_exits(self):
        config = self.write("keel.toml", "threads = 8\n")
        rc, out, err = keelproc.run_cli(keelproc.testapp(), "config", "--check", "--config", config, env=clean_env())
        self.assertEqual(rc, 0, err)
        self.assertIn("configuration ok", out)
        self.assertIn(config, out)

    # -- HUP reload ---------------------------------------------------------------------------

    def wait_event(self, server, name, timeout=10.0):
        event = server.wait_for_stdout(lambda e: e.get("event") == name, timeout=timeout)
        if event is None:
            self.fail(f"no {name} log line\n" + server.output_tail(40))
        return event

    def test_hup_rereads_the_file_and_rolls_the_workers(self):
        config = self.write("keel.toml", "workers = 2\nkeep_alive = \"3s\"\n[app]\nmessage = \"one\"\n")
        server = self.start_server("--config", config, env=clean_env(), pin_workers=False)
        self.wait_event(server, "workers_ready")
        self.assertEqual(keelproc.get(server.port, "/settings/message").text, "one")
        old = set(keelproc.child_pids(server.pid))
        self.assertEqual(len(old), 2)

        # A valid change: new values for every new worker, one more worker, and a listener change
        # that needs a restart (kept, with a warning).
        self.write("keel.toml", "workers = 3\nkeep_alive = \"7s\"\nbacklog = 100\n[app]\nmessage = \"two\"\n")
        server.send_signal(signal.SIGHUP)
        reloaded = self.wait_event(server, "config_reloaded")
        self.assertIn("keep_alive", reloaded["changed"])
        self.assertIn("message", reloaded["changed"])
        self.assertIn("workers", reloaded["changed"])
        self.assertEqual(self.wait_event(server, "config_needs_restart")["settings"], "backlog")
        self.wait_event(server, "rolling_restart_done", timeout=20)
        deadline = time.monotonic() + 10
        while len(keelproc.child_pids(server.pid)) != 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        pids = set(keelproc.child_pids(server.pid))
        self.assertEqual(len(pids), 3)
        self.assertFalse(pids & old, "every worker was replaced")
        for _ in range(12):  # every worker answers with the new configuration
            self.assertEqual(keelproc.get(server.port, "/settings/message").text, "two")
            opts = keelproc.get(server.port, "/options").json()
            self.assertEqual(opts["keep_alive_ms"], 7000)
            self.assertEqual(opts["bind"], ["127.0.0.1:0"])

        # An invalid change: rejected with every problem named, the running configuration kept.
        self.write("keel.toml", "workers = 3\nkeep_alive = \"soon\"\nthreds = 2\n[app]\nmessage = \"three\"\n")
        server.send_signal(signal.SIGHUP)
        rejected = self.wait_event(server, "config_reload_rejected")
        self.assertIn(f"keep_alive ({config}:2): expected a duration", rejected["errors"])
        self.assertIn("unknown key 'threds' (did you mean 'threads'?)", rejected["errors"])
        self.wait_event(server, "rolling_restart_done", timeout=20)
        for _ in range(6):
            self.assertEqual(keelproc.get(server.port, "/settings/message").text, "two")
        self.assertEqual(keelproc.get(server.port, "/options").json()["keep_alive_ms"], 7000)


if __name__ == "__main__":
    unittest.main()
