"""Control-plane jobs go through rq: the only module that knows job functions and queue names.

Each worker node runs two rq workers: one on its own queue (deploys and undeploys meant for that
node) and one on the shared queue (registers, which any node may do and which may download for
minutes), so that the node's deploys and undeploys never wait behind a download. Functions are
named by import path so that the API never imports torch.
"""
from __future__ import annotations

from mlcommons.core.context import Context
from mlcommons.core.tasks.allowed import DEPLOY, REGISTER, SERIALIZER, UNDEPLOY, ProjectJob

__all__ = ["DEPLOY", "REGISTER", "UNDEPLOY", "enqueue_register", "enqueue_deploy", "enqueue_undeploy"]

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
        # Ahead of queued deploys: those of these models were cancelled and will skip.
        at_front=True,
        description=f"UNDEPLOY_MODEL models {','.join(model_ids)} on node {node_id}")


# --- keeping rq's own registries true when a node dies ----------------------------------------

SHARED = "shared"


def worker_name(node_id: str, boot_id: str, role: str = "") -> str:
    """The rq worker name of one run (boot) of a node: ``<node>.<boot>`` for the worker of the
    node's own queue, ``<node>.<boot>.shared`` for the one of the shared queue. Every name starts
    with ``<node>.``: that is how the jobs a node had started are found (:func:`abandon_started`)."""
    return f"{node_id}.{boot_id[:8]}" + (f".{role}" if role else "")


def abandon_started(ctx: Context, queue_name: str, node_id: str) -> list:
    """Jobs of ``queue_name`` that a run of ``node_id`` had started and will never finish: mark
    them failed (rq's FailedJobRegistry, as its own abandoned-job clean-up would, but now rather
    than minutes later) and return them so that their tasks can be closed too."""
    from rq.exceptions import NoSuchJobError
    from rq.job_lifecycle import record_job_failure
    from rq.registry import StartedJobRegistry

    registry = StartedJobRegistry(queue_name, connection=ctx.redis)
    abandoned = []
    for job_id, _execution in registry.get_job_and_execution_ids(cleanup=False):
        try:
            job = ProjectJob.fetch(job_id, connection=ctx.redis, serializer=SERIALIZER)
        except NoSuchJobError:
            continue
        if not (job.worker_name or "").startswith(node_id + "."):
            continue
        with ctx.redis.pipeline() as pipe:
            record_job_failure(job, f"AbandonedJobError: worker node {node_id} stopped while running it", pipe)
            registry.remove_executions(job, pipeline=pipe)
            pipe.execute()
        abandoned.append(job)
    return abandoned


def forget_worker(ctx: Context, node_id: str, boot_id: str) -> None:
    """Take a dead run's rq workers out of rq's worker registry (rq-dashboard's worker list)."""
    from rq import Worker

    for role in ("", SHARED):
        worker = Worker.find_by_key(Worker.redis_worker_namespace_prefix + worker_name(node_id, boot_id, role),
                                    connection=ctx.redis)
        if worker is not None:
            worker.register_death()
