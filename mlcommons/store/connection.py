"""Redis connections: one URL, a synchronous client (workers, rq, control plane) and an asyncio one.

Both retry a command on a broken connection (Redis restarted, say) with a short backoff, so a
restart of Redis costs a pause, not errors.

A ``redis+sentinel://`` URL (mlcommons/store/redis_url.py) gives clients of the primary of a
Redis Sentinel set, through redis-py's own Sentinel support, with the same retries: a command
caught by a failover is retried, and each retry asks the sentinels where the primary is, so it
lands on the promoted replica once they name it (the old primary refuses connections meanwhile,
and the sentinels report no primary while it is down). Measured on loopback with down-after 1 s:
about 2.3 s from the kill to the promotion, commands through 0.2 s later, inside the ~5 s of
backoff. Three additions to redis-py make every long-lived connection follow:

- each reconnect asks the sentinels (:class:`_FollowMaster`; redis-py's reconnects inside a
  command's retries went back to the old address);
- a demoted primary that is still running (a manual failover, a healed partition) is left:
  READONLY (redis-py) and UNBLOCKED (a blocking pop the demotion ended) become reconnects, and a
  pool asks the sentinels again at most once a second (:class:`_RecheckingPool`), since the
  sentinels take up to ten seconds to reconfigure the old primary;
- the sentinels are asked with short time-outs and no retries of their own, so one that is down
  (on the primary's dead machine, say) costs a second, not a backoff.
"""
from __future__ import annotations

import socket
import time

import redis
import redis.asyncio as aioredis
import redis.asyncio.sentinel as asentinel
import redis.sentinel as sentinel
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError, ResponseError, TimeoutError
from redis.retry import Retry

from mlcommons.store.redis_url import SentinelURL, is_sentinel, parse_sentinel_url

RETRIES = 8  # about 4 s of backoff in all: longer than Redis needs to reload its file
SENTINEL_TIMEOUT = 1.0  # seconds to connect to and hear from one sentinel
RECHECK_SECONDS = 1.0  # how often a pool asks the sentinels whether the primary moved
RECHECK_AFTER_FAILURE_SECONDS = 5.0


def _backoff() -> ExponentialBackoff:
    return ExponentialBackoff(cap=1.0, base=0.05)


# A peer that vanished without closing (its machine died, or a network partition) sends no reset:
# a connection waiting on it would wait for the kernel's retransmissions, a quarter of an hour.
# Keep-alive probes after 5 s of silence (3, 2 s apart) and a 15 s limit on unacknowledged data
# end such a connection within seconds; the command's retry then connects again (and, under
# Sentinel, asks where the primary is now).
KEEPALIVE = {socket.TCP_KEEPIDLE: 5, socket.TCP_KEEPINTVL: 2, socket.TCP_KEEPCNT: 3,
             socket.TCP_USER_TIMEOUT: 15_000}
CONNECT_TIMEOUT = 2.0  # a machine that died must not hold a connect for minutes (a SYN's retries)


def _defaults(kw: dict, retry, url: str = "") -> dict:
    kw.setdefault("health_check_interval", 30)
    kw.setdefault("retry", retry)
    kw.setdefault("retry_on_error", [ConnectionError, TimeoutError])
    if not url.startswith("unix:"):
        kw.setdefault("socket_keepalive", True)
        kw.setdefault("socket_keepalive_options", KEEPALIVE)
        kw.setdefault("socket_connect_timeout", CONNECT_TIMEOUT)
    return kw


def _demoted(exc: ResponseError) -> bool:
    """The error a blocked command gets when its server stops being the primary."""
    return str(exc).startswith("UNBLOCKED")


