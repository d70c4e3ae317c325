"""Reconcile step, every sync_up_job_interval_in_seconds (ML Commons' MLSyncUpCron):

- what each live node really holds (its heartbeat) against the models' current worker nodes: a
  difference seen in two rounds in a row is corrected (one round may be a heartbeat in flight);
  a node holding a model nobody wants there is told to drop it;
- a model left DEPLOYING without an open deploy task past the grace period gets its real state;
- a model idle longer than its ``deploy_setting.model_ttl_minutes`` is undeployed.
"""
from __future__ import annotations

import logging
from typing import Any

from mlcommons.core import nodes
from mlcommons.core.context import Context
from mlcommons.core.serving import deploy as deploys
from mlcommons.core.serving import lifecycle, units
from mlcommons.core.serving import undeploy as undeploys
from mlcommons.core.serving.lifecycle import Event
from mlcommons.core.tasks import jobs
from mlcommons.ids import new_id, now_ms
from mlcommons.store import keys as K
from mlcommons.store.documents import Tx
from mlcommons.types import ModelState, TaskState

log = logging.getLogger(__name__)


def step(ctx: Context) -> dict[str, list]:
    live = nodes.live_nodes(ctx)
    models = {unit_id: doc for _, unit_id, doc in units.all_units(ctx)}
    report = {"removed": [], "added": [], "dropped": [], "resolved": [], "expired": [],
              "undeployed": undeploys.settle(ctx)}
    _reconcile_holders(ctx, live, models, report)
    _resolve_stale_deploying(ctx, models, report)
    _expire_idle(ctx, live, models, report)
    return report


def _reconcile_holders(ctx: Context, live: dict, models: dict, report: dict) -> None:
    # A difference counts only when two different heartbeats of the node show it: one heartbeat
    # may have been taken just before a deploy or undeploy finished, and a node that died keeps
    # its last heartbeat until liveness notices.
    seen: dict[str, int] = {}
    for node_id, info in live.items():
        held = set((info.get("models") or {}).keys())
        beat = int(info.get("last_heartbeat") or 0)
        for model_id, model in models.items():
            claimed = node_id in (model.get("current_worker_nodes") or [])
            if claimed and model_id not in held:
                seen[f"{node_id}|{model_id}|missing"] = beat
            elif not claimed and model_id in held and not lifecycle.deploy_task(model):
                seen[f"{node_id}|{model_id}|extra"] = beat
        for model_id in held - set(models):
            seen[f"{node_id}|{model_id}|stray"] = beat
    key = ctx.keys.watcher_state("sync_suspects")
    before = {k.decode(): int(v) for k, v in ctx.redis.hgetall(key).items()}
    pipe = ctx.redis.pipeline(transaction=True)
    pipe.delete(key)
    if seen:
        pipe.hset(key, mapping=seen)
    pipe.execute()
    confirmed = [item for item, beat in seen.items() if item in before and beat > before[item]]
    for item in sorted(confirmed):
        node_id, model_id, kind = item.split("|")
        model = models.get(model_id)
        if kind == "missing":
            _set_holder(ctx, model_id, node_id, False)
            report["removed"].append((node_id, model_id))
        elif kind == "extra" and model is not None and _wanted_on(model, node_id):
            _set_holder(ctx, model_id, node_id, True)
            report["added"].append((node_id, model_id))
        else:
            jobs.enqueue_undeploy(ctx, new_id(), [model_id], node_id)
            report["dropped"].append((node_id, model_id))


def _wanted_on(model: dict[str, Any], node_id: str) -> bool:
    if model.get("model_state") in (ModelState.UNDEPLOYED.value, ModelState.REGISTERED.value):
        return False
    return bool(model.get("deploy_to_all_nodes")) or node_id in (model.get("planning_worker_nodes") or [])


def _set_holder(ctx: Context, model_id: str, node_id: str, holds: bool) -> None:
    def body(tx: Tx):
        index = units.kind(tx, model_id)
        model = tx.get(index, model_id)
        if model is None:
            return
        deploys.set_holder(tx, ctx, model_id, model, node_id, holds)
        lifecycle.move(tx, index, model_id, model, Event.NODES_CHANGED, current=len(model["current_worker_nodes"]),
                       planned=model.get("planning_worker_node_count") or 0)

    ctx.docs.transact(body)
    log.info("sync-up: node %s %s model %s", node_id, "holds" if holds else "no longer holds", model_id)


def _resolve_stale_deploying(ctx: Context, models: dict, report: dict) -> None:
    grace_ms = ctx.settings.get("mlcommons.cluster.deploying_grace_seconds") * 1000
    now = now_ms()
    for model_id, model in models.items():
        if model.get("model_state") != ModelState.DEPLOYING.value:
            continue
        if now - int(model.get("last_updated_time") or 0) < grace_ms:
            continue

        def body(tx: Tx, model_id=model_id):
            index = units.kind(tx, model_id)
            doc = tx.get(index, model_id)
            if doc is None or doc.get("model_state") != ModelState.DEPLOYING.value:
                return False
            pending = lifecycle.deploy_task(doc)
            task = tx.get(K.TASK, pending) if pending else None
            if task is not None and not TaskState(task["state"]).terminal:
                return False  # a live deploy: its own time-out settles it
            lifecycle.move(tx, index, model_id, doc, Event.DEPLOY_ABANDONED, {"last_updated_time": now},
                           current=len(doc.get("current_worker_nodes") or []),
                           planned=doc.get("planning_worker_node_count") or 0)
            return True

        if ctx.docs.transact(body):
            report["resolved"].append(model_id)


def _expire_idle(ctx: Context, live: dict, models: dict, report: dict) -> None:
    now = now_ms()
    for model_id, model in models.items():
        ttl = ((model.get("deploy_setting") or {}).get("model_ttl_minutes") or 0)
        if ttl <= 0 or not model.get("current_worker_nodes") or lifecycle.undeploying(model):
            continue
        last = max([int(model.get("last_deployed_time") or 0)] +
                   [int(((info.get("models") or {}).get(model_id) or {}).get("last_access_ms") or 0)
                    for info in live.values()])
        if now - last < ttl * 60_000:
            continue
        log.info("sync-up: model %s idle for more than %s minutes; undeploying", model_id, ttl)
        undeploys.begin(ctx, [model_id])  # settled on a later round: this one goes on
        report["expired"].append(model_id)
