"""Where each model runs and what its predictions cost, per node (the profile API's data)."""
from __future__ import annotations

from mlcommons.core import nodes
from mlcommons.core.context import Context
from mlcommons.store import keys as K


def profile(ctx: Context, model_filter: list[str] | None, node_filter: list[str] | None, view: str) -> dict:
    live = nodes.live_nodes(ctx)
    docs = dict(ctx.docs.all(K.MODEL))
    by_node: dict[str, dict] = {}
    by_model: dict[str, dict] = {}
    for node_id, info in sorted(live.items()):
        if node_filter and node_id not in node_filter:
            continue
        for model_id, stats in sorted((info.get("models") or {}).items()):
            if model_filter and model_id not in model_filter:
                continue
            doc = docs.get(model_id) or {}
            count = int(stats.get("inference_count") or 0)
            entry = {
                "model_state": doc.get("model_state"),
                "predictor": stats.get("predictor") or "TorchScriptTextEmbedding",
                "target_worker_nodes": doc.get("planning_worker_nodes") or [],
                "worker_nodes": doc.get("current_worker_nodes") or [],
                "model_inference_stats": {"count": count, "error_count": int(stats.get("error_count") or 0),
                                          "batches": int(stats.get("batches") or 0)},
            }
            if count:
                entry["predict_request_stats"] = {"count": count,
                                                  "average": round(stats["inference_ms_total"] / count, 3)}
            by_node.setdefault(node_id, {"models": {}})["models"][model_id] = entry
            model_view = by_model.setdefault(model_id, {"target_worker_nodes": entry["target_worker_nodes"],
                                                        "worker_nodes": entry["worker_nodes"], "nodes": {}})
            model_view["nodes"][node_id] = entry
    if view == "model":
        return {"models": by_model} if by_model else {}
    return {"nodes": by_node} if by_node else {}
