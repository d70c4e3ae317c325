"""Registering models: by URL, by chunked upload, pretrained; and what a failure leaves behind."""
from __future__ import annotations

import hashlib

import pytest

from tests.cluster import KEYS
from tests.integration.flows import ML, deploy, predict, register_body, register_url, undeploy, unique


def group_of(cluster, model_id: str) -> dict:
    model = cluster.model(model_id)
    return cluster.api.get(f"{ML}/model_groups/{model['model_group_id']}").body


def test_register_by_url_creates_a_group_named_after_the_model(cluster, tiny):
    zip_path, info = tiny
    name = unique("by-url")
    first = register_url(cluster, zip_path, info, name=name)
    second = register_url(cluster, zip_path, info, name=name)
    a, b = cluster.model(first), cluster.model(second)
    assert a["model_group_id"] == b["model_group_id"]
    assert (a["model_version"], b["model_version"]) == ("1", "2")
    assert a["algorithm"] == "TEXT_EMBEDDING" and a["model_format"] == "TORCH_SCRIPT"
    assert a["model_content_hash_value"] == info["model_content_hash_value"]
    assert a["model_config"]["framework_type"] == "SENTENCE_TRANSFORMERS"
    assert group_of(cluster, first)["latest_version"] == 2


def test_register_task_has_no_visible_middle_state(cluster, tiny):
    zip_path, info = tiny
    resp = cluster.api.post(f"{ML}/models/_register", register_body(zip_path, info))
    task_id = resp.body["task_id"]
    seen = set()
    while True:
        task = cluster.api.get(f"{ML}/tasks/{task_id}").body
        seen.add(task["state"])
        if task["state"] != "CREATED":
            break
    assert seen <= {"CREATED", "COMPLETED"}
    assert task["model_id"] and task["task_type"] == "REGISTER_MODEL"


def test_register_with_a_wrong_hash_fails_and_leaves_nothing(cluster, tiny):
    zip_path, info = tiny
    name = unique("wrong-hash")
    body = register_body(zip_path, info, name=name, model_content_hash_value="0" * 64)
    before = set(cluster.redis.keys(KEYS.chunk("*", "*")))
    resp = cluster.api.post(f"{ML}/models/_register", body)
    assert resp.status == 200
    task = cluster.wait_task(resp.body["task_id"])
    assert task["state"] == "FAILED" and task["error"] == "model content changed"
    assert "model_id" not in task
    # No model document, no chunk, and the group this call created is gone.
    hits = cluster.api.post(f"{ML}/models/_search", {"query": {"term": {"name": name}}}).body
    assert hits["hits"]["total"]["value"] == 0
    groups = cluster.api.post(f"{ML}/model_groups/_search", {"query": {"term": {"name": name}}}).body
    assert groups["hits"]["total"]["value"] == 0
    assert set(cluster.redis.keys(KEYS.chunk("*", "*"))) <= before


def test_register_failure_gives_the_version_back_to_an_existing_group(cluster, tiny):
    zip_path, info = tiny
    name = unique("keep-group")
    model_id = register_url(cluster, zip_path, info, name=name)
    group_id = cluster.model(model_id)["model_group_id"]
    body = register_body(zip_path, info, name=name, model_group_id=group_id,
                         url=(zip_path.parent / "missing.zip").resolve().as_uri())
    task = cluster.wait_task(cluster.api.post(f"{ML}/models/_register", body).body["task_id"])
    assert task["state"] == "FAILED" and "Failed to download model" in task["error"]
    group = cluster.api.get(f"{ML}/model_groups/{group_id}").body
    assert group["latest_version"] == 1


