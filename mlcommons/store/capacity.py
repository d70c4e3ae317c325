"""Room left in Redis for model archives, under its memory ceiling.

Model chunks live in the same Redis as every document, queue and heartbeat of the cluster. A
Redis at its ``maxmemory`` (no eviction) refuses every write, so a register that filled it would
stop the whole cluster, not just fail. Archives may therefore take Redis only up to
``1 - RESERVE`` of its ceiling: the rest stays for the cluster's own small writes. A Redis with
no ceiling (``maxmemory`` 0) is not checked here. A refusal reaches the client as OpenSearch's
memory circuit breaker does: 429 ``circuit_breaking_exception``.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import redis

from mlcommons.errors import MLError

RESERVE = 0.10


class StoreFull(MLError):
    """Storing this much would take Redis past the share of its memory ceiling archives may use."""

    status = 429
    error_type = "circuit_breaking_exception"


def room(client: redis.Redis) -> int | None:
    """Bytes archives may still take, or None when Redis has no memory ceiling."""
    info = client.info("memory")
    ceiling = int(info.get("maxmemory") or 0)
    if not ceiling:
        return None
    return int(ceiling * (1 - RESERVE)) - int(info["used_memory"])


def check_room(client: redis.Redis, size: int) -> None:
    """Raise :class:`StoreFull` unless ``size`` more bytes of archive fit."""
    left = room(client)
    if left is not None and size > left:
        raise full(client, size)


def full(client: redis.Redis, size: int | None = None) -> StoreFull:
    """The error a client sees: how much was asked, the ceiling, and what to do about it."""
    info = client.info("memory")
    ceiling = int(info.get("maxmemory") or 0)
    asked = f"{size} more bytes" if size is not None else "more bytes"
    return StoreFull(
        f"the model store has no room for {asked}: Redis uses {info.get('used_memory')} of its "
        f"{ceiling}-byte memory ceiling (maxmemory), and models may fill it only to "
        f"{round((1 - RESERVE) * 100)}%; delete models, or raise the ceiling "
        "(mlcommons.redis.embedded_maxmemory for the Redis that serve embeds)")


@contextlib.contextmanager
def writing(client: redis.Redis, size: int) -> Iterator[None]:
    """Check the room for ``size`` bytes before a write, and turn Redis' own refusal at its
    ceiling (another writer took the room first) into :class:`StoreFull` too."""
    check_room(client, size)
    try:
        yield
    except redis.exceptions.OutOfMemoryError:
        raise full(client, size) from None


def is_out_of_memory(exc: BaseException) -> bool:
    """Redis refused a write at its ceiling (another writer took the room first)."""
    return isinstance(exc, redis.exceptions.OutOfMemoryError)
