"""/_plugins/_ml/tasks: get, search, delete."""
from __future__ import annotations

from aiohttp import web

from mlcommons.api.http import OPENSEARCH, read_json, respond
from mlcommons.opensearch.responses import public_task, task_deleted


async def get(request: web.Request) -> web.Response:
    return respond(public_task(await request.app[OPENSEARCH].task(request.match_info["task_id"])))


async def search(request: web.Request) -> web.Response:
    body = await read_json(request)
    return respond(await request.app[OPENSEARCH].search_tasks(body))


async def delete(request: web.Request) -> web.Response:
    task_id = request.match_info["task_id"]
    await request.app[OPENSEARCH].delete_task(task_id)
    return respond(task_deleted(task_id))


ROUTES = [
    ("GET", "/tasks/_search", search),
    ("POST", "/tasks/_search", search),
    ("GET", "/tasks/{task_id}", get),
    ("DELETE", "/tasks/{task_id}", delete),
]
