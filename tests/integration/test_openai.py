"""OpenAI's embeddings API, driven by the real ``openai`` package: its vectors are ``_predict``'s,
by id and by name, as floats and as base64; errors come in OpenAI's shape and the SDK raises its
own exception types for them; a model nobody serves is deployed by the first request."""
from __future__ import annotations

import base64

import numpy as np
import pytest

from tests.integration.flows import ML, deploy, register_url, undeploy, unique

openai = pytest.importorskip("openai")


def client_for(cluster) -> "openai.OpenAI":
    return openai.OpenAI(base_url=f"{cluster.api.base}/v1", api_key="unused-without-security", max_retries=0,
                         timeout=60)


def predict(cluster, model_id: str, texts: list[str]) -> np.ndarray:
    body = cluster.api.post(f"{ML}/models/{model_id}/_predict", {"text_docs": texts}).body
    return np.array([r["output"][0]["data"] for r in body["inference_results"]], dtype=np.float32)


def test_the_openai_sdk_gets_predicts_vectors(cluster, tiny):
    zip_path, info = tiny
    name = unique("openai-tiny")
    model_id = register_url(cluster, zip_path, info, name=name)
    deploy(cluster, model_id)
    client = client_for(cluster)
    texts = ["the first text", "a second, longer text than the first"]
    try:
        expected = predict(cluster, model_id, texts)
        by_id = client.embeddings.create(model=model_id, input=texts)
        assert [d.index for d in by_id.data] == [0, 1] and by_id.model == model_id
        assert np.allclose(np.array([d.embedding for d in by_id.data], dtype=np.float32), expected, atol=1e-6)
        by_name = client.embeddings.create(model=name, input=texts[0])
        assert np.allclose(by_name.data[0].embedding, expected[0], atol=1e-6)
        # base64 (the SDK's default when numpy is there, decoded by it) and asked for explicitly
        raw = client.embeddings.with_raw_response.create(model=model_id, input=texts, encoding_format="base64")
        encoded = raw.http_response.json()["data"][0]["embedding"]
        assert np.allclose(np.frombuffer(base64.b64decode(encoded), dtype="<f4"), expected[0], atol=1e-6)
        dim = expected.shape[1]
        assert len(client.embeddings.create(model=model_id, input="x", dimensions=dim).data[0].embedding) == dim
        listed = [m.id for m in client.models.list()]
        assert model_id in listed
        assert client.models.retrieve(model_id).id == model_id
    finally:
        undeploy(cluster, model_id)


def test_errors_come_in_openais_shape(cluster, tiny):
    zip_path, info = tiny
    model_id = register_url(cluster, zip_path, info)
    deploy(cluster, model_id)
    client = client_for(cluster)
    try:
        with pytest.raises(openai.NotFoundError) as missing:
            client.embeddings.create(model="no-such-model", input="x")
        assert missing.value.body["code"] == "model_not_found"
        with pytest.raises(openai.BadRequestError, match="dimensions"):
            client.embeddings.create(model=model_id, input="x", dimensions=7)
        for body in ({"model": model_id, "input": [1, 2, 3]}, {"model": model_id, "input": []},
                     {"model": model_id}, {"input": "x"}, {"model": model_id, "input": "x", "encoding_format": "hex"},
                     {"model": model_id, "input": "x", "dimensions": True}):
            resp = cluster.api.post("/v1/embeddings", body)
            assert resp.status == 400, (body, resp.body)
            assert set(resp.body) == {"error"} and set(resp.body["error"]) == {"message", "type", "param", "code"}
            assert resp.body["error"]["type"] == "invalid_request_error"
        unknown = cluster.api.get("/v1/nothing")
        assert unknown.status == 404 and unknown.body["error"]["type"] == "invalid_request_error"
        # the other dialects keep theirs
        assert set(cluster.api.get(f"{ML}/models/no-such-model").body) == {"error", "status"}
    finally:
        undeploy(cluster, model_id)


def test_a_name_two_models_share_is_refused_and_auto_deploy_serves_the_first_request(cluster, tiny):
    zip_path, info = tiny
    name = unique("twin")
    first = register_url(cluster, zip_path, info, name=name)
    second = register_url(cluster, zip_path, info, name=name)
    client = client_for(cluster)
    try:
        with pytest.raises(openai.BadRequestError, match="shared by models"):
            client.embeddings.create(model=name, input="x")
        # Not deployed: the first request deploys it, as a first _predict does.
        vectors = client.embeddings.create(model=first, input=["auto", "deployed"])
        assert len(vectors.data) == 2
        assert np.allclose(vectors.data[0].embedding, predict(cluster, first, ["auto"])[0], atol=1e-6)
    finally:
        for model_id in (first, second):
            undeploy(cluster, model_id)
