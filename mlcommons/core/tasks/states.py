"""The task state machine as an explicit table: anything not listed is refused. (The model state
machine is ``core/serving/lifecycle.py``.)"""
from __future__ import annotations

from mlcommons.types import TaskState

T = TaskState

TASK_TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    T.CREATED: frozenset({T.RUNNING, T.COMPLETED, T.COMPLETED_WITH_ERROR, T.FAILED, T.CANCELLED}),
    T.RUNNING: frozenset({T.RUNNING, T.COMPLETED, T.COMPLETED_WITH_ERROR, T.FAILED, T.CANCELLED}),
    T.COMPLETED: frozenset(),
    T.COMPLETED_WITH_ERROR: frozenset(),
    T.FAILED: frozenset(),
    T.CANCELLED: frozenset(),
}


class IllegalTransition(Exception):
    pass


def check_task(current: str, target: str) -> TaskState:
    cur, tgt = TaskState(current), TaskState(target)
    if tgt not in TASK_TRANSITIONS[cur]:
        raise IllegalTransition(f"task cannot go from {cur.value} to {tgt.value}")
    return tgt


def deploy_task_outcome(results: dict[str, str]) -> TaskState:
    """A deploy task's final state from each planned node's result ("" = success)."""
    failures = sum(1 for err in results.values() if err)
    if failures == 0:
        return T.COMPLETED
    if failures == len(results):
        return T.FAILED
    return T.COMPLETED_WITH_ERROR
