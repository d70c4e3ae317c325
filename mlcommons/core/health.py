"""The cluster's health in OpenSearch's shape (``GET /_cluster/health``), so that scripts can wait
for a cluster to be ready instead of sleeping.

- ``red``: a model that should be served (DEPLOYED or PARTIALLY_DEPLOYED) has no live node left;
- ``yellow``: a model is served by only part of its planned nodes;
- ``green``: otherwise.
``number_of_nodes`` counts the worker nodes with a live heartbeat.
"""
from __future__ import annotations

import re
from typing import Any

from mlcommons.core import nodes
from mlcommons.core.context import Context
from mlcommons.errors import BadRequest
from mlcommons.store import keys as K

STATUSES = ("green", "yellow", "red")
_NODES = re.compile(r"^(>=|<=|>|<|ge\(|le\(|gt\(|lt\()?(\d{1,6})\)?$")
_OPS = {None: "==", ">=": ">=", "ge(": ">=", "<=": "<=", "le(": "<=", ">": ">", "gt(": ">", "<": "<", "lt(": "<"}


def health(ctx: Context) -> dict[str, Any]:
    live = nodes.live_nodes(ctx)
    status = "green"
    unassigned = 0
    for _, model in ctx.docs.all(K.MODEL):
        state = model.get("model_state")
        if state not in ("DEPLOYED", "PARTIALLY_DEPLOYED"):
            continue
        current = [n for n in model.get("current_worker_nodes") or [] if n in live]
        planned = model.get("planning_worker_nodes") or model.get("current_worker_nodes") or []
        if not current:
            status = "red"
            unassigned += 1
        elif len(current) < len(planned) and status == "green":
            status = "yellow"
    return {"cluster_name": ctx.settings.get("cluster.name"), "status": status, "timed_out": False,
            "number_of_nodes": len(live), "number_of_data_nodes": len(live), "discovered_master": True,
            "discovered_cluster_manager": True, "active_primary_shards": 0, "active_shards": 0,
            "relocating_shards": 0, "initializing_shards": 0, "unassigned_shards": unassigned,
            "delayed_unassigned_shards": 0, "number_of_pending_tasks": 0, "number_of_in_flight_fetch": 0,
            "task_max_waiting_in_queue_millis": 0, "active_shards_percent_as_number": 100.0}


def parse_wait_for_nodes(value: str | None):
    """``wait_for_nodes`` (``N``, ``>=N``, ``<=N``, ``>N``, ``<N``, ``ge(N)``...) as a predicate."""
    if value is None:
        return None
    found = _NODES.match(value.strip())
    if not found:
        raise BadRequest(f"cannot parse [wait_for_nodes] value [{value[:100]}]: use N, >=N, <=N, >N, <N or ge(N), "
                         "le(N), gt(N), lt(N)")
    op, count = _OPS[found.group(1)], int(found.group(2))
    return {"==": lambda n: n == count, ">=": lambda n: n >= count, "<=": lambda n: n <= count,
            ">": lambda n: n > count, "<": lambda n: n < count}[op]


def parse_wait_for_status(value: str | None) -> str | None:
    if value is None:
        return None
    if value not in STATUSES:
        raise BadRequest(f"unknown cluster health status [{value[:100]}]: use green, yellow or red")
    return value


def satisfied(state: dict[str, Any], want_status: str | None, want_nodes) -> bool:
    if want_status is not None and STATUSES.index(state["status"]) > STATUSES.index(want_status):
        return False
    return want_nodes is None or want_nodes(state["number_of_nodes"])
