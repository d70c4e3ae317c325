"""Deploy and undeploy: planning on the API side, reports from the nodes, and the aggregation.

A deploy creates one DEPLOY_MODEL task listing its target nodes in ``worker_node`` and one rq
job per node. Each node reports once ("" for success, else its error); when every planned node
has reported, the task ends COMPLETED, COMPLETED_WITH_ERROR (errors as a JSON map) or FAILED,
and the model ends DEPLOYED, PARTIALLY_DEPLOYED or DEPLOY_FAILED. The model's current worker
nodes are the nodes that report holding it; the route read by predict admission follows them in
the same transaction.
"""
from __future__ import annotations

from typing import Any

import orjson

from mlcommons import keys as K
from mlcommons.core import jobs, nodes, tasks
from mlcommons.core.context import Context
from mlcommons.core.states import DEPLOYABLE_MODEL_STATES, deploy_task_outcome, serving_state
from mlcommons.errors import BadRequest, Conflict, NotFound
from mlcommons.ids import new_id, now_ms
from mlcommons.store.documents import Tx
from mlcommons.types import ModelState, TaskState, TaskType


def model_not_found(model_id: str) -> NotFound:
    return NotFound(f"Failed to find model with the provided model id: {model_id}")


# --- deploy ------------------------------------------------------------------------------

def deploy(ctx: Context, model_id: str, node_ids: list[str] | None = None) -> dict[str, Any]:
    """Plan a deploy, record it, and hand it to the target nodes. Returns the task reply."""
    eligible = nodes.eligible_nodes(ctx)
    custom = bool(node_ids)
    if custom and not ctx.settings.get("plugins.ml_commons.allow_custom_deployment_plan"):
        raise BadRequest("Don't allow custom deployment plan")
    targets = [n for n in eligible if n in set(node_ids)] if custom else eligible
    if not targets:
        raise BadRequest("no eligible node found")

    def body(tx: Tx):
        model = tx.get(K.MODEL, model_id)
        if model is None:
            raise model_not_found(model_id)
        state = ModelState(model["model_state"])
        if state not in DEPLOYABLE_MODEL_STATES:
            raise BadRequest(f"Model [{model_id}] is in {state.value} state and cannot be deployed yet; "
                             "wait for its registration to complete")
        pending = model.get("_deploy_task")
        if pending:
            running = tx.get(K.TASK, pending)
            if running is not None and not TaskState(running["state"]).terminal:
                if sorted(running.get("worker_node", [])) == targets:
                    return pending, False
                raise Conflict(f"Model [{model_id}] is already being deployed by task [{pending}]; "
                               "wait for it to finish")
        current = list(model.get("current_worker_nodes", []))
        missing = sorted(set(current) - set(targets))
        if custom and missing:
            raise BadRequest(f"Model already deployed to these nodes: {missing}, but they are not included "
                             "in target node ids. Undeploy model from these nodes if don't need them.")
        task_id = tasks.create(tx, tasks.new_task(TaskType.DEPLOY_MODEL, model_id, model.get("algorithm"),
                                                  targets))
        fields: dict[str, Any] = {
            "planning_worker_nodes": targets,
            "planning_worker_node_count": len(targets),
            "deploy_to_all_nodes": not custom,
            "last_updated_time": now_ms(),
            "_deploy_task": task_id,
        }
        # A model already serving on every target keeps serving while the nodes confirm it.
        if not set(targets) <= set(current):
            fields["model_state"] = ModelState.DEPLOYING.value
        tx.update(K.MODEL, model_id, fields)
        return task_id, True

    task_id, created = ctx.docs.transact(body)
    if created:
        for node_id in targets:
            jobs.enqueue_deploy(ctx, task_id, model_id, node_id)
    return {"task_id": task_id, "task_type": TaskType.DEPLOY_MODEL.value, "status": TaskState.CREATED.value}


def mark_running(ctx: Context, task_id: str) -> bool:
    """A node started on a deploy task; False when the task is gone or already finished."""
    def body(tx: Tx):
        task = tx.get(K.TASK, task_id)
        if task is None or TaskState(task["state"]).terminal:
            return False
        if task["state"] == TaskState.CREATED.value:
            tasks.transition(tx, task_id, TaskState.RUNNING)
        return True

    return ctx.docs.transact(body)


