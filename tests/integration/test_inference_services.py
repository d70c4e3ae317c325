"""Elasticsearch's external inference services: an ``openai`` endpoint on a real OpenAI-format
server (infinity-emb on loopback), created with one checking call that records its dimensions,
answering what the provider answers, never showing its key, and leaving nothing behind when the
provider refuses it or when it is deleted."""
from __future__ import annotations

import pytest

from tests.cluster import ML


def openai_endpoint(url: str, key: str) -> dict:
    return {"service": "openai", "service_settings": {"api_key": key, "model_id": "dummy/model",
                                                       "url": f"{url}/embeddings"}}


def test_an_openai_endpoint_serves_what_the_provider_answers(cluster, infinity):
    api = cluster.api
    created = api.put("/_inference/text_embedding/infinity-oa", openai_endpoint(infinity.url, infinity.api_key))
    assert created.status == 200, created.body
    settings = created.body["service_settings"]
    assert settings["dimensions"] == len(infinity.embed(["test"])[0]) and "api_key" not in settings
    assert settings["rate_limit"] == {"requests_per_minute": 3000}
    shown = api.get("/_inference/text_embedding/infinity-oa").body["endpoints"][0]
    assert shown["service"] == "openai" and "api_key" not in shown["service_settings"]
    texts = ["hello world", "an external service"]
    resp = api.post("/_inference/text_embedding/infinity-oa", {"input": texts})
    assert resp.status == 200, resp.body
    assert [e["embedding"] for e in resp.body["text_embedding"]] == infinity.embed(texts)
    # Its serving model is hidden from the ML Commons model search.
    found = api.post(f"{ML}/models/_search", {"query": {"ids": {"values": ["infinity-oa"]}}}).body
    assert found["hits"]["total"]["value"] == 0
    assert api.delete("/_inference/text_embedding/infinity-oa").status == 200
    assert api.get(f"{ML}/models/infinity-oa").status == 404
    assert api.get("/_inference/text_embedding/infinity-oa").status == 404


def test_a_refused_key_leaves_nothing_behind(cluster, infinity):
    api = cluster.api
    resp = api.put("/_inference/text_embedding/infinity-bad", openai_endpoint(infinity.url, "wrong-key"))
    assert resp.status == 401, resp.body
    assert "Unauthorized" in resp.body["error"]["reason"]
    assert api.get("/_inference/text_embedding/infinity-bad").status == 404
    assert api.get(f"{ML}/models/infinity-bad").status == 404


def test_external_service_settings_are_checked(cluster):
    resp = cluster.api.put("/_inference/text_embedding/nokey", {"service": "openai",
                                                                "service_settings": {"model_id": "m"}})
    assert resp.status == 400
    assert "[service_settings] does not contain the required setting [api_key]" in resp.body["error"]["reason"]
    resp = cluster.api.put("/_inference/rerank/oa-rerank", {"service": "openai", "service_settings": {
        "api_key": "k", "model_id": "m"}})
    assert resp.status == 400 and "does not support task type [rerank]" in resp.body["error"]["reason"]


def test_a_custom_service_fills_its_template_and_reads_its_path(cluster, infinity):
    api = cluster.api
    body = {"service": "custom", "service_settings": {
        "url": f"{infinity.url}/embeddings", "headers": {"Authorization": "Bearer ${api_key}"},
        "secret_parameters": {"api_key": infinity.api_key},
        "request": '{"input": ${input}, "model": "dummy/model"}',
        "response": {"json_parser": {"text_embeddings": "$.data[*].embedding"}}}}
    created = api.put("/_inference/text_embedding/infinity-custom", body)
    assert created.status == 200, created.body
    assert "secret_parameters" not in created.body["service_settings"]
    assert infinity.api_key not in str(api.get("/_inference/text_embedding/infinity-custom").body)
    resp = api.post("/_inference/text_embedding/infinity-custom", {"input": ["custom"]})
    assert [e["embedding"] for e in resp.body["text_embedding"]] == infinity.embed(["custom"])
    assert api.delete("/_inference/text_embedding/infinity-custom").status == 200


def test_the_provider_status_comes_through_in_elasticsearch_words(cluster, infinity):
    resp = cluster.api.put("/_inference/text_embedding/infinity-words", openai_endpoint(infinity.url, "wrong-key"))
    assert resp.status == 401, resp.body
    assert resp.body["error"]["reason"] == ("Received an authentication error status code for request from inference "
                                            "entity id [infinity-words] status [401]. Error message: [Unauthorized]")


