"""Build and run the API application."""
from __future__ import annotations

import asyncio
import logging
import signal
import socket
from typing import Callable

from aiohttp import web

from mlcommons.api import audit, authz, cluster, middlewares, security
from mlcommons.api.connections import Runner
from mlcommons.api.hosts import HostPolicy
from mlcommons.api.http import ELASTICSEARCH, NODE_NAME, OPENAI, OPENSEARCH, SERVICES, WATCHER, add_routes
from mlcommons.api.services import Services
from mlcommons.cluster import dead_nodes
from mlcommons.cluster.watcher import Watcher
from mlcommons.core.context import Context
from mlcommons.elasticsearch import handlers as elasticsearch
from mlcommons.elasticsearch.service import ElasticsearchService
from mlcommons.metrics import handlers as metrics_api
from mlcommons.metrics import logs
from mlcommons.metrics.service import MetricsService
from mlcommons.openai import handlers as openai_api
from mlcommons.openai.service import OpenAIService
from mlcommons.openapi import handlers as openapi_description
from mlcommons.opensearch import handlers as opensearch
from mlcommons.opensearch.service import OpenSearchService
from mlcommons.ui import handlers as ui

log = logging.getLogger(__name__)


def create_app(ctx: Context, *, bind_host: str = "127.0.0.1", node_name: str | None = None,
               watcher: bool = True) -> web.Application:
    """The API; ``bind_host`` (the address it listens on) decides which Host names it answers."""
    hosts = HostPolicy(bind_host, ctx.settings.get("mlcommons.http.allowed_hosts"))
    services = Services(ctx)
    metrics = MetricsService(services)
    chain = [middlewares.observe(metrics.recorder, ctx.settings), middlewares.errors,
             middlewares.host_and_origin(hosts)]
    if ctx.settings.get("mlcommons.predict.trace_timings"):
        chain.append(middlewares.timings)
    if ctx.settings.get("mlcommons.security.enabled"):
        audit.configure(ctx.settings.get("mlcommons.security.audit_log"))
        chain.append(authz.middleware(services, authz.CredentialCache()))
    app = web.Application(middlewares=chain, client_max_size=ctx.settings.get("mlcommons.http.max_content_length"))
    app[SERVICES] = services
    app[metrics_api.METRICS] = metrics
    app[OPENSEARCH] = OpenSearchService(app[SERVICES])
    app[ELASTICSEARCH] = ElasticsearchService(app[SERVICES])
    app[OPENAI] = OpenAIService(app[SERVICES], app[OPENSEARCH])
    app[NODE_NAME] = node_name or f"{socket.gethostname()}-api"
    add_routes(app, cluster.ROUTES)
    add_routes(app, security.ROUTES)
    opensearch.setup(app)
    elasticsearch.setup(app)
    add_routes(app, openai_api.ROUTES)
    add_routes(app, metrics_api.ROUTES)
    add_routes(app, openapi_description.ROUTES)
    add_routes(app, ui.ROUTES)

    async def on_startup(app: web.Application) -> None:
        await app[SERVICES].start()
        await app[metrics_api.METRICS].start()
        # Before the port opens: nodes with no live heartbeat are gone, so that nothing this
        # process reports claims them (the watcher would see it too, a round later).
        await app[SERVICES].run(dead_nodes.step, app[SERVICES].ctx)
        if watcher:
            # The watcher has its own connections: its rounds never wait on the API's.
            app[WATCHER] = Watcher(Context.connect(ctx.redis_url, static=ctx.settings.static))
            app[WATCHER].start()

    async def on_cleanup(app: web.Application) -> None:
        if WATCHER in app:
            await asyncio.get_running_loop().run_in_executor(None, app[WATCHER].stop)
            app[WATCHER].ctx.close()
        await app[metrics_api.METRICS].close()  # its last flush, while Redis is still reachable
        await app[SERVICES].close()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


async def serve(ctx: Context, host: str, port: int, *, ready: asyncio.Event | None = None,
                stop: asyncio.Event | None = None, ssl_context=None, reuse_port: bool = False,
                on_listening: Callable[[], None] | None = None) -> None:
    """Run the API until ``stop`` is set (or SIGINT/SIGTERM when no event is given)."""
    app = create_app(ctx, bind_host=host)
    logs.set_node(app[NODE_NAME])  # in this process's JSON log lines
    runner = Runner(app, access_log=None, handle_signals=False,
                    keepalive_timeout=ctx.settings.get("mlcommons.http.keepalive_timeout_seconds"),
                    read_timeout=ctx.settings.get("mlcommons.http.read_timeout_seconds"))
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True, reuse_port=reuse_port or None,
                       ssl_context=ssl_context)
    await site.start()
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    if on_listening is not None:
        on_listening()
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