def task_is_open(ctx: Context, task_id: str) -> bool:
    task = ctx.docs.get(K.TASK, task_id)
    return task is not None and not TaskState(task["state"]).terminal


def report_deploy(ctx: Context, task_id: str, model_id: str, node_id: str, error: str,
                  *, holds_model: bool) -> None:
    """A node's answer to a deploy job: ``error`` is "" on success; ``holds_model`` tells
    whether the model is now in that node's memory."""
    def body(tx: Tx):
        model = tx.get(K.MODEL, model_id)
        task = tx.get(K.TASK, task_id)
        results = {k.decode(): v.decode() for k, v in tx.hgetall(ctx.keys.task_nodes(task_id)).items()}
        if model is not None:
            _set_holder(tx, ctx, model_id, model, node_id, holds_model)
        if task is None or TaskState(task["state"]).terminal or node_id in results:
            return
        results[node_id] = error
        tx.call(lambda p: p.hset(ctx.keys.task_nodes(task_id), node_id, error))
        planned = task.get("worker_node", [])
        if all(n in results for n in planned):
            _complete_deploy(tx, task_id, planned, results, model_id, model)
        elif task["state"] == TaskState.CREATED.value:
            tasks.transition(tx, task_id, TaskState.RUNNING)

    ctx.docs.transact(body)


def _complete_deploy(tx: Tx, task_id: str, planned: list[str], results: dict[str, str],
                     model_id: str, model: dict | None) -> None:
    outcome = deploy_task_outcome({n: results[n] for n in planned})
    errors = {n: results[n] for n in planned if results[n]}
    fields: dict[str, Any] = {}
    if errors:
        fields["error"] = orjson.dumps(errors).decode()
    tasks.transition(tx, task_id, outcome, **fields)
    if model is None or model.get("_deploy_task") != task_id:
        return
    current = model["current_worker_nodes"]
    state = serving_state(len(current), model.get("planning_worker_node_count") or len(planned))
    update: dict[str, Any] = {"model_state": state.value, "_deploy_task": None, "last_updated_time": now_ms()}
    if current:
        update["last_deployed_time"] = now_ms()
    tx.update(K.MODEL, model_id, update)


def _set_holder(tx: Tx, ctx: Context, model_id: str, model: dict, node_id: str, holds: bool) -> None:
    """Add or remove ``node_id`` from the model's current worker nodes (and its route).
    Updates ``model`` in place so the caller sees the new list."""
    current = list(model.get("current_worker_nodes", []))
    if holds and node_id not in current:
        current.append(node_id)
    elif not holds and node_id in current:
        current.remove(node_id)
    else:
        model.setdefault("current_worker_nodes", current)
        return
    current.sort()
    model["current_worker_nodes"] = current
    model["current_worker_node_count"] = len(current)
    tx.update(K.MODEL, model_id, {"current_worker_nodes": current, "current_worker_node_count": len(current)})
    write_route(tx, ctx, model_id, model)


def write_route(tx: Tx, ctx: Context, model_id: str, model: dict) -> None:
    """The route tells predict admission whether anyone serves the deployment, and its limits."""
    route = ctx.keys.route(model_id)
    workers = len(model.get("current_worker_nodes", []))
    capacity = ctx.settings.get("mlcommons.predict.queue_capacity")
    fields = {"workers": workers, "capacity": capacity, "model_id": model_id,
              "function_name": model.get("algorithm", "TEXT_EMBEDDING")}
    tx.call(lambda p: p.hset(route, mapping=fields))


# --- undeploy -----------------------------------------------------------------------------

