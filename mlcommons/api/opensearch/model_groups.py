"""/_plugins/_ml/model_groups: register, get, search, update, delete."""
from __future__ import annotations

from aiohttp import web

from mlcommons.api.http import read_json, respond
from mlcommons.core import model_groups


def _svc(request: web.Request):
    return request.app["svc"]


async def register(request: web.Request) -> web.Response:
    body = await read_json(request, required=True)
    svc = _svc(request)
    return respond(await svc.run(model_groups.register, svc.ctx, body))


async def get(request: web.Request) -> web.Response:
    svc = _svc(request)
    return respond(await svc.run(model_groups.get, svc.ctx, request.match_info["group_id"]))


async def search(request: web.Request) -> web.Response:
    body = await read_json(request)
    svc = _svc(request)
    return respond(await svc.run(model_groups.search, svc.ctx, body))


async def update(request: web.Request) -> web.Response:
    body = await read_json(request, required=True)
    svc = _svc(request)
    return respond(await svc.run(model_groups.update, svc.ctx, request.match_info["group_id"], body))


async def delete(request: web.Request) -> web.Response:
    svc = _svc(request)
    return respond(await svc.run(model_groups.delete, svc.ctx, request.match_info["group_id"]))


ROUTES = [
    ("POST", "/model_groups/_register", register),
    ("GET", "/model_groups/_search", search),
    ("POST", "/model_groups/_search", search),
    ("GET", "/model_groups/{group_id}", get),
    ("PUT", "/model_groups/{group_id}", update),
    ("DELETE", "/model_groups/{group_id}", delete),
]
