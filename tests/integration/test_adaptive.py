"""Adaptive allocations end to end, on a cluster of its own with a slow model (each forward pass
0.2 s, one request per pass): concurrent _infer load scales the deployment up, idleness brings it
down and then to zero (the node keeps the model, running no allocation), and the next request
brings back one allocation and is answered."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import orjson
from elasticsearch import Elasticsearch

from tests.cluster import KEYS, ML
from tests.elandkit import upload_to_elasticsearch as upload
from tests.harness import wait_for

ONE_NODE = ("node-a",)
NAME = "adaptive"
TIMINGS = {
    "MLCOMMONS_MLCOMMONS_ADAPTIVE_ALLOCATIONS_INTERVAL_SECONDS": "0.5",
    "MLCOMMONS_MLCOMMONS_ADAPTIVE_ALLOCATIONS_SCALE_DOWN_COOLDOWN_SECONDS": "2",
    # Long until the test asks for zero, so that the load-driven scale-down is seen first.
    "MLCOMMONS_MLCOMMONS_ADAPTIVE_ALLOCATIONS_SCALE_TO_ZERO_SECONDS": "3600",
    "MLCOMMONS_MLCOMMONS_CLUSTER_WATCHER_INTERVAL_SECONDS": "0.1",
    "MLCOMMONS_MLCOMMONS_PREDICT_MAX_BATCH_SIZE": "1",
}
SLOW_MODEL = {"node-a": {"MLCOMMONS_FAILPOINTS": "predict.batch=delay(0.2)"}}
CLIENTS = 8


def _stats(es: Elasticsearch) -> dict:
    return es.ml.get_trained_models_stats(model_id=NAME)["trained_model_stats"][0]["deployment_stats"]


def _running(c) -> int | None:
    """Allocation threads the node runs for the deployment, from its own heartbeat."""
    raw = c.redis.hget(KEYS.node("node-a"), "models")
    held = orjson.loads(raw).get(NAME) if raw else None
    return None if held is None else held["allocations"]


def _set_scale_to_zero(c, seconds: float) -> None:
    resp = c.api.put("/_cluster/settings", {"persistent": {
        "mlcommons.adaptive_allocations.scale_to_zero_seconds": seconds}})
    assert resp.status == 200, resp.body


def _wait_at_zero(c, es) -> None:
    def asleep():
        s = _stats(es)
        return s["number_of_allocations"] == 0 and _running(c) == 0 and s
    s = wait_for(asleep, 20, 0.1, "the deployment to scale to zero and the node to stop its allocations")
    assert s["allocation_status"] == {"allocation_count": 0, "target_allocation_count": 0,
                                      "state": "fully_allocated"}
    assert s["state"] == "started"  # still assigned, the model still loaded on the node


def test_scales_up_under_load_down_when_idle_then_to_zero_and_back(make_cluster, tmp_path):
    from tests.elandkit import eland_model

    c = make_cluster(nodes=ONE_NODE, env=TIMINGS, node_env=SLOW_MODEL)
    es = Elasticsearch(c.api.base, request_timeout=60, max_retries=0)
    upload(es, NAME, eland_model(tmp_path, "text_embedding"))
    adaptive = {"enabled": True, "min_number_of_allocations": 0, "max_number_of_allocations": 4}
    es.ml.start_trained_model_deployment(model_id=NAME, wait_for="started", adaptive_allocations=adaptive)
    stats = _stats(es)
    assert stats["number_of_allocations"] == 1 and stats["adaptive_allocations"] == adaptive

    # Eight clients back to back on one 0.2 s allocation: the queue grows, and so does the count.
    stop = threading.Event()

    def client(i: int) -> int:
        sent = 0
        while not stop.is_set():
            reply = es.ml.infer_trained_model(model_id=NAME, docs=[{"text_field": f"load {i} {sent}"}],
                                              timeout="30s")
            assert len(reply["inference_results"][0]["predicted_value"]) > 0
            sent += 1
        return sent

    with ThreadPoolExecutor(CLIENTS) as pool:
        clients = [pool.submit(client, i) for i in range(CLIENTS)]
        try:
            peak = wait_for(lambda: (n := _stats(es)["number_of_allocations"]) > 1 and n, 30, 0.1,
                            "the allocation count to rise above 1 under load")
            assert peak <= 4  # max_number_of_allocations
            wait_for(lambda: (_running(c) or 0) > 1, 10, 0.05, "the node to run more than one allocation")
        finally:
            stop.set()
        assert sum(f.result() for f in clients) > 0

    # Idle: the load estimate decays and, once the cooldown after the last scale-up is over, the
    # count comes down to 1 (not to zero: that takes an hour of idleness here).
    wait_for(lambda: _stats(es)["number_of_allocations"] == 1, 45, 0.2, "the allocation count to come down to 1")
    wait_for(lambda: _running(c) == 1, 10, 0.05, "the node to run one allocation")

    _set_scale_to_zero(c, 1)
    _wait_at_zero(c, es)
    assert NAME in orjson.loads(c.redis.hget(KEYS.node("node-a"), "models"))

    # Scale from zero. With the idle time long again (read by the watcher within a second, well
    # within the cooldown that follows the wake-up), nothing puts it back to sleep meanwhile.
    _set_scale_to_zero(c, 3600)
    reply = es.ml.infer_trained_model(model_id=NAME, docs=[{"text_field": "wake up"}], timeout="30s")
    assert len(reply["inference_results"][0]["predicted_value"]) > 0
    assert _stats(es)["number_of_allocations"] >= 1
    wait_for(lambda: (_running(c) or 0) >= 1, 5, 0.05, "the node to run an allocation again")

    # The OpenSearch dialect wakes it too (the deployment's id is the model's).
    _set_scale_to_zero(c, 1)
    _wait_at_zero(c, es)
    _set_scale_to_zero(c, 3600)
    resp = c.api.post(f"{ML}/models/{NAME}/_predict", {"text_docs": ["wake up again"]}, timeout=60)
    assert resp.status == 200, resp.body
    assert _stats(es)["number_of_allocations"] >= 1
