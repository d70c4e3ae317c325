"""Undeploy: ask the nodes to drop models, wait for their answers, and bring the documents in line.

An undeploy also cancels the model's open deploy task, so that undeploying a model that is still
DEPLOYING works: nodes that have not started skip the job, nodes in the middle of downloading stop
at the next chunk, and the undeploy jobs (queued at the front) then drop whatever was loaded.
"""
from __future__ import annotations

from typing import Any

import orjson

from mlcommons.core import nodes
from mlcommons.core.context import Context
from mlcommons.core.serving import lifecycle, units
from mlcommons.core.serving.deploy import model_not_found, report_deploy, set_holder
from mlcommons.core.serving.lifecycle import Event
from mlcommons.core.tasks import jobs, replies
from mlcommons.core.tasks import records as tasks
from mlcommons.core.tasks.states import IllegalTransition
from mlcommons.ids import new_id, now_ms
from mlcommons.store import keys as K
from mlcommons.store.documents import Tx
from mlcommons.types import TaskState

CANCELLED = "undeployed while deploying"


def plan(ctx: Context, model_ids: list[str], node_ids: list[str] | None) -> dict[str, Any]:
    """Check the models, cancel their pending deploys, ask every live target node to drop them,
    and say whom to wait for."""
    docs = {m: ctx.docs.get(units.kind(ctx.docs, m), m) for m in model_ids}
    if len(model_ids) == 1 and docs[model_ids[0]] is None:
        raise model_not_found(model_ids[0])
    # Until finish() each model is UNDEPLOYING: the watcher must not redeploy it while its nodes
    # drop it one by one. A model still REGISTERING (its chunks being uploaded or downloaded) is
    # deployed nowhere: the state machine refuses the move, and the undeploy is a no-op for it that
    # leaves the upload to finish.
    found = [m for m in model_ids if docs[m] is not None and _begin(ctx, m)]
    for model_id in found:
        _cancel_pending_deploy(ctx, model_id, node_ids)
    live = nodes.live_nodes(ctx)
    targets = sorted(n for n in live if not node_ids or n in node_ids)
    request_id = new_id()
    if found:
        for node_id in targets:
            jobs.enqueue_undeploy(ctx, request_id, found, node_id)
    return {"request_id": request_id, "model_ids": found, "nodes": targets if found else [],
            "node_filter": node_ids or None, "live": sorted(live)}


def _begin(ctx: Context, model_id: str) -> bool:
    def body(tx: Tx) -> bool:
        index = units.kind(tx, model_id)
        doc = tx.get(index, model_id)
        if doc is None:
            return False
        try:
            lifecycle.move(tx, index, model_id, doc, Event.UNDEPLOY_BEGUN)
        except IllegalTransition:
            return False
        return True

    return ctx.docs.transact(body)


def _cancel_pending_deploy(ctx: Context, model_id: str, node_ids: list[str] | None) -> None:
    index = units.kind(ctx.docs, model_id)
    model = ctx.docs.get(index, model_id)
    task_id = model and lifecycle.deploy_task(model)
    if not task_id:
        return
    task = ctx.docs.get(K.TASK, task_id)
    if task is None or TaskState(task["state"]).terminal:
        return
    planned = task.get("worker_node", [])
    if node_ids and set(planned) - set(node_ids):
        # Only some of the task's nodes are being undeployed: their part of it ends here.
        for node_id in planned:
            if node_id in node_ids:
                report_deploy(ctx, task_id, model_id, node_id, CANCELLED, holds_model=node_id in
                              (model.get("current_worker_nodes") or []))
        return

    def body(tx: Tx):
        doc = tx.get(index, model_id)
        if doc is None or lifecycle.deploy_task(doc) != task_id:
            return
        if tasks.transition(tx, task_id, TaskState.CANCELLED, error=CANCELLED):
            lifecycle.move(tx, index, model_id, doc, Event.DEPLOY_CANCELLED)

    ctx.docs.transact(body)


