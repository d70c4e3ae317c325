"""A real cluster for tests: Redis, worker node processes and API processes that a test can
start, kill (SIGKILL, as a crash does) and start again, each part on its own."""
from __future__ import annotations

import contextlib
from pathlib import Path

import orjson
import redis

from mlcommons.core.remote.secrets import create_key_file
from mlcommons.stack.embedded_redis import EmbeddedRedis
from mlcommons.store.connection import sync_client
from mlcommons.store.keys import Keys
from mlcommons.store.redis_url import is_sentinel
from tests.harness import Client, Proc, api_proc, child_env, wait_for, wait_http, worker_proc

KEYS = Keys("mlc")  # the key prefix of the stacks the tests start

ML = "/_plugins/_ml"

# Timings short enough that a test sees a death, a sync-up or a redeploy in a second or two.
FAST = {
    "MLCOMMONS_MLCOMMONS_NODE_HEARTBEAT_INTERVAL_SECONDS": "0.2",
    "MLCOMMONS_MLCOMMONS_NODE_HEARTBEAT_EXPIRY_SECONDS": "1.5",
    "MLCOMMONS_MLCOMMONS_CLUSTER_WATCHER_INTERVAL_SECONDS": "0.2",
    "MLCOMMONS_MLCOMMONS_CLUSTER_LEADER_LEASE_SECONDS": "1.0",
    "MLCOMMONS_PLUGINS_ML_COMMONS_SYNC_UP_JOB_INTERVAL_IN_SECONDS": "1",
    "MLCOMMONS_PLUGINS_ML_COMMONS_ALLOW_REGISTERING_MODEL_VIA_URL": "true",
    "MLCOMMONS_PLUGINS_ML_COMMONS_ALLOW_REGISTERING_MODEL_VIA_LOCAL_FILE": "true",
    "MLCOMMONS_PLUGINS_ML_COMMONS_ALLOW_CUSTOM_DEPLOYMENT_PLAN": "true",
}


