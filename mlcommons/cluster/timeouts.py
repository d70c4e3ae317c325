"""Reconcile step: no task stays CREATED or RUNNING longer than ml_task_timeout_in_seconds."""
from __future__ import annotations

import logging

from mlcommons.core.context import Context
from mlcommons.core.models import register
from mlcommons.core.serving import deploy as deploys
from mlcommons.core.serving import units
from mlcommons.core.tasks import records as tasks
from mlcommons.ids import now_ms
from mlcommons.types import TaskState, TaskType

log = logging.getLogger(__name__)


def step(ctx: Context) -> list[str]:
    limit = int(ctx.settings.get("plugins.ml_commons.ml_task_timeout_in_seconds"))
    now = now_ms()
    expired = []
    for task_id, task in tasks.open_tasks(ctx):
        if now - int(task.get("create_time") or now) <= limit * 1000:
            continue
        reason = f"timed out after {limit} seconds"
        log.warning("task %s (%s) %s", task_id, task.get("task_type"), reason)
        if task.get("task_type") == TaskType.DEPLOY_MODEL.value:
            answered = {k.decode() for k in ctx.redis.hkeys(ctx.keys.task_nodes(task_id))}
            for node_id in task.get("worker_node", []):
                if node_id not in answered:
                    deploys.report_deploy(ctx, task_id, units.task_unit(task), node_id, reason, holds_model=False)
        elif task.get("task_type") == TaskType.REGISTER_MODEL.value:
            register.abandon(ctx, task_id, reason)
        tasks.finish(ctx, task_id, TaskState.FAILED, error=reason)  # anything still open
        expired.append(task_id)
    return expired
