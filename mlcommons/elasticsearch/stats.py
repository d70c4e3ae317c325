"""What the trained model stats API reports: per model, each deployment's allocation and routing
state with the counters its nodes send in their heartbeats, and its queue."""
from __future__ import annotations

from mlcommons.core import nodes
from mlcommons.core.context import Context
from mlcommons.core.serving import units
from mlcommons.elasticsearch import deployments, trained_models
from mlcommons.elasticsearch.spec import EsDeployment


def stats(ctx: Context, expression: str | None, allow: bool) -> dict:
    found = trained_models.matching(ctx, expression, allow)
    live = nodes.live_nodes(ctx)
    out = []
    for model_id, model in found:
        base = {"model_id": model_id, "model_size_stats": {
            "model_size_bytes": int(model.get("model_content_size_in_bytes") or 0),
            "required_native_memory_bytes": 2 * int(model.get("model_content_size_in_bytes") or 0)},
            "pipeline_count": 0}
        entries = deployments.find(ctx, model_id)
        if not entries:
            out.append(base)
        for index, unit_id, doc in entries:
            if units.model_id_of(index, unit_id, doc) != model_id:
                continue
            out.append({**base, "deployment_stats": deployment_stats(ctx, index, unit_id, doc, live)})
    return {"count": len(out), "trained_model_stats": out}


def deployment_stats(ctx: Context, index: str, unit_id: str, doc: dict, live: dict) -> dict:
    es = EsDeployment.of(doc) or EsDeployment()
    state = deployments.state_of(ctx, index, unit_id, doc)
    pending = int(ctx.redis.llen(ctx.keys.predict_queue(unit_id)) or 0)
    rejected = int(ctx.redis.hget(ctx.keys.route(unit_id), "rejected") or 0)
    node_entries, totals = [], {"inference_count": 0, "error_count": 0, "timeout_count": 0}
    for node_id, routing in state["routing_table"].items():
        info = live.get(node_id) or {}
        counters = (info.get("models") or {}).get(unit_id) or {}
        count = int(counters.get("inference_count") or 0)
        for name in totals:
            totals[name] += int(counters.get(name) or 0)
        entry = {
            "node": {node_id: {"name": info.get("name", node_id), "ephemeral_id": info.get("boot_id", ""),
                               "transport_address": f"{info.get('host', 'unknown')}:0", "external_id": node_id,
                               "attributes": {}, "roles": ["ml"]}},
            "routing_state": {k: v for k, v in (("routing_state", routing["routing_state"]),
                                                ("reason", routing.get("reason"))) if v},
            "number_of_allocations": routing["current_allocations"],
            "threads_per_allocation": es.threads_per_allocation,
            "inference_count": count,
            "error_count": int(counters.get("error_count") or 0),
            "timeout_count": int(counters.get("timeout_count") or 0),
            "rejected_execution_count": 0,
            "number_of_pending_requests": 0,
            "peak_throughput_per_minute": 0,
            "throughput_last_minute": 0,
            "inference_cache_hit_count": 0,
            "start_time": int(counters.get("loaded_at") or es.start_time or 0),
        }
        if count:
            entry["average_inference_time_ms"] = round(float(counters.get("inference_ms_total") or 0) / count, 3)
        if counters.get("last_access_ms"):
            entry["last_access"] = int(counters["last_access_ms"])
        node_entries.append(entry)
    if node_entries:  # what waits in the shared queue is reported once, on the first node
        node_entries[0]["number_of_pending_requests"] = pending
        node_entries[0]["rejected_execution_count"] = rejected
    out = {
        "deployment_id": unit_id, "model_id": units.model_id_of(index, unit_id, doc),
        "threads_per_allocation": es.threads_per_allocation,
        "number_of_allocations": state["target_allocation_count"],
        "queue_capacity": es.queue_capacity,
        "priority": es.priority,
        "start_time": int(es.start_time or 0),
        "state": state["assignment_state"],
        "allocation_status": {"allocation_count": state["allocation_count"],
                              "target_allocation_count": state["target_allocation_count"],
                              "state": state["allocation_state"]},
        "inference_count": totals["inference_count"], "error_count": totals["error_count"],
        "timeout_count": totals["timeout_count"], "rejected_execution_count": rejected,
        "peak_throughput_per_minute": 0,
        "nodes": node_entries,
    }
    if es.cache_size is not None:
        out["cache_size"] = f"{es.cache_size}b"
    if es.adaptive_allocations:
        # As set at _start or _update. The scaler moves number_of_allocations and
        # allocation_status (0 of 0, fully allocated, when scaled to zero).
        out["adaptive_allocations"] = es.adaptive_allocations
    return out
