"""Control-plane jobs go through rq: the only module that knows job functions and queue names.

Each worker node listens on its own queue (work meant for that node) and on the shared queue
(work any node may do). Functions are named by import path so that the API never imports torch.
"""
from __future__ import annotations

from mlcommons.core.context import Context

REGISTER = "tasks.register.register_model"
DEPLOY = "tasks.deploy.deploy_model"
UNDEPLOY = "tasks.undeploy.undeploy_model"

RESULT_TTL = 24 * 3600
FAILURE_TTL = 7 * 24 * 3600


def _timeout(ctx: Context) -> int:
    return int(ctx.settings.get("plugins.ml_commons.ml_task_timeout_in_seconds"))


def enqueue_register(ctx: Context, task_id: str, model_id: str, name: str) -> None:
    ctx.queue(ctx.keys.shared_queue()).enqueue_call(
        REGISTER, args=(task_id,), job_id=f"register-{task_id}", timeout=_timeout(ctx),
        result_ttl=RESULT_TTL, failure_ttl=FAILURE_TTL,
        description=f"REGISTER_MODEL task {task_id} model {model_id} ({name})")


def enqueue_deploy(ctx: Context, task_id: str, model_id: str, node_id: str) -> None:
    ctx.queue(ctx.keys.node_queue(node_id)).enqueue_call(
        DEPLOY, args=(task_id, model_id), job_id=f"deploy-{task_id}-{node_id}", timeout=_timeout(ctx),
        result_ttl=RESULT_TTL, failure_ttl=FAILURE_TTL,
        description=f"DEPLOY_MODEL task {task_id} model {model_id} on node {node_id}")


def enqueue_undeploy(ctx: Context, request_id: str, model_ids: list[str], node_id: str) -> None:
    ctx.queue(ctx.keys.node_queue(node_id)).enqueue_call(
        UNDEPLOY, args=(request_id, model_ids), job_id=f"undeploy-{request_id}-{node_id}",
        timeout=_timeout(ctx), result_ttl=RESULT_TTL, failure_ttl=FAILURE_TTL,
        description=f"UNDEPLOY_MODEL models {','.join(model_ids)} on node {node_id}")
