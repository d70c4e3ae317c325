"""Several hosts: Redis, the API and two worker nodes each on a host of its own (network
namespaces on one machine, tests/netns.py), and a network partition of one worker host.

The partitioned node's process keeps running and keeps its sockets; only its packets stop. The
cluster must declare it gone within the heartbeat expiry, move its work, and show the model
PARTIALLY_DEPLOYED; when the link comes back the node's old run must not announce itself again
(fencing by boot id) but start over and be given the model again, as after a restart."""
from __future__ import annotations

import sys
import threading
import time

import orjson
import pytest

from mlcommons.stack.embedded_redis import EmbeddedRedis
from tests.cluster import FAST, KEYS, ML, LocalCluster
from tests.conftest import FILE_ROOTS
from tests.harness import Client, Proc, wait_for, wait_http
from tests.integration.flows import deploy, register_url
from tests.netns import Hosts, Unavailable

NODE_HOST = {"node-a": "w1", "node-b": "w2"}
EXPIRY = float(FAST["MLCOMMONS_MLCOMMONS_NODE_HEARTBEAT_EXPIRY_SECONDS"])
API_PORT = 9200  # each host has its own ports: the API takes OpenSearch's, as it would on a host of its own


class HostsCluster(LocalCluster):
    """A LocalCluster whose parts run each on its own host."""

    def __init__(self, workdir, hosts: Hosts, env: dict):
        server = EmbeddedRedis(workdir / "redis", host=hosts.address("redis"), port=6379, launcher=hosts.launcher("redis"))
        super().__init__(workdir, tuple(NODE_HOST), env=env, redis_server=server)
        self.own_redis = True  # started and stopped with the cluster
        self.hosts = hosts

    def start_worker(self, node: str, *, wait: bool = True, env: dict | None = None) -> Proc:
        argv = [*self.hosts.launcher(NODE_HOST[node]), sys.executable, "-m", "mlcommons", "worker",
                "--redis-url", self.redis_url, "--data-dir", str(self.workdir / node), "--node-id", node]
        self.workers[node] = Proc(f"worker-{node}", argv, self.logs, {**self.env, **(env or {})}).start()
        if wait:
            self.wait_alive(node)
        return self.workers[node]

    def start_api(self) -> None:
        address = self.hosts.address("api")
        argv = [*self.hosts.launcher("api"), sys.executable, "-m", "mlcommons", "api", "--redis-url", self.redis_url,
                "--host", address, "--port", str(API_PORT), "--insecure-bind"]
        self.api_process = Proc("api", argv, self.logs, self.env).start()
        self.api = Client(f"http://{address}:{API_PORT}")
        wait_http(self.api, 60)


@pytest.fixture
def hosts():
    try:
        made = Hosts(["redis", "api", "w1", "w2"]).create()
    except Unavailable as exc:
        pytest.skip(f"no separate hosts on this machine: {exc}")
    try:
        yield made
    finally:
        made.remove()


@pytest.fixture
def cluster(hosts, tmp_path, tmp_path_factory):
    env = {**FAST, FILE_ROOTS: str(tmp_path_factory.getbasetemp())}
    c = HostsCluster(tmp_path, hosts, env)
    c.redis_server.start()
    problem = hosts.reaches("w1", hosts.address("redis"), c.redis_server.port)
    if problem:
        c.redis_server.stop()
        pytest.skip(f"the hosts' bridge does not carry traffic between namespaces here: {problem}")
    c.own_redis = False  # started above
    try:
        yield c.start()
    finally:
        c.stop()
        c.redis_server.stop()


class Load:
    """Predictions from 4 clients without pause, each outcome kept: (status, seconds, error body)."""

    def __init__(self, c: HostsCluster, model_id: str):
        self.c, self.model_id = c, model_id
        self.outcomes: list[tuple[int, float, str]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(4)]

    def _run(self, i: int) -> None:
        client = Client(self.c.api.base)
        n = 0
        while not self._stop.is_set():
            n += 1
            started = time.monotonic()
            resp = client.post(f"{ML}/models/{self.model_id}/_predict", {"text_docs": [f"client {i} doc {n}"]},
                               timeout=60)
            error = "" if resp.status == 200 else orjson.dumps(resp.body).decode()
            self.outcomes.append((resp.status, time.monotonic() - started, error))

    def __enter__(self) -> "Load":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(90)

    def slowest(self) -> float:
        return max(o[1] for o in self.outcomes)

    def failures(self) -> list[tuple[int, float, str]]:
        return [o for o in self.outcomes if o[0] != 200]


