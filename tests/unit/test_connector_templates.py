"""Filling a connector's templates, reading replies with JSONPath, and the built-in pre- and
post-process functions (core/remote/templates.py, jsonpath.py, functions.py), against what ML
Commons does with the same inputs."""
from __future__ import annotations

import orjson
import pytest

from mlcommons.core.remote import functions, jsonpath, templates
from mlcommons.errors import BadRequest

OPENAI_BODY = '{ "input": ${parameters.input}, "model": "${parameters.model}" }'


def test_a_call_value_is_escaped_as_commons_text_escapes_json():
    assert templates.escape_json('say "hi"/\\ \n\t') == 'say \\"hi\\"\\/\\\\ \\n\\t'
    assert templates.escape_json("café 😀") == "caf\\u00E9 \\uD83D\\uDE00"
    assert templates.escape_json("\x01") == "\\u0001"


def test_parameters_merge_with_the_call_winning_and_containers_kept_raw():
    merged = templates.merge({"model": "small", "input": "connector"}, {"input": ["a", "b"], "note": 'x"y'},
                             {"input": '["pre"]'})
    assert merged["model"] == "small" and merged["input"] == '["a","b"]' and merged["note"] == 'x\\"y'
    raw = templates.merge({}, {"text": "a/b", "no_escape_params": "text"})
    assert raw["text"] == "a/b"


def test_a_payload_is_filled_and_checked():
    params = templates.merge({"model": "text-embedding-3-small"}, {}, functions.preprocess(
        "connector.pre_process.openai.embedding", ["hello", 'a "quote"']))
    body = templates.payload(OPENAI_BODY, params)
    assert orjson.loads(body) == {"input": ["hello", 'a "quote"'], "model": "text-embedding-3-small"}
    assert templates.payload('{"a": "${parameters.x:-fallback}"}', {}) == '{"a": "fallback"}'
    assert templates.payload('{"a": "${parameters.x:-null}"}', {}) == '{"a": null}'
    assert templates.payload(None, {"http_body": '{"raw": 1}'}) == '{"raw": 1}'


@pytest.mark.parametrize("body, message", [
    ('{"a": ${parameters.missing}}', "Invalid payload: "),
    ('{"a": "${parameters.one}", "b": "${parameters.two}"}',
     "Some parameter placeholder not filled in payload: one, two"),
    ('not json ${parameters.model}', "Invalid payload: not json small"),
])
def test_what_cannot_be_filled_is_refused_in_ml_commons_words(body, message):
    with pytest.raises(BadRequest) as refused:
        templates.payload(body, {"model": "small"})
    assert refused.value.reason.startswith(message)


def test_one_pass_only_a_value_holding_a_placeholder_is_not_expanded_again():
    params = {"a": "${parameters.b}", "b": "x" * 10}
    assert templates.fill('"${parameters.a}"', params) == '"${parameters.b}"'


def test_headers_take_credentials_and_parameters():
    out = templates.headers({"Authorization": "Bearer ${credential.key}", "X-Model": "${parameters.model}"},
                            {"model": "m"}, {"key": "sk-1"})
    assert out == {"Authorization": "Bearer sk-1", "X-Model": "m"}
    with pytest.raises(BadRequest, match="Header 'X' contains unresolved placeholder"):
        templates.headers({"X": "${credential.nope}"}, {}, {})
    with pytest.raises(BadRequest, match="exceeds 8KB limit"):
        templates.headers({"X": "${parameters.big}"}, {"big": "v" * 9000}, {})


def test_jsonpath_definite_and_wildcard_paths():
    reply = {"data": [{"embedding": [1, 2]}, {"embedding": [3, 4]}], "usage": {"total": 2}}
    assert jsonpath.read(reply, "$.data[*].embedding") == [[1, 2], [3, 4]]
    assert jsonpath.read(reply, "$.usage.total") == 2
    assert jsonpath.read(reply, "$['data'][1]['embedding']") == [3, 4]
    assert jsonpath.read([[1], [2]], "$[*]") == [[1], [2]]
    with pytest.raises(jsonpath.PathNotFound):
        jsonpath.read(reply, "$.nothing.here")
    for bad in ("data", "$..data", "$.a" * 200, "$" + ".a" * 33):
        with pytest.raises(BadRequest):
            jsonpath.read(reply, bad)


