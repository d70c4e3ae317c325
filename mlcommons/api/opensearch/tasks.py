"""/_plugins/_ml/tasks: get, search, delete."""
from __future__ import annotations

from aiohttp import web

from mlcommons.api.http import read_json, respond
from mlcommons.core import tasks
from mlcommons.core.responses import TASK_FIELDS, public, task_deleted


async def get(request: web.Request) -> web.Response:
    svc = request.app["svc"]
    return respond(public(await svc.run(tasks.get, svc.ctx, request.match_info["task_id"]), TASK_FIELDS))


async def search(request: web.Request) -> web.Response:
    body = await read_json(request)
    svc = request.app["svc"]
    return respond(await svc.run(tasks.search, svc.ctx, body))


async def delete(request: web.Request) -> web.Response:
    svc = request.app["svc"]
    task_id = request.match_info["task_id"]
    await svc.run(tasks.delete, svc.ctx, task_id)
    return respond(task_deleted(task_id))


ROUTES = [
    ("GET", "/tasks/_search", search),
    ("POST", "/tasks/_search", search),
    ("GET", "/tasks/{task_id}", get),
    ("DELETE", "/tasks/{task_id}", delete),
]
