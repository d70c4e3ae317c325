"""The metrics facade the HTTP handler calls: it owns this API process's request recorder and
its flush loop, and runs the scrape (synchronous Redis reads) on the API's thread pool."""
from __future__ import annotations

import asyncio
import contextlib

from mlcommons.metrics import scrape
from mlcommons.metrics.recorder import Recorder


class MetricsService:
    def __init__(self, services, flush_interval: float = 1.0):
        """``services``: the API's shared facade (mlcommons/api/services.py), for its Redis
        client, keys and thread pool."""
        self._svc = services
        self.recorder = Recorder()
        self.flush_interval = flush_interval
        self._flusher: asyncio.Task | None = None

    async def start(self) -> None:
        self._flusher = asyncio.create_task(
            self.recorder.run(self._svc.aredis, self._svc.keys, self.flush_interval), name="metrics-flush")

    async def close(self) -> None:
        """Stop flushing, after a last flush (before the Redis clients close)."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None

    async def exposition(self) -> tuple[bytes, str]:
        """The cluster's metrics and their content type. This process's counts are flushed first,
        so they are current; the other processes' are at most a flush interval old."""
        try:
            await self.recorder.flush(self._svc.aredis, self._svc.keys)
        except Exception:  # counted again at the next flush; the scrape says what Redis says
            pass
        return await self._svc.call(scrape.exposition), scrape.CONTENT_TYPE
