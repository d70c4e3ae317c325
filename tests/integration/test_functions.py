"""Sparse encoding, sparse tokenizing and text similarity, served in both dialects on the same
runtimes: results through the API equal the runtime's own, in the predict shapes of each dialect."""
from __future__ import annotations

import base64
import math

import numpy as np
import pytest

from tests.elandkit import load_eland, upload_to_elasticsearch
from tests.integration.flows import ML, deploy, register_url, undeploy

TEXTS = ["hello world", "the search engine", "a tiny model of words"]


def _local_runtime(zip_path, info, function, tmp_path):
    from tests.elandkit import opensearch_model_doc
    from workers.extract import safe_extract
    from workers.runtimes import load_runtime

    safe_extract(zip_path, tmp_path / "model")
    return load_runtime(tmp_path / "model", opensearch_model_doc(function, info))


@pytest.mark.parametrize("function", ["SPARSE_ENCODING", "SPARSE_TOKENIZE"])
def test_opensearch_sparse(cluster, tmp_path, function):
    from tests.elandkit import opensearch_archive

    zip_path, info = opensearch_archive(tmp_path, function)
    model_id = register_url(cluster, zip_path, info, function_name=function, model_config=None)
    try:
        assert deploy(cluster, model_id)["state"] == "COMPLETED"
        resp = cluster.api.post(f"{ML}/models/{model_id}/_predict", {"text_docs": TEXTS})
        assert resp.status == 200, resp.body
        results = resp.body["inference_results"]
        assert len(results) == len(TEXTS)
        runtime = _local_runtime(zip_path, info, function, tmp_path)
        expected = runtime.sparse(TEXTS)
        runtime.close()
        for result, want in zip(results, expected):
            output = result["output"][0]
            assert output["name"] == "output"
            got = output["dataAsMap"]["response"][0]
            assert set(got) == set(want) and all(math.isclose(got[k], want[k], rel_tol=1e-5) for k in want)
            assert all(v >= 0 for v in got.values())
    finally:
        undeploy(cluster, model_id)


def test_opensearch_text_similarity(cluster, tmp_path):
    from tests.elandkit import opensearch_archive

    zip_path, info = opensearch_archive(tmp_path, "TEXT_SIMILARITY")
    model_id = register_url(cluster, zip_path, info, function_name="TEXT_SIMILARITY")
    try:
        assert deploy(cluster, model_id)["state"] == "COMPLETED"
        resp = cluster.api.post(f"{ML}/models/{model_id}/_predict",
                                {"query_text": "hello world", "text_docs": TEXTS})
        assert resp.status == 200, resp.body
        outputs = [r["output"][0] for r in resp.body["inference_results"]]
        assert all(o["name"] == "similarity" and o["shape"] == [1] for o in outputs)
        got = np.array([o["data"][0] for o in outputs], dtype=np.float32)
        from_bytes = np.array([np.frombuffer(base64.b64decode(o["byte_buffer"]["array"]), "<f4")[0] for o in outputs])
        assert np.array_equal(got, from_bytes)
        runtime = _local_runtime(zip_path, info, "TEXT_SIMILARITY", tmp_path)
        assert np.allclose(got, runtime.score("hello world", TEXTS), atol=1e-5)
        runtime.close()
        missing = cluster.api.post(f"{ML}/models/{model_id}/_predict", {"text_docs": TEXTS})
        assert missing.status == 400 and "query_text" in missing.body["error"]["reason"]
    finally:
        undeploy(cluster, model_id)


def test_elasticsearch_text_expansion_and_similarity(es, tmp_path):
    from tests.elandkit import eland_model

    expansion = eland_model(tmp_path / "x", "text_expansion")
    similarity = eland_model(tmp_path / "s", "text_similarity")
    upload_to_elasticsearch(es, "tiny-elser", expansion)
    upload_to_elasticsearch(es, "tiny-reranker", similarity)
    try:
        es.ml.start_trained_model_deployment(model_id="tiny-elser", wait_for="started")
        es.ml.start_trained_model_deployment(model_id="tiny-reranker", wait_for="started")
        out = es.ml.infer_trained_model(model_id="tiny-elser", docs=[{"text_field": t} for t in TEXTS])
        runtime = load_eland(expansion, tmp_path / "xr")
        want = runtime.sparse(TEXTS)
        runtime.close()
        for result, expected in zip(out["inference_results"], want):
            got = result["predicted_value"]
            assert set(got) == set(expected) and all(math.isclose(got[k], expected[k], rel_tol=1e-5) for k in got)
        out = es.ml.infer_trained_model(model_id="tiny-reranker", docs=[{"text_field": t} for t in TEXTS],
                                        inference_config={"text_similarity": {"text": "hello world"}})
        runtime = load_eland(similarity, tmp_path / "sr")
        want = runtime.score("hello world", TEXTS)
        runtime.close()
        assert np.allclose([r["predicted_value"] for r in out["inference_results"]], want, atol=1e-5)
    finally:
        for model_id in ("tiny-elser", "tiny-reranker"):
            es.ml.stop_trained_model_deployment(model_id=model_id)
            es.ml.delete_trained_model(model_id=model_id)
