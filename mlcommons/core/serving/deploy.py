"""Deploy: planning on the API side, reports from the nodes, and the aggregation.

A deploy creates one DEPLOY_MODEL task listing its target nodes in ``worker_node`` and one rq
job per node. Each node reports once ("" for success, else its error); when every planned node
has reported, the task ends COMPLETED, COMPLETED_WITH_ERROR (errors as a JSON map) or FAILED,
and the model ends DEPLOYED, PARTIALLY_DEPLOYED or DEPLOY_FAILED. The model's current worker
nodes are the nodes that report holding it; the route read by predict admission follows them in
the same transaction. A model has at most one open deploy task (``_deploy_task``).
"""
from __future__ import annotations

from enum import Enum
from typing import Any

import orjson

from mlcommons.core import nodes, replication
from mlcommons.core.context import Context
from mlcommons.core.serving import lifecycle, units
from mlcommons.core.serving.lifecycle import DEPLOYABLE_MODEL_STATES, Event, FailedBy
from mlcommons.core.serving.spec import ServingSpec
from mlcommons.core.tasks import jobs
from mlcommons.core.tasks import records as tasks
from mlcommons.core.tasks.states import deploy_task_outcome
from mlcommons.errors import BadRequest, Conflict, NotFound, ServiceUnavailable
from mlcommons.ids import now_ms
from mlcommons.metrics import counters as metric_counters
from mlcommons.store import keys as K
from mlcommons.store.documents import Tx
from mlcommons.types import ModelState, TaskState, TaskType


class Reason(str, Enum):
    """Why a deploy starts: it decides how the plan is formed and what is counted."""

    USER = "user"          # _deploy (or ?deploy=true): the plan is the targets
    PREDICT = "predict"    # the first _predict of a model that is not deployed
    REDEPLOY = "redeploy"  # the watcher restoring a planned node: the plan keeps its other nodes
    START = "start"        # an Elasticsearch deployment _start: the plan is its placement


def model_not_found(model_id: str) -> NotFound:
    return NotFound(f"Failed to find model with the provided model id: {model_id}")


