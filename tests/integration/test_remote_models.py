"""Remote models end to end: an ML Commons connector with the OpenAI blueprint pointed at a real
OpenAI-format server (infinity-emb on loopback), a remote model registered on it, deployed by its
first predict, answering what the provider answers, and the provider's errors passed through."""
from __future__ import annotations

from tests.cluster import ML
from tests.harness import wait_for
from tests.metricskit import scrape, value


def blueprint(url: str, key: str) -> dict:
    return {
        "name": "infinity embeddings", "description": "OpenAI-format server on loopback", "version": 1,
        "protocol": "http", "parameters": {"model": "dummy/model"}, "credential": {"openAI_key": key},
        "actions": [{"action_type": "predict", "method": "POST", "url": f"{url}/embeddings",
                     "headers": {"Authorization": "Bearer ${credential.openAI_key}"},
                     "request_body": '{ "input": ${parameters.input}, "model": "${parameters.model}" }',
                     "pre_process_function": "connector.pre_process.openai.embedding",
                     "post_process_function": "connector.post_process.openai.embedding"}]}


def register(api, **source) -> str:
    resp = api.post(f"{ML}/models/_register", {"name": "remote embeddings", "function_name": "remote", **source})
    assert resp.status == 200, resp.body
    assert resp.body["status"] == "CREATED" and resp.body["model_id"]
    task = api.get(f"{ML}/tasks/{resp.body['task_id']}").body
    assert task["state"] == "COMPLETED" and task["task_type"] == "REGISTER_MODEL"
    return resp.body["model_id"]


def test_a_remote_model_serves_what_the_provider_answers(cluster, infinity):
    api = cluster.api
    connector_id = api.post(f"{ML}/connectors/_create", blueprint(infinity.url, infinity.api_key)).body["connector_id"]
    model_id = register(api, connector_id=connector_id)
    assert api.get(f"{ML}/models/{model_id}").body["model_state"] == "REGISTERED"
    texts = ["hello world", "a remote model"]
    # The first predict deploys it (auto-deploy), then answers.
    resp = api.post(f"{ML}/models/{model_id}/_predict", {"text_docs": texts})
    assert resp.status == 200, resp.body
    (result,) = resp.body["inference_results"]
    assert result["status_code"] == 200
    assert [t["data"] for t in result["output"]] == infinity.embed(texts)
    assert {t["name"] for t in result["output"]} == {"sentence_embedding"}
    model = api.get(f"{ML}/models/{model_id}").body
    assert model["model_state"] == "DEPLOYED" and sorted(model["current_worker_nodes"]) == sorted(cluster.nodes)
    # parameters instead of text_docs: the template takes them as they are.
    resp = api.post(f"{ML}/models/{model_id}/_predict", {"parameters": {"input": ["direct"]}})
    assert resp.body["inference_results"][0]["output"][0]["data"] == infinity.embed(["direct"])[0]
    # Each provider call is a forward pass in the metrics: its duration and documents, per node,
    # from the nodes' heartbeats.
    def provider_calls_counted():
        now = scrape(api)
        calls = sum(value(now, "mlcommons_inference_seconds_count", model=model_id, node=n) for n in cluster.nodes)
        docs = sum(value(now, "mlcommons_batch_size_sum", model=model_id, node=n) for n in cluster.nodes)
        return (calls, docs) if calls >= 2 else None

    assert wait_for(provider_calls_counted, 15, 0.2, "the provider calls in the metrics") == (2, 3)
    # The connector is held while the model exists; undeploy and delete free it.
    assert api.delete(f"{ML}/connectors/{connector_id}").status == 409
    assert api.post(f"{ML}/models/{model_id}/_undeploy").status == 200
    wait_for(lambda: api.get(f"{ML}/models/{model_id}").body["model_state"] == "UNDEPLOYED", 30, 0.1,
             "the undeploy")
    assert api.delete(f"{ML}/models/{model_id}").status == 200
    assert api.delete(f"{ML}/connectors/{connector_id}").status == 200


def test_the_provider_s_refusal_comes_through_with_its_status(cluster, infinity):
    api = cluster.api
    model_id = register(api, connector=blueprint(infinity.url, "not-the-key"))
    shown = api.get(f"{ML}/models/{model_id}").body
    assert shown["connector"]["actions"][0]["url"].startswith(infinity.url) and "credential" not in shown["connector"]
    resp = api.post(f"{ML}/models/{model_id}/_predict", {"text_docs": ["x"]})
    assert resp.status == 401, resp.body
    assert resp.body["error"]["reason"].startswith("Error from remote service: ")
    assert "Unauthorized" in resp.body["error"]["reason"]
    api.post(f"{ML}/models/{model_id}/_undeploy")


def test_a_remote_model_without_a_connector_is_refused(cluster):
    resp = cluster.api.post(f"{ML}/models/_register", {"name": "r", "function_name": "remote",
                                                        "connector_id": "nope"})
    assert resp.status == 404 and resp.body["error"]["reason"] == "Failed to find connector:nope"
    resp = cluster.api.post(f"{ML}/models/_register", {"name": "r", "function_name": "remote"})
    assert resp.status == 400
    assert "You must provide connector content when creating a remote model without connector id" in \
        resp.body["error"]["reason"]


def test_a_rate_limited_model_throttles_the_whole_cluster(cluster, infinity):
    api = cluster.api
    model_id = register(api, connector=blueprint(infinity.url, infinity.api_key),
                        rate_limiter={"limit": "2", "unit": "MINUTES"})
    statuses = [api.post(f"{ML}/models/{model_id}/_predict", {"text_docs": ["x"]}) for _ in range(3)]
    assert [r.status for r in statuses] == [200, 200, 429], [r.body for r in statuses]
    assert statuses[2].body["error"]["reason"] == "Request is throttled at model level."
    api.post(f"{ML}/models/{model_id}/_undeploy")
