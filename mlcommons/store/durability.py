"""Writes that must outlive a failover: Redis WAIT after them.

Redis replicates asynchronously: the primary answers a write before any replica has it, so a
primary that dies a moment later takes the write along, and the sentinels promote a replica that
never saw it. Most writes here repair themselves (heartbeats, progress, a prediction that its
client retries), but a task that was created (its client holds the id and polls it) or a model
that was registered would be gone without a trace. After those writes the process waits until
``replicas`` replicas have them, or ``timeout_ms`` passed (``mlcommons.redis.wait_replicas`` and
``wait_timeout_ms``).

WAIT counts the replicas that acknowledged the last write of the connection it is sent on, and a
pool may hand the WAIT another connection than the write's. So the WAIT follows a write of its
own on its connection (a counter, ``Keys.replication_marker``): it enters the replication stream
after the write to protect, which the primary had already answered, so a replica that has the
counter's write has ours too.

It never fails the request: the write is on the primary, and failing would leave it half-done
and invite a duplicate on retry. Too few acknowledgements (no replica, or a replica that lags)
are logged, naming the write.
"""
from __future__ import annotations

import logging

import redis

log = logging.getLogger(__name__)


def wait_for_replicas(client: redis.Redis, marker: str, replicas: int, timeout_ms: int, what: str) -> int | None:
    """Wait until ``replicas`` replicas have every write this process made before; how many
    acknowledged in time, or None when not asked (``replicas`` 0) or Redis could not be asked."""
    if replicas <= 0:
        return None
    try:
        pipe = client.pipeline(transaction=False)
        pipe.incr(marker)
        pipe.wait(replicas, timeout_ms)
        _, acknowledged = pipe.execute()
    except redis.exceptions.RedisError as exc:
        log.warning("%s: could not wait for %d replica(s) (%s); it stands on the primary only", what, replicas, exc)
        return None
    if acknowledged < replicas:
        log.warning("%s: only %d of %d replica(s) acknowledged it within %d ms; a failover now could lose it",
                    what, acknowledged, replicas, timeout_ms)
    return int(acknowledged)