def served_by(c: HostsCluster, node: str, model_id: str) -> int:
    """The documents ``node`` says (in its heartbeat) it has run through the model."""
    raw = c.redis.hget(KEYS.node(node), "models")
    return (orjson.loads(raw) if raw else {}).get(model_id, {}).get("inference_count", 0)


def test_partitioned_worker_host_is_fenced_and_rejoins(cluster, hosts, tiny):
    c = cluster
    zip_path, info = tiny
    model_id = register_url(c, zip_path, info)
    task = deploy(c, model_id)
    assert task["state"] == "COMPLETED", task
    assert c.model(model_id)["current_worker_nodes"] == ["node-a", "node-b"]

    with Load(c, model_id) as load:
        # Predictions spread over both hosts.
        wait_for(lambda: all(served_by(c, n, model_id) > 0 for n in NODE_HOST), 30, 0.1, "both nodes serving")

        old_boot = c.redis.get(KEYS.node_alive("node-a")).decode()
        hosts.partition("w1")
        cut_at = time.monotonic()
        model = wait_for(lambda: (m := c.model(model_id))["model_state"] == "PARTIALLY_DEPLOYED" and m, 30, 0.05,
                         "the partitioned node to be declared gone")
        declared_after = time.monotonic() - cut_at
        assert model["current_worker_nodes"] == ["node-b"], model
        assert model["planning_worker_nodes"] == ["node-a", "node-b"], model
        assert c.workers["node-a"].alive(), "the partitioned node's process was left running"
        assert declared_after < EXPIRY + 2.0, f"declared gone {declared_after:.1f} s after the cut"
        # Held long enough that a request stranded on the cut-off node would show as a slow one.
        served_during = len(load.outcomes)
        wait_for(lambda: len(load.outcomes) > served_during + 800, 60, 0.05, "node-b serving alone")
        held = time.monotonic() - cut_at

        hosts.heal("w1")
        healed_at = time.monotonic()

        # The old run never announces itself again; a new run of node-a joins.
        def new_run():
            boot = c.redis.get(KEYS.node_alive("node-a"))
            assert boot is None or boot.decode() != old_boot, "the fenced run announced itself again"
            return boot is not None

        wait_for(new_run, 60, 0.01, "node-a to rejoin with a new boot id")
        rejoined_after = time.monotonic() - healed_at
        assert c.workers["node-a"].alive()
        assert "declared run" in c.workers["node-a"].log() and "starting again" in c.workers["node-a"].log()
        # It claims nothing until the cluster gives the model back; then both serve again.
        model = wait_for(lambda: (m := c.model(model_id))["model_state"] == "DEPLOYED" and m, 60, 0.05,
                         "the model to be deployed on both nodes again")
        redeployed_after = time.monotonic() - healed_at
        assert model["current_worker_nodes"] == ["node-a", "node-b"], model
        c.assert_worker_lists_true(model_id)
        wait_for(lambda: served_by(c, "node-a", model_id) > 0, 30, 0.1, "node-a serving again")

    print(f"\npartition of {held:.1f} s: declared gone after {declared_after:.2f} s (expiry {EXPIRY} s); after "
          f"healing, rejoined in {rejoined_after:.2f} s and redeployed in {redeployed_after:.2f} s; "
          f"{len(load.outcomes)} predictions, {len(load.failures())} failed, slowest {load.slowest():.2f} s")
    assert load.failures() == [], load.failures()[:5]
    # Those the cut-off node held wait for it to be declared gone, and no longer: none waits for the link.
    assert load.slowest() < declared_after + 2.0, load.slowest()
