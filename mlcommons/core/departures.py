"""What happens when a run of a worker node ends: it died, was stopped, or is starting again.

Everything the run was doing is closed at once, rather than when rq's own clean-up notices
(which can take minutes): the rq jobs it had started are marked failed and their tasks closed,
it leaves every model's current worker nodes, and the predictions it had taken are handed back
to the deployment's queue for another node, or answered with an error when nobody is left.
"""
from __future__ import annotations

import logging

from mlcommons.core.context import Context
from mlcommons.core.models import register
from mlcommons.core.serving import dataplane as dp
from mlcommons.core.serving import deploy as deploys
from mlcommons.core.tasks import jobs

log = logging.getLogger(__name__)

NO_SERVER = 503


def run_ended(ctx: Context, node_id: str, boot_id: str | None, reason: str, *, restarting: bool) -> list[str]:
    """Close the books on a run of ``node_id``. ``restarting``: the node is starting again now
    (its queued jobs will still run; only the parts it had started are failed). Returns the
    models it held."""
    for queue_name in (ctx.keys.node_queue(node_id), ctx.keys.shared_queue()):
        for job in jobs.abandon_started(ctx, queue_name, node_id):
            _close_task_of(ctx, job, node_id, reason)
    held = deploys.node_left(ctx, node_id, reason, fail_open_parts=not restarting)
    _hand_back_predictions(ctx, node_id)
    # Requests still queued for a deployment nobody serves now are failed by the watcher's
    # orphans step (the same round, or the next).
    if boot_id:
        jobs.forget_worker(ctx, node_id, boot_id)
    return held


def _close_task_of(ctx: Context, job, node_id: str, reason: str) -> None:
    name = job.func_name
    if name == jobs.DEPLOY:
        task_id, model_id = job.args[:2]
        deploys.report_deploy(ctx, task_id, model_id, node_id, reason, holds_model=False)
    elif name == jobs.REGISTER:
        register.abandon(ctx, job.args[0], reason)


def _hand_back_predictions(ctx: Context, node_id: str) -> None:
    """Requests the node had taken but not answered go back to the head of their queue when
    another node serves the deployment, and are answered with an error otherwise."""
    for key in list(ctx.redis.scan_iter(match=ctx.keys.inflight_pattern(node_id), count=1000)):
        deployment = key.decode().rsplit(":", 2)[-2]
        queue = ctx.keys.predict_queue(deployment)
        if int(ctx.redis.hget(ctx.keys.route(deployment), "workers") or 0) > 0:
            while ctx.redis.lmove(key, queue, "RIGHT", "LEFT"):
                pass
        else:
            items = ctx.redis.lrange(key, 0, -1)
            ctx.redis.delete(key)
            dp.fail_requests(ctx.redis, items, NO_SERVER,
                             f"the worker node serving model [{deployment}] stopped during the prediction")
