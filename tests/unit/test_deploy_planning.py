"""Deploy planning and its outcome (core/serving/deploy.py), decided against a real Redis with
nodes that only send heartbeats: who is targeted, what is recorded, how reports settle the task
and the model, and what a node's departure does. (With worker processes: tests/integration.)"""
from __future__ import annotations

import pytest

from mlcommons.core.models.records import new_model_doc
from mlcommons.core.serving import deploy as deploys
from mlcommons.core.serving import lifecycle
from mlcommons.core.tasks import records as tasks
from mlcommons.errors import BadRequest, ServiceUnavailable
from mlcommons.store import keys as K
from mlcommons.types import FunctionName, ModelFormat, ModelState


def model(ctx, model_id: str = "m1", state: ModelState = ModelState.REGISTERED) -> str:
    doc = new_model_doc(name=model_id, group_id="g", version="1", fn=FunctionName.TEXT_EMBEDDING,
                        fmt=ModelFormat.TORCH_SCRIPT, config=None, state=state, extra={})
    ctx.docs.create(K.MODEL, model_id, doc)
    return model_id


def test_no_live_node_no_deploy(ctx):
    model(ctx)
    with pytest.raises(BadRequest, match="no eligible node found"):
        deploys.deploy(ctx, "m1")


def test_a_deploy_targets_every_live_node_and_records_its_task(ctx, join):
    join(ctx, "n1")
    join(ctx, "n2")
    model(ctx)
    reply = deploys.deploy(ctx, "m1")
    task = tasks.get(ctx, reply["task_id"])
    assert task["worker_node"] == ["n1", "n2"] and task["state"] == "CREATED"
    doc = ctx.docs.get(K.MODEL, "m1")
    assert doc["model_state"] == "DEPLOYING" and doc["planning_worker_nodes"] == ["n1", "n2"]
    assert lifecycle.deploy_task(doc) == reply["task_id"] and doc["deploy_to_all_nodes"] is True


def test_a_second_deploy_joins_the_one_under_way(ctx, join):
    join(ctx, "n1")
    model(ctx)
    first = deploys.deploy(ctx, "m1")["task_id"]
    assert deploys.deploy(ctx, "m1")["task_id"] == first


def test_a_custom_plan_needs_the_setting(ctx, join):
    join(ctx, "n1")
    model(ctx)
    with pytest.raises(BadRequest, match="Don't allow custom deployment plan"):
        deploys.deploy(ctx, "m1", ["n1"])


def test_a_model_still_registering_is_not_deployed(ctx, join):
    join(ctx, "n1")
    model(ctx, state=ModelState.REGISTERING)
    with pytest.raises(BadRequest, match="cannot be deployed yet"):
        deploys.deploy(ctx, "m1")


@pytest.mark.parametrize("errors,task_state,model_state", [
    ({"n1": "", "n2": ""}, "COMPLETED", "DEPLOYED"),
    ({"n1": "", "n2": "out of memory"}, "COMPLETED_WITH_ERROR", "PARTIALLY_DEPLOYED"),
    ({"n1": "bad archive", "n2": "bad archive"}, "FAILED", "DEPLOY_FAILED"),
])
def test_reports_settle_the_task_and_the_model(ctx, join, errors, task_state, model_state):
    join(ctx, "n1")
    join(ctx, "n2")
    model(ctx)
    task_id = deploys.deploy(ctx, "m1")["task_id"]
    for node_id, error in errors.items():
        deploys.report_deploy(ctx, task_id, "m1", node_id, error, holds_model=not error)
    assert tasks.get(ctx, task_id)["state"] == task_state
    doc = ctx.docs.get(K.MODEL, "m1")
    assert doc["model_state"] == model_state and lifecycle.deploy_task(doc) is None
    # The route that predict admission reads counts the serving nodes (none: no route at all).
    serving = int(ctx.redis.hget(ctx.keys.route("m1"), "workers") or 0)
    assert serving == sum(1 for e in errors.values() if not e)


def test_a_deploy_that_failed_everywhere_is_not_retried_by_a_predict(ctx, join):
    join(ctx, "n1")
    model(ctx)
    task_id = deploys.deploy(ctx, "m1")["task_id"]
    deploys.report_deploy(ctx, task_id, "m1", "n1", "bad archive", holds_model=False)
    doc = ctx.docs.get(K.MODEL, "m1")
    assert lifecycle.failed_by(doc) is lifecycle.FailedBy.DEPLOY and not deploys.wants_redeploy(doc)
    with pytest.raises(BadRequest, match="Its last deploy failed on every node"):
        deploys.auto_deploy(ctx, "m1")


def test_a_node_leaving_fails_the_model_by_node_loss_which_redeploy_repairs(ctx, join):
    join(ctx, "n1")
    model(ctx)
    task_id = deploys.deploy(ctx, "m1")["task_id"]
    deploys.report_deploy(ctx, task_id, "m1", "n1", "", holds_model=True)
    assert deploys.node_left(ctx, "n1", "gone") == ["m1"]
    doc = ctx.docs.get(K.MODEL, "m1")
    assert doc["model_state"] == "DEPLOY_FAILED" and lifecycle.failed_by(doc) is lifecycle.FailedBy.NODE_LOSS
    assert deploys.wants_redeploy(doc) and deploys.missing_nodes(doc, ["n1"]) == ["n1"]


def test_auto_deploy_refuses_when_the_setting_is_off(ctx, join):
    join(ctx, "n1")
    model(ctx)
    ctx.settings.apply_overrides({b"plugins.ml_commons.model_auto_deploy.enable": b"false"}, {})
    with pytest.raises(BadRequest, match="Model not ready yet"):
        deploys.auto_deploy(ctx, "m1")


def test_auto_deploy_without_a_node_is_unavailable(ctx):
    model(ctx)
    with pytest.raises(ServiceUnavailable, match="cannot be deployed now"):
        deploys.auto_deploy(ctx, "m1")