class _FollowMaster(sentinel.SentinelManagedConnection):
    """A connection to the primary that asks the sentinels where it is on every (re)connect.

    redis-py's own asks only when the pool hands out a connection: a command's retry reconnects
    the same connection (``send_packed_command`` -> ``connect_check_health``) to the address it
    had, so a blocking pop or a long retry kept knocking at the dead primary until its retries
    ran out (measured: a BLMOVE failed 2 s into a failover while the writes around it went
    through). Here every connect looks the primary up, tries it once, and leaves the retrying to
    the command, whose next attempt asks again. A demotion ends a blocked command with
    UNBLOCKED: that is a broken connection too, as redis-py already treats READONLY."""

    def _connect_retry(self):
        if self._sock or not self.connection_pool.is_master:
            return super()._connect_retry()
        self.connect_check_health(check_health=self.connection_pool.check_connection, retry_socket_connect=False)

    def connect_check_health(self, check_health: bool = True, retry_socket_connect: bool = True):
        if self._sock:
            return
        if self.connection_pool.is_master:
            self.host, self.port = self.connection_pool.get_master_address()
            retry_socket_connect = False
        super().connect_check_health(check_health=check_health, retry_socket_connect=retry_socket_connect)

    def read_response(self, *args, disconnect_on_error: bool = True, **kwargs):
        # True, as for any other connection: redis-py's Sentinel connection defaults to False, so a
        # read interrupted by a signal (rq's warm shutdown raises in a blocked BLMOVE) left the
        # connection in the pool with the pop still pending, and the next command read its reply.
        try:
            return super().read_response(*args, disconnect_on_error=disconnect_on_error, **kwargs)
        except ResponseError as exc:
            if self.connection_pool.is_master and _demoted(exc):
                self.disconnect()
                raise ConnectionError(f"the primary was demoted: {exc}") from exc
            raise


class _AsyncFollowMaster(asentinel.SentinelManagedConnection):
    """:class:`_FollowMaster` for the asyncio client."""

    async def _connect_retry(self):
        if self.is_connected or not self.connection_pool.is_master:
            return await super()._connect_retry()
        await self.connect_check_health(check_health=self.connection_pool.check_connection,
                                        retry_socket_connect=False)

    async def connect_check_health(self, check_health: bool = True, retry_socket_connect: bool = True):
        if self.is_connected:
            return
        if self.connection_pool.is_master:
            self.host, self.port = await self.connection_pool.get_master_address()
            retry_socket_connect = False
        await super().connect_check_health(check_health=check_health, retry_socket_connect=retry_socket_connect)

    async def read_response(self, *args, **kwargs):
        try:
            return await super().read_response(*args, **kwargs)
        except ResponseError as exc:
            if self.connection_pool.is_master and _demoted(exc):
                await self.disconnect()
                raise ConnectionError(f"the primary was demoted: {exc}") from exc
            raise


class _RecheckingPool(sentinel.SentinelConnectionPool):
    """A pool of connections to the primary that asks the sentinels again, at most once a
    second, when it hands out a connection. A primary that was demoted alive (a manual failover,
    a partition that healed) answers writes until the sentinels reconfigure it, which takes them
    up to ten seconds, and all that time's writes are lost when it resyncs from the new primary.
    Once the answer changes, redis-py closes the idle connections and drops the busy ones as
    they come back. A failed look costs a connect time-out per dead sentinel, so after one the
    next waits longer."""

    _next_check = 0.0

    def get_connection(self, *args, **kwargs):
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + RECHECK_SECONDS
            try:
                self.get_master_address()
            except ConnectionError:  # no sentinel answered, or the primary is down: the connect will say
                self._next_check = now + RECHECK_AFTER_FAILURE_SECONDS
        return super().get_connection(*args, **kwargs)


class _AsyncRecheckingPool(asentinel.SentinelConnectionPool):
    """:class:`_RecheckingPool` for the asyncio client."""

    _next_check = 0.0

    async def get_connection(self, *args, **kwargs):
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + RECHECK_SECONDS
            try:
                await self.get_master_address()
            except ConnectionError:
                self._next_check = now + RECHECK_AFTER_FAILURE_SECONDS
        return await super().get_connection(*args, **kwargs)


def _sentinel_kwargs(spec: SentinelURL, retry) -> dict:
    return {"socket_connect_timeout": SENTINEL_TIMEOUT, "socket_timeout": SENTINEL_TIMEOUT, "retry": retry,
            **spec.sentinel_auth()}


def _node_kwargs(spec: SentinelURL, kw: dict) -> dict:
    return {**spec.node_kwargs(), **kw}


