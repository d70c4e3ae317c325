"""The connectors that Elasticsearch's external services become (elasticsearch/services.py)."""
from __future__ import annotations

import orjson
import pytest

from mlcommons.core.remote import templates
from mlcommons.elasticsearch import services
from mlcommons.errors import BadRequest


def test_openai_defaults_and_what_is_shown():
    shown, secrets, connector = services.parse("openai", "text_embedding", {
        "api_key": "sk-1", "model_id": "text-embedding-3-small", "dimensions": 256, "organization_id": "org"})
    assert shown == {"model_id": "text-embedding-3-small", "url": services.OPENAI_URL, "organization_id": "org",
                     "dimensions": 256, "rate_limit": {"requests_per_minute": 3000}}
    assert secrets == {"api_key": "sk-1"}
    action = connector["actions"][0]
    assert action["headers"] == {"Authorization": "Bearer ${credential.api_key}", "OpenAI-Organization": "org"}
    params = templates.merge(connector["parameters"], {}, {"input": '["a"]'})
    assert templates.payload(action["request_body"], params) == \
        '{"input": ["a"], "model": "text-embedding-3-small", "dimensions": 256}'


def test_hugging_face_and_cohere():
    shown, _, connector = services.parse("hugging_face", "text_embedding", {"api_key": "k", "url": "https://h/x"})
    assert shown["url"] == "https://h/x" and "post_process_function" not in connector["actions"][0]
    assert services.embeddings_of({"inference_results": [{"output": [
        {"name": "response", "dataAsMap": {"response": [[1.0], [2.0]]}}]}]}) == [[1.0], [2.0]]
    assert services.embeddings_of({"inference_results": [{"output": [
        {"name": "response", "dataAsMap": {"embeddings": [[3.0]]}}]}]}) == [[3.0]]
    shown, _, connector = services.parse("cohere", "text_embedding", {"api_key": "k", "model_id": "embed-v3"})
    body = templates.payload(connector["actions"][0]["request_body"],
                             templates.merge(connector["parameters"], {}, {"input": '["a"]'}))
    assert body == '{"texts": ["a"], "input_type": "search_document", "model": "embed-v3", "truncate": "END"}'


@pytest.mark.parametrize("service, settings, message", [
    ("openai", {"model_id": "m"}, "does not contain the required setting [api_key]"),
    ("openai", {"api_key": "k", "model_id": "m", "rate_limit": {"requests_per_minute": 0}},
     "[requests_per_minute] must be a positive integer"),
    ("hugging_face", {"api_key": "k"}, "does not contain the required setting [url]"),
    ("custom", {"url": "https://x", "request": "{}"}, "a template that holds ${input}"),
    ("cohere", {"api_key": "k", "embedding_type": "weird"}, "Invalid value [weird] for [embedding_type]"),
])
def test_refusals_list_every_problem(service, settings, message):
    with pytest.raises(BadRequest) as refused:
        services.parse(service, "text_embedding", settings)
    assert message in refused.value.reason and refused.value.error_type == "validation_exception"


def test_cohere_rerank_is_a_connector_with_the_cohere_rerank_functions():
    shown, secrets, connector = services.parse("cohere", "rerank", {"api_key": "k", "model_id": "rerank-v3"})
    assert shown == {"url": services.COHERE_RERANK_URL, "model_id": "rerank-v3", "rate_limit": {
        "requests_per_minute": 10000}}
    action = connector["actions"][0]
    assert action["pre_process_function"] == "connector.pre_process.cohere.rerank"
    assert action["post_process_function"] == "connector.post_process.cohere.rerank"
    params = templates.merge(connector["parameters"], {}, {"query": 'a \\"q\\"', "documents": '["d"]', "top_n": "1"})
    assert orjson.loads(templates.payload(action["request_body"], params)) == {
        "query": 'a "q"', "documents": ["d"], "top_n": 1, "return_documents": False, "model": "rerank-v3"}
    with pytest.raises(BadRequest, match="does not support task type"):
        services.parse("openai", "rerank", {"api_key": "k", "model_id": "m"})


def test_cohere_input_type_and_truncate_follow_elasticsearch():
    assert services.call_parameters("cohere", {"input_type": "ingest"}, "search") == {"input_type": "search_query"}
    assert services.call_parameters("cohere", {"input_type": "ingest", "truncate": "start"}, None) == {
        "input_type": "search_document", "truncate": "START"}
    assert services.call_parameters("openai", {}, "search") == {}


@pytest.mark.parametrize("status, words, rest, retry", [
    (500, "Received a server error status code", 400, True),
    (503, "Received a server busy error status code", 400, True),
    (502, "Received a server error status code", 400, False),
    (429, "Received a rate limit status code", 429, True),
    (401, "Received an authentication error status code", 401, False),
    (400, "Received a bad request status code", 400, False),
    (404, "Resource not found at [http://h/x]", 404, False),
    (418, "Received an unsuccessful status code", 418, False),
])
def test_provider_failures_in_elasticsearch_words(status, words, rest, retry):
    from mlcommons.core.remote import failures

    found = failures.elasticsearch(status, b'{"error": {"message": "why"}}', "ep", "http://h/x")
    assert found == (rest, f"{words} for request from inference entity id [ep] status [{status}]. "
                           "Error message: [why]", retry)
    assert failures.elasticsearch(status, b"", "ep", "http://h/x").reason.endswith(f"status [{status}]")
    assert failures.mlcommons(status, b"body") == (status, "Error from remote service: body",
                                                   status == 429 or status >= 500)