def test_elasticsearch_retries_only_429_500_and_503(cluster, infinity):
    from tests.faults import FaultProxy

    proxy = FaultProxy(infinity.url)
    api = cluster.api
    try:
        assert api.put("/_inference/text_embedding/via-proxy", openai_endpoint(proxy.url, infinity.api_key)).status == 200
        proxy.plan("503")
        resp = api.post("/_inference/text_embedding/via-proxy", {"input": ["retried"]})
        assert resp.status == 200, resp.body
        assert len(proxy.arrivals) == 2
        proxy.plan("502", "502")
        resp = api.post("/_inference/text_embedding/via-proxy", {"input": ["not retried"]})
        assert len(proxy.arrivals) == 1
        assert resp.status == 400 and resp.body["error"]["reason"] == (
            "Received a server error status code for request from inference entity id [via-proxy] status [502]. "
            "Error message: [injected 502]")
        proxy.plan("404")
        resp = api.post("/_inference/text_embedding/via-proxy", {"input": ["missing"]})
        assert resp.status == 404 and len(proxy.arrivals) == 1
        assert resp.body["error"]["reason"].startswith(f"Resource not found at [{proxy.url}/embeddings] for request ")
    finally:
        api.delete("/_inference/text_embedding/via-proxy")
        proxy.stop()


def cohere_rerank(url: str, key: str, **task_settings) -> dict:
    body = {"service": "cohere", "service_settings": {"api_key": key, "url": f"{url}/rerank", "model_id": "tiny"}}
    if task_settings:
        body["task_settings"] = task_settings
    return body


def test_a_cohere_rerank_endpoint_ranks_as_the_provider_does(cluster, infinity_reranker):
    api = cluster.api
    created = api.put("/_inference/rerank/cohere-rr", cohere_rerank(infinity_reranker.url, infinity_reranker.api_key,
                                                                     top_n=2))
    assert created.status == 200, created.body
    assert created.body["task_type"] == "rerank" and "api_key" not in created.body["service_settings"]
    assert "chunking_settings" not in created.body
    docs = ["Munich is in Germany.", "The sky is blue.", "Bavaria's capital \"Munich\"", "cats"]
    query = "where is \"Munich\"?"
    resp = api.post("/_inference/rerank/cohere-rr", {"query": query, "input": docs})
    assert resp.status == 200, resp.body
    expected = infinity_reranker.rerank(query, docs)[:2]
    got = resp.body["rerank"]
    assert [r["index"] for r in got] == [r["index"] for r in expected]
    assert [r["relevance_score"] for r in got] == pytest.approx([r["relevance_score"] for r in expected], abs=1e-6)
    assert [r["text"] for r in got] == [docs[r["index"]] for r in expected]
    resp = api.post("/_inference/rerank/cohere-rr", {"query": query, "input": docs,
                                                     "task_settings": {"return_documents": False, "top_n": 4}})
    assert len(resp.body["rerank"]) == 4 and "text" not in resp.body["rerank"][0]
    assert api.delete("/_inference/rerank/cohere-rr").status == 200
    refused = api.put("/_inference/rerank/cohere-bad", cohere_rerank(infinity_reranker.url, "wrong"))
    assert refused.status == 401 and api.get("/_inference/rerank/cohere-bad").status == 404


def test_a_cohere_rerank_connector_scores_each_document(cluster, infinity_reranker):
    api = cluster.api
    connector = {
        "name": "cohere rerank", "version": "1", "protocol": "http",
        "parameters": {"model": "tiny"}, "credential": {"cohere_key": infinity_reranker.api_key},
        "actions": [{"action_type": "predict", "method": "POST", "url": f"{infinity_reranker.url}/rerank",
                     "headers": {"Authorization": "Bearer ${credential.cohere_key}"},
                     "request_body": '{ "documents": ${parameters.documents}, "query": "${parameters.query}", '
                                     '"top_n": ${parameters.top_n}, "model": "${parameters.model}" }',
                     "pre_process_function": "connector.pre_process.cohere.rerank",
                     "post_process_function": "connector.post_process.cohere.rerank"}]}
    connector_id = api.post(f"{ML}/connectors/_create", connector).body["connector_id"]
    model_id = api.post(f"{ML}/models/_register", {"name": "reranker", "function_name": "remote",
                                                   "connector_id": connector_id}).body["model_id"]
    docs = ["Munich is in Germany.", "The sky is blue.", "cats"]
    query = 'a "quoted" question'
    resp = api.post(f"{ML}/models/{model_id}/_predict", {"query_text": query, "text_docs": docs})
    assert resp.status == 200, resp.body
    scores = [t["data"][0] for t in resp.body["inference_results"][0]["output"]]
    by_index = {r["index"]: r["relevance_score"] for r in infinity_reranker.rerank(query, docs)}
    assert scores == pytest.approx([by_index[i] for i in range(len(docs))], abs=1e-6)
    api.post(f"{ML}/models/{model_id}/_undeploy")
