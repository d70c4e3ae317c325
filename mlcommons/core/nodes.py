"""The node registry: worker nodes announce themselves with heartbeats.

A node is alive while its ``alive`` key (holding its boot id, with an expiry) exists. A node id
that comes back with a new boot id is a restart. The node's last heartbeat document (roles,
memory, models held) is kept in a hash beside it.
"""
from __future__ import annotations

from typing import Any

import orjson

from mlcommons.core.context import Context
from mlcommons.ids import now_ms

ML_ROLE = "ml"


def heartbeat(ctx: Context, node_id: str, boot_id: str, info: dict[str, Any], expiry_seconds: float) -> None:
    doc = {**info, "node_id": node_id, "boot_id": boot_id, "last_heartbeat": now_ms()}
    pipe = ctx.redis.pipeline(transaction=True)
    pipe.set(ctx.keys.node_alive(node_id), boot_id, px=int(expiry_seconds * 1000))
    pipe.hset(ctx.keys.node(node_id), mapping={k: orjson.dumps(v) for k, v in doc.items()})
    pipe.sadd(ctx.keys.nodes(), node_id)
    pipe.execute()


def leave(ctx: Context, node_id: str, boot_id: str) -> None:
    """A clean shutdown: the node stops counting as alive at once."""
    key = ctx.keys.node_alive(node_id)
    if ctx.redis.get(key) == boot_id.encode():
        ctx.redis.delete(key)


def all_nodes(ctx: Context) -> dict[str, dict[str, Any]]:
    """Every node ever seen, with ``alive`` telling whether its heartbeat is current."""
    ids = sorted(i.decode() for i in ctx.redis.smembers(ctx.keys.nodes()))
    if not ids:
        return {}
    pipe = ctx.redis.pipeline(transaction=False)
    for node_id in ids:
        pipe.get(ctx.keys.node_alive(node_id))
        pipe.hgetall(ctx.keys.node(node_id))
    raw = pipe.execute()
    out = {}
    for i, node_id in enumerate(ids):
        boot, doc = raw[2 * i], raw[2 * i + 1]
        info = {k.decode(): orjson.loads(v) for k, v in doc.items()}
        info["alive"] = boot is not None and boot.decode() == info.get("boot_id")
        out[node_id] = info
    return out


def live_nodes(ctx: Context) -> dict[str, dict[str, Any]]:
    return {n: info for n, info in all_nodes(ctx).items() if info["alive"]}


def eligible_nodes(ctx: Context) -> list[str]:
    """Live nodes a model may be deployed to, sorted for a stable plan."""
    only_ml = ctx.settings.get("plugins.ml_commons.only_run_on_ml_node")
    return sorted(n for n, info in live_nodes(ctx).items()
                  if not only_ml or ML_ROLE in info.get("roles", []))
