"""Redis connections: one URL, a synchronous client (workers, rq, control plane) and an asyncio one."""
from __future__ import annotations

import redis
import redis.asyncio as aioredis


def sync_client(url: str, **kw) -> redis.Redis:
    kw.setdefault("health_check_interval", 30)
    return redis.Redis.from_url(url, **kw)


def async_client(url: str, **kw) -> aioredis.Redis:
    kw.setdefault("health_check_interval", 30)
    return aioredis.Redis.from_url(url, **kw)


def server_version(client: redis.Redis) -> tuple[int, ...]:
    info = client.info("server")
    return tuple(int(p) for p in str(info["redis_version"]).split(".")[:3])