def deploy(ctx: Context, model_id: str, node_ids: list[str] | None = None,
           reason: Reason = Reason.USER) -> dict[str, Any] | None:
    """Plan a deploy, record it, and hand it to the target nodes. Returns the task reply; None
    for a redeploy that is no longer wanted (the model changed since the watcher looked).
    ``model_id`` is a serving unit's id: a model's, or an Elasticsearch deployment's."""
    eligible = nodes.eligible_nodes(ctx)
    custom = bool(node_ids)
    if custom and reason is Reason.USER and not ctx.settings.get("plugins.ml_commons.allow_custom_deployment_plan"):
        raise BadRequest("Don't allow custom deployment plan")
    targets = [n for n in eligible if n in set(node_ids)] if custom else eligible
    if not targets:
        raise BadRequest("no eligible node found")

    def body(tx: Tx):
        index = units.kind(tx, model_id)
        model = tx.get(index, model_id)
        if model is None:
            raise model_not_found(model_id)
        state = ModelState(model["model_state"])
        if reason is Reason.PREDICT and lifecycle.undeploying(model):
            raise BadRequest(f"Model [{model_id}] is being undeployed")
        if state not in DEPLOYABLE_MODEL_STATES:
            raise BadRequest(f"Model [{model_id}] is in {state.value} state and cannot be deployed yet; "
                             "wait for its registration to complete")
        pending = lifecycle.deploy_task(model)
        if reason is Reason.REDEPLOY and (pending or not _still_wants(model, targets)):
            return None, False
        if pending:
            running = tx.get(K.TASK, pending)
            if running is not None and not TaskState(running["state"]).terminal:
                # Another deploy of this model is under way: join it, unless the caller asked for
                # a different set of nodes.
                if reason is not Reason.USER or not custom or sorted(running.get("worker_node", [])) == targets:
                    return pending, False
                raise Conflict(f"Model [{model_id}] is already being deployed by task [{pending}]; "
                               "wait for it to finish")
        current = list(model.get("current_worker_nodes", []))
        missing = sorted(set(current) - set(targets))
        if custom and missing and reason is Reason.USER:
            raise BadRequest(f"Model already deployed to these nodes: {missing}, but they are not included "
                             "in target node ids. Undeploy model from these nodes if don't need them.")
        task = tasks.new_task(TaskType.DEPLOY_MODEL, units.model_id_of(index, model_id, model),
                              model.get("algorithm"), targets)
        if index == K.DEPLOYMENT:
            task["deployment_id"] = model_id
        task_id = tasks.create(tx, task)
        if reason is Reason.REDEPLOY or (reason is Reason.PREDICT and wants_redeploy(model)):
            # Restoring nodes the model lost: its plan (and whether it goes to every node) stays.
            plan = sorted(set(model.get("planning_worker_nodes") or []) | set(targets))
            to_all = bool(model.get("deploy_to_all_nodes"))
        else:
            plan, to_all = targets, not custom
        fields: dict[str, Any] = {
            "planning_worker_nodes": plan,
            "planning_worker_node_count": len(plan),
            "deploy_to_all_nodes": to_all,
            "last_updated_time": now_ms(),
        }
        if reason is Reason.REDEPLOY:
            fields["auto_redeploy_retry_times"] = int(model.get("auto_redeploy_retry_times") or 0) + 1
        lifecycle.move(tx, index, model_id, model, Event.DEPLOY_REQUESTED, fields, task_id=task_id,
                       serving_on_targets=set(targets) <= set(current))
        return task_id, True

    task_id, created = ctx.docs.transact(body)
    if task_id is None:
        return None
    if created:
        for node_id in targets:
            jobs.enqueue_deploy(ctx, task_id, model_id, node_id)
        replication.wait(ctx, f"deploy task {task_id} (model {model_id})")
        if reason is Reason.PREDICT:
            metric_counters.bump(ctx, metric_counters.AUTO_DEPLOYS)
        elif reason is Reason.REDEPLOY:
            metric_counters.bump(ctx, metric_counters.AUTO_REDEPLOYS)
    return {"task_id": task_id, "task_type": TaskType.DEPLOY_MODEL.value, "status": TaskState.CREATED.value}


def wants_redeploy(model: dict[str, Any]) -> bool:
    """Whether a model is meant to be served: deployed (fully or partly), or failed only
    because its nodes went away. A deploy that failed on its own is not retried (as in ML Commons)."""
    return lifecycle.phase(model) in (lifecycle.Phase.DEPLOYED, lifecycle.Phase.PARTIALLY_DEPLOYED,
                                      lifecycle.Phase.FAILED_BY_NODE_LOSS)


def missing_nodes(model: dict[str, Any], live: list[str]) -> list[str]:
    """Live eligible nodes that the model's plan includes but that do not hold it."""
    current = set(model.get("current_worker_nodes") or [])
    planned = set(model.get("planning_worker_nodes") or [])
    to_all = bool(model.get("deploy_to_all_nodes"))
    return [n for n in live if (to_all or n in planned) and n not in current]


def _still_wants(model: dict[str, Any], targets: list[str]) -> bool:
    return wants_redeploy(model) and set(targets) <= set(missing_nodes(model, targets))


def mark_running(ctx: Context, task_id: str, node_id: str) -> bool:
    """A node starts its part of a deploy task; False when that part is over already (the task
    ended, was cancelled, or the node's part was closed while the node was away)."""
    def body(tx: Tx):
        task = tx.get(K.TASK, task_id)
        if task is None or TaskState(task["state"]).terminal:
            return False
        if tx.hgetall(ctx.keys.task_nodes(task_id)).get(node_id.encode()) is not None:
            return False
        if task["state"] == TaskState.CREATED.value:
            tasks.transition(tx, task_id, TaskState.RUNNING)
        return True

    return ctx.docs.transact(body)


