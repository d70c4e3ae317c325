"""ML tasks: documents that track register and deploy work from CREATED to a terminal state.

A task in a terminal state never changes again: every transition goes through the table in
:mod:`mlcommons.core.tasks.states`, inside a transaction.
"""
from __future__ import annotations

from typing import Any, Iterator

from mlcommons.core.context import Context
from mlcommons.core.tasks.states import IllegalTransition, check_task
from mlcommons.errors import BadRequest, NotFound
from mlcommons.ids import new_id, now_ms
from mlcommons.store import keys as K
from mlcommons.store.documents import Tx
from mlcommons.types import TaskState, TaskType


def new_task(task_type: TaskType, model_id: str | None, function_name: str | None,
             worker_nodes: list[str], state: TaskState = TaskState.CREATED) -> dict[str, Any]:
    now = now_ms()
    return {
        "model_id": model_id,
        "task_type": task_type.value,
        "function_name": function_name,
        "state": state.value,
        "worker_node": list(worker_nodes),
        "create_time": now,
        "last_update_time": now,
        "is_async": True,
    }


def create(tx: Tx, task: dict[str, Any]) -> str:
    task_id = new_id()
    tx.put(K.TASK, task_id, task, created=task["create_time"])
    if not TaskState(task["state"]).terminal:
        tx.call(lambda p: p.sadd(tx.keys.open_tasks(), task_id))
    return task_id


def get(ctx: Context, task_id: str) -> dict[str, Any]:
    task = ctx.docs.get(K.TASK, task_id)
    if task is None:
        raise NotFound("Failed to find task")
    return task


def transition(tx: Tx, task_id: str, target: TaskState, **fields: Any) -> bool:
    """Move a task to ``target`` with ``fields``; False (and nothing written) if not allowed."""
    task = tx.get(K.TASK, task_id)
    if task is None:
        return False
    try:
        check_task(task["state"], target)
    except IllegalTransition:
        return False
    tx.update(K.TASK, task_id, {"state": target.value, "last_update_time": now_ms(), **fields})
    if target.terminal:
        tx.call(lambda p: p.srem(tx.keys.open_tasks(), task_id))
    return True


def finish(ctx: Context, task_id: str, target: TaskState, **fields: Any) -> bool:
    return ctx.docs.transact(lambda tx: transition(tx, task_id, target, **fields))


def delete(ctx: Context, task_id: str) -> None:
    def body(tx: Tx):
        task = tx.get(K.TASK, task_id)
        if task is None:
            raise NotFound("Failed to find task")
        if not TaskState(task["state"]).terminal:
            raise BadRequest(f"Task cannot be deleted in {task['state'].lower()} state. Try after some time.")
        tx.delete(K.TASK, task_id)
        tx.call(lambda p: p.delete(ctx.keys.task_nodes(task_id), ctx.keys.deploy_progress(task_id)))

    ctx.docs.transact(body)


def all_docs(ctx: Context) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every task document, as (id, document)."""
    return ctx.docs.all(K.TASK)


def open_tasks(ctx: Context, task_type: TaskType | None = None, model_id: str | None = None
               ) -> list[tuple[str, dict[str, Any]]]:
    """Tasks still CREATED or RUNNING (from the open-task index, not a scan of every task)."""
    ids = sorted(i.decode() for i in ctx.redis.smembers(ctx.keys.open_tasks()))
    out = []
    for task_id, task in ctx.docs.get_many(K.TASK, ids):
        if TaskState(task["state"]).terminal:
            ctx.redis.srem(ctx.keys.open_tasks(), task_id)
            continue
        if task_type is not None and task.get("task_type") != task_type.value:
            continue
        if model_id is not None and task.get("model_id") != model_id:
            continue
        out.append((task_id, task))
    return out
