"""Redis connections: one URL, a synchronous client (workers, rq, control plane) and an asyncio one.

Both retry a command on a broken connection (Redis restarted, say) with a short backoff, so a
restart of Redis costs a pause, not errors.
"""
from __future__ import annotations

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError
from redis.retry import Retry

RETRIES = 8  # about 4 s of backoff in all: longer than Redis needs to reload its file


def _backoff() -> ExponentialBackoff:
    return ExponentialBackoff(cap=1.0, base=0.05)


def sync_client(url: str, **kw) -> redis.Redis:
    kw.setdefault("health_check_interval", 30)
    kw.setdefault("retry", Retry(_backoff(), RETRIES))
    kw.setdefault("retry_on_error", [ConnectionError, TimeoutError])
    return redis.Redis.from_url(url, **kw)


def async_client(url: str, **kw) -> aioredis.Redis:
    kw.setdefault("health_check_interval", 30)
    kw.setdefault("retry", AsyncRetry(_backoff(), RETRIES))
    kw.setdefault("retry_on_error", [ConnectionError, TimeoutError])
    return aioredis.Redis.from_url(url, **kw)
