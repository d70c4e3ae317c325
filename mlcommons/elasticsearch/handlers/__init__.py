"""The Elasticsearch dialect: trained models, their deployments and _infer under /_ml, with the
protocol details elasticsearch-py relies on (mlcommons/elasticsearch/protocol.py)."""
from __future__ import annotations

from aiohttp import web

from mlcommons.api.http import add_routes
from mlcommons.elasticsearch import protocol
from mlcommons.elasticsearch.handlers import deployments, infer, inference, trained_models


def setup(app: web.Application) -> None:
    app.on_response_prepare.append(protocol.on_response_prepare)
    for module in (trained_models, deployments, infer, inference):
        add_routes(app, module.ROUTES)
