"""Serving under load: a bounded queue answers 429 at once when full, and every request it
accepted is answered."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from tests.cluster import KEYS, ML
from tests.integration.flows import deploy, register_url


def test_a_flooded_queue_answers_429_at_once_and_loses_nothing(make_cluster, tiny):
    zip_path, info = tiny
    capacity = 4
    c = make_cluster(nodes=("node-a",),
                     env={"MLCOMMONS_MLCOMMONS_PREDICT_QUEUE_CAPACITY": str(capacity),
                          "MLCOMMONS_MLCOMMONS_DEPLOY_NUMBER_OF_ALLOCATIONS": "1",
                          "MLCOMMONS_MLCOMMONS_PREDICT_MAX_BATCH_SIZE": "2"},
                     node_env={"node-a": {"MLCOMMONS_FAILPOINTS": "predict.batch=delay(0.5)"}})
    model_id = register_url(c, zip_path, info)
    assert deploy(c, model_id)["state"] == "COMPLETED"
    started = time.monotonic()

    def one(i: int):
        resp = c.api.post(f"{ML}/models/{model_id}/_predict", {"text_docs": [f"flood {i}"]}, timeout=60)
        return resp, time.monotonic() - started

    with ThreadPoolExecutor(40) as pool:
        results = list(pool.map(one, range(40)))
    ok = [(r, t) for r, t in results if r.status == 200]
    rejected = [(r, t) for r, t in results if r.status == 429]
    assert len(ok) + len(rejected) == 40, [r.body for r, _ in results if r.status not in (200, 429)]
    # The queue holds `capacity` requests and the allocation at most one batch of 2 besides.
    assert capacity <= len(ok) <= capacity + 2 + 2, len(ok)
    assert rejected
    for resp, _ in rejected:
        assert resp.headers.get("Retry-After") == "1"
        assert resp.body["status"] == 429
        assert resp.body["error"]["type"] == "rejected_execution_exception"
        assert resp.body["error"]["root_cause"][0]["reason"] == \
            "inference process queue is full. Unable to execute command"
    # "At once": every refusal came back before the first accepted request could be answered.
    assert max(t for _, t in rejected) < min(t for _, t in ok)
    for resp, _ in ok:
        assert len(resp.body["inference_results"][0]["output"][0]["data"]) == info["model_config"]["embedding_dimension"]
    # Every accepted request was computed exactly once, and nothing is left queued or in flight.
    assert c.redis.llen(KEYS.predict_queue(model_id)) == 0
    assert not list(c.redis.scan_iter(KEYS.inflight("node-a", model_id, "*")))
    assert int(c.redis.hget(KEYS.route(model_id), "rejected")) == len(rejected)


def test_trace_timings_give_each_hop_in_order(make_cluster, tiny):
    """mlcommons.predict.trace_timings: a prediction's response says where its time went, the
    API's marks and the worker's, in the order they happen; a response without it says nothing."""
    from mlcommons.core.serving.timing import HEADER, parse

    zip_path, info = tiny
    c = make_cluster(nodes=("node-a",), env={"MLCOMMONS_MLCOMMONS_PREDICT_TRACE_TIMINGS": "true"})
    model_id = register_url(c, zip_path, info)
    assert deploy(c, model_id)["state"] == "COMPLETED"
    resp = c.api.post(f"{ML}/models/{model_id}/_predict", {"text_docs": ["where does the time go"]})
    assert resp.status == 200, resp.body
    marks = parse(resp.headers[HEADER])
    order = ["admit", "admitted", "taken", "forward", "forwarded", "replied", "responded"]
    assert list(marks) == order, marks
    # The API reads the admission script's answer while the worker may already have taken the
    # request: "admitted" is ordered against "admit" and "replied" only.
    path = [m for m in order if m != "admitted"]
    values = [marks[m] for m in path]
    assert all(0 <= a <= b for a, b in zip(values, values[1:])), marks
    assert marks["admit"] <= marks["admitted"] <= marks["replied"], marks
    assert HEADER not in c.api.get(f"{ML}/models/{model_id}").headers