def part_is_open(ctx: Context, task_id: str, node_id: str) -> bool:
    """Whether ``node_id`` should still carry on with its part of a deploy task."""
    task = ctx.docs.get(K.TASK, task_id)
    if task is None or TaskState(task["state"]).terminal:
        return False
    return not ctx.redis.hexists(ctx.keys.task_nodes(task_id), node_id)


def set_progress(ctx: Context, task_id: str, node_id: str, what: str) -> None:
    """What a node is doing for a deploy task, for those who watch (and for the tests that kill
    a node at a chosen moment)."""
    key = ctx.keys.deploy_progress(task_id)
    pipe = ctx.redis.pipeline(transaction=False)
    pipe.hset(key, node_id, what)
    pipe.expire(key, 24 * 3600)
    pipe.execute()


def report_deploy(ctx: Context, task_id: str, model_id: str, node_id: str, error: str,
                  *, holds_model: bool) -> None:
    """A node's answer to a deploy job: ``error`` is "" on success; ``holds_model`` tells
    whether the model is now in that node's memory."""
    index = units.kind(ctx.docs, model_id)

    def body(tx: Tx):
        model = tx.get(index, model_id)
        task = tx.get(K.TASK, task_id)
        results = {k.decode(): v.decode() for k, v in tx.hgetall(ctx.keys.task_nodes(task_id)).items()}
        if model is not None:
            set_holder(tx, ctx, model_id, model, node_id, holds_model)
        if task is None or TaskState(task["state"]).terminal or node_id in results:
            return
        results[node_id] = error
        tx.call(lambda p: p.hset(ctx.keys.task_nodes(task_id), node_id, error))
        announce(tx, ctx, model_id)
        planned = task.get("worker_node", [])
        if all(n in results for n in planned):
            complete_deploy(tx, ctx, task_id, planned, results, model_id, model, index=index)
        elif task["state"] == TaskState.CREATED.value:
            tasks.transition(tx, task_id, TaskState.RUNNING)

    ctx.docs.transact(body)


def complete_deploy(tx: Tx, ctx: Context, task_id: str, planned: list[str], results: dict[str, str],
                    model_id: str, model: dict | None, *, outcome: TaskState | None = None,
                    index: str = K.MODEL) -> None:
    outcome = outcome or deploy_task_outcome({n: results.get(n, "") for n in planned})
    errors = {n: results[n] for n in planned if results.get(n)}
    announce(tx, ctx, model_id)
    fields: dict[str, Any] = {}
    if errors:
        fields["error"] = orjson.dumps(errors).decode()
    tasks.transition(tx, task_id, outcome, **fields)
    if model is None or lifecycle.deploy_task(model) != task_id:
        return
    current = model.get("current_worker_nodes", [])
    planned_count = model.get("planning_worker_node_count") or len(planned)
    extra: dict[str, Any] = {}
    if current:
        extra["last_deployed_time"] = now_ms()
    ratio = ctx.settings.get("plugins.ml_commons.model_auto_redeploy_success_ratio")
    if planned_count and len(current) / planned_count >= ratio:
        extra["auto_redeploy_retry_times"] = 0
    lifecycle.move(tx, index, model_id, model, Event.DEPLOY_FINISHED, extra, current=len(current),
                   planned=planned_count, errors=errors)


def set_holder(tx: Tx, ctx: Context, model_id: str, model: dict, node_id: str, holds: bool) -> None:
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
    tx.update(units.kind(tx, model_id), model_id,
              {"current_worker_nodes": current, "current_worker_node_count": len(current)})
    write_route(tx, ctx, model_id, model)


def write_route(tx: Tx, ctx: Context, model_id: str, model: dict) -> None:
    """The route tells predict admission whether anyone serves the deployment, and its own queue
    capacity if it has one (else admission applies the setting's current value)."""
    route = ctx.keys.route(model_id)
    workers = len(model.get("current_worker_nodes", []))
    spec = ServingSpec.of(model)
    capacity = spec.queue_capacity if spec is not None else None
    fields = {"workers": workers, "model_id": model_id, "function_name": model.get("algorithm", "TEXT_EMBEDDING")}

    def write(p):
        p.hset(route, mapping={**fields, "capacity": capacity} if capacity else fields)
        if not capacity:
            p.hdel(route, "capacity")

    tx.call(write)
    announce(tx, ctx, model_id)


