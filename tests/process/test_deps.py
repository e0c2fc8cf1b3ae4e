"""Self-test of the PostgreSQL / Redis fixtures in deps.py: they start, answer at protocol level,
refuse connections while stopped, come back on the same port with their data, and clean up."""

import socket
import time
import unittest

import deps


def redis_command(port: int, payload: bytes, lines: int = 1, timeout: float = 2.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        answer = b""
        while answer.count(b"\r\n") < lines:
            chunk = s.recv(4096)
            if not chunk:
                break
            answer += chunk
        return answer


class PostgresFixtureTest(unittest.TestCase):
    def test_start_query_stop_restart_close(self):
        pg = deps.Postgres()
        self.addCleanup(pg.close)
        t0 = time.monotonic()
        pg.start()
        print(f"\n  initdb + start: {time.monotonic() - t0:.2f} s", flush=True)
        self.assertEqual(pg.url, f"postgresql://postgres@127.0.0.1:{pg.port}/postgres")
        self.assertTrue(deps.accepts(pg.port))
        self.assertEqual(pg.psql("select 1"), "1")
        pg.psql("create table kept (v int); insert into kept values (42)")

        pg.stop()
        self.assertFalse(pg.running)
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", pg.port), timeout=2).close()

        t0 = time.monotonic()
        pg.start()
        print(f"  restart: {time.monotonic() - t0:.2f} s", flush=True)
        self.assertEqual(pg.psql("select v from kept"), "42")   # same data directory

        data_dir = pg.dir
        pg.close()
        self.assertFalse(deps.accepts(pg.port))
        self.assertFalse(data_dir.exists())

    def test_only_loopback(self):
        with deps.Postgres() as pg:
            self.assertEqual(pg.psql("show listen_addresses"), "127.0.0.1")
            self.assertEqual(pg.psql("show fsync"), "off")


class RedisFixtureTest(unittest.TestCase):
    def test_start_ping_stop_restart_close(self):
        redis = deps.Redis()
        self.addCleanup(redis.close)
        t0 = time.monotonic()
        redis.start()
        print(f"\n  redis start: {time.monotonic() - t0:.2f} s", flush=True)
        self.assertEqual(redis.url, f"redis://127.0.0.1:{redis.port}")
        self.assertEqual(redis_command(redis.port, b"PING\r\n"), b"+PONG\r\n")
        self.assertEqual(redis_command(redis.port, b"CONFIG GET bind\r\n", lines=5),
                         b"*2\r\n$4\r\nbind\r\n$9\r\n127.0.0.1\r\n")

        redis.stop()
        self.assertFalse(redis.running)
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", redis.port), timeout=2).close()

        redis.start()
        self.assertEqual(redis_command(redis.port, b"PING\r\n"), b"+PONG\r\n")
        redis.close()
        self.assertFalse(deps.accepts(redis.port))

    def test_password(self):
        with deps.Redis(password="s3cr3t") as redis:
            self.assertEqual(redis.url, f"redis://:s3cr3t@127.0.0.1:{redis.port}")
            self.assertTrue(redis_command(redis.port, b"PING\r\n").startswith(b"-NOAUTH"))
            self.assertEqual(redis_command(redis.port, b"AUTH s3cr3t\r\nPING\r\n", lines=2), b"+OK\r\n+PONG\r\n")


if __name__ == "__main__":
    unittest.main()
