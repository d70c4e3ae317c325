"""The adaptive allocations step of the cluster watcher, against a real Redis: it reads the
counters a node's heartbeat carries, the queue and the route, on a made-up clock, and writes the
allocation count into the deployment's document as deployments.update does. (The end-to-end run
with worker processes is tests/integration/test_adaptive.py.)"""
from __future__ import annotations

import pytest

from mlcommons.cluster.adaptive_allocations import Autoscaler
from mlcommons.core import nodes
from mlcommons.core.context import Context
from mlcommons.core.tasks import records as tasks
from mlcommons.elasticsearch import deployments
from mlcommons.store import keys as K
from mlcommons.types import TaskType

TICK = 10.0
NODE = "n1"


@pytest.fixture
def ctx(make_ctx):
    return make_ctx(**{"mlcommons.adaptive_allocations.scale_to_zero_seconds": 60.0,
                       "mlcommons.adaptive_allocations.scale_down_cooldown_seconds": 30.0})


class Node:
    """What a worker node running the deployment would report in its heartbeat."""

    def __init__(self, ctx: Context, unit_id: str, node_id: str = NODE, boot: str = "boot-1"):
        self.ctx, self.unit_id, self.node_id, self.boot = ctx, unit_id, node_id, boot
        self.counters = {"inference_count": 0, "error_count": 0, "timeout_count": 0, "inference_ms_total": 0.0}
        self.beat()

    def served(self, count: int, seconds_each: float) -> None:
        self.counters["inference_count"] += count
        self.counters["inference_ms_total"] += count * seconds_each * 1000
        self.beat()

    def beat(self) -> None:
        models = {self.unit_id: {"loaded_at": 1, "allocations": 1, **self.counters}}
        nodes.heartbeat(self.ctx, self.node_id, self.boot, {"models": models}, 60.0)


def deployment(ctx: Context, unit_id: str, allocations: int = 1, adaptive: dict | None = None,
               current: list[str] | None = None) -> None:
    es = {"deployment_id": unit_id, "model_id": "m", "number_of_allocations": allocations, "target_nodes": [NODE]}
    if adaptive is not None:
        es["adaptive_allocations"] = adaptive
    ctx.docs.create(K.DEPLOYMENT, unit_id, {
        "model_id": "m", "deployment_id": unit_id, "model_state": "DEPLOYED",
        "current_worker_nodes": [NODE] if current is None else current, "planning_worker_nodes": [NODE],
        "_serving": {"number_of_allocations": allocations, "threads_per_allocation": 1, "queue_capacity": 100,
                     "es": es}})


def allocations(ctx: Context, unit_id: str) -> tuple[int, int]:
    """(the deployment's total, what each node is asked to run)."""
    doc = ctx.docs.get(K.DEPLOYMENT, unit_id)
    return deployments.total_allocations(doc), doc["_serving"]["number_of_allocations"]


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


ADAPTIVE = {"enabled": True, "min_number_of_allocations": 0, "max_number_of_allocations": 4}


def test_load_scales_up_from_the_second_tick_and_fixed_deployments_are_left_alone(ctx):
    deployment(ctx, "auto", adaptive=ADAPTIVE)
    deployment(ctx, "fixed", allocations=1)
    auto, fixed = Node(ctx, "auto"), Node(ctx, "fixed", node_id="n2")
    clock = Clock()
    step = Autoscaler(ctx, clock)
    auto.served(500, 0.1)  # before the watcher looked: history, not this tick's load
    assert step.step() == {}
    assert step.watched["auto"].at == clock.now and "fixed" not in step.watched
    clock.now += TICK
    auto.served(400, 0.1)  # 40/s x 0.1 s: 4 allocations' worth; 5 wanted, max_number_of_allocations 4
    fixed.served(1000, 0.1)
    assert step.step() == {"auto": 4}
    assert allocations(ctx, "auto") == (4, 4)
    assert allocations(ctx, "fixed") == (1, 1)
    clock.now += 1.0
    assert step.step() == {}  # no tick within the interval