def announce(tx: Tx, ctx: Context, unit_id: str) -> None:
    """Tell whoever waits on ``unit_id`` (mlcommons/api/events.py) that its deploy or its serving
    nodes changed, when the transaction applies."""
    tx.call(lambda p: p.publish(ctx.keys.serving_events(), unit_id))


# --- nodes that leave -----------------------------------------------------------------------

def node_left(ctx: Context, node_id: str, reason: str, *, fail_open_parts: bool = True) -> list[str]:
    """``node_id`` holds nothing any more (it stopped, restarted or died): it leaves every model's
    current worker nodes and those models' states are recomputed; with ``fail_open_parts`` (a node
    that is gone, not one that is starting again and will run its queued jobs) its part of every
    open deploy task fails with ``reason``. Returns the ids of the models it held."""
    if fail_open_parts:
        for task_id, task in tasks.open_tasks(ctx, TaskType.DEPLOY_MODEL):
            if node_id in task.get("worker_node", []):
                report_deploy(ctx, task_id, units.task_unit(task), node_id, reason, holds_model=False)
    held = []
    for index, model_id, model in units.all_units(ctx):
        if node_id not in model.get("current_worker_nodes", []):
            continue

        def body(tx: Tx, model_id=model_id, index=index):
            doc = tx.get(index, model_id)
            if doc is None or node_id not in doc.get("current_worker_nodes", []):
                return
            set_holder(tx, ctx, model_id, doc, node_id, False)
            lifecycle.move(tx, index, model_id, doc, Event.NODES_CHANGED, current=len(doc["current_worker_nodes"]),
                           planned=doc.get("planning_worker_node_count") or 0)

        ctx.docs.transact(body)
        held.append(model_id)
    return held


# --- auto-deploy on the first predict ----------------------------------------------------------

NOT_READY = "Model not ready yet. Please deploy the model first."


def auto_deploy(ctx: Context, model_id: str) -> str:
    """A predict found nobody serving ``model_id``: deploy it (or join the deploy under way;
    concurrent first predicts share one task) and return the task id, or refuse. ML Commons does
    this for remote models only; we do it for local models too."""
    if not ctx.settings.get("plugins.ml_commons.model_auto_deploy.enable"):
        raise BadRequest(NOT_READY)
    model = ctx.docs.get(K.MODEL, model_id)
    if model is None:
        raise model_not_found(model_id)
    if (model.get("deploy_setting") or {}).get("is_auto_deploy_enabled") is False:
        raise BadRequest(f"Auto deployment disabled for this model, please deploy model first: {model_id}")
    state = model["model_state"]
    if state == ModelState.REGISTERING.value:
        raise BadRequest(NOT_READY)
    if lifecycle.failed_by(model) is FailedBy.DEPLOY:
        # A model whose deploy failed everywhere is not redeployed by every request that reaches it.
        raise BadRequest(f"{NOT_READY} Its last deploy failed on every node; see its DEPLOY_MODEL task.")
    targets = None
    if wants_redeploy(model):
        # It was served and lost its nodes (a restart): bring back its plan, not every live node.
        live = nodes.eligible_nodes(ctx)
        planned = set(model.get("planning_worker_nodes") or [])
        # Its planned nodes that lack it; or, when none lacks it (a concurrent first predict saw
        # it held meanwhile), its planned live nodes, which the deploy joins or serves at once.
        targets = missing_nodes(model, live) or [n for n in live if model.get("deploy_to_all_nodes") or n in planned]
        if not targets:
            raise ServiceUnavailable(f"Model [{model_id}] is not deployed and none of its planned nodes is live")
    try:
        return deploy(ctx, model_id, targets, Reason.PREDICT)["task_id"]
    except BadRequest as exc:
        raise ServiceUnavailable(f"Model [{model_id}] is not deployed and cannot be deployed now: {exc.reason}") from None
