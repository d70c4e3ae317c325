"""The Elasticsearch dialect through the real elasticsearch-py client: upload a model as Eland
does (config, 1 MiB-style definition parts, vocabulary), start deployments, infer, read stats,
stop and delete; the validations and errors of the reference."""
from __future__ import annotations

import base64

import numpy as np
import pytest
from elasticsearch import ApiError, BadRequestError, ConflictError, NotFoundError

from tests.cluster import ML
from tests.elandkit import load_eland
from tests.elandkit import upload_to_elasticsearch as upload
from tests.harness import wait_for


@pytest.fixture(scope="module")
def tiny_embedding(tmp_path_factory):
    from tests.elandkit import eland_model

    return eland_model(tmp_path_factory.mktemp("eland"), "text_embedding")


def local_embeddings(model, texts, tmp_path) -> np.ndarray:
    runtime = load_eland(model, tmp_path)
    try:
        return runtime.embed(texts)
    finally:
        runtime.close()


def test_client_sees_elasticsearch(es, cluster):
    info = es.info()
    assert info["version"]["number"].startswith("9.") and info["tagline"] == "You Know, for Search"
    resp = cluster.api.get(f"{ML}/models/nothing")  # every response, any dialect, carries the header
    assert resp.headers.get("X-Elastic-Product") == "Elasticsearch"


def test_upload_start_infer_stats_stop_delete(es, cluster, tiny_embedding, tmp_path):
    model_id = "tiny-embedder"
    upload(es, model_id, tiny_embedding)
    listed = es.ml.get_trained_models(model_id=model_id, include="definition_status")
    assert listed["count"] == 1 and listed["trained_model_configs"][0]["fully_defined"] is True
    # The same model in the OpenSearch dialect, in the same store.
    assert cluster.api.get(f"{ML}/models/{model_id}").body["model_state"] == "REGISTERING"

    started = es.ml.start_trained_model_deployment(model_id=model_id, wait_for="started", timeout="60s")
    assignment = started["assignment"]
    assert assignment["task_parameters"]["deployment_id"] == model_id
    assert assignment["assignment_state"] == "started"
    assert any(r["routing_state"] == "started" for r in assignment["routing_table"].values())
    # It rode on a DEPLOY_MODEL task, visible to the OpenSearch tasks API.
    found = cluster.api.post(f"{ML}/tasks/_search", {"query": {"term": {"model_id": model_id}}}).body
    assert any(h["_source"]["task_type"] == "DEPLOY_MODEL" for h in found["hits"]["hits"])

    texts = ["the quick brown fox", "a cluster of worker nodes", "hello"]
    result = es.ml.infer_trained_model(model_id=model_id, docs=[{"text_field": t} for t in texts])
    got = np.array([r["predicted_value"] for r in result["inference_results"]], dtype=np.float32)
    assert np.allclose(got, local_embeddings(tiny_embedding, texts, tmp_path), atol=1e-5)

    # A second deployment of the same model, under its own id.
    es.ml.start_trained_model_deployment(model_id=model_id, deployment_id="tiny-search", wait_for="started",
                                         queue_capacity=50)
    again = es.ml.infer_trained_model(model_id="tiny-search", docs=[{"text_field": "hello"}])
    assert np.allclose(again["inference_results"][0]["predicted_value"], got[2], atol=1e-5)

    with pytest.raises(BadRequestError) as exc:
        es.ml.start_trained_model_deployment(model_id=model_id, wait_for="started")
    assert "an existing deployment with the same id [tiny-embedder] exist" in str(exc.value.body)

    def counted():
        stats = es.ml.get_trained_models_stats(model_id=model_id)["trained_model_stats"]
        by_id = {s["deployment_stats"]["deployment_id"]: s["deployment_stats"] for s in stats}
        return by_id if by_id.get(model_id, {}).get("inference_count") == 3 else None

    by_id = wait_for(counted, 15, 0.2, "stats to count the inferences")
    assert set(by_id) == {model_id, "tiny-search"}
    assert by_id["tiny-search"]["queue_capacity"] == 50
    assert by_id[model_id]["allocation_status"]["state"] == "fully_allocated"
    assert by_id[model_id]["nodes"][0]["routing_state"]["routing_state"] == "started"

    with pytest.raises(ConflictError) as exc:
        es.ml.delete_trained_model(model_id=model_id)
    assert exc.value.body["error"]["reason"] == f"Cannot delete model [{model_id}] as it is currently deployed"

    assert es.ml.stop_trained_model_deployment(model_id="tiny-search")["stopped"] is True
    assert es.ml.stop_trained_model_deployment(model_id=model_id)["stopped"] is True
    with pytest.raises(ConflictError) as exc:
        es.ml.infer_trained_model(model_id=model_id, docs=[{"text_field": "hello"}])
    assert "must be deployed to use" in exc.value.body["error"]["reason"]
    with pytest.raises(NotFoundError):
        es.ml.stop_trained_model_deployment(model_id="nothing-here", allow_no_match=False)
    assert es.ml.delete_trained_model(model_id=model_id)["acknowledged"] is True
    with pytest.raises(NotFoundError) as exc:
        es.ml.get_trained_models(model_id=model_id)
    assert exc.value.body["error"]["type"] == "resource_not_found_exception"
    assert cluster.api.get(f"{ML}/models/{model_id}").status == 404


