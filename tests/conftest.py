"""Shared fixtures: a real Redis started on a free port, and a real cluster of two worker nodes
and an API process on it, shared by the integration tests."""
from __future__ import annotations

import os
import uuid

import pytest
import redis

from mlcommons.stack.embedded_redis import EmbeddedRedis
from tests.cluster import FAST, LocalCluster

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

NODES = ("node-a", "node-b")
# file:// model URLs are read only inside the folders this setting names; the tests' archives
# live under pytest's temporary folder.
FILE_ROOTS = "MLCOMMONS_MLCOMMONS_MODEL_STORE_URL_FILE_ROOTS"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    # CONFIG kept under a secret name: a test moves the memory ceiling (test_hostile_downloads)
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), appendonly=False, config_command="CONFIG-" + uuid.uuid4().hex)
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


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """A tiny traced SentenceTransformer archive: (zip path, export info with source_path)."""
    from tests.modelkit import tiny_archive

    return tiny_archive(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def cluster(redis_server, tmp_path_factory):
    """Two worker nodes and one API process on the session's Redis, shared by the integration
    tests that do not kill anything."""
    # Small enough that the 413 test need not send 100 MB; large enough for any chunk.
    env = {"MLCOMMONS_MLCOMMONS_HTTP_MAX_CONTENT_LENGTH": "20000000",
           # The remote-model tests' provider runs on loopback, trusted as an operator would trust it.
           "MLCOMMONS_PLUGINS_ML_COMMONS_TRUSTED_CONNECTOR_ENDPOINTS_REGEX": r'["^http://127\\.0\\.0\\.1:\\d+/.*$"]',
           "MLCOMMONS_PLUGINS_ML_COMMONS_CONNECTOR_PRIVATE_IP_ENABLED": "true",
           "MLCOMMONS_PLUGINS_ML_COMMONS_SYNC_UP_JOB_INTERVAL_IN_SECONDS": "2",
           FILE_ROOTS: str(tmp_path_factory.getbasetemp())}
    local = LocalCluster(tmp_path_factory.mktemp("cluster"), NODES, env=env, redis_server=redis_server)
    try:
        local.start()
        # Most tests register by URL or upload; the tests of the refusals switch these off.
        resp = local.api.put("/_cluster/settings", {"persistent": {
            "plugins.ml_commons.allow_registering_model_via_url": True,
            "plugins.ml_commons.allow_registering_model_via_local_file": True}})
        assert resp.status == 200, resp.body
        yield local
    finally:
        local.stop()


@pytest.fixture
def make_cluster(tmp_path, tmp_path_factory):
    """Clusters of a test's own (Redis with an append-only file, workers, API), with the fast
    timings of ``tests.cluster.FAST``: for the tests that kill processes."""
    made: list[LocalCluster] = []

    def make(nodes=NODES, *, env: dict | None = None, node_env: dict | None = None) -> LocalCluster:
        local = LocalCluster(tmp_path / f"cluster{len(made)}", nodes,
                             env={**FAST, FILE_ROOTS: str(tmp_path_factory.getbasetemp()), **(env or {})},
                             node_env=node_env)
        made.append(local)
        return local.start()

    yield make
    for local in made:
        local.stop()


@pytest.fixture(scope="session")
def es(cluster):
    """elasticsearch-py pointed at the session cluster (no retries: a 429 is for the test to see)."""
    from elasticsearch import Elasticsearch

    client = Elasticsearch(cluster.api.base, request_timeout=60, max_retries=0)
    yield client
    client.close()


@pytest.fixture(scope="session")
def infinity(tmp_path_factory):
    """A real OpenAI-format embeddings server on loopback (infinity-emb, in its own venv)."""
    from tests.providers import Infinity

    server = Infinity(tmp_path_factory.mktemp("infinity"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def infinity_reranker(tmp_path_factory):
    """A real Cohere-format rerank server on loopback: infinity-emb's torch engine serving a tiny
    cross-encoder the tests build."""
    from tests.modelkit import build_tiny_cross_encoder
    from tests.providers import Infinity

    where = tmp_path_factory.mktemp("reranker")
    server = Infinity(where, reranker=build_tiny_cross_encoder(where))
    yield server
    server.stop()