def plan_undeploy(ctx: Context, model_ids: list[str], node_ids: list[str] | None) -> dict[str, Any]:
    """Check the models, ask every live target node to drop them, and say whom to wait for."""
    found = []
    for model_id in model_ids:
        if ctx.docs.exists(K.MODEL, model_id):
            found.append(model_id)
    if len(model_ids) == 1 and not found:
        raise model_not_found(model_ids[0])
    live = nodes.live_nodes(ctx)
    targets = sorted(n for n in live if not node_ids or n in node_ids)
    request_id = new_id()
    if found:
        for node_id in targets:
            jobs.enqueue_undeploy(ctx, request_id, found, node_id)
    return {"request_id": request_id, "model_ids": found, "nodes": targets if found else [],
            "node_filter": node_ids or None, "live": sorted(live)}


def report_undeploy(ctx: Context, node_id: str, model_ids: list[str]) -> None:
    """A node no longer holds ``model_ids``."""
    for model_id in model_ids:
        def body(tx: Tx, model_id=model_id):
            model = tx.get(K.MODEL, model_id)
            if model is not None:
                _set_holder(tx, ctx, model_id, model, node_id, False)

        ctx.docs.transact(body)


def finish_undeploy(ctx: Context, plan: dict[str, Any], replies: dict[str, dict]) -> dict[str, Any]:
    """Bring the model documents in line with what the nodes did, then build the reply."""
    node_filter = plan["node_filter"]
    live = set(plan["live"])
    for model_id in plan["model_ids"]:
        def body(tx: Tx, model_id=model_id):
            model = tx.get(K.MODEL, model_id)
            if model is None:
                return
            current = list(model.get("current_worker_nodes", []))
            # Nodes that are gone hold nothing; forget them.
            for gone in [n for n in current if n not in live and (not node_filter or n in node_filter)]:
                _set_holder(tx, ctx, model_id, model, gone, False)
            current = model.get("current_worker_nodes", [])
            planning = [n for n in model.get("planning_worker_nodes", [])
                        if node_filter and n not in node_filter]
            fields: dict[str, Any] = {"last_updated_time": now_ms()}
            if not current:
                fields.update(model_state=ModelState.UNDEPLOYED.value, planning_worker_nodes=[],
                              planning_worker_node_count=0, current_worker_node_count=0,
                              last_undeployed_time=now_ms(), _deploy_task=None)
                _cancel_open_deploys(tx, model_id, model)
            else:
                planning = sorted(set(planning) | set(current))
                fields.update(planning_worker_nodes=planning, planning_worker_node_count=len(planning),
                              deploy_to_all_nodes=False)
                if not model.get("_deploy_task"):
                    fields["model_state"] = serving_state(len(current), len(planning)).value
            tx.update(K.MODEL, model_id, fields)

        ctx.docs.transact(body)
    out: dict[str, Any] = {}
    for node_id, reply in sorted(replies.items()):
        stats = {m: s for m, s in reply.get("stats", {}).items()}
        if any(s == "undeployed" for s in stats.values()):
            out[node_id] = {"stats": stats}
    return out


def _cancel_open_deploys(tx: Tx, model_id: str, model: dict) -> None:
    pending = model.get("_deploy_task")
    if pending:
        tasks.transition(tx, pending, TaskState.CANCELLED, error="undeployed while deploying")


# --- nodes that leave -----------------------------------------------------------------------

def node_left(ctx: Context, node_id: str) -> list[str]:
    """``node_id`` holds nothing any more (it stopped, restarted or died): take it out of every
    model's current worker nodes and recompute those models' states. Returns the model ids."""
    touched = []
    for model_id, model in ctx.docs.all(K.MODEL):
        if node_id not in model.get("current_worker_nodes", []):
            continue

        def body(tx: Tx, model_id=model_id):
            doc = tx.get(K.MODEL, model_id)
            if doc is None or node_id not in doc.get("current_worker_nodes", []):
                return
            _set_holder(tx, ctx, model_id, doc, node_id, False)
            if not doc.get("_deploy_task"):
                planned = doc.get("planning_worker_node_count") or 0
                tx.update(K.MODEL, model_id, {"model_state": serving_state(len(doc["current_worker_nodes"]),
                                                                            planned).value,
                                              "last_updated_time": now_ms()})

        ctx.docs.transact(body)
        touched.append(model_id)
    return touched
