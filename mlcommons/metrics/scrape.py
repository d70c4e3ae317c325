"""``GET /_prometheus/metrics``: the whole cluster in Prometheus' text format, read from Redis by
whichever API process is asked, so every process answers the same.

Where each metric comes from:

- the request and prediction counters and histograms: the hashes the API processes add their
  deltas to (``recorder.py``);
- the per-node inference counters and histograms, the memory and the chunk bytes read: the live
  nodes' heartbeats (a node's counters start again at zero when it restarts; Prometheus reads
  that as a counter reset);
- the queue depths, the tasks by type and state and the models by state: a few pipelined reads;
- the auto-deploys and auto-redeploys: a hash the deploy path bumps (``counters.py``).

A scrape costs a handful of round trips plus one pipelined read per model and per task (the
newest :data:`MAX_TASKS` tasks at most), on the API's thread pool, never on the event loop.
Labels stay bounded: nodes, routes, statuses, task types and states, and units that exist now.
The series of a unit that no longer exists end (their fields are dropped from the hash, so
deleted models do not pile up); folding them into ``model=""`` would make that counter go down.
"""
from __future__ import annotations

from typing import Any, Iterable, Iterator

import orjson
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from mlcommons.core import nodes
from mlcommons.core.context import Context
from mlcommons.metrics import buckets, counters
from mlcommons.metrics import recorder as R
from mlcommons.store import keys as K

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
MAX_TASKS = 100_000  # newest tasks counted by a scrape
MEMORY_KINDS = {"rss": "rss_bytes", "total": "total_bytes", "available": "available_bytes"}


def exposition(ctx: Context) -> bytes:
    """The cluster's metrics, in Prometheus' text exposition format 0.0.4."""
    return generate_latest(_Families(list(collect(ctx))))


class _Families:
    """What ``generate_latest`` asks of a registry: ``collect()``."""

    def __init__(self, families: list[Metric]):
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def collect(ctx: Context) -> Iterator[Metric]:
    r = ctx.redis
    units = _units(ctx)
    pipe = r.pipeline(transaction=False)
    for name in R.HASHES:
        pipe.hgetall(ctx.keys.metrics(name))
    pipe.hgetall(ctx.keys.metrics(counters.CLUSTER))
    raw = pipe.execute()
    hashes = {name: _decode(h) for name, h in zip(R.HASHES, raw)}
    cluster = _decode(raw[-1])
    yield from _http(hashes)
    yield from _predictions(ctx, hashes, units)
    live = {n: info for n, info in nodes.all_nodes(ctx).items() if info.get("alive")}
    yield from _nodes(live)
    yield from _inference(live, units)
    yield from _queues(units)
    yield from _tasks(ctx)
    yield from _models(units)
    for name, field, doc in (
            ("mlcommons_auto_deploys", counters.AUTO_DEPLOYS,
             "Deploys started by a prediction that found its model undeployed."),
            ("mlcommons_auto_redeploys", counters.AUTO_REDEPLOYS,
             "Deploys started by the watcher to bring a model back to the planned nodes that lost it.")):
        family = CounterMetricFamily(name, doc)
        family.add_metric([], float(cluster.get(field, 0)))
        yield family


def _decode(raw: dict) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in raw.items()}


def _units(ctx: Context) -> dict[str, dict[str, Any]]:
    """Every serving unit (model or Elasticsearch deployment): its state (models only), its
    serving nodes (the route's count) and its queue's length."""
    ids = [(K.MODEL, u) for u in ctx.docs.ids(K.MODEL)] + [(K.DEPLOYMENT, u) for u in ctx.docs.ids(K.DEPLOYMENT)]
    out: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), 500):
        part = ids[start:start + 500]
        pipe = ctx.redis.pipeline(transaction=False)
        for index, unit in part:
            pipe.hget(ctx.keys.doc(index, unit), "model_state")
            pipe.hget(ctx.keys.route(unit), "workers")
            pipe.llen(ctx.keys.predict_queue(unit))
        raw = pipe.execute()
        for i, (index, unit) in enumerate(part):
            state, workers, depth = raw[3 * i:3 * i + 3]
            out[unit] = {"model": index == K.MODEL, "state": orjson.loads(state) if state else None,
                         "routed": bool(workers and int(workers) > 0), "queue": int(depth or 0)}
    return out


def _split(field: str, parts: int) -> list[str] | None:
    values = field.split(R.SEP)
    return values if len(values) == parts else None


