"""Reconcile step: a node whose heartbeat expired is gone. Close the books on its last run once."""
from __future__ import annotations

import logging

from mlcommons.core import departures, nodes
from mlcommons.core.context import Context

log = logging.getLogger(__name__)


def step(ctx: Context) -> list[str]:
    """Returns the nodes found dead in this round."""
    handled_key = ctx.keys.watcher_state("ended_runs")
    handled = {k.decode(): v.decode() for k, v in ctx.redis.hgetall(handled_key).items()}
    dead = []
    for node_id, info in nodes.all_nodes(ctx).items():
        boot_id = info.get("boot_id")
        if info["alive"] or not boot_id or handled.get(node_id) == boot_id:
            continue
        if not nodes.fence(ctx, node_id, boot_id):
            continue  # its heartbeat arrived after all
        log.warning("node %s (run %s) stopped sending heartbeats; closing its work", node_id, boot_id)
        held = departures.run_ended(ctx, node_id, boot_id, f"worker node {node_id} left the cluster",
                                  restarting=False)
        ctx.redis.hset(handled_key, node_id, boot_id)
        log.info("node %s held %s", node_id, held)
        dead.append(node_id)
    return dead
