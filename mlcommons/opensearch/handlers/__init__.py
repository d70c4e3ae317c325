"""The OpenSearch ML Commons dialect, under /_plugins/_ml."""
from __future__ import annotations

from aiohttp import web

from mlcommons.api.http import add_routes
from mlcommons.opensearch.handlers import connectors, model_groups, models, predict, profile, tasks

BASE = "/_plugins/_ml"


def setup(app: web.Application) -> None:
    for module in (connectors, model_groups, models, predict, profile, tasks):
        add_routes(app, [(method, BASE + path, handler) for method, path, handler in module.ROUTES])