def _histograms(fields: dict[str, str], label_count: int) -> dict[tuple[str, ...], dict]:
    """label values -> {"counts": [...], "sum": s} from a hash of bucket index / "sum" fields."""
    out: dict[tuple[str, ...], dict] = {}
    for field, value in fields.items():
        parts = _split(field, label_count + 1)
        if parts is None:
            continue
        entry = out.setdefault(tuple(parts[:-1]), {"counts": [0] * (len(buckets.REQUEST_SECONDS) + 1), "sum": 0.0})
        if parts[-1] == "sum":
            entry["sum"] += float(value)
        elif parts[-1].isdigit() and int(parts[-1]) < len(entry["counts"]):
            entry["counts"][int(parts[-1])] += int(value)
    return out


def _add_histogram(family: HistogramMetricFamily, labels: list[str], bounds, hist: dict) -> None:
    family.add_metric(labels, buckets.cumulative(bounds, hist.get("counts") or []), float(hist.get("sum") or 0.0))


def _http(hashes: dict[str, dict[str, str]]) -> Iterator[Metric]:
    requests = CounterMetricFamily("mlcommons_http_requests", "HTTP requests answered by the API processes, by "
                                   "route template, method and status.", labels=["route", "method", "status"])
    for field, value in sorted(hashes[R.HTTP_REQUESTS].items()):
        parts = _split(field, 3)
        if parts is not None:
            requests.add_metric(parts, float(value))
    yield requests
    seconds = HistogramMetricFamily("mlcommons_http_request_duration_seconds", "Time the API took to answer a "
                                    "request, by route template and method.", labels=["route", "method"])
    for labels, hist in sorted(_histograms(hashes[R.HTTP_SECONDS], 2).items()):
        _add_histogram(seconds, list(labels), buckets.REQUEST_SECONDS, hist)
    yield seconds


def _predictions(ctx: Context, hashes: dict[str, dict[str, str]], units: dict) -> Iterator[Metric]:
    gone = set()
    counts: dict[tuple[str, str], float] = {}
    for field, value in hashes[R.PREDICT_REQUESTS].items():
        parts = _split(field, 2)
        if parts is None:
            continue
        model, result = parts
        if model and model not in units:
            gone.add(field)
            continue
        counts[(model, result)] = counts.get((model, result), 0.0) + float(value)
    family = CounterMetricFamily("mlcommons_predict_requests", "Prediction requests (_predict, _infer, "
                                 "_inference, /v1/embeddings) by serving unit and outcome: ok, error, rejected "
                                 "(429) or timeout.", labels=["model", "outcome"])
    for (model, result), value in sorted(counts.items()):
        family.add_metric([model, result], value)
    yield family
    hists: dict[str, dict] = {}
    for (model,), hist in _histograms(hashes[R.PREDICT_SECONDS], 1).items():
        if model and model not in units:
            gone.update(f for f in hashes[R.PREDICT_SECONDS] if f.startswith(model + R.SEP))
        else:
            hists[model] = hist
    seconds = HistogramMetricFamily("mlcommons_predict_duration_seconds", "Time the API took to answer a "
                                    "prediction request, end to end, by serving unit.", labels=["model"])
    for model, hist in sorted(hists.items()):
        _add_histogram(seconds, [model], buckets.REQUEST_SECONDS, hist)
    yield seconds
    if gone:  # the units were deleted: their series end
        pipe = ctx.redis.pipeline(transaction=False)
        for name in (R.PREDICT_REQUESTS, R.PREDICT_SECONDS):
            fields = [f for f in gone if f in hashes[name]]
            if fields:
                pipe.hdel(ctx.keys.metrics(name), *fields)
        pipe.execute()


def _nodes(live: dict[str, dict]) -> Iterator[Metric]:
    count = GaugeMetricFamily("mlcommons_nodes_live", "Worker nodes with a live heartbeat.")
    count.add_metric([], len(live))
    yield count
    info = GaugeMetricFamily("mlcommons_node_info", "A live worker node (always 1), with its name, host and "
                             "device.", labels=["node", "name", "host", "device"])
    memory = GaugeMetricFamily("mlcommons_node_memory_bytes", "A live node's memory: its process's resident "
                               "size (rss) and its machine's total and available memory.", labels=["node", "kind"])
    chunks = CounterMetricFamily("mlcommons_model_chunk_bytes_read", "Bytes of model chunks a node read from "
                                 "Redis to deploy (a deploy from its local cache reads none).", labels=["node"])
    for node_id, node in sorted(live.items()):
        info.add_metric([node_id, str(node.get("name") or ""), str(node.get("host") or ""),
                         str(node.get("device") or "")], 1)
        mem = node.get("memory") or {}
        for kind, field in MEMORY_KINDS.items():
            if isinstance(mem.get(field), (int, float)):
                memory.add_metric([node_id, kind], float(mem[field]))
        chunks.add_metric([node_id], float(node.get("chunk_bytes_read") or 0))
    yield from (info, memory, chunks)


