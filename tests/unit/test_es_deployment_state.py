"""An Elasticsearch deployment's allocation and routing state (elasticsearch/deployments.py
``state_of``), as the stats and _start APIs report it, decided from the stored document."""
from __future__ import annotations

from mlcommons.core.serving import spec as serving_spec
from mlcommons.core.serving.spec import ServingSpec
from mlcommons.elasticsearch import deployments
from mlcommons.elasticsearch.spec import EsDeployment
from mlcommons.store import keys as K


def deployment(ctx, *, state, current, planned, allocations, per_node=1, **extra) -> dict:
    es = EsDeployment(deployment_id="d1", model_id="m", start_time=1, target_nodes=list(planned),
                      number_of_allocations=allocations)
    doc = {"model_id": "m", "deployment_id": "d1", "model_state": state, "current_worker_nodes": list(current),
           "planning_worker_nodes": list(planned), "planning_worker_node_count": len(planned),
           **serving_spec.fields(ServingSpec(number_of_allocations=per_node, threads_per_allocation=1,
                                             es=es.encode())), **extra}
    ctx.docs.create(K.DEPLOYMENT, "d1", doc)
    return ctx.docs.get(K.DEPLOYMENT, "d1")


def test_every_planned_node_serving_is_fully_allocated(ctx):
    doc = deployment(ctx, state="DEPLOYED", current=["n1", "n2"], planned=["n1", "n2"], allocations=2)
    state = deployments.state_of(ctx, K.DEPLOYMENT, "d1", doc)
    assert (state["allocation_count"], state["target_allocation_count"]) == (2, 2)
    assert state["allocation_state"] == "fully_allocated" and state["assignment_state"] == "started"
    assert {n: r["routing_state"] for n, r in state["routing_table"].items()} == {"n1": "started", "n2": "started"}


def test_some_nodes_serving_is_started_but_not_fully_allocated(ctx):
    doc = deployment(ctx, state="PARTIALLY_DEPLOYED", current=["n1"], planned=["n1", "n2"], allocations=2)
    state = deployments.state_of(ctx, K.DEPLOYMENT, "d1", doc)
    assert (state["allocation_count"], state["allocation_state"]) == (1, "started")
    assert state["routing_table"]["n2"]["routing_state"] == "starting"


def test_a_deploy_that_failed_everywhere_names_each_node_s_reason(ctx):
    doc = deployment(ctx, state="DEPLOY_FAILED", current=[], planned=["n1"], allocations=1,
                     _deploy_errors={"n1": "could not load the model"}, _failed_by="deploy")
    state = deployments.state_of(ctx, K.DEPLOYMENT, "d1", doc)
    assert state["routing_table"]["n1"] == {"current_allocations": 0, "target_allocations": 1,
                                            "routing_state": "failed", "reason": "could not load the model"}
    assert state["assignment_state"] == "failed" and state["allocation_state"] == "starting"
    assert state["task_open"] is False


def test_a_deployment_scaled_to_zero_is_fully_allocated_at_zero(ctx):
    doc = deployment(ctx, state="DEPLOYED", current=["n1"], planned=["n1"], allocations=0, per_node=0)
    state = deployments.state_of(ctx, K.DEPLOYMENT, "d1", doc)
    assert (state["allocation_count"], state["target_allocation_count"], state["allocation_state"]) == \
        (0, 0, "fully_allocated")
