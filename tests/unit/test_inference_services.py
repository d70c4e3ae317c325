"""The connectors that Elasticsearch's external services become (elasticsearch/services.py)."""
from __future__ import annotations

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
