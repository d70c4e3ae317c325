"""A Redis that fails over, for tests: a primary (requirepass + masterauth), its replicas and three
sentinels, real ``redis-server`` processes on loopback and free ports.

Not :class:`~mlcommons.stack.embedded_redis.EmbeddedRedis`: that one renames REPLICAOF and CONFIG
away, and the sentinels need both to promote a replica and to turn the old primary into one.
Every file lives in the test's folder; the sentinels rewrite theirs as they learn the topology,
so each has its own, writable.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import redis

from mlcommons.stack.embedded_redis import find_redis_server
from mlcommons.stack.procutil import die_with_parent, free_port, stop_process
from tests.harness import wait_for

HOST = "127.0.0.1"


class Server:
    """One ``redis-server`` (a data node or, with ``sentinel``, a sentinel) and its config file."""

    def __init__(self, folder: Path, lines: list[str], *, sentinel: bool = False):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.lines = lines
        self.sentinel = sentinel
        self.port = free_port(HOST)
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Server":
        conf = self.folder / ("sentinel.conf" if self.sentinel else "redis.conf")
        conf.write_text("\n".join([f"port {self.port}", f"bind {HOST}", f'dir "{self.folder}"',
                                   f'logfile "{self.folder / "server.log"}"', "daemonize no", *self.lines]) + "\n")
        os.chmod(conf, 0o600)
        argv = [find_redis_server(), str(conf)] + (["--sentinel"] if self.sentinel else [])
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     preexec_fn=die_with_parent)  # none outlives a test run that dies
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash of the process (or its machine) would."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)

    @contextlib.contextmanager
    def paused(self):
        """SIGSTOP for the block: the server keeps its connections and answers nothing, as a
        replica that lags far behind."""
        self.proc.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, 5)

    def log(self) -> str:
        path = self.folder / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""


class SentinelRedis:
    """The set up and its URL. ``url`` is what the parts of a cluster are given; ``data(port)``
    and ``ask()`` reach a data node or a sentinel directly, as the tests' eyes."""

    def __init__(self, folder: Path, *, master: str = "mlc-primary", replicas: int = 1, sentinels: int = 3,
                 down_after_ms: int = 1000, failover_timeout_ms: int = 4000):
        self.folder = Path(folder)
        self.master = master
        self.password = secrets.token_urlsafe(16)
        self.sentinel_password = secrets.token_urlsafe(16)
        node = [f'requirepass "{self.password}"', f'masterauth "{self.password}"', 'save ""', "appendonly no",
                "repl-diskless-sync no"]
        self.nodes = [Server(self.folder / "node-0", node)]
        primary = self.nodes[0].port
        self.nodes += [Server(self.folder / f"node-{i + 1}", [*node, f"replicaof {HOST} {primary}"])
                       for i in range(replicas)]
        self.sentinels = [Server(self.folder / f"sentinel-{i}", [
            f'requirepass "{self.sentinel_password}"',
            f'sentinel sentinel-pass "{self.sentinel_password}"',
            "sentinel resolve-hostnames no",
            f"sentinel monitor {master} {HOST} {primary} 2",
            f'sentinel auth-pass {master} "{self.password}"',
            f"sentinel down-after-milliseconds {master} {down_after_ms}",
            f"sentinel failover-timeout {master} {failover_timeout_ms}",
            f"sentinel parallel-syncs {master} 1",
        ], sentinel=True) for i in range(sentinels)]

    @property
    def url(self) -> str:
        hosts = ",".join(f"{HOST}:{s.port}" for s in self.sentinels)
        return (f"redis+sentinel://:{quote(self.password, safe='')}@{hosts}/{self.master}/0"
                f"?sentinel_password={quote(self.sentinel_password, safe='')}")

    # --- life cycle ---------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> "SentinelRedis":
        for server in self.nodes:
            server.start()
        wait_for(lambda: all(self._role(s.port) for s in self.nodes), timeout, 0.05, "the data nodes to answer")
        wait_for(lambda: self.replicas_online(self.nodes[0].port) == len(self.nodes) - 1, timeout, 0.05,
                 "the replicas to sync with the primary")
        for server in self.sentinels:
            server.start()
        wait_for(self._sentinels_agree, timeout, 0.1, "the sentinels to see the primary, its replicas and each other")
        return self

    def stop(self) -> None:
        for server in self.sentinels + self.nodes:
            server.stop()

    def _sentinels_agree(self) -> bool:
        want_replicas = sum(1 for s in self.nodes[1:] if s.alive())
        for sentinel in self.sentinels:
            state = self.ask(sentinel).get(self.master)
            if not state or int(state["num-slaves"]) < want_replicas \
                    or int(state["num-other-sentinels"]) < len(self.sentinels) - 1:
                return False
        return True

    # --- what the tests look at ---------------------------------------------------------
    def data(self, port: int) -> redis.Redis:
        """A direct client of one data node (primary or replica), no failover behind it."""
        return redis.Redis(host=HOST, port=port, password=self.password, socket_connect_timeout=0.5,
                           socket_timeout=2, retry=None)

    def ask(self, sentinel: Server) -> dict:
        """What one sentinel knows of its masters; {} if it does not answer."""
        client = redis.Redis(host=HOST, port=sentinel.port, password=self.sentinel_password,
                             socket_connect_timeout=0.5, socket_timeout=1, retry=None)
        try:
            return client.sentinel_masters()
        except (redis.exceptions.RedisError, OSError):
            return {}
        finally:
            client.close()

    def primary_port(self) -> int | None:
        """The primary every live sentinel names (None while they disagree or none answers)."""
        named = {int(state["port"]) for s in self.sentinels if s.alive()
                 for name, state in self.ask(s).items() if name == self.master}
        return named.pop() if len(named) == 1 else None

    def node(self, port: int) -> Server:
        return next(s for s in self.nodes if s.port == port)

    def _role(self, port: int) -> str | None:
        client = self.data(port)
        try:
            return client.info("replication")["role"]
        except (redis.exceptions.RedisError, OSError):
            return None
        finally:
            client.close()

    def replicas_online(self, port: int) -> int:
        client = self.data(port)
        try:
            info = client.info("replication")
        except (redis.exceptions.RedisError, OSError):
            return 0
        finally:
            client.close()
        return sum(1 for key, value in info.items()
                   if key.startswith("slave") and isinstance(value, dict) and value.get("state") == "online")

    def kill_primary(self) -> tuple[int, float]:
        """SIGKILL the primary; its port and the monotonic time of the kill."""
        port = self.primary_port()
        assert port is not None, "the sentinels do not agree on a primary"
        self.node(port).kill()
        return port, time.monotonic()

    def ask_failover(self) -> None:
        """SENTINEL FAILOVER: promote a replica while the primary runs on (it is demoted later)."""
        sentinel = next(s for s in self.sentinels if s.alive())
        client = redis.Redis(host=HOST, port=sentinel.port, password=self.sentinel_password, socket_timeout=5)
        try:
            client.execute_command("SENTINEL", "FAILOVER", self.master)
        finally:
            client.close()

    def wait_promoted(self, old_port: int, timeout: float = 30.0) -> tuple[int, float]:
        """Wait until every live sentinel names another primary and that node says it is one;
        its port and the monotonic time it was seen."""
        def promoted():
            port = self.primary_port()
            return port if port not in (None, old_port) and self._role(port) == "master" else None

        port = wait_for(promoted, timeout, 0.02, f"a replica of {old_port} to be promoted")
        return port, time.monotonic()
