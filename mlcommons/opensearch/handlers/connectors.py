"""/_plugins/_ml/connectors: create, get, update, delete and search ML Commons connectors."""
from __future__ import annotations

from aiohttp import web

from mlcommons.api.http import OPENSEARCH, read_json, respond
from mlcommons.errors import NotFound
from mlcommons.opensearch.responses import connector_written, public_connector


async def create(request: web.Request) -> web.Response:
    body = await read_json(request, required=True)
    return respond({"connector_id": await request.app[OPENSEARCH].create_connector(body)})


async def get(request: web.Request) -> web.Response:
    return respond(public_connector(await request.app[OPENSEARCH].connector(request.match_info["connector_id"])))


async def search(request: web.Request) -> web.Response:
    body = await read_json(request)
    return respond(await request.app[OPENSEARCH].search_connectors(body))


async def update(request: web.Request) -> web.Response:
    body = await read_json(request) or {}
    connector_id = request.match_info["connector_id"]
    version = await request.app[OPENSEARCH].update_connector(connector_id, body)
    return respond(connector_written(connector_id, "updated", version))


async def delete(request: web.Request) -> web.Response:
    connector_id = request.match_info["connector_id"]
    version = await request.app[OPENSEARCH].delete_connector(connector_id)
    if version is None:  # ML Commons looks the connector up first: a 404 error, not a delete result
        raise NotFound(f"Failed to find connector with the provided connector id: {connector_id}")
    return respond(connector_written(connector_id, "deleted", version))


ROUTES = [
    ("POST", "/connectors/_create", create),
    ("GET", "/connectors/_search", search),
    ("POST", "/connectors/_search", search),
    ("GET", "/connectors/{connector_id}", get),
    ("PUT", "/connectors/{connector_id}", update),
    ("DELETE", "/connectors/{connector_id}", delete),
]
