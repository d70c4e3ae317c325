"""GET /_prometheus/metrics (the path of OpenSearch's Prometheus exporter plugin): the whole
cluster's metrics in Prometheus' text format (docs/metrics.md)."""
from __future__ import annotations

from aiohttp import web

from mlcommons.metrics.service import MetricsService

METRICS = web.AppKey("metrics", MetricsService)
PATH = "/_prometheus/metrics"


async def metrics(request: web.Request) -> web.Response:
    body, content_type = await request.app[METRICS].exposition()
    return web.Response(body=body, headers={"Content-Type": content_type})


ROUTES = [("GET", PATH, metrics)]
