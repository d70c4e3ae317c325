"""Reconcile step: adaptive allocations. Every ``mlcommons.adaptive_allocations.interval_seconds``
each Elasticsearch deployment with ``adaptive_allocations.enabled`` that is started (served by a
node, no deploy task open) is measured and handed to its scaler (mlcommons/elasticsearch/adaptive.py),
and the allocation count it asks for is applied with :func:`deployments.update`; nodes resize
their allocation threads within a heartbeat.

What a tick measures, as Elasticsearch does, since the last tick: successes, failures (errors,
time-outs, and 429s counted on the route) and the mean inference time, from the cumulative
counters in the node heartbeats, plus the requests waiting in the queue now.

The scalers live in this object's memory: a watcher that takes over the lease starts from
nothing, measures one tick as a baseline and scales from the next one on, holding scale-downs back
for a cooldown as after a node start (it has not seen what happened before it).

Scale from zero: a deployment at 0 allocations keeps its route, so requests wait in its queue.
The API wakes it on the request (:func:`deployments.wake`); between ticks this step also looks at
the queues of the deployments it put to sleep, so a request that came by another way wakes its
deployment within a watcher round.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from mlcommons.core import nodes
from mlcommons.core.context import Context
from mlcommons.core.serving import lifecycle, units
from mlcommons.elasticsearch import deployments
from mlcommons.elasticsearch.adaptive import AdaptiveAllocationsScaler, ScalerConfig, Stats
from mlcommons.elasticsearch.spec import EsDeployment
from mlcommons.store import keys as K
from mlcommons.types import TaskState

log = logging.getLogger(__name__)

# One node's counters for a deployment are a run of their own per boot and per load.
CounterKey = tuple[str, str, int]  # (node id, boot id, loaded_at)
COUNTERS = ("inference_count", "error_count", "timeout_count", "inference_ms_total")


@dataclass
class Watched:
    """What the step remembers of one deployment between ticks."""

    scaler: AdaptiveAllocationsScaler
    at: float | None = None
    """When the last tick measured it; None: the next tick only takes a baseline."""
    counters: dict[CounterKey, dict[str, float]] = field(default_factory=dict)
    rejected: int = 0
    nodes: frozenset[str] = frozenset()


class Autoscaler:
    def __init__(self, ctx: Context, clock: Callable[[], float] = time.monotonic):
        self.ctx = ctx
        self.clock = clock
        self.watched: dict[str, Watched] = {}
        self._last_tick: float | None = None

    def reset(self) -> None:
        """Forget every scaler (this watcher lost the lease; another may have scaled meanwhile)."""
        self.watched.clear()
        self._last_tick = None

    def step(self) -> dict[str, int]:
        """Run a tick when one is due, else only wake sleeping deployments that have requests
        waiting. Returns the allocation counts applied (deployment id -> count)."""
        now = self.clock()
        interval = self.ctx.settings.get("mlcommons.adaptive_allocations.interval_seconds")
        if self._last_tick is not None and now - self._last_tick < interval:
            return self.wake_queued(now)
        self._last_tick = now
        return self.tick(now)

    # --- a tick -----------------------------------------------------------------------------
    def tick(self, now: float) -> dict[str, int]:
        adaptive_units = []
        for _, unit_id, doc in units.all_units(self.ctx):
            es = EsDeployment.of(doc)
            adaptive = es.adaptive if es is not None else None
            if adaptive is not None:
                adaptive_units.append((unit_id, doc, adaptive))
        for gone in set(self.watched) - {u for u, _, _ in adaptive_units}:
            del self.watched[gone]  # stopped, or adaptive allocations turned off
        if not adaptive_units:
            return {}
        live = nodes.live_nodes(self.ctx)
        changes = {}
        for unit_id, doc, adaptive in adaptive_units:
            try:
                wanted = self._tick_unit(unit_id, doc, adaptive, live, now)
            except Exception as exc:  # one deployment's trouble must not stop the others' scaling
                log.warning("adaptive allocations: deployment %s skipped this tick: %s", unit_id, exc)
                continue
            if wanted is not None:
                changes[unit_id] = wanted
        return changes

    def _tick_unit(self, unit_id: str, doc: dict[str, Any], adaptive: dict[str, Any], live: dict,
                   now: float) -> int | None:
        watched = self.watched.get(unit_id)
        serving_nodes = frozenset(doc.get("current_worker_nodes") or [])
        if not serving_nodes or self._deploying(doc):
            if watched is not None:
                watched.at = None  # measure afresh once it is started, and as after a node start
            return None
        total = deployments.total_allocations(doc)
        settings = self.ctx.settings
        config = ScalerConfig(
            min_allocations=adaptive.get("min_number_of_allocations"),
            max_allocations=adaptive.get("max_number_of_allocations"),
            scale_to_zero_seconds=settings.get("mlcommons.adaptive_allocations.scale_to_zero_seconds"),
            scale_down_cooldown_seconds=settings.get("mlcommons.adaptive_allocations.scale_down_cooldown_seconds"))
        if watched is None:
            watched = self.watched[unit_id] = Watched(AdaptiveAllocationsScaler(unit_id, total, config))
        scaler = watched.scaler
        scaler.config = config
        counters = self._node_counters(unit_id, live)
        pipe = self.ctx.redis.pipeline(transaction=False)
        pipe.llen(self.ctx.keys.predict_queue(unit_id))
        pipe.hget(self.ctx.keys.route(unit_id), "rejected")
        pending, rejected = pipe.execute()
        pending, rejected = int(pending or 0), int(rejected or 0)
        if total != scaler.current:  # changed by someone else: an _update, or a request woke it
            if scaler.current == 0 and total > 0:
                scaler.record_request(now)
            scaler.set_current(total, now)
        if watched.at is None:
            scaler.note_started(now)
            watched.at, watched.counters, watched.rejected, watched.nodes = now, counters, rejected, serving_nodes
            return None
        if serving_nodes - watched.nodes:
            scaler.note_started(now)  # a node joined: judge it only once it has had time to help
        stats = self._since(watched, counters) + Stats(pending_count=pending,
                                                       failed_count=max(0, rejected - watched.rejected))
        elapsed = now - watched.at
        scaler.process(stats, elapsed, now)
        watched.at, watched.counters, watched.rejected, watched.nodes = now, counters, rejected, serving_nodes
        wanted = scaler.desired_allocations(now)
        if wanted is None and pending:
            wanted = scaler.scale_from_zero(now)  # requests wait for a deployment that nobody runs
        if wanted is None:
            return None
        if not deployments.update(self.ctx, unit_id, wanted, None, expected=total):
            return None  # changed meanwhile; the next tick sees the new count
        lo, hi = scaler.load_range()
        log.info("adaptive allocations: deployment %s %d -> %d allocations (%d requests in %.1f s, "
                 "%d waiting; load %.2f..%.2f allocations)", unit_id, total, wanted, stats.request_count,
                 elapsed, pending, lo, hi)
        scaler.set_current(wanted, now)
        return wanted

    def _deploying(self, doc: dict[str, Any]) -> bool:
        pending = lifecycle.deploy_task(doc)
        if not pending:
            return False
        task = self.ctx.docs.get(K.TASK, pending)
        return task is not None and not TaskState(task["state"]).terminal

    @staticmethod
    def _node_counters(unit_id: str, live: dict) -> dict[CounterKey, dict[str, float]]:
        out = {}
        for node_id, info in live.items():
            held = (info.get("models") or {}).get(unit_id)
            if held is not None:
                key = (node_id, str(info.get("boot_id")), int(held.get("loaded_at") or 0))
                out[key] = {name: float(held.get(name) or 0) for name in COUNTERS}
        return out

    @staticmethod
    def _since(watched: Watched, counters: dict[CounterKey, dict[str, float]]) -> Stats:
        """What the nodes did since the last tick. A run of counters not seen before (a node that
        started serving, restarted or reloaded) counts from its zero."""
        total = Stats()
        for key, now_values in counters.items():
            before = watched.counters.get(key) or {}
            delta = {name: max(0.0, now_values[name] - before.get(name, 0.0)) for name in COUNTERS}
            success = int(delta["inference_count"])
            total = total + Stats(success_count=success,
                                  failed_count=int(delta["error_count"] + delta["timeout_count"]),
                                  inference_time=delta["inference_ms_total"] / success / 1000 if success else None)
        return total

    # --- between ticks: scale from zero -------------------------------------------------------
    def wake_queued(self, now: float) -> dict[str, int]:
        """Deployments this step scaled to zero that have requests waiting go to 1 at once."""
        asleep = [unit_id for unit_id, w in self.watched.items() if w.scaler.current == 0]
        if not asleep:
            return {}
        pipe = self.ctx.redis.pipeline(transaction=False)
        for unit_id in asleep:
            pipe.llen(self.ctx.keys.predict_queue(unit_id))
        woken = {}
        for unit_id, waiting in zip(asleep, pipe.execute()):
            if not waiting:
                continue
            scaler = self.watched[unit_id].scaler
            scaler.record_request(now)
            if deployments.wake(self.ctx, unit_id):
                woken[unit_id] = 1
            scaler.set_current(1, now)  # awake now, woken by us or by the request's API process
        return woken