@pytest.mark.parametrize("params, message", [
    ({"threads_per_allocation": 3}, "[threads_per_allocation] must be a power of 2 less than or equal to 32"),
    ({"queue_capacity": 100000}, "[queue_capacity] must be less than 100000"),
    ({"number_of_allocations": 0}, "[number_of_allocations] must be a positive integer"),
    ({"priority": "low", "number_of_allocations": 2}, "[number_of_allocations] must be 1 when [priority] is low"),
    ({"number_of_allocations": 2, "adaptive_allocations": {"enabled": True}},
     "[number_of_allocations] cannot be set if adaptive allocations is enabled"),
    ({"adaptive_allocations": {"enabled": True, "min_number_of_allocations": 3, "max_number_of_allocations": 2}},
     "[min_number_of_allocations] must not be larger than [max_number_of_allocations]"),
])
def test_start_validations(es, params, message):
    with pytest.raises(BadRequestError) as exc:
        es.ml.start_trained_model_deployment(model_id="any-model", **params)
    assert exc.value.body["error"]["type"] == "action_request_validation_exception"
    assert message in exc.value.body["error"]["reason"]


def test_definition_part_checks_and_incomplete_start(es, tiny_embedding):
    model_id = "tiny-incomplete"
    definition, vocabulary, inference_config = tiny_embedding
    es.ml.put_trained_model(model_id=model_id, inference_config=inference_config,
                            input={"field_names": ["text_field"]})
    with pytest.raises(BadRequestError) as exc:
        es.ml.put_trained_model(model_id=model_id, inference_config=inference_config,
                                input={"field_names": ["text_field"]})
    assert exc.value.body["error"]["type"] == "resource_already_exists_exception"
    with pytest.raises(BadRequestError) as exc:
        es.ml.put_trained_model_definition_part(model_id=model_id, part=2, definition="AAAA",
                                                total_definition_length=10, total_parts=2)
    assert "[part] must be less than total_parts" in exc.value.body["error"]["reason"]
    with pytest.raises(NotFoundError):
        es.ml.put_trained_model_definition_part(model_id="no-such-model", part=0, definition="AAAA",
                                                total_definition_length=3, total_parts=1)
    es.ml.put_trained_model_definition_part(model_id=model_id, part=0, definition=base64.b64encode(definition[:100]).decode(),
                                            total_definition_length=len(definition), total_parts=2)
    es.ml.put_trained_model_vocabulary(model_id=model_id, **vocabulary)
    listed = es.ml.get_trained_models(model_id="tiny-inc*", include="definition_status")
    assert listed["trained_model_configs"][0]["fully_defined"] is False
    with pytest.raises(ApiError) as exc:
        es.ml.start_trained_model_deployment(model_id=model_id, wait_for="started")
    assert exc.value.meta.status == 400 and "missing" in exc.value.body["error"]["reason"]
    # Nothing was half-made: no deployment, and the model can still be completed and deleted.
    assert es.ml.get_trained_models_stats(model_id=model_id)["trained_model_stats"][0].get("deployment_stats") is None
    assert es.ml.delete_trained_model(model_id=model_id)["acknowledged"] is True


def test_query_and_body_parameters_must_agree(cluster):
    resp = cluster.api.post("/_ml/trained_models/any/deployment/_start?threads_per_allocation=2",
                            {"threads_per_allocation": 4})
    assert resp.status == 400
    assert "in the body is different from the parameter" in resp.body["error"]["reason"]


@pytest.mark.parametrize("version", ["8", "9"])
def test_compatible_media_type_is_accepted_and_echoed(cluster, version):
    media = f"application/vnd.elasticsearch+json; compatible-with={version}"
    resp = cluster.api.get("/_ml/trained_models", headers={"Accept": media, "Content-Type": media})
    assert resp.status == 200 and "trained_model_configs" in resp.body
    assert resp.headers["Content-Type"] == media
    assert resp.headers["X-Elastic-Product"] == "Elasticsearch"
    refused = cluster.api.get("/_ml/trained_models", headers={"Accept": "application/vnd.elasticsearch+json; "
                                                                       "compatible-with=6"})
    assert refused.status == 400 and refused.body["error"]["type"] == "media_type_header_exception"
