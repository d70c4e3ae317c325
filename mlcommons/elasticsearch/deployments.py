"""Elasticsearch trained-model deployments on top of the deploy machinery.

A deployment is a serving unit (mlcommons/core/serving/units.py): the model document itself when its
deployment_id is the model id, else a deployment document. Starting one records its settings in
``_serving`` and runs an ordinary DEPLOY_MODEL task, so the OpenSearch tasks API and rq show it.
``number_of_allocations`` is the deployment's total, as in Elasticsearch: it is spread over
``min(nodes, allocations)`` nodes, each running its share as allocation threads.
"""
from __future__ import annotations

import logging
import math
import re
from typing import Any

from mlcommons.core import limits, nodes
from mlcommons.core.context import Context
from mlcommons.core.serving import deploy as deploys
from mlcommons.core.serving import lifecycle, units
from mlcommons.core.serving import spec as serving_spec
from mlcommons.core.serving import undeploy as undeploys
from mlcommons.core.serving.spec import ServingSpec
from mlcommons.elasticsearch import trained_models
from mlcommons.elasticsearch.spec import DEFAULT_QUEUE_CAPACITY, EsDeployment
from mlcommons.errors import BadRequest, Conflict, NotFound
from mlcommons.ids import now_ms
from mlcommons.store import keys as K
from mlcommons.store.documents import Tx
from mlcommons.types import ModelState, TaskState

log = logging.getLogger(__name__)

MAX_QUEUE_CAPACITY = 100_000
# Allocations are threads on every node that serves the deployment: a bound well past any
# machine's cores, so that no request can make a node start a million threads.
MAX_ALLOCATIONS = 256
WAIT_FOR = ("starting", "started", "fully_allocated")
SERVING_STATES = (ModelState.DEPLOYING.value, ModelState.DEPLOYED.value, ModelState.PARTIALLY_DEPLOYED.value)

