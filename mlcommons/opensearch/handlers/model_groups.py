"""/_plugins/_ml/model_groups: register, get, search, update, delete."""
from __future__ import annotations

from aiohttp import web

from mlcommons.api.http import OPENSEARCH, read_json, respond
from mlcommons.opensearch.responses import group_deleted, public_group


def _os(request: web.Request):
    return request.app[OPENSEARCH]


async def register(request: web.Request) -> web.Response:
    body = await read_json(request, required=True)
    return respond(await _os(request).register_group(body))


async def get(request: web.Request) -> web.Response:
    return respond(public_group(await _os(request).group(request.match_info["group_id"])))


async def search(request: web.Request) -> web.Response:
    body = await read_json(request)
    return respond(await _os(request).search_groups(body))


async def update(request: web.Request) -> web.Response:
    body = await read_json(request, required=True)
    return respond(await _os(request).update_group(request.match_info["group_id"], body))


async def delete(request: web.Request) -> web.Response:
    group_id = request.match_info["group_id"]
    await _os(request).delete_group(group_id)
    return respond(group_deleted(group_id))


ROUTES = [
    ("POST", "/model_groups/_register", register),
    ("GET", "/model_groups/_search", search),
    ("POST", "/model_groups/_search", search),
    ("GET", "/model_groups/{group_id}", get),
    ("PUT", "/model_groups/{group_id}", update),
    ("DELETE", "/model_groups/{group_id}", delete),
]
