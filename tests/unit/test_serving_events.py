"""Waiters on a serving unit are woken by the core's announcements, through a real Redis."""
from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio as aioredis

from mlcommons.api.events import ServingEvents
from mlcommons.store.keys import Keys


@pytest.fixture
async def subscribed(redis_url):
    """(events, a client to publish with, the channel), subscribed; fallback too long to matter."""
    client = aioredis.Redis.from_url(redis_url)
    channel = Keys(f"t{uuid.uuid4().hex[:8]}").serving_events()
    events = ServingEvents(client, channel, fallback=30.0)
    await events.start()
    try:
        await asyncio.wait_for(events.subscribed.wait(), 30)
        yield events, client, channel
    finally:
        await events.close()
        await client.aclose()


async def test_a_waiter_wakes_on_its_unit_only(subscribed):
    events, client, channel = subscribed
    async with events.watch("unit-a") as a, events.watch("unit-b") as b:
        await client.publish(channel, "unit-a")
        assert await a.changed(30.0) is True  # woken, long before the 30 s fallback
        assert await b.changed(0.05) is False  # another unit's news is not its own
        await client.publish(channel, "unit-b")
        assert await b.changed(30.0) is True
    assert events._watches == {}  # nothing kept once the waiters are gone


async def test_a_change_announced_before_the_wait_is_not_missed(subscribed):
    """A waiter registers before it reads the state: news that arrives between the read and the
    wait still wakes it at once."""
    events, client, channel = subscribed
    async with events.watch("unit") as watch:
        await client.publish(channel, "unit")
        for _ in range(1000):  # let the subscription deliver it before anyone waits
            if watch.event.is_set():
                break
            await asyncio.sleep(0.005)
        assert await watch.changed(30.0) is True