# ASCII digits only, and few enough that no value overflows (Elasticsearch parses into a long).
_TIME = re.compile(r"^\s*(-?\d{1,18}(?:\.\d{1,9})?)\s*(nanos|micros|ms|s|m|h|d)?\s*$", re.ASCII)
_TIME_UNITS = {"nanos": 1e-9, "micros": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_BYTES = re.compile(r"^\s*(\d{1,18}(?:\.\d{1,9})?)\s*(b|kb|mb|gb|tb|pb)?\s*$", re.I | re.ASCII)
_LONG = 2**63
_BYTE_UNITS = {"b": 1, "kb": 2**10, "mb": 2**20, "gb": 2**30, "tb": 2**40, "pb": 2**50}


def parse_time(value: Any, name: str) -> float:
    """An Elasticsearch time value ("30s", "1m", "500ms") in seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) < _LONG:
        return float(value) / 1000.0  # a bare number is milliseconds
    match = _TIME.match(str(value))
    if not match or (match.group(2) is None and match.group(1) not in ("0", "-1")):
        raise BadRequest(f"failed to parse setting [{name}] with value [{value}] as a time value: "
                         "unit is missing or unrecognized", error_type="illegal_argument_exception")
    return float(match.group(1)) * _TIME_UNITS[match.group(2) or "ms"]


def parse_bytes(value: Any, name: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < _LONG:
        return value
    match = _BYTES.match(str(value))
    if not match:
        raise BadRequest(f"failed to parse setting [{name}] with value [{value}] as a size in bytes",
                         error_type="parse_exception")
    return int(float(match.group(1)) * _BYTE_UNITS[(match.group(2) or "b").lower()])


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return limits.strict_int(value.strip())
    return None


def validate_start(params: dict[str, Any], adaptive: dict[str, Any] | None) -> dict[str, Any]:
    """_start's parameters with defaults, or a 400 listing every problem as Elasticsearch does."""
    errors = []
    threads = _int(params.get("threads_per_allocation", 1))
    if threads is None or threads < 1 or threads > 32 or threads & (threads - 1):
        errors.append("[threads_per_allocation] must be a power of 2 less than or equal to 32")
    queue = _int(params.get("queue_capacity", DEFAULT_QUEUE_CAPACITY))
    if queue is None or queue < 1:
        errors.append("[queue_capacity] must be a positive integer")
    elif queue >= MAX_QUEUE_CAPACITY:
        errors.append(f"[queue_capacity] must be less than {MAX_QUEUE_CAPACITY}")
    adaptive_on = isinstance(adaptive, dict) and bool(adaptive.get("enabled"))
    allocations = params.get("number_of_allocations")
    if allocations is not None:
        allocations = _int(allocations)
        if allocations is None or allocations < 1:
            errors.append("[number_of_allocations] must be a positive integer")
        elif allocations > MAX_ALLOCATIONS:
            errors.append(f"[number_of_allocations] must be less than or equal to {MAX_ALLOCATIONS}")
        if adaptive_on:
            errors.append("[number_of_allocations] cannot be set if adaptive allocations is enabled")
    priority = params.get("priority", "normal")
    if priority not in ("normal", "low"):
        errors.append(f"[priority] must be one of [normal, low], got [{priority}]")
    if priority == "low":
        if allocations not in (None, 1):
            errors.append("[number_of_allocations] must be 1 when [priority] is low")
        if threads not in (None, 1):
            errors.append("[threads_per_allocation] must be 1 when [priority] is low")
    timeout = parse_time(params.get("timeout", "30s"), "timeout")
    if timeout <= 0:
        errors.append("[timeout] must be positive")
    wait_for = params.get("wait_for", "started")
    if wait_for not in WAIT_FOR:
        errors.append(f"[wait_for] must be one of {', '.join(WAIT_FOR)}")
    adaptive_out = None
    if adaptive is not None:
        adaptive_out, more = validate_adaptive(adaptive)
        errors += more
    if errors:
        raise trained_models.validation(*errors)
    if allocations is None:
        minimum = (adaptive_out or {}).get("min_number_of_allocations")
        allocations = minimum if adaptive_on and minimum else 1
    out = {"threads_per_allocation": threads, "queue_capacity": queue, "number_of_allocations": allocations,
           "priority": priority, "timeout": timeout, "wait_for": wait_for}
    if "cache_size" in params:
        out["cache_size"] = parse_bytes(params["cache_size"], "cache_size")
    if adaptive_out is not None:
        out["adaptive_allocations"] = adaptive_out
    return out


def validate_adaptive(adaptive: Any) -> tuple[dict[str, Any], list[str]]:
    if not isinstance(adaptive, dict):
        return {}, ["[adaptive_allocations] must be an object"]
    errors = []
    out: dict[str, Any] = {"enabled": bool(adaptive.get("enabled", False))}
    for name in ("min_number_of_allocations", "max_number_of_allocations"):
        if adaptive.get(name) is not None:
            value = _int(adaptive[name])
            if value is None or value < (0 if name.startswith("min") else 1):
                errors.append(f"[{name}] must be a {'non-negative' if name.startswith('min') else 'positive'} integer")
            elif value > MAX_ALLOCATIONS:
                errors.append(f"[{name}] must be less than or equal to {MAX_ALLOCATIONS}")
            out[name] = value
    low, high = out.get("min_number_of_allocations"), out.get("max_number_of_allocations")
    if low is not None and high is not None and low > high:
        errors.append("[min_number_of_allocations] must not be larger than [max_number_of_allocations]")
    return out, errors


# --- start ------------------------------------------------------------------------------------------

def start(ctx: Context, model_id: str, deployment_id: str | None, settings: dict[str, Any]) -> dict[str, Any]:
    """Record and launch a deployment; returns its unit id. The caller waits for ``wait_for``."""
    deployment_id = deployment_id or model_id
    model = trained_models.complete_definition(ctx, model_id)
    if model.get("model_state") == ModelState.REGISTERING.value:
        raise BadRequest(f"Model [{model_id}] is still being registered", error_type="status_exception")
    live = nodes.eligible_nodes(ctx)
    if not live:
        raise BadRequest("Could not start deployment because no ML nodes with sufficient capacity were found",
                         status=429, error_type="status_exception")
    allocations = settings["number_of_allocations"]
    targets = live[:max(1, min(len(live), allocations))] if allocations else live[:1]
    per_node = max(1, math.ceil(allocations / len(targets))) if allocations else 1
    es = EsDeployment(deployment_id=deployment_id, model_id=model_id, start_time=now_ms(), target_nodes=targets,
                      number_of_allocations=settings["number_of_allocations"],
                      threads_per_allocation=settings["threads_per_allocation"],
                      queue_capacity=settings["queue_capacity"], priority=settings["priority"],
                      cache_size=settings.get("cache_size"), adaptive_allocations=settings.get("adaptive_allocations"))
    serving = serving_spec.fields(ServingSpec(number_of_allocations=per_node,
                                              threads_per_allocation=settings["threads_per_allocation"],
                                              queue_capacity=settings["queue_capacity"], es=es.encode()))
    index = K.MODEL if deployment_id == model_id else K.DEPLOYMENT

    def tx_body(tx: Tx):
        existing = tx.get(K.DEPLOYMENT, deployment_id)
        if deployment_id != model_id and tx.get(K.MODEL, deployment_id) is not None:
            raise BadRequest(f"Deployment id [{deployment_id}] is the same as an another model which is not the "
                             f"model being deployed. Deployment id can be the same as the model being deployed but "
                             f"cannot match a different model", error_type="status_exception")
        unit = existing if index == K.DEPLOYMENT else tx.get(K.MODEL, model_id)
        if existing is not None or (unit is not None and (unit.get("model_state") in SERVING_STATES
                                                          or unit.get("current_worker_nodes"))):
            raise BadRequest(f"Could not start model deployment because an existing deployment with the same id "
                             f"[{deployment_id}] exist", error_type="status_exception")
        if index == K.DEPLOYMENT:
            now = now_ms()
            tx.put(K.DEPLOYMENT, deployment_id, {
                "model_id": model_id, "deployment_id": deployment_id, "algorithm": model.get("algorithm"),
                **lifecycle.initial(ModelState.UNDEPLOYED), "current_worker_nodes": [],
                "current_worker_node_count": 0, "planning_worker_nodes": [], "planning_worker_node_count": 0,
                "created_time": now, "last_updated_time": now, **serving}, created=now)
        else:
            tx.update(K.MODEL, model_id, serving)

    ctx.docs.transact(tx_body)
    try:
        deploys.deploy(ctx, deployment_id, targets, reason=deploys.Reason.START)
    except Exception:
        _forget(ctx, deployment_id)  # nothing half-made stays behind
        raise
    return {"deployment_id": deployment_id, "index": index}


def _forget(ctx: Context, unit_id: str) -> None:
    def tx_body(tx: Tx):
        if tx.get(K.DEPLOYMENT, unit_id) is not None:
            tx.delete(K.DEPLOYMENT, unit_id)
            tx.call(lambda p: p.delete(ctx.keys.route(unit_id)))
        elif tx.get(K.MODEL, unit_id) is not None:
            tx.update(K.MODEL, unit_id, serving_spec.fields(None))

    ctx.docs.transact(tx_body)


# --- finding deployments ----------------------------------------------------------------------------

def find(ctx: Context, ident: str) -> list[tuple[str, str, dict[str, Any]]]:
    """Deployments named by ``ident``: a deployment id, or a model id (all its deployments)."""
    found = []
    for index, unit_id, doc in units.all_units(ctx):
        if not _is_deployment(index, doc):
            continue
        if unit_id == ident or units.model_id_of(index, unit_id, doc) == ident:
            found.append((index, unit_id, doc))
    return found


def _is_deployment(index: str, doc: dict[str, Any]) -> bool:
    if index == K.DEPLOYMENT:
        return True
    return ServingSpec.of(doc) is not None or doc.get("model_state") in SERVING_STATES or bool(doc.get("current_worker_nodes"))


def all_deployments(ctx: Context) -> list[tuple[str, str, dict[str, Any]]]:
    return [(i, u, d) for i, u, d in units.all_units(ctx) if _is_deployment(i, d)]


def unit_for_infer(ctx: Context, ident: str) -> tuple[str, str, dict[str, Any]]:
    """(index, unit id, document) of the unit an _infer on ``ident`` goes to: the deployment of
    that id, else the model's own, else any deployment of the model."""
    index, doc = units.lookup(ctx.docs, ident)
    if doc is None:
        raise NotFound(f"Could not find trained model [{ident}]", error_type="resource_not_found_exception")
    if _is_deployment(index, doc):
        return index, ident, doc
    others = find(ctx, ident)
    if others:
        return others[0]
    raise BadRequest(f"Model [{ident}] must be deployed to use. Please deploy with the start trained model "
                     "deployment API.", status=409, error_type="status_exception")


def infer_target(ctx: Context, ident: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(unit id, unit document, the model's Elasticsearch config) an _infer on ``ident`` uses."""
    index, unit_id, doc = unit_for_infer(ctx, ident)
    model = doc if index == K.MODEL else ctx.docs.get(K.MODEL, doc["model_id"])
    return unit_id, doc, (model or {}).get("_es") or {}


# --- state ------------------------------------------------------------------------------------------

def state_of(ctx: Context, index: str, unit_id: str, doc: dict[str, Any]) -> dict[str, Any]:
    """allocation and routing state of a deployment, as Elasticsearch reports them."""
    es = EsDeployment.of(doc)
    per_node = allocations_per_node(doc)
    planned = list(doc.get("planning_worker_nodes") or (es.target_nodes if es else []))
    current = set(doc.get("current_worker_nodes") or [])
    errors: dict[str, str] = dict(doc.get("_deploy_errors") or {})
    pending = lifecycle.deploy_task(doc)
    task = ctx.docs.get(K.TASK, pending) if pending else None
    if task is not None:
        errors = {k.decode(): v.decode() for k, v in ctx.redis.hgetall(ctx.keys.task_nodes(pending)).items() if v}
    routing = {}
    for node_id in sorted(set(planned) | current):
        if node_id in current:
            routing[node_id] = {"current_allocations": per_node, "target_allocations": per_node,
                                "routing_state": "started", "reason": ""}
        elif node_id in errors:
            routing[node_id] = {"current_allocations": 0, "target_allocations": per_node,
                                "routing_state": "failed", "reason": errors[node_id]}
        elif task is not None and not TaskState(task["state"]).terminal:
            routing[node_id] = {"current_allocations": 0, "target_allocations": per_node,
                                "routing_state": "starting", "reason": ""}
        else:
            routing[node_id] = {"current_allocations": 0, "target_allocations": per_node,
                                "routing_state": "failed" if doc.get("model_state") == ModelState.DEPLOY_FAILED.value
                                else "starting", "reason": doc.get("_failed_by") or ""}  # FailedBy's value
    for entry in routing.values():
        if not entry["reason"]:
            entry.pop("reason")
    target = total_allocations(doc)
    count = min(target, per_node * len(current))
    # Elasticsearch's rule; a deployment scaled to zero (0 of 0) is fully allocated.
    if count == 0 and target > 0:
        allocation_state = "starting"
    else:
        allocation_state = "started" if count < target else "fully_allocated"
    if current:
        assignment_state = "started"
    elif routing and all(r["routing_state"] == "failed" for r in routing.values()):
        assignment_state = "failed"
    else:
        assignment_state = "starting"
    return {"routing_table": routing, "allocation_count": count, "target_allocation_count": target,
            "allocation_state": allocation_state, "assignment_state": assignment_state,
            "task_open": task is not None and not TaskState(task["state"]).terminal}


def assignment(ctx: Context, index: str, unit_id: str, doc: dict[str, Any]) -> dict[str, Any]:
    es = EsDeployment.of(doc) or EsDeployment()
    model_id = units.model_id_of(index, unit_id, doc)
    model = ctx.docs.get(K.MODEL, model_id) or {}
    state = state_of(ctx, index, unit_id, doc)
    params = {"model_id": model_id, "deployment_id": unit_id,
              "model_bytes": int(model.get("model_content_size_in_bytes") or 0),
              "threads_per_allocation": es.threads_per_allocation,
              "number_of_allocations": state["target_allocation_count"],
              "queue_capacity": es.queue_capacity,
              "cache_size": f"{_or(es.cache_size, int(model.get('model_content_size_in_bytes') or 0))}b",
              "priority": es.priority,
              "per_deployment_memory_bytes": 0, "per_allocation_memory_bytes": 0}
    out = {"task_parameters": params, "routing_table": state["routing_table"],
           "assignment_state": state["assignment_state"], "start_time": _iso(es.start_time),
           "max_assigned_allocations": state["allocation_count"]}
    if es.adaptive_allocations:
        out["adaptive_allocations"] = es.adaptive_allocations
    return out


def _or(value, default):
    return default if value is None else value


def _iso(ms: int | None) -> str:
    import datetime

    moment = datetime.datetime.fromtimestamp((ms or now_ms()) / 1000, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# --- stop and update ---------------------------------------------------------------------------------

def endpoint_unit(inference_id: str, endpoint: dict[str, Any]) -> str:
    """The deployment an inference endpoint sends its requests to: the one it names, else its own."""
    return (endpoint.get("service_settings") or {}).get("deployment_id") or inference_id


def stop_unit(ctx: Context, unit_id: str, *, force: bool = False) -> None:
    """Undeploy a deployment everywhere and forget it (a model's own deployment leaves the model).
    A deployment an inference endpoint uses is stopped only with ``force``, as Elasticsearch does."""
    if not force:
        users = sorted(i for i, e in ctx.docs.all(K.ENDPOINT) if endpoint_unit(i, e) == unit_id)
        if users:
            raise Conflict(f"Cannot stop deployment [{unit_id}] as it is used by inference endpoint "
                           f"[{', '.join(users)}]; delete the endpoint, or use force to stop the deployment",
                           error_type="status_exception")
    undeploys.undeploy(ctx, [unit_id])
    _forget(ctx, unit_id)


def update(ctx: Context, unit_id: str, allocations: int | None, adaptive: dict[str, Any] | None, *,
           expected: int | None = None) -> bool:
    """Change a deployment's allocations (its total; 0 only for an adaptive deployment scaled to
    zero) and adaptive settings: each node picks up its new count at its next heartbeat.
    ``expected``: apply only if the total is still this (the scaler decided from it). Returns
    whether it was applied."""
    index = units.kind(ctx.docs, unit_id)

    def tx_body(tx: Tx):
        doc = tx.get(index, unit_id)
        if doc is None or (expected is not None and total_allocations(doc) != expected):
            return False
        serving = ServingSpec.of(doc) or ServingSpec()
        es = EsDeployment.of(doc) or EsDeployment()
        if adaptive is not None:
            es = es.with_(adaptive_allocations=adaptive)
        count = allocations
        if count is None and es.adaptive is None and es.number_of_allocations == 0:
            count = 1  # adaptive allocations turned off while scaled to zero: serve again
        if count is not None:
            nodes_count = max(1, len(doc.get("current_worker_nodes") or es.target_nodes or [1]))
            es = es.with_(number_of_allocations=count)
            serving = serving.with_(number_of_allocations=math.ceil(count / nodes_count) if count > 0 else 0)
        tx.update(index, unit_id, {**serving_spec.fields(serving.with_(es=es.encode())), "last_updated_time": now_ms()})
        return True

    return ctx.docs.transact(tx_body)


def allocations_per_node(doc: dict[str, Any]) -> int:
    """Allocation threads each serving node runs for a deployment. An Elasticsearch deployment
    may be at 0 (scaled to zero); anything else without a count has the settings' default, which
    is not known here: 1."""
    serving = ServingSpec.of(doc)
    value = serving.number_of_allocations if serving else None
    if value is None or (value == 0 and not serving.es):
        return 1
    return int(value)


def total_allocations(doc: dict[str, Any]) -> int:
    """A deployment's allocation count over all its nodes (Elasticsearch's number_of_allocations)."""
    es = EsDeployment.of(doc)
    if es is not None and es.number_of_allocations is not None:
        return int(es.number_of_allocations)
    planned = doc.get("planning_worker_nodes") or (es.target_nodes if es else [])
    return allocations_per_node(doc) * max(1, len(planned))


def is_asleep(doc: dict[str, Any] | None) -> bool:
    """Whether a unit is an adaptive deployment scaled to zero: a request to it must wake it."""
    es = EsDeployment.of(doc)
    return es is not None and es.asleep


def wake(ctx: Context, unit_id: str) -> bool:
    """Scale from zero: a request arrived for ``unit_id``. An adaptive deployment at 0 allocations
    goes to 1 at once (the request waits in the queue until a node has resized, within a
    heartbeat); anything else is left alone, for the price of one read. True if it was woken."""
    if not is_asleep(units.lookup(ctx.docs, unit_id)[1]):
        return False
    woken = update(ctx, unit_id, 1, None, expected=0)
    if woken:
        log.info("deployment %s: a request arrived at 0 allocations; scaling to 1", unit_id)
    return woken


def delete_model(ctx: Context, model_id: str, force: bool) -> dict[str, Any]:
    """DELETE _ml/trained_models/<id>: refused while a deployment serves the model, unless
    ``force``, which stops its deployments first."""
    trained_models.check_deletable(ctx, model_id)
    serving = find(ctx, model_id)
    if serving and not force:
        raise Conflict(f"Cannot delete model [{model_id}] as it is currently deployed", error_type="status_exception")
    for _, unit_id, _doc in serving:
        stop_unit(ctx, unit_id, force=True)
    return trained_models.delete(ctx, model_id)