@pytest.mark.parametrize("change, status, reason", [
    ({"url": "ftp2://example/x.zip"}, 400, "URL can't match trusted url regex"),
    ({"model_content_hash_value": None}, 400, "Model content Hash code need to be provided when register via url. "
                                              "Please calculate sha 256 Hash code."),
    ({"model_config": None}, 400, "model config is null"),
    ({"model_format": None}, 400, "model format is null"),
    ({"name": None}, 400, "model name is null"),
    ({"function_name": "NOPE"}, 400, "Wrong function name: [NOPE]"),
    ({"model_group_id": "no-such-group"}, 404,
     "Failed to find model group with the provided model group id: no-such-group"),
    ({"access_mode": "private"}, 400, "You cannot specify model access control parameters because the Security "
                                      "plugin or model access control is disabled on your cluster."),
])
def test_register_refuses_bad_input_at_once(cluster, tiny, change, status, reason):
    zip_path, info = tiny
    body = {k: v for k, v in {**register_body(zip_path, info), **change}.items() if v is not None}
    resp = cluster.api.post(f"{ML}/models/_register", body)
    assert resp.status == status, resp.body
    assert resp.error["reason"] == reason
    assert resp.body["status"] == status
    assert resp.error["root_cause"][0]["reason"] == reason


def test_register_by_url_needs_the_setting(cluster, tiny):
    zip_path, info = tiny
    with cluster.settings({"plugins.ml_commons.allow_registering_model_via_url": False}):
        resp = cluster.api.post(f"{ML}/models/_register", register_body(zip_path, info))
    assert resp.status == 400
    assert resp.error["reason"].startswith("To upload custom model user needs to enable allow_registering_model_via_url")


def test_register_with_deploy_true_deploys(cluster, tiny):
    zip_path, info = tiny
    resp = cluster.api.post(f"{ML}/models/_register?deploy=true", register_body(zip_path, info))
    model_id = cluster.wait_task(resp.body["task_id"])["model_id"]
    from tests.harness import wait_for

    wait_for(lambda: cluster.model(model_id)["model_state"] == "DEPLOYED", 60, 0.1, "the deploy after register")
    assert predict(cluster, model_id, ["deployed on register"]).shape[0] == 1
    undeploy(cluster, model_id)


# --- chunked upload (the opensearch-py-ml flow) ---------------------------------------------

def upload(cluster, zip_path, info, piece: int = 1_000_000, **meta_extra) -> str:
    content = zip_path.read_bytes()
    pieces = [content[i:i + piece] for i in range(0, len(content), piece)]
    meta = {"name": unique("uploaded"), "version": "1", "model_format": "TORCH_SCRIPT",
            "model_group_id": "", "model_content_size_in_bytes": len(content),
            "model_content_hash_value": hashlib.sha256(content).hexdigest(),
            "model_config": info["model_config"], "total_chunks": len(pieces), **meta_extra}
    resp = cluster.api.post(f"{ML}/models/meta", meta)
    assert resp.status == 200 and resp.body["status"] == "CREATED", resp.body
    model_id = resp.body["model_id"]
    for n, data in enumerate(pieces):
        assert cluster.model(model_id)["model_state"] == "REGISTERING"
        # opensearch-py-ml labels the raw bytes application/json
        resp = cluster.api.post(f"{ML}/models/{model_id}/chunk/{n}", data=data,
                                headers={"Content-Type": "application/json"})
        assert resp.status == 200 and resp.body == {"status": "Uploaded"}, resp.body
    return model_id


def test_chunked_upload_registers_and_deploys(cluster, tiny):
    zip_path, info = tiny
    model_id = upload(cluster, zip_path, info)
    model = cluster.model(model_id)
    assert model["model_state"] == "REGISTERED" and model["total_chunks"] > 1
    assert deploy(cluster, model_id)["state"] == "COMPLETED"
    assert predict(cluster, model_id, ["uploaded in pieces"]).shape[0] == 1
    undeploy(cluster, model_id)


