"""Every documented coroutine pattern under concurrency (issue 14, point 2).

keel-testapp's /coro/* routes (coroutine_patterns.cpp) run offload with temporary, named and
argument-passing callables, fetch with a braced or a named request, sleep with a computed
duration, temporaries of user types with destructors inside co_await and nested Tasks. 40
clients hit them at once; afterwards every counted object must be gone and the shared counter's
reference count back to one. GCC 12 destroys aggregate temporaries inside co_await twice: before
keel rejected those forms at compile time, this run ended with a negative live count, a crashed
worker or (under ASan) a double-free report. CI runs it against the debug and ASan builds (GCC 12)
and against a clang 14 ASan build (KEELTEST_APP), which compiles the temporary forms.
"""

import threading
import unittest

from keelproc import Conn, KeelTestCase

CLIENTS = 40
ROUNDS = 15  # per client, each round one request to every route


class CoroutinePatternsTest(KeelTestCase):
    def test_every_pattern_concurrently_leaves_nothing_behind(self):
        server = self.start_server("--threads", "8", "--thread-queue", "1024", "--no-access-log")
        with Conn(server.port) as c:
            before = c.get("/coro/live")
        self.assertStatus(before, 200)
        live0, refs0, pid0 = before.text.split()
        self.assertEqual((live0, refs0), ("0", "1"), before.text)

        failures: list[str] = []
        lock = threading.Lock()

        def client(i: int) -> None:
            try:
                with Conn(server.port, timeout=20) as c:
                    for r in range(ROUNDS):
                        word = f"w{i}x{r}"
                        checks = [
                            (f"/coro/offload?word={word}", f"{word}:1 ok"),
                            (f"/coro/fetch?word={word}&port={server.port}", f"200:{word}"),
                            (f"/coro/nested?ms={r % 3}&word={word}", f"{word}arg:{len('tea') + 1}"),
                        ]
                        for target, expected in checks:
                            resp = c.get(target)
                            if resp.status != 200 or resp.text != expected:
                                with lock:
                                    failures.append(f"{target}: {resp.status} {resp.text!r}, expected {expected!r}")
                                return
            except Exception as e:  # a dead worker shows as a reset or a timeout
                with lock:
                    failures.append(f"client {i}: {e!r}")

        threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(failures[:5], [], server.output_tail(20))

        with Conn(server.port) as c:
            after = c.get("/coro/live")
        live, refs, pid = after.text.split()
        self.assertEqual(pid, pid0, "the worker was replaced: it crashed during the run\n" + server.output_tail(20))
        self.assertEqual(live, "0", "user-type objects created inside co_await were not destroyed exactly once")
        self.assertEqual(refs, "1", "a shared_ptr captured or passed into offload lost or kept references")
        self.assertNotIn("AddressSanitizer", server.stderr_text())


if __name__ == "__main__":
    unittest.main()
