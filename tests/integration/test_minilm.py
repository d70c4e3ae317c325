"""The real all-MiniLM-L6-v2: the pretrained name resolves offline, deploys to both nodes and gives
the embeddings sentence-transformers gives in process; rq shows the jobs by task and model."""
from __future__ import annotations

import pytest
from rq import Queue
from rq.registry import FinishedJobRegistry

from tests.cluster import KEYS
from tests.integration.flows import ML, cosine, deploy, predict, undeploy
from tests.modelkit import minilm_path

NAME = "huggingface/sentence-transformers/all-MiniLM-L6-v2"
DOCS = [
    "Today is a sunny day.",
    "That is a very happy person.",
    "OpenSearch ML Commons deploys models to ML nodes.",
    "What is the capital of France?",
    "Paris is the capital and most populous city of France.",
    "A man is playing a guitar.",
    "The new movie is awesome!",
    "Cats and dogs are both popular pets.",
    "Quantum computers use qubits instead of bits.",
    "Embeddings turn text into vectors.",
    "He drove his car to the store to buy groceries for dinner.",
    "¿Dónde está la biblioteca?",
    "Numbers like 3.14159 and 2.71828 appear in mathematics.",
    "short",
    "A long paragraph " + " ".join(f"word{i}" for i in range(400)),
]


@pytest.fixture(scope="module")
def minilm_model_id(cluster):
    resp = cluster.api.post(f"{ML}/models/_register",
                            {"name": NAME, "version": "1.0.1", "model_format": "TORCH_SCRIPT"})
    assert resp.status == 200, resp.body
    task = cluster.wait_task(resp.body["task_id"], timeout=300)
    assert task["state"] == "COMPLETED", task
    return task["model_id"], resp.body["task_id"]


def test_pretrained_register_deploy_and_predict_match_sentence_transformers(cluster, minilm_model_id):
    from sentence_transformers import SentenceTransformer

    model_id, register_task = minilm_model_id
    model = cluster.model(model_id)
    assert model["name"] == NAME and model["model_version"] == "1"
    assert model["model_config"]["embedding_dimension"] == 384
    assert model["model_config"]["framework_type"] == "SENTENCE_TRANSFORMERS"

    task = deploy(cluster, model_id)
    assert task["state"] == "COMPLETED" and sorted(task["worker_node"]) == sorted(cluster.nodes)
    got = predict(cluster, model_id, DOCS)
    reference = SentenceTransformer(str(minilm_path()), device="cpu").encode(DOCS, convert_to_numpy=True)
    similarity = cosine(got, reference)
    assert (similarity >= 0.9999).all(), similarity
    # every doc alone gives the same vector as in a batch
    for i in (0, 13, 14):
        alone = predict(cluster, model_id, [DOCS[i]])
        assert cosine(alone, reference[i:i + 1])[0] >= 0.9999

    # rq-dashboard's registries show the control-plane jobs, described by task and model.
    deploy_task_id = cluster.api.post(f"{ML}/tasks/_search", {"query": {"bool": {"filter": [
        {"term": {"model_id": model_id}}, {"term": {"task_type": "DEPLOY_MODEL"}}]}}}).body["hits"]["hits"][0]["_id"]
    descriptions = []
    for queue_name in [KEYS.shared_queue()] + [KEYS.node_queue(n) for n in cluster.nodes]:
        registry = FinishedJobRegistry(queue=Queue(queue_name, connection=cluster.redis))
        for job in registry.get_job_ids():
            descriptions.append(Queue(queue_name, connection=cluster.redis).fetch_job(job).description)
    assert any(register_task in d and model_id in d and d.startswith("REGISTER_MODEL") for d in descriptions)
    for node in cluster.nodes:
        assert any(d == f"DEPLOY_MODEL task {deploy_task_id} model {model_id} on node {node}" for d in descriptions)

    undeploy(cluster, model_id)
    assert any(d.startswith("UNDEPLOY_MODEL") and model_id in d for d in descriptions + [
        Queue(KEYS.node_queue(n), connection=cluster.redis).fetch_job(j).description
        for n in cluster.nodes
        for j in FinishedJobRegistry(queue=Queue(KEYS.node_queue(n), connection=cluster.redis)).get_job_ids()])


