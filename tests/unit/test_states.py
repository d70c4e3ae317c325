"""The task and model state machines."""
from __future__ import annotations

import pytest

from mlcommons.core.serving.lifecycle import check_model, serving_state
from mlcommons.core.tasks.states import IllegalTransition, check_task, deploy_task_outcome
from mlcommons.types import ModelState, TaskState

T, M = TaskState, ModelState


@pytest.mark.parametrize("terminal", [T.COMPLETED, T.COMPLETED_WITH_ERROR, T.FAILED, T.CANCELLED])
def test_a_terminal_task_never_changes(terminal):
    assert terminal.terminal
    for target in TaskState:
        with pytest.raises(IllegalTransition):
            check_task(terminal.value, target.value)


def test_task_paths():
    assert check_task("CREATED", "RUNNING") is T.RUNNING
    assert check_task("CREATED", "COMPLETED") is T.COMPLETED  # register: one write, no middle state
    assert check_task("RUNNING", "COMPLETED_WITH_ERROR") is T.COMPLETED_WITH_ERROR
    assert check_task("RUNNING", "CANCELLED") is T.CANCELLED
    with pytest.raises(IllegalTransition):
        check_task("RUNNING", "CREATED")


def test_model_paths():
    assert check_model("REGISTERING", "REGISTERED") is M.REGISTERED
    assert check_model("REGISTERED", "DEPLOYING") is M.DEPLOYING
    for outcome in (M.DEPLOYED, M.PARTIALLY_DEPLOYED, M.DEPLOY_FAILED, M.UNDEPLOYED):
        assert check_model("DEPLOYING", outcome.value) is outcome
    assert check_model("UNDEPLOYED", "DEPLOYING") is M.DEPLOYING
    for bad in [("REGISTERING", "DEPLOYING"), ("REGISTERED", "DEPLOYED"), ("UNDEPLOYED", "REGISTERED"),
                ("DEPLOYED", "REGISTERING")]:
        with pytest.raises(IllegalTransition):
            check_model(*bad)


@pytest.mark.parametrize("current, planned, state", [
    (0, 2, M.DEPLOY_FAILED), (1, 2, M.PARTIALLY_DEPLOYED), (2, 2, M.DEPLOYED), (3, 2, M.DEPLOYED),
])
def test_serving_state(current, planned, state):
    assert serving_state(current, planned) is state


def test_deploy_task_outcome():
    assert deploy_task_outcome({"a": "", "b": ""}) is T.COMPLETED
    assert deploy_task_outcome({"a": "boom", "b": ""}) is T.COMPLETED_WITH_ERROR
    assert deploy_task_outcome({"a": "boom", "b": "bang"}) is T.FAILED
