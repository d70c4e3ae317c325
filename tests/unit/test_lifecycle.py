"""The model state machine (core/serving/lifecycle.py): each event's fields, and the moves it refuses."""
from __future__ import annotations

import pytest

from mlcommons.core.serving.lifecycle import Event, FailedBy, Phase, failed_by, fields_for, initial, phase, undeploying
from mlcommons.core.tasks.states import IllegalTransition
from mlcommons.ids import now_ms
from mlcommons.types import ModelState

M = ModelState


def doc(state: ModelState, **extra) -> dict:
    return {"model_state": state.value, **extra}


def test_a_new_unit_begins_registering_or_undeployed():
    assert initial() == {"model_state": "REGISTERING"}
    assert initial(M.UNDEPLOYED) == {"model_state": "UNDEPLOYED"}
    with pytest.raises(IllegalTransition):
        initial(M.DEPLOYED)


def test_registered_only_from_registering():
    assert fields_for(doc(M.REGISTERING), Event.REGISTERED) == {"model_state": "REGISTERED"}
    with pytest.raises(IllegalTransition):
        fields_for(doc(M.DEPLOYED), Event.REGISTERED)


def test_deploy_request_opens_a_task_and_clears_the_failure():
    out = fields_for(doc(M.DEPLOY_FAILED, _failed_by="deploy"), Event.DEPLOY_REQUESTED, task_id="t1",
                     serving_on_targets=False)
    assert out == {"_deploy_task": "t1", "_failed_by": None, "_deploy_errors": None, "model_state": "DEPLOYING"}


def test_a_model_serving_on_every_target_keeps_serving_while_the_nodes_confirm():
    out = fields_for(doc(M.DEPLOYED), Event.DEPLOY_REQUESTED, task_id="t1", serving_on_targets=True)
    assert "model_state" not in out and out["_deploy_task"] == "t1"


@pytest.mark.parametrize("state", [M.REGISTERING])
def test_a_model_still_registering_cannot_be_deployed(state):
    with pytest.raises(IllegalTransition):
        fields_for(doc(state), Event.DEPLOY_REQUESTED, task_id="t", serving_on_targets=False)


@pytest.mark.parametrize("current,planned,state,reason", [
    (2, 2, "DEPLOYED", None), (1, 2, "PARTIALLY_DEPLOYED", None), (0, 2, "DEPLOY_FAILED", "deploy")])
def test_a_finished_deploy_settles_the_state_and_names_a_failure(current, planned, state, reason):
    out = fields_for(doc(M.DEPLOYING, _deploy_task="t"), Event.DEPLOY_FINISHED, current=current, planned=planned,
                     errors={"n1": "boom"} if reason else {})
    assert out["model_state"] == state and out["_failed_by"] == reason and out["_deploy_task"] is None
    assert out["_deploy_errors"] == ({"n1": "boom"} if reason else None)


def test_nodes_lost_outside_a_deploy_fail_the_model_by_node_loss():
    out = fields_for(doc(M.DEPLOYED), Event.NODES_CHANGED, current=0, planned=2)
    assert out == {"model_state": "DEPLOY_FAILED", "_failed_by": "node_lost"}
    assert failed_by({**doc(M.DEPLOYED), **out}) is FailedBy.NODE_LOSS
    assert phase({**doc(M.DEPLOYED), **out}) is Phase.FAILED_BY_NODE_LOSS


def test_a_deploy_under_way_owns_the_state_when_nodes_change():
    assert fields_for(doc(M.DEPLOYING, _deploy_task="t"), Event.NODES_CHANGED, current=0, planned=2) == {}


@pytest.mark.parametrize("state", [M.REGISTERED, M.UNDEPLOYED])
def test_nodes_changing_leave_a_unit_that_was_never_served_alone(state):
    assert fields_for(doc(state), Event.NODES_CHANGED, current=0, planned=0) == {}


def test_an_abandoned_deploy_counts_as_a_failed_deploy():
    out = fields_for(doc(M.DEPLOYING, _deploy_task="t"), Event.DEPLOY_ABANDONED, current=0, planned=1)
    assert out == {"model_state": "DEPLOY_FAILED", "_failed_by": "deploy", "_deploy_task": None}
    assert phase({**doc(M.DEPLOYING), **out}) is Phase.FAILED_BY_DEPLOY


def test_undeploy_of_a_model_still_registering_is_refused():
    """The defect this machine closed: such an undeploy moved REGISTERING to UNDEPLOYED and
    stranded the upload."""
    with pytest.raises(IllegalTransition):
        fields_for(doc(M.REGISTERING), Event.UNDEPLOY_BEGUN)


def test_undeploying_is_a_phase_of_its_own():
    begun = fields_for(doc(M.DEPLOYED), Event.UNDEPLOY_BEGUN)
    model = {**doc(M.DEPLOYED), **begun}
    assert undeploying(model) and phase(model) is Phase.UNDEPLOYING
    # One begun by an API process that died long ago no longer counts.
    assert not undeploying({**model, "_undeploying": now_ms() - 10 * 60 * 1000})


def test_a_finished_undeploy_with_no_node_left_is_undeployed():
    out = fields_for(doc(M.DEPLOYED, _undeploying=now_ms()), Event.UNDEPLOY_FINISHED, current=[], plan=[])
    assert out["model_state"] == "UNDEPLOYED" and out["_undeploying"] is None
    assert out["planning_worker_nodes"] == [] and out["_deploy_task"] is None


def test_a_partial_undeploy_keeps_serving_on_the_rest():
    out = fields_for(doc(M.DEPLOYED, _undeploying=now_ms()), Event.UNDEPLOY_FINISHED, current=["b"],
                     plan=["a", "b"])
    assert out["model_state"] == "PARTIALLY_DEPLOYED" and out["planning_worker_nodes"] == ["a", "b"]


def test_a_deploy_asked_for_during_the_undeploy_keeps_the_state():
    out = fields_for(doc(M.DEPLOYING, _deploy_task="t2", _undeploying=now_ms()), Event.UNDEPLOY_FINISHED,
                     deploy_after=True, current=[], plan=[])
    assert out == {"_undeploying": None}


def test_cancelling_a_deploy_only_forgets_its_task():
    assert fields_for(doc(M.DEPLOYING, _deploy_task="t"), Event.DEPLOY_CANCELLED) == {"_deploy_task": None}


def test_an_undeployed_model_a_node_still_holds_counts_as_served_there():
    out = fields_for(doc(M.UNDEPLOYED), Event.NODES_CHANGED, current=1, planned=0)
    assert out["model_state"] == "DEPLOYED"
    with pytest.raises(IllegalTransition):
        fields_for(doc(M.UNDEPLOYED), Event.DEPLOY_FINISHED, current=0, planned=1)