def test_second_pretrained_register_reuses_the_converted_archive(cluster, minilm_model_id):
    first, _ = minilm_model_id
    resp = cluster.api.post(f"{ML}/models/_register", {"name": NAME, "version": "1.0.1", "model_format": "TORCH_SCRIPT"})
    task = cluster.wait_task(resp.body["task_id"], timeout=120)
    second = cluster.model(task["model_id"])
    assert second["model_content_hash_value"] == cluster.model(first)["model_content_hash_value"]
    assert second["model_version"] == "2"
    assert cluster.api.post(f"{ML}/models/_register", {"name": NAME, "version": "9.9"}).status == 400
    assert cluster.api.post(f"{ML}/models/_register", {"name": "huggingface/unknown/model"}).status == 400


def test_pretrained_onnx_serves_what_sentence_transformers_gives(cluster):
    """model_format ONNX: the bundled model is exported once as ONNX and served by onnxruntime,
    pooled and normalised from its model_config."""
    from sentence_transformers import SentenceTransformer

    resp = cluster.api.post(f"{ML}/models/_register", {"name": NAME, "version": "1.0.1", "model_format": "ONNX"})
    assert resp.status == 200, resp.body
    task = cluster.wait_task(resp.body["task_id"], timeout=300)
    assert task["state"] == "COMPLETED", task
    model_id = task["model_id"]
    model = cluster.model(model_id)
    assert model["model_format"] == "ONNX"
    assert model["model_config"]["pooling_mode"] == "MEAN" and model["model_config"]["normalize_result"] is True
    assert deploy(cluster, model_id)["state"] == "COMPLETED"
    got = predict(cluster, model_id, DOCS)
    reference = SentenceTransformer(str(minilm_path()), device="cpu").encode(DOCS, convert_to_numpy=True)
    assert (cosine(got, reference) >= 0.9999).all()
    undeploy(cluster, model_id)


def test_onnx_refused_for_what_it_cannot_serve(cluster):
    resp = cluster.api.post(f"{ML}/models/meta", {
        "name": "sparse", "function_name": "SPARSE_ENCODING", "model_format": "ONNX",
        "model_content_hash_value": "0" * 64, "total_chunks": 1})
    assert resp.status == 400 and "supported for TEXT_EMBEDDING" in resp.body["error"]["reason"], resp.body


def test_bfloat16_linears_serve_vectors_close_to_float32_and_the_profile_says_so(cluster, minilm_model_id):
    """mlcommons.deploy.linear_precision: bfloat16 (a dynamic setting): the next deploy's nodes pack
    MiniLM's linear layers in bfloat16 once the deploy has answered; the profile names what serves
    the model, and the vectors stay within a cosine of 0.999 of sentence-transformers'."""
    from sentence_transformers import SentenceTransformer

    from tests.harness import wait_for
    from workers.runtimes.prepack import bf16_available

    if not bf16_available():
        pytest.skip("this CPU does not multiply bfloat16 natively (no avx512_bf16 or AMX)")
    model_id, _ = minilm_model_id
    name = "mlcommons.deploy.linear_precision"
    assert cluster.api.put("/_cluster/settings", {"transient": {name: "float16"}}).status == 400
    resp = cluster.api.put("/_cluster/settings", {"transient": {name: "bfloat16"}})
    assert resp.status == 200, resp.body
    try:
        assert deploy(cluster, model_id)["state"] == "COMPLETED"

        def predictors():
            nodes = cluster.api.get(f"{ML}/profile/models/{model_id}").body.get("nodes", {})
            found = [n["models"][model_id]["predictor"] for n in nodes.values() if model_id in n["models"]]
            return len(found) == len(cluster.nodes) and all("bfloat16" in p for p in found) and found

        found = wait_for(predictors, 60, 0.2, "every node to pack the linear layers in bfloat16")
        assert found == ["TorchScriptTextEmbedding (linear layers packed, bfloat16)"] * len(cluster.nodes)
        got = predict(cluster, model_id, DOCS)
        reference = SentenceTransformer(str(minilm_path()), device="cpu").encode(DOCS, convert_to_numpy=True)
        similarity = cosine(got, reference)
        assert (similarity >= 0.999).all(), similarity
        assert similarity.min() < 0.999999, "these are float32's vectors: bfloat16 was not used"
    finally:
        assert cluster.api.put("/_cluster/settings", {"transient": {name: None}}).status == 200
        undeploy(cluster, model_id)
