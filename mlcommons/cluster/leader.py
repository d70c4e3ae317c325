"""A lease in Redis: the holder renews it every round; if it stops, another process takes over
once the lease expires. Exactly one watcher acts at a time."""
from __future__ import annotations

import redis

_ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Lease:
    def __init__(self, client: redis.Redis, key: str, holder: str, ttl_seconds: float):
        self.key = key
        self.holder = holder
        self.ttl_ms = int(ttl_seconds * 1000)
        self._acquire = client.register_script(_ACQUIRE)
        self._release = client.register_script(_RELEASE)

    def hold(self) -> bool:
        """Take the lease if free, renew it if ours; True while we hold it."""
        return bool(self._acquire(keys=[self.key], args=[self.holder, self.ttl_ms]))

    def release(self) -> None:
        self._release(keys=[self.key], args=[self.holder])
