"""The facade's shared part: the core context, the Redis clients, the predict client, the serving
events and the thread pool that runs the synchronous core (the hot prediction path stays on the
loop). The two dialects' facades (``opensearch/service.py``, ``elasticsearch/service.py``) build
on it; handlers call those and never this module's clients."""
from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

import orjson
import redis.asyncio as aioredis

from mlcommons.api.events import ServingEvents
from mlcommons.core import nodes
from mlcommons.core.context import Context
from mlcommons.core.serving import deploy as deploys
from mlcommons.core.serving import ratelimit
from mlcommons.core.serving import spec as serving_spec
from mlcommons.core.serving.predict import NoRoute, PredictClient
from mlcommons.core.tasks import records as tasks
from mlcommons.core.tasks import replies
from mlcommons.elasticsearch import deployments
from mlcommons.elasticsearch.deployments import is_asleep
from mlcommons.errors import NotFound, RequestTimeout, ServiceUnavailable, TooManyRequests
from mlcommons.ids import new_id
from mlcommons.metrics.context import note_model
from mlcommons.store import keys as K
from mlcommons.store.connection import async_client
from mlcommons.types import TaskState

log = logging.getLogger(__name__)
T = TypeVar("T")


class ModelInfoCache:
    """The few model fields the prediction path needs, kept for a second at most. ``asleep``: an
    Elasticsearch deployment of the model scaled to zero by adaptive allocations (read in the same
    round trip), which a prediction must wake."""

    def __init__(self, client: aioredis.Redis, keys, ttl: float = 1.0):
        self.client = client
        self.keys = keys
        self.ttl = ttl
        self._cache: dict[str, tuple[float, dict[str, Any] | None]] = {}

    async def get(self, model_id: str) -> dict[str, Any] | None:
        hit = self._cache.get(model_id)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        raw = await self.client.hmget(self.keys.doc(K.MODEL, model_id), "algorithm", "is_enabled", "model_state",
                                      serving_spec.FIELD, "rate_limiter")
        info = None if raw[0] is None else {
            "algorithm": orjson.loads(raw[0]),
            "is_enabled": True if raw[1] is None else orjson.loads(raw[1]),
            "model_state": orjson.loads(raw[2]) if raw[2] else None,
            "asleep": raw[3] is not None and is_asleep({serving_spec.FIELD: orjson.loads(raw[3])}),
            "bucket": ratelimit.bucket(orjson.loads(raw[4])) if raw[4] else None,
        }
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[model_id] = (now, info)
        return info

    def forget(self, model_id: str) -> None:
        self._cache.pop(model_id, None)


