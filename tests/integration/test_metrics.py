"""GET /_prometheus/metrics covers the whole cluster: the predictions two API processes answered
(each flushes its counts to Redis), the nodes' batch-size and forward-pass histograms, the chunk
bytes they read, tasks, models, live nodes and their memory; a flood of made-up model ids adds no
series. X-Opaque-Id is echoed and written in the log lines of its request, as text or as JSON."""
from __future__ import annotations

import json
import uuid

import pytest

from tests.harness import Client, api_proc, wait_for, wait_http
from tests.integration.flows import ML, register_url
from tests.metricskit import scrape, value

OPAQUE = "X-Opaque-Id"


def header(resp, name: str) -> str | None:
    return next((v for k, v in resp.headers.items() if k.lower() == name.lower()), None)


@pytest.fixture
def second_api(cluster):
    """A second API process on the cluster's Redis, as serve --api-processes 2 runs one, writing
    JSON log lines and logging every request (as slow)."""
    env = {**cluster.env, "MLCOMMONS_LOG_FORMAT": "json", "MLCOMMONS_LOG_SLOW_REQUEST_SECONDS": "0"}
    proc, port = api_proc(cluster.redis_url, cluster.logs, env=env)
    proc.start()
    api = Client(f"http://127.0.0.1:{port}")
    try:
        wait_http(api, 60)
        yield api, proc
    finally:
        proc.stop()


def test_the_scrape_covers_the_cluster_and_both_api_processes(cluster, tiny, second_api):
    api2, _ = second_api
    zip_path, info = tiny
    model_id = register_url(cluster, zip_path, info)
    before = scrape(cluster.api)
    # The first prediction deploys the model (auto-deploy); then predictions through both processes.
    path = f"{ML}/models/{model_id}/_predict"
    for api, count in ((cluster.api, 6), (api2, 4)):
        for i in range(count):
            resp = api.post(path, {"text_docs": [f"text {i}", "another text"]}, timeout=90)
            assert resp.status == 200, resp.body
    # a 404 on the same route, and a 429 from the model's rate limiter
    assert cluster.api.post(f"{ML}/models/no-such-model/_predict", {"text_docs": ["x"]}).status == 404
    assert cluster.api.put(f"{ML}/models/{model_id}", {"rate_limiter": {"limit": "1", "unit": "DAYS"}}).status == 200
    statuses = []
    wait_for(lambda: statuses.append(cluster.api.post(path, {"text_docs": ["x"]}).status) or statuses[-1] == 429,
             10, 0.05, "a 429")
    ok = 10 + statuses.count(200)  # the limiter's first token, and the model cache's second

    def predictions_counted():
        now = scrape(cluster.api)  # api2's counts arrive with its next flush, within a second
        return now if value(now, "mlcommons_predict_requests_total", model=model_id, outcome="ok") >= ok else None

    after = wait_for(predictions_counted, 15, 0.2, "both API processes' predictions")
    assert value(after, "mlcommons_predict_requests_total", model=model_id, outcome="ok") == ok
    assert value(after, "mlcommons_predict_requests_total", model=model_id, outcome="rejected") >= 1
    assert value(after, "mlcommons_predict_duration_seconds_count", model=model_id) >= 11
    route = "/_plugins/_ml/models/{model_id}/_predict"
    for status in ("200", "404", "429"):
        assert (value(after, "mlcommons_http_requests_total", route=route, method="POST", status=status)
                > value(before, "mlcommons_http_requests_total", route=route, method="POST", status=status))
    assert value(after, "mlcommons_http_request_duration_seconds_count", route=route, method="POST") >= 12
    assert value(after, "mlcommons_auto_deploys_total") >= value(before, "mlcommons_auto_deploys_total") + 1
    assert value(after, "mlcommons_tasks", type="REGISTER_MODEL", state="COMPLETED") >= 1
    assert value(after, "mlcommons_tasks", type="DEPLOY_MODEL", state="COMPLETED") >= 1
    assert value(after, "mlcommons_models", state="DEPLOYED") >= 1
    assert value(after, "mlcommons_nodes_live") >= len(cluster.nodes)
    for node in cluster.nodes:
        assert value(after, "mlcommons_node_memory_bytes", node=node, kind="rss") > 0
        assert value(after, "mlcommons_node_memory_bytes", node=node, kind="total") > 0
    assert sum(value(after, "mlcommons_model_chunk_bytes_read_total", node=n) for n in cluster.nodes) > 0
    assert any(s.labels == {"model": model_id} for s in after["mlcommons_queue_depth"])

    def forward_passes_counted():  # the nodes' counters arrive with their heartbeats
        now = scrape(cluster.api)
        docs = sum(value(now, "mlcommons_inference_documents_total", model=model_id, node=n) for n in cluster.nodes)
        return now if docs >= 20 else None

    beats = wait_for(forward_passes_counted, 15, 0.2, "the nodes' counters in their heartbeats")
    passes = sum(value(beats, "mlcommons_batch_size_count", model=model_id, node=n) for n in cluster.nodes)
    assert passes >= 1
    for node in cluster.nodes:  # every node serving it has both histograms, +Inf bucket = count
        for name in ("mlcommons_batch_size", "mlcommons_inference_seconds"):
            assert (value(beats, f"{name}_bucket", model=model_id, node=node, le="+Inf")
                    == value(beats, f"{name}_count", model=model_id, node=node))
            assert any(s.name == f"{name}_count" and s.labels == {"model": model_id, "node": node}
                       for s in beats[name])
    docs = sum(value(beats, "mlcommons_batch_size_sum", model=model_id, node=n) for n in cluster.nodes)
    assert docs == sum(value(beats, "mlcommons_inference_documents_total", model=model_id, node=n)
                       for n in cluster.nodes)


