"""The API's surface: error bodies and statuses, aliases, model groups, tasks, cluster settings."""
from __future__ import annotations

import pytest

from tests.integration.flows import ML, assert_error, deploy, register_url, undeploy, unique


@pytest.mark.parametrize("method, path, status, reason", [
    ("GET", "/models/nope", 404, "Failed to find model with the provided model id: nope"),
    ("DELETE", "/models/nope", 404, "Failed to find model with the provided model id: nope"),
    ("POST", "/models/nope/_deploy", 404, "Failed to find model with the provided model id: nope"),
    ("POST", "/models/nope/_undeploy", 404, "Failed to find model with the provided model id: nope"),
    ("GET", "/tasks/nope", 404, "Failed to find task"),
    ("DELETE", "/tasks/nope", 404, "Failed to find task"),
    ("GET", "/model_groups/nope", 404, "Failed to find model group with the provided model group id: nope"),
    ("DELETE", "/model_groups/nope", 404, "Failed to find model group with the provided model group id: nope"),
])
def test_unknown_ids_are_404(cluster, method, path, status, reason):
    assert_error(cluster.api.request(method, ML + path), status, reason, "status_exception")


def test_predict_errors(cluster, tiny):
    assert_error(cluster.api.post(f"{ML}/models/nope/_predict", {"text_docs": ["x"]}), 404,
                 "Failed to find model with the provided model id: nope")
    zip_path, info = tiny
    model_id = register_url(cluster, zip_path, info)
    with cluster.settings({"plugins.ml_commons.model_auto_deploy.enable": False}):
        assert_error(cluster.api.post(f"{ML}/models/{model_id}/_predict", {"text_docs": ["x"]}), 400,
                     "Model not ready yet. Please deploy the model first.")
    assert_error(cluster.api.post(f"{ML}/_predict/not_an_algo/{model_id}", {"text_docs": ["x"]}), 400,
                 "Wrong function name")
    assert_error(cluster.api.post(f"{ML}/models/{model_id}/_predict", {}), 400)
    assert_error(cluster.api.post(f"{ML}/models/{model_id}/_predict", {"text_docs": "x"}), 400)
    assert_error(cluster.api.post(f"{ML}/models/{model_id}/_predict", {"text_docs": [1]}), 400)
    assert_error(cluster.api.post(f"{ML}/models/{model_id}/_predict"), 400, "request body is required",
                 "parse_exception")


def test_predict_options(cluster, tiny):
    zip_path, info = tiny
    model_id = register_url(cluster, zip_path, info)
    deploy(cluster, model_id)
    try:
        body = cluster.api.post(f"{ML}/models/{model_id}/_predict",
                                {"text_docs": ["a", "b"], "return_number": False, "return_bytes": True}).body
        tensor = body["inference_results"][0]["output"][0]
        assert "data" not in tensor and tensor["byte_buffer"]["order"] == "LITTLE_ENDIAN"
        body = cluster.api.post(f"{ML}/models/{model_id}/_predict",
                                {"text_docs": ["a"], "target_response": ["other"]}).body
        assert body == {"inference_results": [{}]}
        cluster.api.put(f"{ML}/models/{model_id}", {"is_enabled": False})
        from tests.harness import wait_for

        wait_for(lambda: cluster.api.post(f"{ML}/models/{model_id}/_predict", {"text_docs": ["a"]}).status == 403,
                 10, 0.1, "the disabled model to refuse")
        assert_error(cluster.api.post(f"{ML}/models/{model_id}/_predict", {"text_docs": ["a"]}), 403,
                     "Model is disabled.")
        cluster.api.put(f"{ML}/models/{model_id}", {"is_enabled": True})
    finally:
        undeploy(cluster, model_id)


def test_routing_errors_and_aliases(cluster):
    assert_error(cluster.api.get("/_plugins/_ml/no_such_thing"), 400, error_type="illegal_argument_exception")
    resp = cluster.api.request("PATCH", f"{ML}/models/abc")
    assert_error(resp, 405)
    assert_error(cluster.api.post(f"{ML}/models/_search", data=b"[1,2]", headers={"Content-Type": "application/json"}),
                 400, error_type="parse_exception")
    # 20 MB limit in the test cluster's API
    assert_error(cluster.api.post(f"{ML}/models/_register_meta", data=b"x" * 20_000_001), 413)


def test_delete_refused_while_deployed(cluster, tiny):
    zip_path, info = tiny
    model_id = register_url(cluster, zip_path, info)
    deploy(cluster, model_id)
    assert_error(cluster.api.delete(f"{ML}/models/{model_id}"), 400,
                 "Model cannot be deleted in deploying or deployed state. Try undeploy model first then delete")
    undeploy(cluster, model_id)
    assert cluster.api.delete(f"{ML}/models/{model_id}").status == 200


def test_update_model(cluster, tiny):
    zip_path, info = tiny
    model_id = register_url(cluster, zip_path, info)
    resp = cluster.api.put(f"{ML}/models/{model_id}", {"description": "new words", "name": "renamed"})
    assert resp.status == 200 and resp.body["result"] == "updated" and resp.body["_id"] == model_id
    model = cluster.model(model_id)
    assert model["description"] == "new words" and model["name"] == "renamed"
    assert_error(cluster.api.put(f"{ML}/models/{model_id}", {"model_state": "DEPLOYED"}), 400)
    assert_error(cluster.api.put(f"{ML}/models/nope", {"description": "x"}), 404,
                 "Failed to find model to update with the provided model id: nope")


