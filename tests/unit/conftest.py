"""Fixtures shared by the unit tests that decide against a real Redis (no worker processes)."""
from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer

from mlcommons.api.app import create_app
from mlcommons.core import nodes
from mlcommons.core.context import Context
from mlcommons.core.remote.secrets import create_key_file
from mlcommons.settings import static_values


@pytest.fixture
def master_key_file(tmp_path):
    return create_key_file(tmp_path / "master.key")


@pytest.fixture
def make_ctx(redis_url, prefix, master_key_file):
    """``make_ctx(**settings)``: a core context on the tests' Redis, under a key prefix of its own,
    with these static settings (dotted names) over the defaults."""
    made = []

    def make(**settings) -> Context:
        static = static_values(environ={})
        static["mlcommons.redis.key_prefix"] = prefix
        static["mlcommons.security.master_key_file"] = str(master_key_file)
        static.update(settings)
        made.append(Context.connect(redis_url, static=static))
        return made[-1]

    yield make
    for context in made:
        context.close()


@pytest.fixture
def ctx(make_ctx) -> Context:
    return make_ctx()


@pytest.fixture
def join():
    """``join(ctx, node_id, models={...})``: a worker node's heartbeat, as the node would send it."""
    def beat(ctx: Context, node_id: str, models: dict | None = None, boot: str = "boot-1") -> None:
        nodes.heartbeat(ctx, node_id, boot, {"roles": ["ml"], "models": models or {}}, 60.0)
    return beat


@pytest.fixture
async def client(make_ctx):
    """aiohttp's test client on the real app (no watcher, no worker node), sharing ``ctx``'s Redis
    keys and master key."""
    app = create_app(make_ctx(), watcher=False)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client

