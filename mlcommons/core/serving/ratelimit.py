"""A model's ``rate_limiter``: one token bucket for the whole cluster, in Redis.

ML Commons keeps a bucket per node and splits the limit between the nodes the model is deployed
on, so the rate a client sees drifts with the cluster's size; here one bucket in Redis holds for
every API process. The bucket holds at most ``limit`` tokens (at least 1), refills at ``limit``
per ``unit``, and each prediction takes one; an empty bucket answers 429 "Request is throttled at
model level.", ML Commons' words. Redis' own clock times it, so API processes on several hosts
agree.
"""
from __future__ import annotations

from typing import Any

UNIT_SECONDS = {"NANOSECONDS": 1e-9, "MICROSECONDS": 1e-6, "MILLISECONDS": 1e-3, "SECONDS": 1.0, "MINUTES": 60.0,
                "HOURS": 3600.0, "DAYS": 86400.0}
THROTTLED = "Request is throttled at model level."

# KEYS[1] the bucket; ARGV[1] tokens per millisecond, ARGV[2] capacity. Returns 1 taken, 0 empty.
TAKE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1]) or burst
local ts = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local taken = 0
if tokens >= 1 then
  tokens = tokens - 1
  taken = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.min(math.ceil(burst / rate) + 1000, 86400000 * 30))
return taken
"""


def bucket(rate_limiter: Any) -> tuple[float, float] | None:
    """(tokens per millisecond, capacity) for a stored ``rate_limiter``; None when it sets no limit
    (both fields are needed, as in ML Commons)."""
    if not isinstance(rate_limiter, dict):
        return None
    unit = UNIT_SECONDS.get(str(rate_limiter.get("unit") or "").upper())
    try:
        limit = float(rate_limiter.get("limit"))
    except (TypeError, ValueError):
        return None
    if unit is None or not limit >= 0:
        return None
    return limit / (unit * 1000), max(limit, 1.0)
