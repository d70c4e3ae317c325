"""Task and model state machines as explicit tables; anything not listed is refused."""
from __future__ import annotations

from mlcommons.types import ModelState, TaskState

T, M = TaskState, ModelState

TASK_TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    T.CREATED: frozenset({T.RUNNING, T.COMPLETED, T.COMPLETED_WITH_ERROR, T.FAILED, T.CANCELLED}),
    T.RUNNING: frozenset({T.RUNNING, T.COMPLETED, T.COMPLETED_WITH_ERROR, T.FAILED, T.CANCELLED}),
    T.COMPLETED: frozenset(),
    T.COMPLETED_WITH_ERROR: frozenset(),
    T.FAILED: frozenset(),
    T.CANCELLED: frozenset(),
}

_DEPLOY_OUTCOMES = {M.DEPLOYED, M.PARTIALLY_DEPLOYED, M.DEPLOY_FAILED}
MODEL_TRANSITIONS: dict[ModelState, frozenset[ModelState]] = {
    M.REGISTERING: frozenset({M.REGISTERING, M.REGISTERED}),
    M.REGISTERED: frozenset({M.DEPLOYING, M.UNDEPLOYED}),
    M.DEPLOYING: frozenset({M.DEPLOYING, M.UNDEPLOYED} | _DEPLOY_OUTCOMES),
    M.DEPLOYED: frozenset({M.DEPLOYING, M.UNDEPLOYED} | _DEPLOY_OUTCOMES),
    M.PARTIALLY_DEPLOYED: frozenset({M.DEPLOYING, M.UNDEPLOYED} | _DEPLOY_OUTCOMES),
    M.DEPLOY_FAILED: frozenset({M.DEPLOYING, M.UNDEPLOYED} | _DEPLOY_OUTCOMES),
    M.UNDEPLOYED: frozenset({M.DEPLOYING, M.UNDEPLOYED}),
}

# States in which a model occupies (or is about to occupy) node memory.
ACTIVE_MODEL_STATES = frozenset({M.DEPLOYING, M.DEPLOYED, M.PARTIALLY_DEPLOYED})
# States from which a deploy may start.
DEPLOYABLE_MODEL_STATES = frozenset(
    {M.REGISTERED, M.DEPLOYING, M.DEPLOYED, M.PARTIALLY_DEPLOYED, M.DEPLOY_FAILED, M.UNDEPLOYED})


class IllegalTransition(Exception):
    pass


def check_task(current: str, target: str) -> TaskState:
    cur, tgt = TaskState(current), TaskState(target)
    if tgt not in TASK_TRANSITIONS[cur]:
        raise IllegalTransition(f"task cannot go from {cur.value} to {tgt.value}")
    return tgt


def check_model(current: str, target: str) -> ModelState:
    cur, tgt = ModelState(current), ModelState(target)
    if tgt not in MODEL_TRANSITIONS[cur]:
        raise IllegalTransition(f"model cannot go from {cur.value} to {tgt.value}")
    return tgt


def serving_state(current: int, planned: int) -> ModelState:
    """The model state once no deploy is pending, from how many nodes hold it out of the plan."""
    if current <= 0:
        return M.DEPLOY_FAILED
    if current < planned:
        return M.PARTIALLY_DEPLOYED
    return M.DEPLOYED


def deploy_task_outcome(results: dict[str, str]) -> TaskState:
    """A deploy task's final state from each planned node's result ("" = success)."""
    failures = sum(1 for err in results.values() if err)
    if failures == 0:
        return T.COMPLETED
    if failures == len(results):
        return T.FAILED
    return T.COMPLETED_WITH_ERROR