def _inference(live: dict[str, dict], units: dict) -> Iterator[Metric]:
    labels = ["model", "node"]
    documents = CounterMetricFamily("mlcommons_inference_documents", "Documents a node ran through a "
                                    "deployment's forward passes.", labels=labels)
    errors = CounterMetricFamily("mlcommons_inference_errors", "Requests a node answered with an error.",
                                 labels=labels)
    timeouts = CounterMetricFamily("mlcommons_inference_timeouts", "Requests that had expired when a node took "
                                   "them off the queue.", labels=labels)
    batches = CounterMetricFamily("mlcommons_inference_batches", "Forward passes a node ran.", labels=labels)
    allocations = GaugeMetricFamily("mlcommons_model_allocations", "Allocation threads a node runs for a "
                                    "deployment.", labels=labels)
    seconds = HistogramMetricFamily("mlcommons_inference_seconds", "Time of one forward pass on a node.",
                                    labels=labels)
    sizes = HistogramMetricFamily("mlcommons_batch_size", "Documents in one forward pass on a node.", labels=labels)
    for node_id, node in sorted(live.items()):
        for unit, held in sorted((node.get("models") or {}).items()):
            if not isinstance(held, dict):
                continue
            values = [unit, node_id]
            documents.add_metric(values, float(held.get("inference_count") or 0))
            errors.add_metric(values, float(held.get("error_count") or 0))
            timeouts.add_metric(values, float(held.get("timeout_count") or 0))
            batches.add_metric(values, float(held.get("batches") or 0))
            allocations.add_metric(values, float(held.get("allocations") or 0))
            if isinstance(held.get("inference_seconds"), dict):
                _add_histogram(seconds, values, buckets.INFERENCE_SECONDS, held["inference_seconds"])
            if isinstance(held.get("batch_size"), dict):
                _add_histogram(sizes, values, buckets.BATCH_SIZE, held["batch_size"])
    yield from (documents, errors, timeouts, batches, allocations, seconds, sizes)


def _queues(units: dict) -> Iterator[Metric]:
    depth = GaugeMetricFamily("mlcommons_queue_depth", "Prediction requests waiting in a deployment's queue.",
                              labels=["model"])
    for unit, info in sorted(units.items()):
        if info["routed"] or info["queue"]:
            depth.add_metric([unit], float(info["queue"]))
    yield depth


def _tasks(ctx: Context) -> Iterator[Metric]:
    ids = ctx.redis.zrange(ctx.keys.index(K.TASK), -MAX_TASKS, -1)
    counts: dict[tuple[str, str], int] = {}
    for start in range(0, len(ids), 1000):
        pipe = ctx.redis.pipeline(transaction=False)
        for task_id in ids[start:start + 1000]:
            pipe.hmget(ctx.keys.doc(K.TASK, task_id.decode()), "task_type", "state")
        for task_type, state in pipe.execute():
            if task_type is None or state is None:
                continue
            key = (orjson.loads(task_type), orjson.loads(state))
            counts[key] = counts.get(key, 0) + 1
    family = GaugeMetricFamily("mlcommons_tasks", "Tasks by type and state (the newest "
                               f"{MAX_TASKS:,} tasks).", labels=["type", "state"])
    for (task_type, state), count in sorted(counts.items()):
        family.add_metric([str(task_type), str(state)], count)
    yield family


def _models(units: dict) -> Iterator[Metric]:
    counts: dict[str, int] = {}
    for info in units.values():
        if info["model"] and info["state"]:
            counts[info["state"]] = counts.get(info["state"], 0) + 1
    family = GaugeMetricFamily("mlcommons_models", "Models by state.", labels=["state"])
    for state, count in sorted(counts.items()):
        family.add_metric([str(state)], count)
    yield family