def test_post_process_openai_cohere_and_default_embeddings():
    openai = orjson.dumps({"data": [{"embedding": [0.1, 0.2]}, {"embedding": [0.3, 0.4]}]})
    tensors = functions.postprocess("connector.post_process.openai.embedding", openai)
    assert tensors == [{"name": "sentence_embedding", "data_type": "FLOAT32", "shape": [2], "data": [0.1, 0.2]},
                       {"name": "sentence_embedding", "data_type": "FLOAT32", "shape": [2], "data": [0.3, 0.4]}]
    cohere = orjson.dumps({"embeddings": [[1.0, 2.0, 3.0]]})
    assert functions.postprocess("connector.post_process.cohere.embedding", cohere)[0]["shape"] == [3]
    assert functions.postprocess("connector.post_process.default.embedding", b"[[5.0]]")[0]["data"] == [5.0]
    # response_filter replaces the function's path
    nested = orjson.dumps({"result": {"vectors": [[1.5, 2.5]]}})
    assert functions.postprocess("connector.post_process.default.embedding", nested,
                                 "$.result.vectors")[0]["data"] == [1.5, 2.5]


def test_post_process_rerank_returns_scores_in_document_order():
    reply = orjson.dumps({"results": [{"index": 1, "relevance_score": 0.9}, {"index": 0, "relevance_score": 0.2}]})
    tensors = functions.postprocess("connector.post_process.cohere.rerank", reply)
    assert [t["data"] for t in tensors] == [[0.2], [0.9]] and tensors[0]["name"] == "similarity"


@pytest.mark.parametrize("name, body, message", [
    ("connector.post_process.openai.embedding", b'{"data": {"embedding": 1}}', "The embedding should be"),
    ("connector.post_process.cohere.embedding", b'{"embeddings": "x"}', "Post process function input is not a List."),
    ("connector.post_process.cohere.rerank", b'{"results": [{"index": 0}]}',
     "should contain index and relevance_score"),
    ("connector.post_process.openai.embedding", b"null", "model output is null"),
    ("params.x * 2", b"{}", "scripts (Painless) are not supported"),
])
def test_post_process_refusals(name, body, message):
    with pytest.raises(BadRequest, match=message.replace("(", r"\(").replace(")", r"\)")):
        functions.postprocess(name, body)


def test_without_a_post_process_function_the_reply_comes_back_as_a_map():
    assert functions.postprocess(None, b'{"a": 1}') == [{"name": "response", "dataAsMap": {"a": 1}}]
    assert functions.postprocess(None, b"[1, 2]") == [{"name": "response", "dataAsMap": {"response": [1, 2]}}]
    assert functions.postprocess(None, b"plain text") == [{"name": "response", "dataAsMap": {"response": "plain text"}}]
    assert functions.postprocess(None, b'{"a": {"b": 2}}', "$.a") == [{"name": "response", "dataAsMap": {"b": 2}}]


def test_pre_process_functions():
    assert functions.preprocess("connector.pre_process.cohere.embedding", ["a"]) == {"texts": '["a"]'}
    assert functions.preprocess("connector.pre_process.bedrock.embedding", ["a", "b"]) == {"inputText": "a"}
    assert functions.preprocess("connector.pre_process.default.rerank", ["d1", "d2"], "q") == {
        "query": "q", "documents": '["d1","d2"]', "top_n": "2"}
    assert functions.preprocess(None, ["a"]) == {"input": '["a"]'}
    with pytest.raises(BadRequest, match="can only support TextSimilarityInputDataSet"):
        functions.preprocess("connector.pre_process.cohere.rerank", ["a"])
    with pytest.raises(BadRequest, match="can only support TextDocsInputDataSet"):
        functions.preprocess("connector.pre_process.openai.embedding", None)
    with pytest.raises(BadRequest, match="not supported"):
        functions.preprocess("return params.text_docs", ["a"])
