"""Task rules that need no worker: deleting, transitions inside transactions."""
from __future__ import annotations

import pytest

from mlcommons.core.tasks import records as tasks
from mlcommons.errors import BadRequest, NotFound
from mlcommons.types import TaskState, TaskType


def test_running_task_cannot_be_deleted(ctx):
    task_id = ctx.docs.transact(lambda tx: tasks.create(tx, tasks.new_task(TaskType.DEPLOY_MODEL, "m", "TEXT_EMBEDDING",
                                                                         ["n1"])))
    assert tasks.finish(ctx, task_id, TaskState.RUNNING)
    with pytest.raises(BadRequest, match="Task cannot be deleted in running state"):
        tasks.delete(ctx, task_id)
    assert tasks.finish(ctx, task_id, TaskState.COMPLETED)
    assert not tasks.finish(ctx, task_id, TaskState.FAILED)  # terminal: never changes again
    assert tasks.get(ctx, task_id)["state"] == "COMPLETED"
    tasks.delete(ctx, task_id)
    with pytest.raises(NotFound):
        tasks.get(ctx, task_id)
