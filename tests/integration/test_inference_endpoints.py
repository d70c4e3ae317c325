"""Elasticsearch inference endpoints through elasticsearch-py: create (which starts a deployment
named after the endpoint), call, list, delete (which stops it); chunking settings, their
validation, and chunked inference with character offsets."""
from __future__ import annotations

import numpy as np
import pytest
from elasticsearch import BadRequestError, NotFoundError

from mlcommons.elasticsearch.chunking import word_spans
from tests.elandkit import load_eland, upload_to_elasticsearch

TEXTS = ["hello world", "the search engine", "a tiny model of words"]
LONG = ("The cluster serves models. Worker nodes hold them in memory! Each node answers requests from a queue. "
        "Batches are taken as they come, sorted by length. Nothing waits for a window to fill. " * 3).strip()


@pytest.fixture(scope="module")
def models(es, tmp_path_factory):
    from tests.elandkit import eland_model

    tmp = tmp_path_factory.mktemp("endpoints")
    made = {"text_embedding": eland_model(tmp / "e", "text_embedding"),
            "text_expansion": eland_model(tmp / "x", "text_expansion"),
            "text_similarity": eland_model(tmp / "s", "text_similarity")}
    for task, model in made.items():
        upload_to_elasticsearch(es, f"ep-{task}", model)
    yield made
    for task in made:
        es.ml.delete_trained_model(model_id=f"ep-{task}", force=True)


def _settings(model_id: str) -> dict:
    return {"model_id": model_id, "num_allocations": 1, "num_threads": 1}


def test_text_embedding_endpoint_with_chunking(es, cluster, models, tmp_path):
    created = es.inference.put(task_type="text_embedding", inference_id="my-embed", inference_config={
        "service": "elasticsearch", "service_settings": _settings("ep-text_embedding"),
        "chunking_settings": {"strategy": "word", "max_chunk_size": 10, "overlap": 5}})
    assert created["chunking_settings"] == {"strategy": "word", "max_chunk_size": 10, "overlap": 5}
    assert created["service_settings"]["dimensions"] > 0
    try:
        stats = es.ml.get_trained_models_stats(model_id="ep-text_embedding")["trained_model_stats"]
        assert [s["deployment_stats"]["deployment_id"] for s in stats] == ["my-embed"]

        out = es.inference.text_embedding(inference_id="my-embed", input=TEXTS)
        got = np.array([r["embedding"] for r in out["text_embedding"]], dtype=np.float32)
        runtime = load_eland(models["text_embedding"], tmp_path / "rt")
        assert np.allclose(got, runtime.embed(TEXTS), atol=1e-5)

        resp = cluster.api.post("/_inference/text_embedding/my-embed?chunked=true", {"input": [LONG, "short one"]})
        assert resp.status == 200, resp.body
        first, second = resp.body["text_embedding"]
        assert len(first["chunks"]) > 3 and len(second["chunks"]) == 1
        assert first["chunks"][0]["start_offset"] == 0 and first["chunks"][-1]["end_offset"] == len(LONG)
        for c in first["chunks"]:
            piece = LONG[c["start_offset"]:c["end_offset"]]
            assert len(word_spans(piece)) <= 10  # a chunk may carry the punctuation before its first word
            assert np.allclose(c["embedding"], runtime.embed([piece])[0], atol=1e-5)
        runtime.close()

        listed = es.inference.get(inference_id="my-embed")["endpoints"]
        assert listed[0]["inference_id"] == "my-embed" and listed[0]["task_type"] == "text_embedding"
        with pytest.raises(BadRequestError) as exc:
            es.inference.put(task_type="text_embedding", inference_id="my-embed", inference_config={
                "service": "elasticsearch", "service_settings": _settings("ep-text_embedding")})
        assert exc.value.body["error"]["type"] == "resource_already_exists_exception"
    finally:
        assert es.inference.delete(inference_id="my-embed")["acknowledged"] is True
    assert es.ml.get_trained_models_stats(model_id="ep-text_embedding")["trained_model_stats"][0] \
        .get("deployment_stats") is None
    with pytest.raises(NotFoundError):
        es.inference.get(inference_id="my-embed")


