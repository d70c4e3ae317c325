"""opensearch-py-ml's MLCommonClient, the OpenSearch project's own client for ML Commons, against a
real cluster: a tiny sentence-transformers archive registered into a model group by chunked
upload with the model config file opensearch-py-ml writes, deployed and waited on, read back,
embedded, searched, undeployed and deleted; connectors created, listed and deleted; each step
checked from our side too.

The client runs in its own virtual environment (``tests/osml.py``: its pins clash with ours), as a
script (``tests/osml_script.py``) this test starts with that environment's python."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.integration.flows import ML, unique
from tests.osml import VenvUnavailable, ensure_venv, run_script

TEXTS = ["hello world", "the quick brown fox jumps over the lazy dog"]


@pytest.fixture(scope="module")
def osml_python():
    try:
        return ensure_venv()
    except VenvUnavailable as exc:
        pytest.skip(f"opensearch-py-ml's virtual environment could not be made (no package registry?): {exc}")


def model_config_file(tmp_path, info: dict, name: str):
    """``ml-commons_model_config.json`` as opensearch-py-ml's ``make_model_config_json`` writes it
    for a sentence-transformers model (size and hash included, ``additional_config`` with the space)."""
    config = {
        "name": name,
        "version": "1.0.0",
        "description": "A tiny random sentence-transformers model for the tests",
        "model_format": "TORCH_SCRIPT",
        "function_name": "TEXT_EMBEDDING",
        "model_config": {**info["model_config"], "additional_config": {"space_type": "l2"}},
        "model_content_size_in_bytes": info["model_content_size_in_bytes"],
        "model_content_hash_value": info["model_content_hash_value"],
    }
    path = tmp_path / "ml-commons_model_config.json"
    path.write_text(json.dumps(config, indent=4))
    return path


def test_ml_commons_client_lifecycle(osml_python, cluster, tiny, tmp_path):
    zip_path, info = tiny
    name = unique("osml")
    config_path = model_config_file(tmp_path, info, name)
    steps = {"phase": "register", "model_path": str(zip_path), "config_path": str(config_path),
             "texts": TEXTS, "name": name}
    out = run_script(cluster.api.base, steps)
    model_id, group_id = out["model_id"], out["group_id"]
    try:
        # what the client saw
        assert out["private_group"] == {"class": "RequestError", "status": 400, "error": "illegal_argument_exception",
                                        "type": "illegal_argument_exception"}
        assert out["group_by_name"] == group_id
        assert out["info"]["model_state"] == "DEPLOYED" and out["info"]["name"] == name
        assert out["info"]["model_group_id"] == group_id and out["info"]["model_version"] == "1"
        assert out["info"]["model_config"]["embedding_dimension"] == info["model_config"]["embedding_dimension"]
        assert out["info"]["total_chunks"] >= 1
        (hit,) = out["search"]["hits"]["hits"]
        assert hit["_id"] == model_id and hit["_source"]["name"] == name
        deploy_tasks = out["deploy_tasks"]["hits"]["hits"]
        assert deploy_tasks and all(t["_source"]["state"] == "COMPLETED" for t in deploy_tasks)
        assert out["task"]["model_id"] == model_id and out["task"]["task_type"] == "DEPLOY_MODEL"
        assert out["task"]["state"] == "COMPLETED"
        assert any(model_id in node.get("models", {}) for node in out["profile"]["nodes"].values())
        assert out["missing"]["class"] == "NotFoundError" and out["missing"]["status"] == 404
        assert out["missing"]["type"] == "status_exception"

        # from our side: the document, its chunks, and the same vectors our _predict answers
        ours = cluster.api.get(f"{ML}/models/{model_id}").body
        assert ours["model_state"] == "DEPLOYED"
        assert ours["model_content_hash_value"] == info["model_content_hash_value"]
        assert ours["model_content_size_in_bytes"] == zip_path.stat().st_size
        assert ours["model_config"]["additional_config"] == {"space_type": "l2"}
        assert cluster.api.get(f"{ML}/model_groups/{group_id}").body["latest_version"] == 1
        predicted = cluster.api.post(f"{ML}/models/{model_id}/_predict", {"text_docs": TEXTS}).body
        theirs = _vectors(out["embedding"])
        assert theirs.shape == (len(TEXTS), info["model_config"]["embedding_dimension"])
        np.testing.assert_allclose(theirs, _vectors(predicted), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(_vectors(out["inference"]), theirs[:1], rtol=1e-6, atol=1e-7)
    except BaseException:
        cluster.api.post(f"{ML}/models/{model_id}/_undeploy")
        cluster.api.delete(f"{ML}/models/{model_id}")
        raise

    task_id = deploy_tasks[0]["_id"]
    out = run_script(cluster.api.base, {"phase": "teardown", "model_id": model_id, "group_id": group_id,
                                        "task_id": task_id})
    # ML Commons answers an undeploy per node: {node_id: {"stats": {model_id: "undeployed"}}}
    assert out["undeploy"] and all(node["stats"] == {model_id: "undeployed"} for node in out["undeploy"].values())
    assert out["after_undeploy"]["model_state"] == "UNDEPLOYED"
    assert out["delete"]["result"] == "deleted" and out["delete"]["_id"] == model_id
    assert out["after_delete"]["class"] == "NotFoundError" and out["after_delete"]["status"] == 404
    assert out["delete_task"]["result"] == "deleted" and out["delete_group"]["result"] == "deleted"
    assert out["group_after_delete"]["class"] == "NotFoundError"
    assert cluster.api.get(f"{ML}/models/{model_id}").status == 404
    assert cluster.api.get(f"{ML}/tasks/{task_id}").status == 404
    assert cluster.api.get(f"{ML}/model_groups/{group_id}").status == 404


def test_ml_commons_client_connectors(osml_python, cluster):
    name = unique("osml-connector")
    body = {"name": name, "description": "an OpenAI-format endpoint", "version": "1", "protocol": "http",
            "parameters": {"model": "text-embedding-3-small"}, "credential": {"openAI_key": "sk-never-shown"},
            "actions": [{"action_type": "predict", "method": "POST", "url": "http://127.0.0.1:9/v1/embeddings",
                         "headers": {"Authorization": "Bearer ${credential.openAI_key}"},
                         "request_body": '{ "input": ${parameters.input}, "model": "${parameters.model}" }'}]}
    out = run_script(cluster.api.base, {"phase": "connector", "connector": body})
    connector_id = out["connector_id"]
    assert out["get"]["name"] == name and out["get"]["actions"][0]["url"] == body["actions"][0]["url"]
    assert "sk-never-shown" not in json.dumps(out["get"])
    assert connector_id in [h["_id"] for h in out["listed"]["hits"]["hits"]]
    assert [h["_id"] for h in out["searched"]["hits"]["hits"]] == [connector_id]
    assert out["delete"]["result"] == "deleted"
    assert out["after_delete"]["class"] == "NotFoundError" and out["after_delete"]["status"] == 404
    assert cluster.api.get(f"{ML}/connectors/{connector_id}").status == 404


def _vectors(body: dict) -> np.ndarray:
    rows = []
    for result in body["inference_results"]:
        (tensor,) = result["output"]
        assert tensor["name"] == "sentence_embedding" and tensor["data_type"] == "FLOAT32"
        rows.append(tensor["data"])
    return np.asarray(rows, dtype=np.float32)
