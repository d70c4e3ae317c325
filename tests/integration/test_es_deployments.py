"""Elasticsearch deployments under load and in slow moments, on clusters of their own: a _start
that times out (408) and goes on starting, a full queue answering 429 with Elasticsearch's error,
_stop with finish_pending_work, and _update."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from elasticsearch import ApiError, Elasticsearch

from tests.cluster import KEYS
from tests.elandkit import upload_to_elasticsearch
from tests.harness import wait_for

ONE_NODE = ("node-a",)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from tests.elandkit import eland_model

    return eland_model(tmp_path_factory.mktemp("esdep"), "text_embedding")


def _client(c) -> Elasticsearch:
    return Elasticsearch(c.api.base, request_timeout=60, max_retries=0)


def _infer(c, deployment_id: str, text: str):
    return c.api.post(f"/_ml/trained_models/{deployment_id}/_infer", {"docs": [{"text_field": text}]}, timeout=60)


def test_start_times_out_with_408_and_the_deployment_goes_on(make_cluster, tiny_model):
    c = make_cluster(nodes=ONE_NODE, node_env={"node-a": {"MLCOMMONS_FAILPOINTS": "deploy.load=delay(3)"}})
    es = _client(c)
    upload_to_elasticsearch(es, "slow", tiny_model)
    with pytest.raises(ApiError) as exc:
        es.ml.start_trained_model_deployment(model_id="slow", wait_for="started", timeout="1s")
    assert exc.value.meta.status == 408
    assert exc.value.body["error"]["reason"].startswith(
        "Timed out after [1s] waiting for trained model deployment [slow] to start.")
    stats = es.ml.get_trained_models_stats(model_id="slow")["trained_model_stats"][0]["deployment_stats"]
    assert stats["state"] == "starting" and stats["allocation_status"]["state"] == "starting"

    def started():
        s = es.ml.get_trained_models_stats(model_id="slow")["trained_model_stats"][0]["deployment_stats"]
        return s["state"] == "started"

    wait_for(started, 60, 0.2, "the deployment to start after the 408")
    assert _infer(c, "slow", "hello").status == 200
    # wait_for=starting answers at once.
    assigned = es.ml.start_trained_model_deployment(model_id="slow", deployment_id="slow-2", wait_for="starting")
    assert assigned["assignment"]["assignment_state"] == "starting"


def test_full_queue_answers_es_rejected_execution_and_finish_pending_work(make_cluster, tiny_model):
    c = make_cluster(nodes=ONE_NODE, node_env={"node-a": {"MLCOMMONS_FAILPOINTS": "predict.batch=delay(0.4)"}},
                     env={"MLCOMMONS_MLCOMMONS_PREDICT_MAX_BATCH_SIZE": "1"})
    es = _client(c)
    upload_to_elasticsearch(es, "busy", tiny_model)
    es.ml.start_trained_model_deployment(model_id="busy", wait_for="started", queue_capacity=3,
                                         number_of_allocations=1)
    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(lambda i: _infer(c, "busy", f"text {i}"), range(12)))
    rejected = [r for r in results if r.status == 429]
    assert rejected and all(r.status in (200, 429) for r in results)
    for r in rejected:
        assert r.body["error"]["type"] == "es_rejected_execution_exception"
        assert r.body["error"]["reason"] == "inference process queue is full. Unable to execute command"
        assert r.headers.get("X-Elastic-Product") == "Elasticsearch"

    def counted():
        s = es.ml.get_trained_models_stats(model_id="busy")["trained_model_stats"][0]["deployment_stats"]
        return s if s["inference_count"] == len(results) - len(rejected) else None

    stats = wait_for(counted, 15, 0.2, "stats to count what was accepted")
    assert stats["rejected_execution_count"] == len(rejected)

    # Search-time inference (input_type SEARCH) is high priority: it is not held to the queue's cap.
    es.inference.put(task_type="text_embedding", inference_id="busy-search", inference_config={
        "service": "elasticsearch", "service_settings": {"deployment_id": "busy", "num_threads": 1}})
    stop = threading.Event()

    def keep_full():
        while not stop.is_set():
            _infer(c, "busy", "filler")

    fillers = [threading.Thread(target=keep_full) for _ in range(6)]
    for t in fillers:
        t.start()
    try:
        def full_now():
            plain = c.api.post("/_inference/text_embedding/busy-search", {"input": "plain"})
            assert plain.status in (200, 429), plain.body
            return plain if plain.status == 429 else None

        assert wait_for(full_now, 20, 0.01, "the queue to be full").body["error"]["type"] == \
            "es_rejected_execution_exception"
        search = c.api.post("/_inference/text_embedding/busy-search", {"input": "query", "input_type": "SEARCH"})
        assert search.status == 200, search.body
    finally:
        stop.set()
        for t in fillers:
            t.join(60)
    es.inference.delete(inference_id="busy-search")

    # Queued work is finished before the deployment stops, when asked.
    replies: list = []
    sender = threading.Thread(target=lambda: replies.extend(
        ThreadPoolExecutor(3).map(lambda i: _infer(c, "busy", f"late {i}"), range(3))))
    sender.start()
    wait_for(lambda: c.redis.llen(KEYS.predict_queue("busy")) >= 1, 10, 0.01, "requests to queue")
    # (elasticsearch-py 9.1 has no finish_pending_work argument: the REST parameter, as curl sends it)
    stopped = c.api.post("/_ml/trained_models/busy/deployment/_stop?finish_pending_work=true")
    assert stopped.status == 200 and stopped.body == {"stopped": True}
    sender.join(60)
    assert [r.status for r in replies] == [200, 200, 200], [r.body for r in replies]


def test_update_changes_the_allocation_count(make_cluster, tiny_model):
    c = make_cluster(nodes=ONE_NODE)
    es = _client(c)
    upload_to_elasticsearch(es, "resize", tiny_model)
    es.ml.start_trained_model_deployment(model_id="resize", wait_for="started", number_of_allocations=1)
    updated = es.ml.update_trained_model_deployment(model_id="resize", number_of_allocations=3)
    assert updated["assignment"]["task_parameters"]["number_of_allocations"] == 3
    stats = es.ml.get_trained_models_stats(model_id="resize")["trained_model_stats"][0]["deployment_stats"]
    assert stats["number_of_allocations"] == 3 and stats["nodes"][0]["number_of_allocations"] == 3
    with pytest.raises(ApiError) as exc:
        es.ml.update_trained_model_deployment(model_id="resize", number_of_allocations=0)
    assert "[number_of_allocations] must be a positive integer" in exc.value.body["error"]["reason"]
    assert _infer(c, "resize", "still serving").status == 200
