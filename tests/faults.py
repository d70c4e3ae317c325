"""A small fault-injecting HTTP proxy of ours, placed between a remote model and a real provider
only to produce the faults a provider produces: a status (with or without Retry-After), a slow
reply, a reset connection. Everything else it forwards unchanged. It runs its own event loop in a
thread and records when each request arrived and how many were in flight at once."""
from __future__ import annotations

import asyncio
import threading
import time

import aiohttp
from aiohttp import web

from mlcommons.stack.procutil import free_port


class FaultProxy:
    def __init__(self, target: str):
        self.target = target.rstrip("/")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # consumed one per request: "429", "429:0.3" (Retry-After), "slow:2", "reset", or "answer:<json>"
        # (a provider's reply given by the proxy itself, for a request the provider would refuse)
        self.faults: list[str] = []
        self.seen: list[tuple[dict[str, str], bytes]] = []  # each request's headers and body
        self.arrivals: list[float] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="fault-proxy")
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("the fault proxy did not start")

    def plan(self, *faults: str) -> None:
        with self._lock:
            self.faults = list(faults)
            self.arrivals = []
            self.seen = []
            self.most_in_flight = 0

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._session = aiohttp.ClientSession(loop=self._loop)
        self._runner = runner
        self._started.set()
        self._loop.run_forever()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            self.arrivals.append(time.monotonic())
            fault = self.faults.pop(0) if self.faults else None
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            body = await request.read()
            with self._lock:
                self.seen.append((dict(request.headers), body))
            if fault and fault.startswith("answer:"):
                return web.Response(body=fault.split(":", 1)[1], content_type="application/json")
            if fault == "reset":
                request.transport.abort()
                return web.Response(status=500)
            if fault and fault.startswith("slow:"):
                await asyncio.sleep(float(fault.split(":", 1)[1]))
            elif fault:
                status, _, retry_after = fault.partition(":")
                headers = {"Retry-After": retry_after} if retry_after else {}
                return web.json_response({"error": f"injected {status}"}, status=int(status), headers=headers)
            headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type")}
            async with self._session.request(request.method, self.target + request.path_qs, data=body,
                                             headers=headers) as upstream:
                data = await upstream.read()
                return web.Response(body=data, status=upstream.status,
                                    content_type=upstream.content_type or "application/json")
        finally:
            with self._lock:
                self.in_flight -= 1

    def stop(self) -> None:
        async def close():
            await self._session.close()
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
