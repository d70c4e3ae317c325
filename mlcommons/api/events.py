"""Waiting for a serving unit to change without polling.

The core publishes a unit's id on one Redis channel (``Keys.serving_events``) whenever its
deploy task or its serving nodes change (mlcommons/core/serving/deploy.py ``announce``). Each API
process holds one subscription and wakes the coroutines that wait on that unit: ``_start`` with
``wait_for``, and a first ``_predict`` that auto-deploys. Pub/sub delivers only to those
listening, so a waiter registers before it reads the state it waits to see change, and still
looks again every ``fallback`` seconds in case a message was lost while the subscription was
reconnecting.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import AsyncIterator

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)


class Watch:
    """One waiter on one unit: :meth:`changed` returns once the unit changed since the last call
    (True), or after ``timeout`` seconds (False)."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    async def changed(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self.event.wait(), max(0.0, timeout))
        except asyncio.TimeoutError:
            return False
        self.event.clear()
        return True


class ServingEvents:
    def __init__(self, client: aioredis.Redis, channel: str, fallback: float = 1.0):
        self.client = client
        self.channel = channel
        self.fallback = fallback
        self._watches: dict[str, set[Watch]] = {}
        self._task: asyncio.Task | None = None
        self.subscribed = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="serving-events")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @contextlib.asynccontextmanager
    async def watch(self, unit_id: str) -> AsyncIterator[Watch]:
        """Register a waiter on ``unit_id`` for the duration of the block."""
        watch = Watch()
        self._watches.setdefault(unit_id, set()).add(watch)
        try:
            yield watch
        finally:
            waiters = self._watches.get(unit_id)
            if waiters is not None:
                waiters.discard(watch)
                if not waiters:
                    del self._watches[unit_id]

    def _wake(self, unit_id: str) -> None:
        for watch in self._watches.get(unit_id, ()):
            watch.event.set()

    async def _listen(self) -> None:
        while True:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self.subscribed.set()
                # Whatever changed while we were not listening: every waiter looks again.
                for unit_id in list(self._watches):
                    self._wake(unit_id)
                while True:
                    message = await pubsub.get_message(timeout=30.0)
                    if message is not None and message.get("type") == "message":
                        data = message["data"]
                        self._wake(data.decode() if isinstance(data, bytes) else str(data))
            except asyncio.CancelledError:
                raise
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                self.subscribed.clear()
                log.warning("serving events: Redis unavailable (%s); waiters fall back to polling", exc)
                await asyncio.sleep(0.5)
            except Exception:
                self.subscribed.clear()
                log.exception("serving events: subscription failed")
                await asyncio.sleep(0.5)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
