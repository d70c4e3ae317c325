"""Elasticsearch's external inference services: an ``openai`` endpoint on a real OpenAI-format
server (infinity-emb on loopback), created with one checking call that records its dimensions,
answering what the provider answers, never showing its key, and leaving nothing behind when the
provider refuses it or when it is deleted."""
from __future__ import annotations

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