def sync_client(url: str, **kw) -> redis.Redis:
    """A client of ``url``'s Redis (of its primary, for a Sentinel URL); ``kw`` as redis-py's."""
    _defaults(kw, Retry(_backoff(), RETRIES), url)
    if not is_sentinel(url):
        return redis.Redis.from_url(url, **kw)
    spec = parse_sentinel_url(url)
    manager = sentinel.Sentinel(spec.sentinels, sentinel_kwargs=_sentinel_kwargs(spec, Retry(NoBackoff(), 0)))
    return manager.master_for(spec.master, connection_pool_class=_RecheckingPool, connection_class=_FollowMaster,
                              **_node_kwargs(spec, kw))


def async_client(url: str, **kw) -> aioredis.Redis:
    """:func:`sync_client` for asyncio."""
    _defaults(kw, AsyncRetry(_backoff(), RETRIES), url)
    if not is_sentinel(url):
        return aioredis.Redis.from_url(url, **kw)
    spec = parse_sentinel_url(url)
    manager = asentinel.Sentinel(spec.sentinels,
                                 sentinel_kwargs=_sentinel_kwargs(spec, AsyncRetry(NoBackoff(), 0)))
    return manager.master_for(spec.master, connection_pool_class=_AsyncRecheckingPool,
                              connection_class=_AsyncFollowMaster, **_node_kwargs(spec, kw))


# --- the start-up check ----------------------------------------------------------------------

class SentinelProblem(ConnectionError):
    """The sentinels cannot name a primary: none answered, or none monitors the master name.
    ``lasting``: a mistake in the URL or the sentinels' configuration, not worth waiting out."""

    def __init__(self, message: str, lasting: bool = False):
        super().__init__(message)
        self.lasting = lasting


def probe(url: str, timeout: float = 2.0) -> None:
    """PING the Redis that ``url`` names, once, raising what went wrong. For a Sentinel URL the
    sentinels are asked first, and a :class:`SentinelProblem` says which of them said what."""
    if is_sentinel(url):
        spec = parse_sentinel_url(url)
        host, port = master_address(spec, timeout)
        client = redis.Redis(host=host, port=port, socket_connect_timeout=timeout, socket_timeout=timeout,
                             retry=Retry(NoBackoff(), 0), **spec.node_kwargs())
    else:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        client.ping()
    finally:
        client.close()


def master_address(spec: SentinelURL, timeout: float = 2.0) -> tuple[str, int]:
    """Where the sentinels say the primary ``spec.master`` is; a :class:`SentinelProblem` naming
    what each sentinel answered if none can say."""
    heard: list[str] = []
    monitored: set[str] = set()
    settled = True  # every sentinel answered, and none knows the name: waiting will not help
    for host, port in spec.sentinels:
        where = f"sentinel {host}:{port}"
        client = redis.Redis(host=host, port=port, socket_connect_timeout=timeout, socket_timeout=timeout,
                             retry=Retry(NoBackoff(), 0), **spec.sentinel_auth())
        try:
            masters = client.sentinel_masters()
        except redis.exceptions.AuthenticationError as exc:
            heard.append(f"{where}: authentication failed ({exc}; its password is the URL's sentinel_password=)")
            continue
        except (redis.exceptions.RedisError, OSError) as exc:
            heard.append(f"{where}: {exc or type(exc).__name__}")
            settled = False
            continue
        finally:
            client.close()
        state = masters.get(spec.master)
        if state is None:
            monitored.update(masters)
            heard.append(f"{where}: no master named {spec.master!r}")
        elif state["is_sdown"] or state["is_odown"] or not state["is_master"]:
            heard.append(f"{where}: master {spec.master!r} is down (a failover may be under way)")
            settled = False
        else:
            return state["ip"], int(state["port"])
    if settled and monitored:
        names = ", ".join(sorted(repr(name) for name in monitored))
        raise SentinelProblem(f"no sentinel monitors a master named {spec.master!r} (they monitor {names})",
                              lasting=True)
    raise SentinelProblem(f"no sentinel named the primary {spec.master!r}: " + "; ".join(heard), lasting=settled)
