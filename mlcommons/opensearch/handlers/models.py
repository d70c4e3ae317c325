"""/_plugins/_ml/models: register (URL, pretrained, chunked upload), get, search, update, delete,
deploy and undeploy."""
from __future__ import annotations

from aiohttp import web

from mlcommons.api.http import OPENSEARCH, flag, read_json, respond, string_list
from mlcommons.core import limits
from mlcommons.errors import BadRequest
from mlcommons.opensearch.responses import model_written, public_model


def _os(request: web.Request):
    return request.app[OPENSEARCH]


async def register(request: web.Request) -> web.Response:
    body = await read_json(request, required=True)
    return respond(await _os(request).register_model(body, flag(request, "deploy")))


async def register_meta(request: web.Request) -> web.Response:
    body = await read_json(request, required=True)
    return respond(await _os(request).register_meta(body))


async def upload_chunk(request: web.Request) -> web.Response:
    raw_number = request.match_info["chunk_number"]
    number = limits.strict_int(raw_number)
    if number is None or number < 0:
        raise BadRequest(f"[chunk_number] must be a non-negative integer, got [{raw_number[:100]}]")
    # The body is the chunk's raw bytes whatever the Content-Type says: opensearch-py-ml labels
    # them application/json.
    data = await request.read()
    return respond(await _os(request).upload_chunk(request.match_info["model_id"], number, data))


async def get(request: web.Request) -> web.Response:
    return respond(public_model(await _os(request).model(request.match_info["model_id"])))


async def search(request: web.Request) -> web.Response:
    body = await read_json(request)
    return respond(await _os(request).search_models(body))


async def update(request: web.Request) -> web.Response:
    body = await read_json(request, required=True)
    model_id = request.match_info["model_id"]
    return respond(model_written(model_id, "updated", await _os(request).update_model(model_id, body)))


async def delete(request: web.Request) -> web.Response:
    model_id = request.match_info["model_id"]
    return respond(model_written(model_id, "deleted", await _os(request).delete_model(model_id)))


async def deploy(request: web.Request) -> web.Response:
    body = await read_json(request)
    node_ids = string_list(body, "node_ids")
    return respond(await _os(request).deploy(request.match_info["model_id"], node_ids))


async def undeploy_one(request: web.Request) -> web.Response:
    body = await read_json(request)
    model_ids = [request.match_info["model_id"]]
    return respond(await _os(request).undeploy(model_ids, string_list(body, "node_ids")))


async def undeploy_many(request: web.Request) -> web.Response:
    body = await read_json(request)
    model_ids = string_list(body, "model_ids")
    if not model_ids:
        raise BadRequest("Must set specific model ids to undeploy")
    return respond(await _os(request).undeploy(model_ids, string_list(body, "node_ids")))


ROUTES = [
    ("POST", "/models/_register", register),
    ("POST", "/models/_upload", register),
    ("POST", "/models/_register_meta", register_meta),
    ("POST", "/models/meta", register_meta),
    ("GET", "/models/_search", search),
    ("POST", "/models/_search", search),
    ("POST", "/models/_undeploy", undeploy_many),
    ("POST", "/models/_unload", undeploy_many),
    ("POST", "/models/{model_id}/upload_chunk/{chunk_number}", upload_chunk),
    ("POST", "/models/{model_id}/chunk/{chunk_number}", upload_chunk),
    ("POST", "/models/{model_id}/_deploy", deploy),
    ("POST", "/models/{model_id}/_load", deploy),
    ("POST", "/models/{model_id}/_undeploy", undeploy_one),
    ("POST", "/models/{model_id}/_unload", undeploy_one),
    ("GET", "/models/{model_id}", get),
    ("PUT", "/models/{model_id}", update),
    ("DELETE", "/models/{model_id}", delete),
]