def test_sparse_and_rerank_endpoints(es, models, tmp_path):
    es.inference.put(task_type="sparse_embedding", inference_id="my-sparse", inference_config={
        "service": "elasticsearch", "service_settings": _settings("ep-text_expansion"), "chunking_settings": {}})
    es.inference.put(task_type="rerank", inference_id="my-rerank", inference_config={
        "service": "elasticsearch", "service_settings": _settings("ep-text_similarity"),
        "task_settings": {"return_documents": True}})
    try:
        assert es.inference.get(inference_id="my-sparse")["endpoints"][0]["chunking_settings"] == \
            {"strategy": "sentence", "max_chunk_size": 250, "sentence_overlap": 1}
        sparse = es.inference.sparse_embedding(inference_id="my-sparse", input=TEXTS)["sparse_embedding"]
        runtime = load_eland(models["text_expansion"], tmp_path / "x")
        for got, want in zip(sparse, runtime.sparse(TEXTS)):
            assert got["is_truncated"] is False and set(got["embedding"]) == set(want)
        runtime.close()

        ranked = es.inference.rerank(inference_id="my-rerank", query="hello world", input=TEXTS,
                                     task_settings={"top_n": 2})["rerank"]
        runtime = load_eland(models["text_similarity"], tmp_path / "s")
        scores = runtime.score("hello world", TEXTS)
        runtime.close()
        want = sorted(range(3), key=lambda i: -scores[i])[:2]
        assert [r["index"] for r in ranked] == want
        assert [r["text"] for r in ranked] == [TEXTS[i] for i in want]
        assert np.allclose([r["relevance_score"] for r in ranked], scores[want], atol=1e-5)
        names = {e["inference_id"] for e in es.inference.get()["endpoints"]}
        assert {"my-sparse", "my-rerank"} <= names
    finally:
        es.inference.delete(inference_id="my-sparse")
        es.inference.delete(inference_id="my-rerank")


@pytest.mark.parametrize("chunking, message", [
    ({"strategy": "sentence", "max_chunk_size": 10, "sentence_overlap": 1}, "[max_chunk_size] must be a greater than or equal to [20.0]"),
    ({"strategy": "sentence", "max_chunk_size": 100, "sentence_overlap": 2}, "sentence_overlap[2] must be either 0 or 1"),
    ({"strategy": "word", "max_chunk_size": 20, "overlap": 11}, "[overlap] must be a less than or equal to [10.0]"),
    ({"strategy": "word", "max_chunk_size": 301, "overlap": 1}, "[max_chunk_size] must be a less than or equal to [300.0]"),
])
def test_chunking_settings_are_validated_and_nothing_is_created(es, models, chunking, message):
    with pytest.raises(BadRequestError) as exc:
        es.inference.put(task_type="text_embedding", inference_id="bad-chunks", inference_config={
            "service": "elasticsearch", "service_settings": _settings("ep-text_embedding"),
            "chunking_settings": chunking})
    assert exc.value.body["error"]["type"] == "validation_exception"
    assert message in exc.value.body["error"]["reason"]
    with pytest.raises(NotFoundError):
        es.inference.get(inference_id="bad-chunks")


def test_service_settings_are_required(es, models):
    with pytest.raises(BadRequestError) as exc:
        es.inference.put(task_type="text_embedding", inference_id="no-threads", inference_config={
            "service": "elasticsearch", "service_settings": {"model_id": "ep-text_embedding", "num_allocations": 1}})
    assert "[service_settings] does not contain the required setting [num_threads]" in exc.value.body["error"]["reason"]
    with pytest.raises(BadRequestError) as exc:
        es.inference.put(task_type="rerank", inference_id="wrong-task", inference_config={
            "service": "elasticsearch", "service_settings": _settings("ep-text_embedding")})
    assert "cannot serve a [rerank] inference endpoint" in exc.value.body["error"]["reason"]


def test_a_deployment_an_endpoint_uses_stops_only_with_force(es, cluster, models):
    """As in Elasticsearch: _stop refuses a deployment an inference endpoint sends its requests
    to (409), unless force; the endpoint's delete stops it anyway."""
    from elasticsearch import ConflictError

    es.inference.put(task_type="text_embedding", inference_id="held-embed", inference_config={
        "service": "elasticsearch", "service_settings": _settings("ep-text_embedding")})
    try:
        with pytest.raises(ConflictError) as exc:
            es.ml.stop_trained_model_deployment(model_id="held-embed")
        assert exc.value.body["error"]["reason"].startswith(
            "Cannot stop deployment [held-embed] as it is used by inference endpoint [held-embed]")
        assert es.inference.text_embedding(inference_id="held-embed", input=["still served"])["text_embedding"]
        assert es.ml.stop_trained_model_deployment(model_id="held-embed", force=True)["stopped"] is True
        stats = es.ml.get_trained_models_stats(model_id="ep-text_embedding")["trained_model_stats"]
        assert all(s.get("deployment_stats", {}).get("deployment_id") != "held-embed" for s in stats)
    finally:
        es.inference.delete(inference_id="held-embed")
