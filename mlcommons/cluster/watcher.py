"""The cluster watcher: a loop of idempotent reconcile steps, each reading the truth from Redis
and moving the cluster toward what its documents say.

It runs in every API process (``mlcommons api`` and ``mlcommons serve``) on a thread of its own;
a lease in Redis makes exactly one of them act at a time. Because every step only reads state and
moves toward it, a watcher that dies mid-round leaves nothing that the next one cannot finish.
The adaptive allocations step (autoscaler.py) also keeps load estimates in memory; a new leader
builds them afresh.
"""
from __future__ import annotations

import logging
import threading
import time

from mlcommons.cluster import dead_nodes, orphans, redeploy, syncup, timeouts
from mlcommons.cluster.adaptive_allocations import Autoscaler
from mlcommons.cluster.leader import Lease
from mlcommons.core.context import Context
from mlcommons.ids import new_id

log = logging.getLogger(__name__)


class Watcher:
    def __init__(self, ctx: Context, *, name: str | None = None):
        self.ctx = ctx
        self.name = name or new_id()
        self.lease = Lease(ctx.redis, ctx.keys.watcher_leader(), self.name,
                           ctx.settings.get("mlcommons.cluster.leader_lease_seconds"))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_sync = 0.0
        self._last_ok = 0.0
        self._liveness_from = 0.0
        self.rounds = 0
        self.autoscaler = Autoscaler(ctx)
        """The one step with a memory (its scalers): rebuilt whenever this watcher stops leading."""

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True, name="cluster-watcher")
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        try:
            self.lease.release()
        except Exception:  # Redis may be gone at shutdown
            pass

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                if self.lease.hold():
                    self.round()
                else:
                    self.autoscaler.reset()
            except Exception as exc:  # a round that fails (Redis away, a bug) must not end the loop
                log.warning("watcher round failed: %s", exc, exc_info=not _is_connection_error(exc))
            interval = self.ctx.settings.get("mlcommons.cluster.watcher_interval_seconds")
            self._stop.wait(max(0.0, interval - (time.monotonic() - started)))

    def round(self) -> None:
        """One pass of every reconcile step, in dependency order."""
        self.rounds += 1
        now = time.monotonic()
        expiry = self.ctx.settings.get("mlcommons.node.heartbeat_expiry_seconds")
        if now - self._last_ok > expiry:
            # This watcher just started, or Redis was away (perhaps restarted from its
            # append-only file, with heartbeats expired meanwhile): give every node one expiry
            # to be heard from before calling it dead.
            self._liveness_from = now + expiry
        if now - self._last_ok > self.lease.ttl_ms / 1000:
            self.autoscaler.reset()  # the lease may have been someone else's meanwhile
        self._last_ok = now
        if now >= self._liveness_from:
            dead_nodes.step(self.ctx)
        timeouts.step(self.ctx)
        interval = self.ctx.settings.get("plugins.ml_commons.sync_up_job_interval_in_seconds")
        if interval > 0 and time.monotonic() - self._last_sync >= interval:
            self._last_sync = time.monotonic()
            syncup.step(self.ctx)
        orphans.step(self.ctx)
        redeploy.step(self.ctx)
        self.autoscaler.step()


def _is_connection_error(exc: Exception) -> bool:
    import redis

    return isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError))
