"""WAIT after a write that must outlive a failover: counted, logged when short, never raised."""
from __future__ import annotations

import logging
import time

import redis

from mlcommons.stack.procutil import free_port
from mlcommons.store.durability import wait_for_replicas


def test_not_asked_nothing_is_sent(redis_client, prefix):
    assert wait_for_replicas(redis_client, f"{prefix}:marker", 0, 1000, "task t") is None
    assert not redis_client.exists(f"{prefix}:marker")


def test_too_few_replicas_cost_the_time_out_and_a_warning(redis_client, prefix, caplog):
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="mlcommons.store.durability"):
        assert wait_for_replicas(redis_client, f"{prefix}:marker", 1, 100, "register task t") == 0
    assert time.monotonic() - started >= 0.1
    assert redis_client.get(f"{prefix}:marker") == b"1"  # the write the WAIT follows, on its own connection
    assert "register task t: only 0 of 1 replica(s) acknowledged it within 100 ms" in caplog.text


def test_a_redis_out_of_reach_is_logged_not_raised(caplog):
    gone = redis.Redis(port=free_port(), socket_connect_timeout=0.2, retry=None)
    with caplog.at_level(logging.WARNING, logger="mlcommons.store.durability"):
        assert wait_for_replicas(gone, "m", 1, 100, "model m") is None
    assert "model m: could not wait for 1 replica(s)" in caplog.text
