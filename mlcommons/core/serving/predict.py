"""The API side of the data plane: admit a request to a deployment's queue and await its reply.

One reader task per API process drains the process's reply list and resolves the waiting
futures, so a request costs one script call to enqueue and a share of one pop to be answered.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from mlcommons.core.serving import dataplane as dp
from mlcommons.core.serving import timing
from mlcommons.errors import MLError, RequestTimeout, TooManyRequests
from mlcommons.ids import new_id
from mlcommons.metrics.context import note_model
from mlcommons.store.keys import Keys

log = logging.getLogger(__name__)


# Elasticsearch's words for a full deployment queue.
QUEUE_FULL = "inference process queue is full. Unable to execute command"


class NoRoute(Exception):
    """Nobody serves the deployment (never deployed, undeployed, or no worker left)."""

    def __init__(self, deployed_before: bool):
        super().__init__()
        self.deployed_before = deployed_before


@dataclass(frozen=True)
class Embeddings:
    vectors: np.ndarray  # float32 (n, dim)


def _expire(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_exception(asyncio.TimeoutError())


class PredictClient:
    def __init__(self, client: aioredis.Redis, reader: aioredis.Redis, keys: Keys,
                 queue_capacity: Callable[[], int]):
        """``queue_capacity()``: the current capacity of a deployment queue that has none of its own."""
        self.client = client
        self.queue_capacity = queue_capacity
        self.reader_client = reader
        self.keys = keys
        self.instance_id = new_id()
        self.reply_key = keys.replies(self.instance_id)
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._admit = client.register_script(dp.ADMIT_SCRIPT)
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._read_replies(), name="predict-replies")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for fut in self._pending.values():
            if not fut.done():
                fut.cancel()
        await self.client.delete(self.reply_key)

    async def embed(self, deployment_id: str, texts: list[str], timeout: float, *, priority: bool = False) -> Embeddings:
        reply = await self._call(deployment_id, dp.OP_TEXT_EMBEDDING, texts, timeout, priority)
        return Embeddings(np.frombuffer(reply.data, dtype=np.float32).reshape(reply.rows, reply.dim))

    async def similarity(self, deployment_id: str, query: str, texts: list[str], timeout: float, *,
                         priority: bool = False) -> np.ndarray:
        """A cross-encoder's score for each (query, text) pair."""
        reply = await self._call(deployment_id, dp.OP_TEXT_SIMILARITY, [query, texts], timeout, priority)
        return np.frombuffer(reply.data, dtype=np.float32).reshape(reply.rows)

    async def sparse(self, deployment_id: str, texts: list[str], timeout: float, *,
                     priority: bool = False) -> list[dict[str, float]]:
        """A {token: weight} map for each text (sparse encoding or tokenizing models)."""
        reply = await self._call(deployment_id, dp.OP_SPARSE, texts, timeout, priority)
        return reply.maps

    async def remote(self, deployment_id: str, parameters: dict | None, texts: list[str] | None, timeout: float,
                     *, query: str | None = None, priority: bool = False) -> bytes:
        """A remote model's reply, as JSON the client reads (``inference_results``)."""
        payload = {"parameters": parameters, "text_docs": texts}
        if query is not None:
            payload["query_text"] = query
        reply = await self._call(deployment_id, dp.OP_REMOTE, payload, timeout, priority)
        return reply.body

    async def _call(self, deployment_id: str, op: str, payload, timeout: float, priority: bool = False) -> dp.Reply:
        note_model(deployment_id)  # the request's prediction metrics are this unit's
        request_id = next(self._ids)
        deadline_ms = int((time.time() + timeout) * 1000)
        traced = timing.active()
        packed = dp.encode(dp.Request(request_id, self.reply_key, deadline_ms, op, payload,
                                      {"trace": 1} if traced else None))
        fut = asyncio.get_running_loop().create_future()
        self._pending[request_id] = fut
        try:
            if traced:
                timing.mark("admit")
            admitted = await self._admit(keys=[self.keys.route(deployment_id),
                                               self.keys.predict_queue(deployment_id)],
                                         args=[packed, "1" if priority else "0", self.queue_capacity()])
            if traced:
                timing.mark("admitted")
            if admitted == 0:
                raise NoRoute(False)
            if admitted == -1:
                raise NoRoute(True)
            if admitted == -2:
                raise TooManyRequests(QUEUE_FULL)
            # The future itself, with a timer: the reply reader's set_result wakes this handler on
            # the loop's next pass (asyncio.wait_for takes two, and a callback between).
            expiry = asyncio.get_running_loop().call_later(timeout, _expire, fut)
            try:
                reply = await fut
            except asyncio.TimeoutError:
                raise RequestTimeout(f"Timed out after [{timeout}s] waiting for the prediction of "
                                     f"[{deployment_id}]") from None
            finally:
                expiry.cancel()
        finally:
            self._pending.pop(request_id, None)
        if traced:
            replied = timing.now_us()
            timing.worker_marks(getattr(reply, "trace", None))
            timing.mark("replied", replied)
        if reply.status != dp.OK:
            raise MLError(reply.message, status=int(reply.code))
        return reply

    def _resolve(self, raw: bytes) -> None:
        reply = dp.decode_reply(raw)
        fut = self._pending.get(reply.request_id)
        if fut is not None and not fut.done():
            fut.set_result(reply)

    async def _read_replies(self) -> None:
        while True:
            try:
                first = await self.reader_client.blpop([self.reply_key], timeout=1)
                if first is None:
                    continue
                self._resolve(first[1])
                # Let the request just answered go on first, then drain what else arrived meanwhile
                # in one round trip.
                await asyncio.sleep(0)
                for raw in await self.reader_client.lpop(self.reply_key, 1024) or ():
                    self._resolve(raw)
            except asyncio.CancelledError:
                raise
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                log.warning("reply reader: Redis unavailable (%s); retrying", exc)
                await asyncio.sleep(0.5)
            except Exception:
                log.exception("reply reader error")
                await asyncio.sleep(0.1)