class Services:
    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.keys = ctx.keys
        self.settings = ctx.settings
        self.aredis = async_client(ctx.redis_url)
        self._reader = async_client(ctx.redis_url)
        self.predict = PredictClient(self.aredis, self._reader, ctx.keys,
                                     functools.partial(ctx.settings.get, "mlcommons.predict.queue_capacity"))
        self.models = ModelInfoCache(self.aredis, ctx.keys)
        self.events = ServingEvents(self.aredis, ctx.keys.serving_events())
        self._rate = self.aredis.register_script(ratelimit.TAKE_SCRIPT)
        self.executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="control")
        self._refresher: asyncio.Task | None = None
        self.security_epoch: bytes | None = None  # moves with every change of users and API keys

    async def start(self) -> None:
        await self.refresh_settings()
        await self.predict.start()
        await self.events.start()
        self._refresher = asyncio.create_task(self._refresh_loop(), name="settings-refresh")

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
        await self.predict.close()
        await self.events.close()
        await self.aredis.aclose()
        await self._reader.aclose()
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.ctx.close()

    async def run(self, fn: Callable[..., T], *args, **kwargs) -> T:
        """Run a synchronous core call off the event loop."""
        loop = asyncio.get_running_loop()
        # in a copy of the request's context: the core sees who asks (core/security/access.py)
        return await loop.run_in_executor(self.executor, contextvars.copy_context().run,
                                          functools.partial(fn, *args, **kwargs))

    async def call(self, fn: Callable[..., T], *args, **kwargs) -> T:
        """Run a synchronous core function, given the context first, off the event loop."""
        return await self.run(fn, self.ctx, *args, **kwargs)

    async def refresh_settings(self) -> None:
        """Read the cluster settings now, both scopes in one round trip. A read that began before
        the newest one applied (the periodic refresh racing a ``PUT /_cluster/settings``) is dropped."""
        started = time.monotonic()
        async with self.aredis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.settings("persistent"))
            pipe.hgetall(self.keys.settings("transient"))
            pipe.get(self.keys.security_epoch())
            persistent, transient, self.security_epoch = await pipe.execute()
        self.settings.apply_overrides(persistent, transient, read_at=started)

    async def update_settings(self, updates: dict[str, dict[str, Any]]) -> None:
        """Write checked cluster settings (scope -> name -> value, None to reset) in one
        transaction, and apply them in this process at once."""
        pipe = self.aredis.pipeline(transaction=True)
        for scope, values in updates.items():
            key = self.keys.settings(scope)
            sets = {name: orjson.dumps(value) for name, value in values.items() if value is not None}
            resets = [name for name, value in values.items() if value is None]
            if sets:
                pipe.hset(key, mapping=sets)
            if resets:
                pipe.hdel(key, *resets)
        await pipe.execute()
        await self.refresh_settings()

    async def infer(self, unit_id: str, kind: str, texts: list[str] | None, *, query: str | None = None,
                    parameters: dict | None = None,
                    timeout: float | None = None, priority: bool = False, asleep: bool = False,
                    auto_deploy: bool = False):
        """One prediction on ``unit_id`` (``kind``: embed, sparse or similarity, the last with
        ``query``), on the event loop. ``asleep``: the deployment was scaled to zero and is given
        one allocation first (the request waits in the queue meanwhile). ``auto_deploy``: a model
        nobody serves is deployed and the request waits for it, within the same time-out
        (``mlcommons.predict.timeout_seconds`` unless given); otherwise ``NoRoute`` is raised."""
        if timeout is None:
            timeout = self.settings.get("mlcommons.predict.timeout_seconds")
        deadline = time.monotonic() + timeout
        if asleep:
            await self.run(deployments.wake, self.ctx, unit_id)
            self.models.forget(unit_id)
        if kind == "embed":
            call = lambda t: self.predict.embed(unit_id, texts, t, priority=priority)  # noqa: E731
        elif kind == "sparse":
            call = lambda t: self.predict.sparse(unit_id, texts, t, priority=priority)  # noqa: E731
        elif kind == "similarity":
            call = lambda t: self.predict.similarity(unit_id, query, texts, t, priority=priority)  # noqa: E731
        elif kind == "remote":  # a remote model: the call's parameters and text_docs go to its node
            call = lambda t: self.predict.remote(unit_id, parameters, texts, t, query=query,  # noqa: E731
                                                 priority=priority)
        else:
            raise ValueError(f"unknown prediction kind {kind!r}")
        try:
            return await call(timeout)
        except NoRoute as exc:
            if not auto_deploy:
                raise
            served_before = exc.deployed_before
        # Auto-deploy on the first predict: deploy a model nobody serves and wait until it serves.
        while True:
            try:
                task_id = await self.run(deploys.auto_deploy, self.ctx, unit_id)
                break
            except ServiceUnavailable:
                # A model that was served and whose nodes are all away (a whole-cluster restart:
                # the API is back before the workers): wait for them, and for auto-redeploy, within
                # the request's time-out, rather than fail it.
                if not served_before or time.monotonic() >= deadline:
                    raise
                if await self.serving_nodes(unit_id) > 0:
                    return await call(max(0.01, deadline - time.monotonic()))
                await asyncio.sleep(min(0.25, max(0.0, deadline - time.monotonic())))
        await self.wait_serving(unit_id, task_id, deadline)
        return await call(max(0.01, deadline - time.monotonic()))

    async def live_nodes(self) -> dict[str, dict[str, Any]]:
        """The worker nodes with a live heartbeat, and what each reports."""
        return await self.run(nodes.live_nodes, self.ctx)

    async def wait_serving(self, unit_id: str, task_id: str, deadline: float) -> None:
        """Wait until a node serves ``unit_id``, which deploy task ``task_id`` is deploying: woken
        by the unit's serving events (not polling), until ``deadline`` (a monotonic time) or
        ``mlcommons.predict.auto_deploy_wait_seconds`` from now, whichever comes first."""
        wait_until = min(deadline, time.monotonic() + self.settings.get("mlcommons.predict.auto_deploy_wait_seconds"))
        async with self.events.watch(unit_id) as watch:
            while True:
                if await self.serving_nodes(unit_id) > 0:
                    return
                task = await self.run(tasks.get, self.ctx, task_id)
                if TaskState(task["state"]).terminal and await self.serving_nodes(unit_id) == 0:
                    raise ServiceUnavailable(f"Model [{unit_id}] could not be deployed for this prediction: "
                                             f"{task.get('error') or task['state']}")
                remaining = wait_until - time.monotonic()
                if remaining <= 0:
                    raise RequestTimeout(f"Model [{unit_id}] was still deploying (task [{task_id}]) when the "
                                         "prediction timed out")
                await watch.changed(min(remaining, self.events.fallback))

    async def serving_nodes(self, unit_id: str) -> int:
        """How many nodes serve a deployment now (its route's count)."""
        return int(await self.aredis.hget(self.keys.route(unit_id), "workers") or 0)

    async def has_pending_work(self, unit_id: str) -> bool:
        """Whether a deployment's queue, or any node's in-flight list of it, holds a request."""
        if await self.aredis.llen(self.keys.predict_queue(unit_id)):
            return True
        async for key in self.aredis.scan_iter(match=self.keys.deployment_inflight_pattern(unit_id)):
            if await self.aredis.llen(key):
                return True
        return False

    async def cluster_uuid(self) -> str:
        """The cluster's id: made once, by whichever API process is asked first."""
        key = self.keys.cluster_uuid()
        await self.aredis.set(key, new_id(), nx=True)
        return (await self.aredis.get(key)).decode()

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                await self.refresh_settings()
            except Exception as exc:  # Redis away for a moment
                log.warning("settings refresh failed: %s", exc)

    async def model_info(self, model_id: str) -> dict[str, Any]:
        info = await self.models.get(model_id)
        if info is None:
            raise NotFound(f"Failed to find model with the provided model id: {model_id}")
        return info

    async def take_token(self, model_id: str, bucket: tuple[float, float]) -> None:
        """One prediction's token from the model's cluster-wide bucket; 429 when it is empty."""
        note_model(model_id)  # a throttled request counts among that model's 429s
        if not await self._rate(keys=[self.keys.rate_limit(model_id)], args=[repr(bucket[0]), repr(bucket[1])]):
            raise TooManyRequests(ratelimit.THROTTLED)

    async def wait_job_replies(self, request_id: str, count: int, timeout: float) -> dict[str, dict]:
        """Collect ``count`` replies that rq jobs push for ``request_id`` (node id -> reply)."""
        return await replies.collect_async(self.aredis, self.keys.job_reply(request_id), count, timeout)
