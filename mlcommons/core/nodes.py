"""The node registry: worker nodes announce themselves with heartbeats.

A node is alive while its ``alive`` key (holding its boot id, with an expiry) exists. A node id
that comes back with a new boot id is a restart. The node's last heartbeat document (roles,
memory, models held) is kept in a hash beside it.
"""
from __future__ import annotations

import logging
import re
from typing import Any

import orjson
import redis

from mlcommons.core.context import Context
from mlcommons.ids import now_ms

log = logging.getLogger(__name__)

ML_ROLE = "ml"


# A run the cluster has declared gone (its boot id recorded by :func:`fence`) may never announce
# itself again: its models were handed to others while it could not be reached.
# The check and the write are one script, so a heartbeat held up in a partition and delivered
# after the declaration cannot slip in between them.
_HEARTBEAT = """
if redis.call('HGET', KEYS[4], ARGV[1]) == ARGV[2] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('HSET', KEYS[2], unpack(ARGV, 4))
redis.call('SADD', KEYS[3], ARGV[1])
return 1
"""


def heartbeat(ctx: Context, node_id: str, boot_id: str, info: dict[str, Any], expiry_seconds: float) -> bool:
    """Announce the run ``boot_id`` of ``node_id``. False: the cluster has declared this run gone
    (fenced); nothing was written, and the run must drop its state and start again."""
    doc = {**info, "node_id": node_id, "boot_id": boot_id, "last_heartbeat": now_ms()}
    fields = [part for k, v in doc.items() for part in (k, orjson.dumps(v))]
    keys = [ctx.keys.node_alive(node_id), ctx.keys.node(node_id), ctx.keys.nodes(), fenced_runs_key(ctx)]
    written = ctx.redis.eval(_HEARTBEAT, len(keys), *keys, node_id, boot_id, int(expiry_seconds * 1000), *fields)
    return bool(written)


def fenced_runs_key(ctx: Context) -> str:
    """node id -> the boot id of its last run that the cluster declared gone."""
    return ctx.keys.watcher_state("fenced_runs")


_FENCE = """
if redis.call('GET', KEYS[1]) == ARGV[2] then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
"""


def fence(ctx: Context, node_id: str, boot_id: str) -> bool:
    """Declare the run ``boot_id`` of ``node_id`` gone, before its work is taken from it: from
    now on its heartbeats are refused, and its connections to Redis are closed. False: its
    heartbeat came back first; it is not gone."""
    keys = [ctx.keys.node_alive(node_id), fenced_runs_key(ctx)]
    if not ctx.redis.eval(_FENCE, len(keys), *keys, node_id, boot_id):
        return False
    _cut_off(ctx, client_name(node_id, boot_id))
    return True


def client_name(node_id: str, boot_id: str) -> str:
    """The name a worker node's run gives its Redis connections (CLIENT SETNAME allows no spaces)."""
    return re.sub(r"[^A-Za-z0-9_.:-]", "_", f"mlcommons-node:{node_id}:{boot_id}")


def _cut_off(ctx: Context, name: str) -> None:
    """Close a fenced run's connections. A run behind a network partition still has blocking pops
    waiting in Redis, which Redis would go on feeding with new requests that never arrive there;
    closed, they take nothing more, and what they took is handed back with the rest of its work."""
    try:
        for client in ctx.redis.client_list():
            if client.get("name") == name:
                ctx.redis.client_kill_filter(_id=client["id"])
    except redis.exceptions.ResponseError as exc:  # CLIENT refused by this Redis's ACLs
        log.warning("cannot close the connections of %s: %s", name, exc)


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
