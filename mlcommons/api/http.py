"""Small helpers every handler uses: JSON in and out, query parameters, route registration."""
from __future__ import annotations

from typing import Any, Awaitable, Callable, Mapping

import orjson
from aiohttp import web

from mlcommons.errors import BadRequest, MLError, ParseError

# What the application holds, by typed key: the facade's shared part (api/services.py), the two
# dialects' facades (and OpenAI's), the API process's node name and its cluster watcher.
SERVICES: web.AppKey[Any] = web.AppKey("svc")
OPENSEARCH: web.AppKey[Any] = web.AppKey("opensearch")
ELASTICSEARCH: web.AppKey[Any] = web.AppKey("elasticsearch")
OPENAI: web.AppKey[Any] = web.AppKey("openai")
NODE_NAME: web.AppKey[str] = web.AppKey("node_name", str)
WATCHER: web.AppKey[Any] = web.AppKey("watcher")

JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def respond(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(data, option=JSON_OPTIONS), status=status,
                        content_type="application/json", headers=headers)


# What a JSON body may be labelled: elasticsearch-py sends the vnd type (its compatible-with
# version is checked by the Elasticsearch dialect's handlers).
JSON_MEDIA_TYPES = frozenset({"application/json", "application/vnd.elasticsearch+json"})


def check_json_content_type(request: web.Request) -> None:
    """A JSON body must say so. A web page can POST text/plain, x-www-form-urlencoded and
    multipart/form-data to any host without a CORS preflight; refusing every other label, as
    Elasticsearch and OpenSearch do (406, their message), keeps such pages from driving the API."""
    labels = request.headers.getall("Content-Type", ())
    if not labels:
        raise MLError("Content-Type header is missing", status=406, error_type="media_type_header_exception")
    if len(labels) > 1 or labels[0].split(";", 1)[0].strip().lower() not in JSON_MEDIA_TYPES:
        raise MLError(f"Content-Type header [{','.join(labels)[:200]}] is not supported", status=406,
                      error_type="media_type_header_exception")


async def read_json(request: web.Request, *, required: bool = False) -> dict[str, Any] | None:
    """The request's JSON object body, or None when there is none. A body is refused (406) unless
    it is labelled JSON; a request without one may carry any label, or none."""
    raw = await request.read()
    if raw:
        check_json_content_type(request)
    if not raw.strip():
        if required:
            raise ParseError("request body is required")
        return None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ParseError(f"Failed to parse request body: {exc}") from None
    if not isinstance(body, dict):
        raise ParseError("request body must be a JSON object")
    return body


def flag(request: web.Request, name: str, default: bool = False) -> bool:
    """A boolean query parameter: ``?x``, ``?x=true`` and ``?x=false``."""
    if name not in request.query:
        return default
    value = request.query[name].strip().lower()
    if value in ("", "true"):
        return True
    if value == "false":
        return False
    raise BadRequest(f"Failed to parse value [{request.query[name]}] as only [true] or [false] are allowed "
                     f"for parameter [{name}]")


def string_list(body: dict[str, Any] | None, field: str) -> list[str] | None:
    if not body or body.get(field) is None:
        return None
    value = body[field]
    if isinstance(value, str):
        value = [v for v in value.split(",") if v]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise BadRequest(f"[{field}] must be a list of non-empty strings")
    return value


def add_routes(app: web.Application, table: list[tuple[str, str, Handler]]) -> None:
    """Register each route with and without a trailing slash."""
    for method, path, handler in table:
        app.router.add_route(method, path, handler)
        if not path.endswith("/"):
            app.router.add_route(method, path + "/", handler)