def test_chunks_may_arrive_in_any_order(cluster, tiny):
    zip_path, info = tiny
    content = zip_path.read_bytes()
    piece = len(content) // 3 + 1
    pieces = [content[i:i + piece] for i in range(0, len(content), piece)]
    meta = {"name": unique("shuffled"), "model_format": "TORCH_SCRIPT",
            "model_content_hash_value": hashlib.sha256(content).hexdigest(),
            "model_config": info["model_config"], "total_chunks": len(pieces)}
    model_id = cluster.api.post(f"{ML}/models/_register_meta", meta).body["model_id"]
    for n in reversed(range(len(pieces))):
        assert cluster.model(model_id)["model_state"] == "REGISTERING"
        cluster.api.post(f"{ML}/models/{model_id}/upload_chunk/{n}", data=pieces[n])
    model = cluster.model(model_id)
    assert model["model_state"] == "REGISTERED"
    assert model["model_content_size_in_bytes"] == len(content)


def test_upload_chunk_refusals(cluster, tiny):
    zip_path, info = tiny
    meta = {"name": unique("refusals"), "model_format": "TORCH_SCRIPT", "model_content_hash_value": "a" * 64,
            "model_config": info["model_config"], "total_chunks": 2}
    model_id = cluster.api.post(f"{ML}/models/_register_meta", meta).body["model_id"]
    resp = cluster.api.post(f"{ML}/models/{model_id}/upload_chunk/2", data=b"x")
    assert resp.status == 400 and resp.error["reason"].startswith("Chunk number exceeds total chunks")
    resp = cluster.api.post(f"{ML}/models/{model_id}/upload_chunk/0", data=b"")
    assert resp.status == 400 and resp.error["reason"] == "Chunk size either 0 or null"
    resp = cluster.api.post(f"{ML}/models/{model_id}/upload_chunk/0", data=b"x" * 10_000_001)
    assert resp.status == 413 and resp.error["reason"].startswith("Chunk size exceeds 10MB")
    resp = cluster.api.post(f"{ML}/models/nope/upload_chunk/0", data=b"x")
    assert resp.status == 404
    assert cluster.model(model_id)["model_state"] == "REGISTERING"
    assert not cluster.redis.exists(KEYS.chunk(model_id, 0))


def test_register_meta_refusals(cluster, tiny):
    _, info = tiny
    meta = {"name": "m", "model_format": "TORCH_SCRIPT", "model_content_hash_value": "a" * 64,
            "model_config": info["model_config"], "total_chunks": 1}
    for field, reason in [("name", "model name is null"), ("model_format", "model format is null"),
                          ("model_content_hash_value", "model content hash value is null"),
                          ("model_config", "model config is null"), ("total_chunks", "total chunks field is null")]:
        resp = cluster.api.post(f"{ML}/models/_register_meta", {k: v for k, v in meta.items() if k != field})
        assert resp.status == 400 and resp.error["reason"] == reason, resp.body
    with cluster.settings({"plugins.ml_commons.allow_registering_model_via_local_file": False}):
        resp = cluster.api.post(f"{ML}/models/_register_meta", meta)
    assert resp.status == 400
    assert resp.error["reason"].startswith("To upload custom model from local file, user needs to enable")
    resp = cluster.api.post(f"{ML}/models/_register_meta", data=b"{not json", headers={"Content-Type": "application/json"})
    assert resp.status == 400 and resp.error["type"] == "parse_exception"


def test_register_over_http(cluster, tiny):
    """A real HTTP download, served by a local server."""
    import functools
    import http.server
    import threading

    zip_path, info = tiny
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(zip_path.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{zip_path.name}"
        model_id = register_url(cluster, zip_path, info, url=url)
        assert cluster.model(model_id)["model_content_size_in_bytes"] == zip_path.stat().st_size
        body = register_body(zip_path, info, url=url + ".missing")
        task = cluster.wait_task(cluster.api.post(f"{ML}/models/_register", body).body["task_id"])
        assert task["state"] == "FAILED" and "404" in task["error"]
    finally:
        server.shutdown()
