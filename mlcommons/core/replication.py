"""After a write that must outlive a failover (a task created, a model registered): wait for the
replicas that ``mlcommons.redis.wait_replicas`` asks for, within ``wait_timeout_ms``. Too few are
logged, never raised (mlcommons/store/durability.py says why)."""
from __future__ import annotations

from mlcommons.core.context import Context
from mlcommons.store import durability


def wait(ctx: Context, what: str) -> None:
    """``what`` names the write in the log (``register task <id>``, ``model <id>``)."""
    durability.wait_for_replicas(ctx.redis, ctx.keys.replication_marker(),
                                 ctx.settings.get("mlcommons.redis.wait_replicas"),
                                 ctx.settings.get("mlcommons.redis.wait_timeout_ms"), what)
