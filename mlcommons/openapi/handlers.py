"""GET /_plugins/_ml/openapi.json: the description, serialised once per process."""
from __future__ import annotations

import functools

import orjson
from aiohttp import web

from mlcommons.openapi.document import document

PATH = "/_plugins/_ml/openapi.json"


@functools.lru_cache(maxsize=1)
def _body() -> bytes:
    return orjson.dumps(document())


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=_body(), content_type="application/json")


ROUTES = [("GET", PATH, openapi)]
