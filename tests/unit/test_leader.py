"""The watcher's lease: one holder at a time, renewal, and take-over after expiry."""
from __future__ import annotations

import redis

from mlcommons.cluster.leader import Lease
from tests.harness import wait_for


def test_one_holder_then_take_over(redis_url, prefix):
    client = redis.Redis.from_url(redis_url)
    key = f"{prefix}:watcher:leader"
    first, second = Lease(client, key, "first", 0.3), Lease(client, key, "second", 0.3)
    assert first.hold() and not second.hold()
    assert first.hold()  # renewal
    wait_for(second.hold, 5, 0.05, "the lease to pass to the second holder once the first stops renewing")
    assert not first.hold()
    second.release()
    assert first.hold()