def test_model_search(cluster, tiny):
    zip_path, info = tiny
    name = unique("searchable")
    ids = {register_url(cluster, zip_path, info, name=name) for _ in range(2)}
    body = cluster.api.post(f"{ML}/models/_search", {"query": {"bool": {"must": [{"term": {"name": name}}]}},
                                                    "sort": [{"model_version": "desc"}]}).body
    assert body["hits"]["total"] == {"value": 2, "relation": "eq"}
    hits = body["hits"]["hits"]
    assert {h["_id"] for h in hits} == ids and hits[0]["_source"]["model_version"] == "2"
    assert all(h["_index"] == ".plugins-ml-model" and "model_content" not in h["_source"] for h in hits)
    # GET with a body works as POST does (opensearch-py-ml sends search bodies with GET)
    got = cluster.api.get(f"{ML}/models/_search", {"query": {"term": {"name": name}}, "size": 1}).body
    assert got["hits"]["total"]["value"] == 2 and len(got["hits"]["hits"]) == 1
    assert_error(cluster.api.post(f"{ML}/models/_search", {"query": {"bogus": {}}}), 400)


def test_model_groups(cluster, tiny):
    name = unique("group")
    resp = cluster.api.post(f"{ML}/model_groups/_register", {"name": name, "description": "d"})
    assert resp.status == 200 and resp.body["status"] == "CREATED"
    group_id = resp.body["model_group_id"]
    assert_error(cluster.api.post(f"{ML}/model_groups/_register", {"name": name}), 400,
                 f"The name you provided is already being used by a model group with ID: {group_id}.")
    group = cluster.api.get(f"{ML}/model_groups/{group_id}").body
    assert group["name"] == name and group["latest_version"] == 0 and group["access"] == "public"
    assert cluster.api.put(f"{ML}/model_groups/{group_id}", {"description": "e"}).body == {"status": "Updated"}
    found = cluster.api.post(f"{ML}/model_groups/_search", {"query": {"match": {"description": "e"}}}).body
    assert group_id in {h["_id"] for h in found["hits"]["hits"]}

    zip_path, info = tiny
    model_id = register_url(cluster, zip_path, info, model_group_id=group_id)
    assert cluster.model(model_id)["model_group_id"] == group_id
    assert_error(cluster.api.delete(f"{ML}/model_groups/{group_id}"), 409,
                 "Cannot delete the model group when it has associated model versions")
    cluster.api.delete(f"{ML}/models/{model_id}")
    resp = cluster.api.delete(f"{ML}/model_groups/{group_id}")
    assert resp.status == 200 and resp.body["result"] == "deleted"
    # the name is free again
    assert cluster.api.post(f"{ML}/model_groups/_register", {"name": name}).status == 200
    assert_error(cluster.api.post(f"{ML}/model_groups/_register", {"name": "x", "backend_roles": ["a"]}), 400)


def test_tasks_api(cluster, tiny):
    zip_path, info = tiny
    model_id = register_url(cluster, zip_path, info)
    task = deploy(cluster, model_id)
    found = cluster.api.post(f"{ML}/tasks/_search", {"query": {"bool": {"filter": [
        {"term": {"model_id": model_id}}, {"term": {"task_type": "DEPLOY_MODEL"}}]}}}).body
    assert found["hits"]["total"]["value"] == 1
    task_id = found["hits"]["hits"][0]["_id"]
    assert found["hits"]["hits"][0]["_source"] == task
    assert cluster.api.delete(f"{ML}/tasks/{task_id}").body["result"] == "deleted"
    assert cluster.api.get(f"{ML}/tasks/{task_id}").status == 404
    undeploy(cluster, model_id)


def test_cluster_settings(cluster):
    name = "plugins.ml_commons.max_model_on_node"
    resp = cluster.api.put("/_cluster/settings", {"transient": {"plugins": {"ml_commons": {"max_model_on_node": 7}}}})
    assert resp.status == 200 and resp.body["acknowledged"] is True
    assert resp.body["transient"] == {"plugins": {"ml_commons": {"max_model_on_node": "7"}}}
    flat = cluster.api.get("/_cluster/settings?flat_settings=true").body
    assert flat["transient"][name] == "7"
    assert cluster.api.put("/_cluster/settings", {"transient": {name: None}}).status == 200
    assert name not in cluster.api.get("/_cluster/settings?flat_settings").body["transient"]
    defaults = cluster.api.get("/_cluster/settings?include_defaults=true&flat_settings=true").body["defaults"]
    assert defaults[name] == "10"
    assert_error(cluster.api.put("/_cluster/settings", {"persistent": {"no.such.setting": 1}}), 400,
                 "persistent setting [no.such.setting], not recognized")
    assert_error(cluster.api.put("/_cluster/settings", {"persistent": {"cluster.name": "x"}}), 400,
                 "persistent setting [cluster.name], not dynamically updateable")
    assert_error(cluster.api.put("/_cluster/settings", {"persistent": {name: "many"}}), 400)
    root = cluster.api.get("/").body
    assert root["cluster_name"] == "mlcommons" and root["version"]["distribution"] == "opensearch"


def test_cluster_health_waits_as_scripts_expect(cluster):
    api = cluster.api
    health = api.get("/_cluster/health").body
    assert health["status"] in ("green", "yellow") and health["number_of_nodes"] == 2
    assert health["cluster_name"] and health["timed_out"] is False
    assert api.get("/_cluster/health?wait_for_nodes=>=2&wait_for_status=yellow&timeout=5s").status == 200
    late = api.get("/_cluster/health?wait_for_nodes=3&timeout=300ms")
    assert late.status == 408 and late.body["timed_out"] is True and late.body["number_of_nodes"] == 2
    assert api.get("/_cluster/health?wait_for_nodes=lots").status == 400
    assert api.get("/_cluster/health?wait_for_status=purple").status == 400