def test_made_up_model_ids_add_no_series(cluster):
    def series(families) -> set:
        return {(s.name, tuple(sorted(s.labels.items()))) for name in ("mlcommons_predict_requests",
                "mlcommons_predict_duration_seconds", "mlcommons_http_requests",
                "mlcommons_http_request_duration_seconds") for s in families.get(name, ())}

    cluster.api.post(f"{ML}/models/warm-up-{uuid.uuid4().hex}/_predict", {"text_docs": ["x"]})
    cluster.api.post(f"/_ml/trained_models/warm-up-{uuid.uuid4().hex}/_infer", {"docs": [{"text_field": "x"}]})
    scrape(cluster.api)  # the scrape's own route and status are counted from the next one on
    before = series(scrape(cluster.api))
    made_up = [uuid.uuid4().hex for _ in range(150)]
    for i, model in enumerate(made_up):
        if i % 2:
            resp = cluster.api.post(f"{ML}/models/{model}/_predict", {"text_docs": ["x"]})
        else:
            resp = cluster.api.post(f"/_ml/trained_models/{model}/_infer", {"docs": [{"text_field": "x"}]})
        assert resp.status == 404, resp.body
    after = scrape(cluster.api)
    assert series(after) == before
    labels = {s.labels.get("model") for name in ("mlcommons_predict_requests", "mlcommons_queue_depth")
              for s in after.get(name, ())}
    assert not labels & set(made_up)


def test_the_opaque_id_is_echoed_and_logged(cluster, second_api):
    api2, proc = second_api
    opaque = f"job-{uuid.uuid4().hex}"
    for api in (cluster.api, api2):
        resp = api.get("/_cluster/health", headers={OPAQUE: opaque})
        assert resp.status == 200 and header(resp, OPAQUE) == opaque
        # errors too, and in every dialect
        assert header(api.get(f"{ML}/models/nothing-here", headers={OPAQUE: opaque}), OPAQUE) == opaque
        assert header(api.post("/v1/embeddings", {"input": "x"}, headers={OPAQUE: opaque}), OPAQUE) == opaque
        assert header(api.get("/"), OPAQUE) is None
    # a silly value is cut to 256 characters, not refused
    long = api2.get("/", headers={OPAQUE: "x" * 5000})
    assert long.status == 200 and header(long, OPAQUE) == "x" * 256

    # JSON lines (api2 logs every request): each line parses; the request's line has its id
    def json_line():
        lines = [line for line in proc.log_path.read_text().splitlines() if line.startswith("{")]
        parsed = [json.loads(line) for line in lines]
        return next((p for p in parsed if p.get("opaque_id") == opaque), None)

    line = wait_for(json_line, 10, 0.1, "the request's JSON log line")
    assert {"time", "level", "logger", "message", "opaque_id", "node"} <= set(line)
    assert line["logger"] == "mlcommons.requests" and "/_cluster/health" in line["message"]
    lines = [json.loads(x) for x in proc.log_path.read_text().splitlines() if x.startswith("{")]
    assert any("API listening" in x["message"] and x["node"] for x in lines)  # its start-up line too

    # text lines (the shared API, logging every request while the setting says so)
    text_opaque = f"text-{uuid.uuid4().hex}"
    with cluster.settings({"mlcommons.log.slow_request_seconds": 0}):
        cluster.api.get(f"{ML}/models/nothing-here", headers={OPAQUE: text_opaque})
    log_path = cluster.api_process.log_path
    found = wait_for(lambda: [x for x in log_path.read_text(errors="replace").splitlines() if text_opaque in x],
                     10, 0.1, "the request's text log line")
    assert found[0].endswith(f"[opaque_id={text_opaque}]") and "/_plugins/_ml/models/nothing-here" in found[0]


def test_a_process_labels_a_bounded_number_of_models():
    """In process (no cluster): past MAX_MODELS distinct units, predictions count under model=""."""
    from mlcommons.metrics import recorder as R

    rec = R.Recorder()
    for i in range(R.MAX_MODELS + 500):
        rec.prediction(f"unit-{i}", 200, 0.01)
    rec.prediction(None, 404, 0.001)
    rec.prediction("x" * (R.MAX_MODEL_ID + 1), 429, 0.001)
    counts = rec.take()[R.PREDICT_REQUESTS]
    assert len(counts) == R.MAX_MODELS + 3  # the first MAX_MODELS units, and "" for ok, error, rejected
    assert counts[f"{R.SEP}ok"] == 500 and counts[f"{R.SEP}error"] == 1 and counts[f"{R.SEP}rejected"] == 1
    assert rec.take()[R.PREDICT_REQUESTS] == {}  # taken: the next flush adds only what came after


def test_opaque_ids_are_bounded_and_printable():
    from mlcommons.metrics.context import MAX_OPAQUE_ID, clean_opaque_id

    assert clean_opaque_id(None) is None and clean_opaque_id("") is None
    assert clean_opaque_id("job-1") == "job-1"
    assert clean_opaque_id("a" * 10_000) == "a" * MAX_OPAQUE_ID
    assert clean_opaque_id("line\nbreak\x1b[31m\u00e9") == "line?break?[31m?"
