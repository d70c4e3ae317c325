"""OpenSearch's reply shapes: the standard write responses and the public view of a stored
document (fields starting with ``_`` are internal). The core returns documents and versions; the
OpenSearch handlers render them with these."""
from __future__ import annotations

from typing import Any

from mlcommons.store.keys import CONNECTOR, MODEL, MODEL_GROUP, TASK, WIRE_INDEX

# Field order of ML Commons' documents, so that replies read the same as theirs.
MODEL_FIELDS = (
    "name", "model_group_id", "algorithm", "model_version", "description", "model_format", "model_state",
    "model_content_size_in_bytes", "model_content_hash_value", "model_config", "deploy_setting", "is_enabled",
    "rate_limiter", "created_time", "last_updated_time", "last_registered_time", "last_deployed_time",
    "last_undeployed_time", "auto_redeploy_retry_times", "total_chunks", "planning_worker_node_count",
    "current_worker_node_count", "planning_worker_nodes", "current_worker_nodes", "deploy_to_all_nodes",
    "is_hidden",
)
TASK_FIELDS = ("model_id", "task_type", "function_name", "state", "worker_node", "create_time",
               "last_update_time", "error", "is_async")
CONNECTOR_FIELDS = ("name", "version", "description", "protocol", "parameters", "actions", "created_time",
                    "last_updated_time", "client_config", "backend_roles", "owner", "access")
ACTION_FIELDS = ("action_type", "method", "url", "headers", "request_body", "pre_process_function",
                 "post_process_function", "name")
GROUP_FIELDS = ("name", "latest_version", "description", "access", "created_time", "last_updated_time")


def public(doc: dict[str, Any], order: tuple[str, ...] = ()) -> dict[str, Any]:
    """A stored document as clients see it: internal fields (``_``) dropped, known fields first
    in ``order``, the rest after them sorted."""
    out = {k: doc[k] for k in order if k in doc}
    for key in sorted(doc):
        if key not in out and not key.startswith("_"):
            out[key] = doc[key]
    return out


def public_task(doc: dict[str, Any]) -> dict[str, Any]:
    return public(doc, TASK_FIELDS)


def public_group(doc: dict[str, Any]) -> dict[str, Any]:
    return public(doc, GROUP_FIELDS)


def public_connector(doc: dict[str, Any]) -> dict[str, Any]:
    """A connector as ML Commons shows it: its credential never (not even sealed)."""
    out = {k: doc[k] for k in CONNECTOR_FIELDS if k in doc}
    out["actions"] = [{k: a[k] for k in ACTION_FIELDS if k in a} for a in doc.get("actions") or []]
    return out


def public_model(doc: dict[str, Any]) -> dict[str, Any]:
    out = public(doc, MODEL_FIELDS)
    # As ML Commons prints them: the plan only when there is one, the flag only when true.
    if not out.get("planning_worker_nodes"):
        out.pop("planning_worker_nodes", None)
    if not out.get("deploy_to_all_nodes"):
        out.pop("deploy_to_all_nodes", None)
    if isinstance(out.get("connector"), dict):  # a remote model's own connector: never its credential
        out["connector"] = public_connector(out["connector"])
    return out


def write_response(index: str, doc_id: str, result: str, version: int = 1) -> dict[str, Any]:
    """The body of an OpenSearch index/update/delete response."""
    return {
        "_index": WIRE_INDEX[index],
        "_id": doc_id,
        "_version": version,
        "result": result,
        "forced_refresh": True,
        "_shards": {"total": 1, "successful": 1, "failed": 0},
        "_seq_no": version - 1,
        "_primary_term": 1,
    }


def task_deleted(task_id: str) -> dict[str, Any]:
    return write_response(TASK, task_id, "deleted", 2)


def model_written(model_id: str, result: str, version: int) -> dict[str, Any]:
    return write_response(MODEL, model_id, result, version)


def group_deleted(group_id: str) -> dict[str, Any]:
    return write_response(MODEL_GROUP, group_id, "deleted", 2)


def connector_written(connector_id: str, result: str, version: int) -> dict[str, Any]:
    return write_response(CONNECTOR, connector_id, result, version)
