"""/_ml/trained_models: create (config, definition parts, vocabulary), get, delete and _stats."""
from __future__ import annotations

from aiohttp import web

from mlcommons.api.http import ELASTICSEARCH, read_json, respond
from mlcommons.core import limits
from mlcommons.elasticsearch.protocol import boolean, es_errors, param
from mlcommons.errors import BadRequest

BASE = "/_ml/trained_models"


def _es(request: web.Request):
    return request.app[ELASTICSEARCH]


@es_errors
async def put_model(request: web.Request) -> web.Response:
    body = await read_json(request, required=True)
    return respond(await _es(request).put_model(request.match_info["model_id"], body))


@es_errors
async def put_definition_part(request: web.Request) -> web.Response:
    body = await read_json(request, required=True)
    part = limits.strict_int(request.match_info["part"])
    if part is None:
        raise BadRequest(f"[part] must be an integer, got [{request.match_info['part'][:100]}]")
    return respond(await _es(request).put_definition_part(request.match_info["model_id"], part, body))


@es_errors
async def put_vocabulary(request: web.Request) -> web.Response:
    body = await read_json(request, required=True)
    return respond(await _es(request).put_vocabulary(request.match_info["model_id"], body))


def _page(request: web.Request, items: list) -> list:
    start, size = (_non_negative(request, name, default) for name, default in (("from", 0), ("size", 100)))
    return items[start:start + size]


def _non_negative(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    value = limits.strict_int(raw)
    if value is None or value < 0:
        raise BadRequest(f"Failed to parse [{name}] with value [{raw[:100]}] as a non-negative integer",
                         error_type="illegal_argument_exception")
    return value


@es_errors
async def get_models(request: web.Request) -> web.Response:
    allow = boolean(param(request, None, "allow_no_match", True), "allow_no_match")
    include = request.query.get("include", "")
    configs = await _es(request).model_configs(request.match_info.get("model_id"), allow,
                                               "definition_status" in include)
    return respond({"count": len(configs), "trained_model_configs": _page(request, configs)})


@es_errors
async def delete_model(request: web.Request) -> web.Response:
    force = boolean(param(request, None, "force", False), "force")
    return respond(await _es(request).delete_model(request.match_info["model_id"], force))


@es_errors
async def stats(request: web.Request) -> web.Response:
    allow = boolean(param(request, None, "allow_no_match", True), "allow_no_match")
    return respond(await _es(request).stats(request.match_info.get("model_id"), allow))


ROUTES = [
    ("GET", BASE + "/_stats", stats),
    ("GET", BASE + "/{model_id}/_stats", stats),
    ("GET", BASE, get_models),
    ("GET", BASE + "/{model_id}", get_models),
    ("PUT", BASE + "/{model_id}", put_model),
    ("DELETE", BASE + "/{model_id}", delete_model),
    ("PUT", BASE + "/{model_id}/definition/{part}", put_definition_part),
    ("PUT", BASE + "/{model_id}/vocabulary", put_vocabulary),
]
