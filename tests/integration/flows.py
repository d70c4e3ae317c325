"""The user flows the integration tests repeat: register, deploy, predict, undeploy."""
from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np

ML = "/_plugins/_ml"


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def register_body(zip_path: Path, info: dict, name: str | None = None, **extra) -> dict:
    return {
        "name": name or unique("tiny"),
        "version": "1.0.0",
        "model_format": "TORCH_SCRIPT",
        "function_name": "TEXT_EMBEDDING",
        "model_content_hash_value": info["model_content_hash_value"],
        "model_config": info["model_config"],
        "url": Path(zip_path).resolve().as_uri(),
        **extra,
    }


def register_url(cluster, zip_path: Path, info: dict, name: str | None = None, **extra) -> str:
    resp = cluster.api.post(f"{ML}/models/_register", register_body(zip_path, info, name, **extra))
    assert resp.status == 200, resp.body
    assert resp.body["status"] == "CREATED"
    task = cluster.wait_task(resp.body["task_id"])
    assert task["state"] == "COMPLETED", task
    return task["model_id"]


def deploy(cluster, model_id: str, node_ids: list[str] | None = None) -> dict:
    body = {"node_ids": node_ids} if node_ids else None
    resp = cluster.api.post(f"{ML}/models/{model_id}/_deploy", body)
    assert resp.status == 200, resp.body
    assert resp.body["task_type"] == "DEPLOY_MODEL" and resp.body["status"] == "CREATED"
    return cluster.wait_task(resp.body["task_id"])


def predict(cluster, model_id: str, texts: list[str], path: str | None = None) -> np.ndarray:
    resp = cluster.api.post(path or f"{ML}/models/{model_id}/_predict", {"text_docs": texts})
    assert resp.status == 200, resp.body
    results = resp.body["inference_results"]
    assert len(results) == len(texts)
    rows = []
    for result in results:
        (tensor,) = result["output"]
        assert tensor["name"] == "sentence_embedding" and tensor["data_type"] == "FLOAT32"
        assert tensor["shape"] == [len(tensor["data"])]
        rows.append(tensor["data"])
    return np.asarray(rows, dtype=np.float32)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def undeploy(cluster, model_id: str) -> dict:
    resp = cluster.api.post(f"{ML}/models/{model_id}/_undeploy")
    assert resp.status == 200, resp.body
    return resp.body


def assert_error(resp, status: int, reason: str | None = None, error_type: str | None = None):
    """An error answer in the dialect's shape, with this status (and reason and type, if given)."""
    assert resp.status == status, resp.body
    body = resp.body
    assert set(body) == {"error", "status"} and body["status"] == status
    assert set(body["error"]) >= {"root_cause", "type", "reason"}
    assert body["error"]["root_cause"] == [{"type": body["error"]["type"], "reason": body["error"]["reason"]}]
    if reason is not None:
        assert body["error"]["reason"] == reason
    if error_type is not None:
        assert body["error"]["type"] == error_type
