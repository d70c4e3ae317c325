"""Register, deploy to one and to two worker nodes, predict, undeploy and delete, on real workers."""
from __future__ import annotations

import time

import numpy as np
import orjson
import pytest
from sentence_transformers import SentenceTransformer

from tests.cluster import KEYS
from tests.harness import wait_for
from tests.integration.flows import ML, cosine, deploy, predict, register_url, undeploy

TEXTS = ["The quick brown fox jumps over the lazy dog.", "hello",
         "Embeddings map sentences to vectors so that similar meanings land close together.",
         "A much longer document " + "with many repeated words " * 30]


@pytest.fixture(scope="module")
def reference(tiny):
    _, info = tiny
    model = SentenceTransformer(info["source_path"], device="cpu")
    return model.encode(TEXTS, batch_size=32, convert_to_numpy=True)


def node_models(cluster, node_id: str) -> dict:
    import orjson

    raw = cluster.redis.hget(KEYS.node(node_id), "models")
    return orjson.loads(raw) if raw else {}


def test_deploy_to_every_node_predict_undeploy_delete(cluster, tiny, reference):
    zip_path, info = tiny
    model_id = register_url(cluster, zip_path, info)
    model = cluster.model(model_id)
    assert model["model_state"] == "REGISTERED"
    assert model["total_chunks"] == 1 and model["model_content_size_in_bytes"] == zip_path.stat().st_size
    assert "model_content" not in model

    task = deploy(cluster, model_id)
    assert task["state"] == "COMPLETED", task
    assert sorted(task["worker_node"]) == sorted(cluster.nodes)
    assert "task_id" not in task
    model = cluster.model(model_id)
    assert model["model_state"] == "DEPLOYED"
    assert model["planning_worker_nodes"] == sorted(cluster.nodes)
    assert model["current_worker_nodes"] == sorted(cluster.nodes)
    assert model["planning_worker_node_count"] == model["current_worker_node_count"] == 2
    for node in cluster.nodes:
        wait_for(lambda: model_id in node_models(cluster, node), 10, message=f"{node} heartbeat")

    got = predict(cluster, model_id, TEXTS)
    assert got.shape == (len(TEXTS), info["model_config"]["embedding_dimension"])
    assert (cosine(got, reference) >= 0.9999).all(), cosine(got, reference)
    # The algorithm path and a trailing slash reach the same model.
    again = predict(cluster, model_id, TEXTS[:1], f"{ML}/_predict/text_embedding/{model_id}/")
    assert cosine(again, reference[:1])[0] >= 0.9999

    reply = undeploy(cluster, model_id)
    assert reply == {node: {"stats": {model_id: "undeployed"}} for node in cluster.nodes}
    model = cluster.model(model_id)
    assert model["model_state"] == "UNDEPLOYED"
    assert model["current_worker_node_count"] == 0 and model["planning_worker_node_count"] == 0
    for node in cluster.nodes:
        wait_for(lambda: model_id not in node_models(cluster, node), 10, message=f"{node} to drop the model")
    with cluster.settings({"plugins.ml_commons.model_auto_deploy.enable": False}):
        resp = cluster.api.post(f"{ML}/models/{model_id}/_predict", {"text_docs": ["x"]})
    assert resp.status == 400
    assert resp.error["reason"] == "Model not ready yet. Please deploy the model first."

    assert undeploy(cluster, model_id) == {}  # nobody holds it any more

    resp = cluster.api.delete(f"{ML}/models/{model_id}")
    assert resp.status == 200 and resp.body["result"] == "deleted"
    assert cluster.api.get(f"{ML}/models/{model_id}").status == 404
    assert not cluster.redis.exists(KEYS.chunk(model_id, 0))


def test_deploy_to_one_node(cluster, tiny, reference):
    zip_path, info = tiny
    model_id = register_url(cluster, zip_path, info)
    resp = cluster.api.post(f"{ML}/models/{model_id}/_deploy", {"node_ids": ["node-b"]})
    assert resp.status == 400 and resp.error["reason"] == "Don't allow custom deployment plan"
    with cluster.settings({"plugins.ml_commons.allow_custom_deployment_plan": True}):
        task = deploy(cluster, model_id, ["node-b"])
        assert task["state"] == "COMPLETED" and task["worker_node"] == ["node-b"]
        model = cluster.model(model_id)
        assert model["model_state"] == "DEPLOYED"
        assert model["planning_worker_nodes"] == ["node-b"] and model["current_worker_nodes"] == ["node-b"]
        assert "deploy_to_all_nodes" not in model or model["deploy_to_all_nodes"] is False
        assert model_id not in node_models(cluster, "node-a")
        assert (cosine(predict(cluster, model_id, TEXTS), reference) >= 0.9999).all()

        # A plan that leaves out a node already holding the model is refused.
        resp = cluster.api.post(f"{ML}/models/{model_id}/_deploy", {"node_ids": ["node-a"]})
        assert resp.status == 400 and "Model already deployed to these nodes" in resp.error["reason"]
        # Unknown nodes are dropped; nothing left is an error.
        resp = cluster.api.post(f"{ML}/models/{model_id}/_deploy", {"node_ids": ["no-such-node"]})
        assert resp.status == 400 and resp.error["reason"] == "no eligible node found"

        reply = cluster.api.post(f"{ML}/models/{model_id}/_undeploy", {"node_ids": ["node-b"]}).body
        assert reply == {"node-b": {"stats": {model_id: "undeployed"}}}
    assert cluster.model(model_id)["model_state"] == "UNDEPLOYED"


