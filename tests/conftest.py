"""Shared fixtures: a real Redis started on a free port, and a real cluster of two worker nodes
and an API process on it, shared by the integration tests."""
from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from mlcommons.embedded_redis import EmbeddedRedis
from tests.harness import Client, Proc, api_proc, child_env, wait_for, wait_http, worker_proc

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

NODES = ("node-a", "node-b")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), appendonly=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server) -> str:
    return redis_server.url


@pytest.fixture
def redis_client(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def prefix() -> str:
    """A fresh key prefix: tests that use Redis directly do not see each other's keys."""
    return f"t{uuid.uuid4().hex[:10]}"


@dataclass
class Cluster:
    redis_url: str
    api: Client
    redis: redis.Redis
    nodes: tuple[str, ...]
    procs: dict[str, Proc] = field(default_factory=dict)
    workdir: Path | None = None

    def settings(self, values: dict):
        """Set persistent cluster settings for the duration of a ``with`` block."""
        return _temporary_settings(self.api, values)

    def wait_task(self, task_id: str, timeout: float = 120.0) -> dict:
        def done():
            body = self.api.get(f"/_plugins/_ml/tasks/{task_id}").body
            return body if body.get("state") not in ("CREATED", "RUNNING") else None

        return wait_for(done, timeout, 0.1, f"task {task_id} to finish")

    def model(self, model_id: str) -> dict:
        return self.api.get(f"/_plugins/_ml/models/{model_id}").body

    def undeploy_all(self, model_id: str) -> None:
        self.api.post(f"/_plugins/_ml/models/{model_id}/_undeploy")


@contextlib.contextmanager
def _temporary_settings(api: Client, values: dict):
    before = api.get("/_cluster/settings?flat_settings=true").body["persistent"]
    resp = api.put("/_cluster/settings", {"persistent": values})
    assert resp.status == 200, resp.body
    try:
        yield
    finally:
        api.put("/_cluster/settings", {"persistent": {k: before.get(k) for k in values}})


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """A tiny traced SentenceTransformer archive: (zip path, export info with source_path)."""
    from tests.modelkit import tiny_archive

    return tiny_archive(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def cluster(redis_url, tmp_path_factory):
    """Two worker nodes and one API process on the session's Redis."""
    work = tmp_path_factory.mktemp("cluster")
    logs = work / "logs"
    procs: dict[str, Proc] = {}
    # Small enough that the 413 test need not send 100 MB; large enough for any chunk.
    env = child_env(MLCOMMONS_MLCOMMONS_HTTP_MAX_CONTENT_LENGTH="20000000")
    for node_id in NODES:
        procs[node_id] = worker_proc(redis_url, work / node_id, logs, node_id=node_id, env=env).start()
    api, port = api_proc(redis_url, logs, env=env)
    procs["api"] = api.start()
    client = Client(f"http://127.0.0.1:{port}")
    conn = redis.Redis.from_url(redis_url)
    try:
        wait_http(client)
        wait_for(lambda: all(conn.exists(f"mlc:alive:{n}") for n in NODES), 90, 0.1, "both worker nodes")
        # Most tests register by URL or upload; the tests of the refusals switch these off.
        resp = client.put("/_cluster/settings", {"persistent": {
            "plugins.ml_commons.allow_registering_model_via_url": True,
            "plugins.ml_commons.allow_registering_model_via_local_file": True}})
        assert resp.status == 200, resp.body
        yield Cluster(redis_url, client, conn, NODES, procs, work)
    finally:
        for proc in procs.values():
            proc.stop()
        conn.close()