def test_idle_goes_down_after_the_cooldown_then_to_zero_and_a_queued_request_wakes_it(ctx):
    deployment(ctx, "auto", allocations=3, adaptive=ADAPTIVE)
    node = Node(ctx, "auto")
    clock = Clock()
    step = Autoscaler(ctx, clock)
    step.step()  # baseline; the new scaler holds scale-downs back as after a node start
    seen = []
    while clock.now < 1000.0 + 120:
        clock.now += TICK
        node.beat()
        if step.step():
            seen.append((clock.now - 1000.0, allocations(ctx, "auto")[0]))
    # Down to 1 once the 30 s cooldown is over, then to 0 after 60 s without a request.
    assert seen[0] == (30.0, 1) and seen[-1][1] == 0 and 60.0 < seen[-1][0] <= 80.0, seen
    assert allocations(ctx, "auto") == (0, 0)
    state = deployments.state_of(ctx, K.DEPLOYMENT, "auto", ctx.docs.get(K.DEPLOYMENT, "auto"))
    assert (state["allocation_count"], state["target_allocation_count"], state["allocation_state"]) == \
        (0, 0, "fully_allocated")

    # A request queued by a way that did not wake it (between ticks): the next round does.
    ctx.redis.rpush(ctx.keys.predict_queue("auto"), b"request")
    clock.now += 1.0
    assert step.step() == {"auto": 1}
    assert allocations(ctx, "auto") == (1, 1)
    assert step.watched["auto"].scaler.current == 1


def test_wake_only_wakes_an_adaptive_deployment_at_zero(ctx):
    deployment(ctx, "asleep", allocations=0, adaptive=ADAPTIVE)
    deployment(ctx, "awake", allocations=2, adaptive=ADAPTIVE)
    deployment(ctx, "fixed", allocations=1)
    assert deployments.wake(ctx, "asleep") is True
    assert allocations(ctx, "asleep") == (1, 1)
    assert deployments.wake(ctx, "asleep") is False
    assert deployments.wake(ctx, "awake") is False and allocations(ctx, "awake") == (2, 2)
    assert deployments.wake(ctx, "fixed") is False
    # The scaler's update applies only to the count it decided from.
    assert deployments.update(ctx, "awake", 4, None, expected=3) is False
    assert allocations(ctx, "awake") == (2, 2)
    # Turning adaptive allocations off at zero serves again.
    deployment(ctx, "off", allocations=0, adaptive=ADAPTIVE)
    deployments.update(ctx, "off", None, {"enabled": False})
    assert allocations(ctx, "off") == (1, 1)


def test_a_request_that_woke_it_counts_and_holds_it_up_for_the_cooldown(ctx):
    deployment(ctx, "auto", allocations=1, adaptive=ADAPTIVE)
    node = Node(ctx, "auto")
    clock = Clock()
    step = Autoscaler(ctx, clock)
    step.step()
    while allocations(ctx, "auto")[0] != 0:
        clock.now += TICK
        node.beat()
        step.step()
    woke_at = clock.now + 1.0
    clock.now = woke_at
    assert deployments.wake(ctx, "auto")  # the API, on the request
    node.served(1, 0.1)
    for _ in range(int(60 / TICK)):  # idle again, but within the scale-to-zero time of the request
        clock.now += TICK
        node.beat()
        step.step()
        assert allocations(ctx, "auto")[0] == 1, clock.now - woke_at


def test_not_started_deployments_are_not_scaled_and_are_measured_afresh(ctx):
    deployment(ctx, "auto", adaptive=ADAPTIVE)
    node = Node(ctx, "auto")
    clock = Clock()
    step = Autoscaler(ctx, clock)
    step.step()
    task_id = ctx.docs.transact(lambda tx: tasks.create(tx, tasks.new_task(TaskType.DEPLOY_MODEL, "m", None, [NODE])))
    ctx.docs.update(K.DEPLOYMENT, "auto", {"_deploy_task": task_id})
    clock.now += TICK
    node.served(500, 0.1)
    assert step.step() == {}
    assert step.watched["auto"].at is None
    ctx.docs.update(K.DEPLOYMENT, "auto", {"_deploy_task": None})
    clock.now += TICK
    assert step.step() == {}  # a baseline again: the load seen while deploying is not this tick's
    clock.now += TICK
    node.served(400, 0.1)
    assert step.step() == {"auto": 4}


def test_a_new_leader_starts_from_a_baseline_and_a_node_restart_counts_from_zero(ctx):
    deployment(ctx, "auto", adaptive=ADAPTIVE)
    node = Node(ctx, "auto")
    clock = Clock()
    step = Autoscaler(ctx, clock)
    step.step()
    node.served(10_000, 0.1)
    step.reset()  # lost the lease
    clock.now += TICK
    assert step.step() == {}  # what happened before is not a tick's load
    restarted = Node(ctx, "auto", boot="boot-2")  # counters from zero again, below the old ones
    restarted.served(400, 0.1)
    clock.now += TICK
    assert step.step() == {"auto": 4}