def test_deploying_a_deployed_model_again_is_harmless(cluster, tiny, reference):
    zip_path, info = tiny
    model_id = register_url(cluster, zip_path, info)
    first = deploy(cluster, model_id)
    second = deploy(cluster, model_id)
    assert first["state"] == second["state"] == "COMPLETED"
    assert cluster.model(model_id)["model_state"] == "DEPLOYED"
    assert (cosine(predict(cluster, model_id, TEXTS), reference) >= 0.9999).all()
    undeploy(cluster, model_id)


def test_corrupted_chunk_fails_the_deploy_and_touches_nothing_else(cluster, tiny, reference, tmp_path):
    zip_path, info = tiny
    healthy = register_url(cluster, zip_path, info)
    # Another archive: nodes cache models by SHA-256, and this one must come from the store.
    from tests.modelkit import tiny_archive

    broken = register_url(cluster, *tiny_archive(tmp_path, pooling_mode="CLS"))
    assert deploy(cluster, healthy)["state"] == "COMPLETED"

    key = KEYS.chunk(broken, 0)
    data = bytearray(cluster.redis.get(key))
    data[len(data) // 2] ^= 0xFF
    cluster.redis.set(key, bytes(data))
    before = {k: cluster.redis.get(k) for k in (KEYS.chunk(healthy, 0), key)}

    task = deploy(cluster, broken)
    assert task["state"] == "FAILED"
    import json

    errors = json.loads(task["error"])
    assert sorted(errors) == sorted(cluster.nodes)
    assert all(msg.startswith("model content changed") for msg in errors.values()), errors
    model = cluster.model(broken)
    assert model["model_state"] == "DEPLOY_FAILED" and model["current_worker_node_count"] == 0

    # Nothing else changed: the healthy model still serves; both models' chunks are as they were.
    assert cluster.model(healthy)["model_state"] == "DEPLOYED"
    assert (cosine(predict(cluster, healthy, TEXTS), reference) >= 0.9999).all()
    assert {k: cluster.redis.get(k) for k in before} == before
    undeploy(cluster, healthy)
    resp = cluster.api.post(f"{ML}/models/{broken}/_predict", {"text_docs": ["x"]})
    assert resp.status == 400


def test_bare_transformer_archive_is_pooled_as_its_config_says(cluster, tmp_path_factory):
    """A traced bare transformer (HUGGINGFACE_TRANSFORMERS) served over HTTP: CLS pooling,
    not normalised, matches the transformer's first hidden state."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from tests.modelkit import tiny_archive

    zip_path, info = tiny_archive(tmp_path_factory.mktemp("hf"), kind="huggingface", pooling_mode="CLS",
                                  normalize=False)
    assert info["model_config"]["framework_type"].upper() == "HUGGINGFACE_TRANSFORMERS"
    model_id = register_url(cluster, zip_path, info)
    assert cluster.model(model_id)["model_config"]["pooling_mode"] == "CLS"
    assert deploy(cluster, model_id)["state"] == "COMPLETED"
    got = predict(cluster, model_id, TEXTS[:3])
    tokenizer = AutoTokenizer.from_pretrained(info["source_path"])
    model = AutoModel.from_pretrained(info["source_path"]).eval()
    with torch.inference_mode():
        expected = np.stack([model(**tokenizer(t, return_tensors="pt")).last_hidden_state[0, 0].numpy()
                             for t in TEXTS[:3]])
    assert (cosine(got, expected) >= 0.9999).all()
    assert np.allclose(np.linalg.norm(got, axis=1), np.linalg.norm(expected, axis=1), rtol=1e-3)
    undeploy(cluster, model_id)


def test_a_redeploy_of_the_same_archive_comes_from_the_node_cache(cluster, tiny, reference):
    """Nodes keep checked, extracted models keyed by SHA-256: an undeploy and deploy (or another
    model id with the same bytes) loads from local disk without reading the model store."""
    zip_path, info = tiny
    model_id = register_url(cluster, zip_path, info)
    assert deploy(cluster, model_id)["state"] == "COMPLETED"
    undeploy(cluster, model_id)
    chunks = {k: cluster.redis.get(k) for k in cluster.redis.scan_iter(KEYS.chunk(model_id, "*"))}
    cluster.redis.delete(*chunks)
    try:
        assert deploy(cluster, model_id)["state"] == "COMPLETED"
        assert (cosine(predict(cluster, model_id, TEXTS), reference) >= 0.9999).all()
    finally:
        cluster.redis.mset(chunks)
        undeploy(cluster, model_id)


def test_a_model_idle_past_its_ttl_is_undeployed_by_the_watcher(cluster, tiny):
    """deploy_setting.model_ttl_minutes: the sync-up begins the undeploy of a model nobody used
    for that long, and finishes it on a later round (it never waits for the nodes in a round)."""
    zip_path, info = tiny
    model_id = register_url(cluster, zip_path, info, deploy_setting={"model_ttl_minutes": 1})
    assert deploy(cluster, model_id)["state"] == "COMPLETED"
    # Two minutes without a request, as far as the watcher can tell.
    two_minutes_ago = int(time.time() * 1000) - 120_000
    cluster.redis.hset(KEYS.doc("model", model_id), "last_deployed_time", orjson.dumps(two_minutes_ago))
    wait_for(lambda: cluster.model(model_id)["model_state"] == "UNDEPLOYED", 60, 0.1, "the idle model's undeploy")
    assert cluster.model(model_id)["current_worker_nodes"] == []
    wait_for(lambda: not any(model_id in cluster.held_by(node) for node in ("node-a", "node-b")), 30, 0.1,
             "the nodes' heartbeats to show the model gone")
    assert cluster.redis.hlen(KEYS.pending_undeploys()) == 0
    assert cluster.api.delete(f"{ML}/models/{model_id}").status == 200
