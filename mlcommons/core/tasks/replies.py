"""Node replies to a control-plane job (an undeploy): what a node sends, and the one collector.

A node pushes ``{"node": id, ...}`` (msgpack) onto ``keys.job_reply(request_id)``. The collector
is written once, without I/O (``Collector``: what to wait for, how long, what has come), and
driven by two short loops: :func:`collect` on a synchronous Redis client (the core, in the API's
thread pool or the watcher) and :func:`collect_async` on the API's asyncio client.
"""
from __future__ import annotations

import time
from typing import Any

import msgpack

REPLY_TTL_SECONDS = 600
LONGEST_BLOCK_SECONDS = 5.0


def send(client, key: str, reply: dict[str, Any]) -> None:
    """A node's reply: pushed in one round trip, and gone after a while if nobody collects it."""
    pipe = client.pipeline(transaction=False)
    pipe.rpush(key, msgpack.packb(reply))
    pipe.expire(key, REPLY_TTL_SECONDS)
    pipe.execute()


class Collector:
    """Collects up to ``count`` replies (node id -> reply, a node's later reply replacing its
    earlier one) until ``timeout`` seconds from now."""

    def __init__(self, count: int, timeout: float):
        self.count = count
        self.deadline = time.monotonic() + timeout
        self.replies: dict[str, dict] = {}

    def next_wait(self) -> float | None:
        """How long to block for the next reply; None when done (all in, or out of time)."""
        if len(self.replies) >= self.count:
            return None
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            return None
        return max(0.01, min(remaining, LONGEST_BLOCK_SECONDS))

    def add(self, raw: bytes | None) -> None:
        if raw is not None:
            reply = msgpack.unpackb(raw)
            self.replies[reply["node"]] = reply


def collect(client, key: str, count: int, timeout: float) -> dict[str, dict]:
    """Wait (blocking) for ``count`` replies on ``key``, at most ``timeout`` seconds; the list is
    deleted afterwards."""
    collector = Collector(count, timeout)
    while (wait := collector.next_wait()) is not None:
        item = client.blpop([key], timeout=wait)
        collector.add(item[1] if item else None)
    client.delete(key)
    return collector.replies


async def collect_async(client, key: str, count: int, timeout: float) -> dict[str, dict]:
    """:func:`collect` on an asyncio Redis client."""
    collector = Collector(count, timeout)
    while (wait := collector.next_wait()) is not None:
        item = await client.blpop([key], timeout=wait)
        collector.add(item[1] if item else None)
    await client.delete(key)
    return collector.replies


def arrived(client, key: str) -> dict[str, dict]:
    """The replies already on ``key``, without waiting (nothing is removed)."""
    collector = Collector(0, 0)
    for raw in client.lrange(key, 0, -1):
        collector.add(raw)
    return collector.replies
