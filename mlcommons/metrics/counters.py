"""Cluster-wide event counters kept in one Redis hash: the deploys the system starts by itself.
Bumped where the deploy task is created (``core/serving/deploy.py``), so a predict that joins a
deploy already under way counts nothing."""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)

CLUSTER = "cluster"  # the hash (Keys.metrics)
AUTO_DEPLOYS = "auto_deploys"
AUTO_REDEPLOYS = "auto_redeploys"


def bump(ctx, name: str) -> None:
    """Add one to counter ``name``. A metric never fails what it counts: a Redis error is logged."""
    try:
        ctx.redis.hincrby(ctx.keys.metrics(CLUSTER), name, 1)
    except Exception as exc:
        log.warning("could not count %s: %s", name, exc)