class LocalCluster:
    def __init__(self, workdir: Path, nodes: tuple[str, ...] = ("node-a", "node-b"), *,
                 env: dict | None = None, node_env: dict[str, dict] | None = None, appendonly: bool = True,
                 redis_server: EmbeddedRedis | None = None):
        self.workdir = Path(workdir)
        self.logs = self.workdir / "logs"
        self.nodes = tuple(nodes)
        # Every part holds the same master key, as serve gives them one (connector credentials).
        key_file = create_key_file(self.workdir / "master.key")
        self.env = child_env(**{"MLCOMMONS_MLCOMMONS_SECURITY_MASTER_KEY_FILE": str(key_file), **(env or {})})
        self.node_env = node_env or {}
        self.own_redis = redis_server is None
        self.redis_server = redis_server or EmbeddedRedis(self.workdir / "redis", appendonly=appendonly)
        self.workers: dict[str, Proc] = {}
        self.api_process: Proc | None = None
        self.api: Client | None = None
        self.redis: redis.Redis | None = None
        self.port: int | None = None

    # --- parts ----------------------------------------------------------------------------
    @property
    def redis_url(self) -> str:
        return self.redis_server.url

    def start(self) -> "LocalCluster":
        if self.own_redis:
            self.redis_server.start()
        # a Sentinel URL (tests/integration/test_sentinel.py) needs mlcommons' own client
        self.redis = sync_client(self.redis_url) if is_sentinel(self.redis_url) else redis.Redis.from_url(self.redis_url)
        for node in self.nodes:
            self.start_worker(node, wait=False)
        self.start_api()
        for node in self.nodes:
            self.wait_alive(node)
        return self

    def start_worker(self, node: str, *, wait: bool = True, env: dict | None = None) -> Proc:
        worker_env = {**self.env, **self.node_env.get(node, {}), **(env or {})}
        proc = worker_proc(self.redis_url, self.workdir / node, self.logs, node_id=node, env=worker_env)
        self.workers[node] = proc.start()
        if wait:
            self.wait_alive(node)
        return proc

    def kill_worker(self, node: str) -> None:
        self.workers[node].kill()

    def stop_worker(self, node: str) -> None:
        self.workers[node].stop()

    def wait_alive(self, node: str, timeout: float = 90) -> str:
        """Wait for the node's heartbeat; returns its boot id."""
        proc = self.workers[node]

        def alive():
            assert proc.alive(), proc.log()[-3000:]
            boot = self.redis.get(KEYS.node_alive(node))
            return boot.decode() if boot else None

        return wait_for(alive, timeout, 0.05, f"node {node}")

    def start_api(self) -> None:
        proc, port = api_proc(self.redis_url, self.logs, port=self.port, env=self.env)
        self.port = port
        self.api_process = proc.start()
        self.api = Client(f"http://127.0.0.1:{port}")
        wait_http(self.api, 60)

    def kill_api(self) -> None:
        self.api_process.kill()

    def kill_redis(self) -> None:
        self.redis_server.kill()

    def start_redis(self) -> None:
        self.redis_server.start()

    def stop(self) -> None:
        if self.api_process is not None:
            self.api_process.stop()
        for proc in self.workers.values():
            proc.stop()
        if self.redis is not None:
            self.redis.close()
        if self.own_redis:
            self.redis_server.stop()

    # --- what tests ask of it -------------------------------------------------------------
    def settings(self, values: dict):
        return _temporary_settings(self.api, values)

    def wait_task(self, task_id: str, timeout: float = 120.0) -> dict:
        def done():
            body = self.api.get(f"{ML}/tasks/{task_id}").body
            return body if body.get("state") not in ("CREATED", "RUNNING") else None

        return wait_for(done, timeout, 0.05, f"task {task_id} to finish")

    def model(self, model_id: str) -> dict:
        return self.api.get(f"{ML}/models/{model_id}").body

    def held_by(self, node: str) -> set[str]:
        """What a node says it holds, from its own last heartbeat."""
        raw = self.redis.hget(KEYS.node(node), "models")
        return set(orjson.loads(raw)) if raw else set()

    def progress(self, task_id: str, node: str) -> str:
        value = self.redis.hget(KEYS.deploy_progress(task_id), node)
        return value.decode() if value else ""

    def tasks_of(self, model_id: str, task_type: str = "DEPLOY_MODEL") -> list[dict]:
        body = self.api.post(f"{ML}/tasks/_search", {"size": 1000, "sort": [{"create_time": "asc"}],
                                                     "query": {"bool": {"filter": [
                                                         {"term": {"model_id": model_id}},
                                                         {"term": {"task_type": task_type}}]}}}).body
        return [h["_source"] for h in body["hits"]["hits"]]

    def assert_worker_lists_true(self, model_id: str, timeout: float = 5.0) -> None:
        """Invariant 2: a model's current worker nodes are exactly the live nodes holding it (as
        their heartbeats say, which lag by up to one heartbeat interval)."""
        def agree():
            model = self.model(model_id)
            live = [n for n in self.nodes if self.redis.exists(KEYS.node_alive(n))]
            holders = sorted(n for n in live if model_id in self.held_by(n))
            same = model["current_worker_nodes"] == holders and model["current_worker_node_count"] == len(holders)
            return same or (model["current_worker_nodes"], holders)

        result = wait_for(lambda: agree() is True, timeout, 0.05, f"worker lists of {model_id} to agree")
        assert result


@contextlib.contextmanager
def _temporary_settings(api: Client, values: dict):
    before = api.get("/_cluster/settings?flat_settings=true").body["persistent"]
    resp = api.put("/_cluster/settings", {"persistent": values})
    assert resp.status == 200, resp.body
    try:
        yield
    finally:
        api.put("/_cluster/settings", {"persistent": {k: before.get(k) for k in values}})
