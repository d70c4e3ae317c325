"""The cluster watcher's reconcile steps (mlcommons/cluster/), each decided against a real Redis
with nodes that only send heartbeats and reply as a node would: the sync-up (holders, stale
deploys, idle models), auto-redeploy, dead nodes and task time-outs. (With worker processes:
tests/integration/test_resilience.py and test_deploy.py.)"""
from __future__ import annotations

import time

from mlcommons.cluster import dead_nodes, redeploy, syncup, timeouts
from mlcommons.core import nodes
from mlcommons.core.models.records import new_model_doc
from mlcommons.core.serving import deploy as deploys
from mlcommons.core.serving import lifecycle
from mlcommons.core.serving import undeploy as undeploys
from mlcommons.core.tasks import records as tasks
from mlcommons.core.tasks import replies
from mlcommons.ids import now_ms
from mlcommons.store import keys as K
from mlcommons.types import FunctionName, ModelFormat, ModelState, TaskType


def served_model(ctx, model_id="m1", *, state=ModelState.DEPLOYED, current=("n1",), planned=("n1",), **extra):
    """A model document as stored in ``state`` (written directly: the state it reached is the test's given)."""
    doc = new_model_doc(name=model_id, group_id="g", version="1", fn=FunctionName.TEXT_EMBEDDING,
                        fmt=ModelFormat.TORCH_SCRIPT, config=None, state=ModelState.REGISTERED, extra={})
    doc.update({"model_state": state.value, "current_worker_nodes": list(current),
                "current_worker_node_count": len(current), "planning_worker_nodes": list(planned),
                "planning_worker_node_count": len(planned), "last_deployed_time": now_ms(), **extra})
    ctx.docs.create(K.MODEL, model_id, doc)


def next_beat(ctx, join, node_id, models):
    """A heartbeat later than the node's last one (the sync-up trusts a difference seen in two)."""
    before = nodes.all_nodes(ctx).get(node_id, {}).get("last_heartbeat", 0)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        join(ctx, node_id, models)
        if nodes.all_nodes(ctx)[node_id]["last_heartbeat"] > before:
            return
    raise AssertionError("the heartbeat clock did not move")


def test_a_model_a_node_holds_but_the_document_misses_is_added_after_two_heartbeats(ctx, join):
    served_model(ctx, current=(), state=ModelState.DEPLOY_FAILED, _failed_by="node_lost")
    join(ctx, "n1", {"m1": {}})
    assert syncup.step(ctx)["added"] == []  # one heartbeat may be in flight
    next_beat(ctx, join, "n1", {"m1": {}})
    assert syncup.step(ctx)["added"] == [("n1", "m1")]
    doc = ctx.docs.get(K.MODEL, "m1")
    assert doc["current_worker_nodes"] == ["n1"] and doc["model_state"] == "DEPLOYED"


def test_a_model_the_document_claims_but_the_node_lost_is_removed(ctx, join):
    served_model(ctx)
    join(ctx, "n1", {})
    syncup.step(ctx)
    next_beat(ctx, join, "n1", {})
    assert syncup.step(ctx)["removed"] == [("n1", "m1")]
    doc = ctx.docs.get(K.MODEL, "m1")
    assert doc["model_state"] == "DEPLOY_FAILED" and lifecycle.failed_by(doc) is lifecycle.FailedBy.NODE_LOSS


def test_a_model_nobody_knows_is_dropped_by_its_node(ctx, join):
    join(ctx, "n1", {"ghost": {}})
    syncup.step(ctx)
    next_beat(ctx, join, "n1", {"ghost": {}})
    assert syncup.step(ctx)["dropped"] == [("n1", "ghost")]


def test_a_deploying_model_with_no_live_task_gets_its_real_state(ctx, join):
    join(ctx, "n1", {})
    served_model(ctx, current=(), state=ModelState.DEPLOYING, last_updated_time=0)
    assert syncup.step(ctx)["resolved"] == ["m1"]
    doc = ctx.docs.get(K.MODEL, "m1")
    assert doc["model_state"] == "DEPLOY_FAILED" and lifecycle.failed_by(doc) is lifecycle.FailedBy.DEPLOY


def test_an_idle_model_is_undeployed_over_two_rounds_without_blocking_either(ctx, join):
    old = now_ms() - 5 * 60_000
    join(ctx, "n1", {"m1": {"last_access_ms": old}})
    served_model(ctx, deploy_setting={"model_ttl_minutes": 1}, last_deployed_time=old)
    report = syncup.step(ctx)
    assert report["expired"] == ["m1"] and report["undeployed"] == []
    assert lifecycle.phase(ctx.docs.get(K.MODEL, "m1")) is lifecycle.Phase.UNDEPLOYING
    # The node drops it and replies, as workers/node.py does; a later round settles the undeploy.
    (request_id,) = [r.decode() for r in ctx.redis.hkeys(ctx.keys.pending_undeploys())]
    undeploys.report(ctx, "n1", ["m1"])
    replies.send(ctx.redis, ctx.keys.job_reply(request_id), {"node": "n1", "stats": {"m1": "undeployed"}})
    next_beat(ctx, join, "n1", {})
    assert syncup.step(ctx)["undeployed"] == ["m1"]
    doc = ctx.docs.get(K.MODEL, "m1")
    assert doc["model_state"] == "UNDEPLOYED" and not lifecycle.undeploying(doc)


def test_redeploy_brings_back_a_model_whose_node_came_back(ctx, join):
    served_model(ctx, current=(), state=ModelState.DEPLOY_FAILED, _failed_by="node_lost")
    join(ctx, "n1", {})
    assert redeploy.step(ctx) == ["m1"]
    doc = ctx.docs.get(K.MODEL, "m1")
    assert doc["model_state"] == "DEPLOYING" and doc["auto_redeploy_retry_times"] == 1
    assert tasks.get(ctx, lifecycle.deploy_task(doc))["worker_node"] == ["n1"]
    assert redeploy.step(ctx) == []  # one deploy at a time


def test_redeploy_leaves_a_model_whose_deploy_failed_alone(ctx, join):
    served_model(ctx, current=(), state=ModelState.DEPLOY_FAILED, _failed_by="deploy")
    join(ctx, "n1", {})
    assert redeploy.step(ctx) == []


def test_a_dead_node_leaves_its_models_once(ctx, join):
    join(ctx, "n1", {"m1": {}})
    served_model(ctx)
    nodes.leave(ctx, "n1", "boot-1")  # its heartbeat key is gone, as when it expires
    assert dead_nodes.step(ctx) == ["n1"]
    assert ctx.docs.get(K.MODEL, "m1")["current_worker_nodes"] == []
    assert dead_nodes.step(ctx) == []  # that run of the node is closed already


def test_a_task_past_its_time_out_fails_and_so_does_its_model(ctx, join):
    join(ctx, "n1", {})
    served_model(ctx, current=(), state=ModelState.REGISTERED, planned=())
    task_id = deploys.deploy(ctx, "m1")["task_id"]
    ctx.docs.update(K.TASK, task_id, {"create_time": 1})
    assert timeouts.step(ctx) == [task_id]
    assert tasks.get(ctx, task_id)["state"] == "FAILED"
    assert ctx.docs.get(K.MODEL, "m1")["model_state"] == "DEPLOY_FAILED"
    assert [t for t, _ in tasks.open_tasks(ctx, TaskType.DEPLOY_MODEL)] == []
