"""Fixtures shared by the unit tests that decide against a real Redis (no worker processes)."""
from __future__ import annotations

import pytest

from mlcommons.core.context import Context
from mlcommons.core.nodes import registry as nodes
from mlcommons.settings import static_values


@pytest.fixture
def core_ctx(redis_url, prefix):
    """A core context on the tests' Redis, under a key prefix of its own."""
    static = static_values(environ={})
    static["mlcommons.redis.key_prefix"] = prefix
    context = Context.connect(redis_url, static=static)
    yield context
    context.close()


@pytest.fixture
def join():
    """``join(ctx, node_id, models={...})``: a worker node's heartbeat, as the node would send it."""
    def beat(ctx: Context, node_id: str, models: dict | None = None, boot: str = "boot-1") -> None:
        nodes.heartbeat(ctx, node_id, boot, {"roles": ["ml"], "models": models or {}}, 60.0)
    return beat
