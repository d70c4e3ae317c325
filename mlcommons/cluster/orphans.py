"""Reconcile step: predictions queued for a deployment that nobody serves any more (its last node
died, or the sync-up found it held nowhere) are answered with an error now, not at their
deadline. New requests are not admitted to such a queue, so whatever is in it is stranded.

Unless it is about to be served again: a deploy task for it is open, or a node of its plan is
alive (a restarted node, which auto-redeploy is about to give it back). Then its requests wait in
the queue, within their own time-outs, as auto-deploy's do: after a whole-cluster restart a client
that predicts at once is answered once the redeploy is done, not told the model is served nowhere."""
from __future__ import annotations

import logging

from mlcommons.core import nodes
from mlcommons.core.context import Context
from mlcommons.core.serving import dataplane as dp
from mlcommons.core.serving import lifecycle, units
from mlcommons.core.tasks import records as tasks
from mlcommons.types import TaskType

log = logging.getLogger(__name__)

NO_SERVER = 503


def step(ctx: Context) -> int:
    ids = units.unit_ids(ctx)
    if not ids:
        return 0
    pipe = ctx.redis.pipeline(transaction=False)
    for model_id in ids:
        pipe.hget(ctx.keys.route(model_id), "workers")
        pipe.llen(ctx.keys.predict_queue(model_id))
    raw = pipe.execute()
    failed = 0
    live: set[str] | None = None
    for i, model_id in enumerate(ids):
        workers, queued = raw[2 * i], raw[2 * i + 1]
        if queued and workers is not None and int(workers) == 0:
            if live is None:
                live = set(nodes.live_nodes(ctx))
            if coming_back(ctx, model_id, live):
                continue
            count = dp.drain_with_error(ctx.redis, ctx.keys.predict_queue(model_id), NO_SERVER,
                                        f"no worker node serves model [{model_id}] any more")
            log.info("failed %d stranded predictions of %s", count, model_id)
            failed += count
    return failed


def coming_back(ctx: Context, unit_id: str, live: set[str]) -> bool:
    """Whether a unit nobody serves now is about to be served again (see the module's text)."""
    if any(units.task_unit(task) == unit_id for _, task in tasks.open_tasks(ctx, TaskType.DEPLOY_MODEL)):
        return True
    if not ctx.settings.get("plugins.ml_commons.model_auto_redeploy.enable"):
        return False
    doc = units.load(ctx, unit_id)
    if doc is None:
        return False
    state = doc.get("model_state")
    lost = state == "DEPLOY_FAILED" and lifecycle.failed_by(doc) is lifecycle.FailedBy.NODE_LOSS
    if state not in ("DEPLOYED", "PARTIALLY_DEPLOYED", "DEPLOYING") and not lost:
        return False
    if doc.get("deploy_to_all_nodes"):
        return bool(live)
    return bool(set(doc.get("planning_worker_nodes") or doc.get("current_worker_nodes") or ()) & live)