def report(ctx: Context, node_id: str, model_ids: list[str]) -> None:
    """A node no longer holds ``model_ids``."""
    for model_id in model_ids:
        def body(tx: Tx, model_id=model_id):
            model = tx.get(units.kind(tx, model_id), model_id)
            if model is not None:
                set_holder(tx, ctx, model_id, model, node_id, False)

        ctx.docs.transact(body)


def finish(ctx: Context, planned: dict[str, Any], answers: dict[str, dict]) -> dict[str, Any]:
    """Bring the model documents in line with what the nodes did, then build the reply."""
    node_filter = planned["node_filter"]
    live = set(planned["live"])
    for model_id in planned["model_ids"]:
        def body(tx: Tx, model_id=model_id):
            index = units.kind(tx, model_id)
            model = tx.get(index, model_id)
            if model is None:
                return
            # Nodes that are gone hold nothing; forget them.
            for gone in [n for n in model.get("current_worker_nodes", [])
                         if n not in live and (not node_filter or n in node_filter)]:
                set_holder(tx, ctx, model_id, model, gone, False)
            current = model.get("current_worker_nodes", [])
            pending = lifecycle.deploy_task(model)
            newer = tx.get(K.TASK, pending) if pending else None
            # A deploy asked for after this undeploy began (plan() cancelled the older one) owns
            # the plan and the state now.
            deploy_after = newer is not None and not TaskState(newer["state"]).terminal
            kept = [n for n in model.get("planning_worker_nodes", []) if node_filter and n not in node_filter]
            lifecycle.move(tx, index, model_id, model, Event.UNDEPLOY_FINISHED, {"last_updated_time": now_ms()},
                           deploy_after=deploy_after, current=current, plan=sorted(set(kept) | set(current)))

        ctx.docs.transact(body)
    out: dict[str, Any] = {}
    for node_id, reply in sorted(answers.items()):
        stats = dict(reply.get("stats", {}))
        if any(s == "undeployed" for s in stats.values()):
            out[node_id] = {"stats": stats}
    return out


# --- undeploys the watcher begins and settles on a later round -------------------------------------

def begin(ctx: Context, model_ids: list[str]) -> dict[str, Any]:
    """Ask the nodes to drop ``model_ids`` and return at once; :func:`settle` finishes the undeploy
    on a later watcher round, so that one slow node never holds up a reconcile round."""
    planned = plan(ctx, model_ids, None)
    timeout = ctx.settings.get("mlcommons.undeploy.timeout_seconds")
    record = {**planned, "deadline_ms": now_ms() + int(timeout * 1000)}
    ctx.redis.hset(ctx.keys.pending_undeploys(), planned["request_id"], orjson.dumps(record))
    return planned


def settle(ctx: Context) -> list[str]:
    """Finish the begun undeploys whose nodes have all answered, or whose time is up (a node that
    did not answer is handled by the sync-up, as for any undeploy). Returns the models settled."""
    settled = []
    for request_id, raw in ctx.redis.hgetall(ctx.keys.pending_undeploys()).items():
        planned = orjson.loads(raw)
        key = ctx.keys.job_reply(request_id.decode())
        if ctx.redis.llen(key) < len(planned["nodes"]) and now_ms() < planned["deadline_ms"]:
            continue
        finish(ctx, planned, replies.arrived(ctx.redis, key))
        pipe = ctx.redis.pipeline(transaction=True)
        pipe.delete(key)
        pipe.hdel(ctx.keys.pending_undeploys(), request_id)
        pipe.execute()
        settled += planned["model_ids"]
    return settled


def undeploy(ctx: Context, model_ids: list[str], node_ids: list[str] | None = None) -> dict[str, Any]:
    """The whole undeploy, synchronously (the watcher's TTL undeploys use it)."""
    planned = plan(ctx, model_ids, node_ids)
    answers = replies.collect(ctx.redis, ctx.keys.job_reply(planned["request_id"]), len(planned["nodes"]),
                              ctx.settings.get("mlcommons.undeploy.timeout_seconds"))
    return finish(ctx, planned, answers)
