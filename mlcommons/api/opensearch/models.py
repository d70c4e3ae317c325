"""/_plugins/_ml/models: register (URL, pretrained, chunked upload), get, search, update, delete,
deploy and undeploy."""
from __future__ import annotations

from aiohttp import web

from mlcommons.api.http import flag, read_json, respond, string_list
from mlcommons.core import deploy as deploys
from mlcommons.core import limits, models, register as registration, undeploy as undeploys
from mlcommons.errors import BadRequest


def _svc(request: web.Request):
    return request.app["svc"]


async def register(request: web.Request) -> web.Response:
    body = await read_json(request, required=True)
    svc = _svc(request)
    return respond(await svc.run(registration.register, svc.ctx, body, deploy=flag(request, "deploy")))


async def register_meta(request: web.Request) -> web.Response:
    body = await read_json(request, required=True)
    svc = _svc(request)
    return respond(await svc.run(models.register_meta, svc.ctx, body))


async def upload_chunk(request: web.Request) -> web.Response:
    raw_number = request.match_info["chunk_number"]
    number = limits.strict_int(raw_number)
    if number is None or number < 0:
        raise BadRequest(f"[chunk_number] must be a non-negative integer, got [{raw_number[:100]}]")
    # The body is the chunk's raw bytes whatever the Content-Type says: opensearch-py-ml labels
    # them application/json.
    data = await request.read()
    svc = _svc(request)
    return respond(await svc.run(models.upload_chunk, svc.ctx, request.match_info["model_id"], number, data))


async def get(request: web.Request) -> web.Response:
    svc = _svc(request)
    return respond(await svc.run(models.get, svc.ctx, request.match_info["model_id"]))


async def search(request: web.Request) -> web.Response:
    body = await read_json(request)
    svc = _svc(request)
    return respond(await svc.run(models.search, svc.ctx, body))


async def update(request: web.Request) -> web.Response:
    body = await read_json(request, required=True)
    svc = _svc(request)
    model_id = request.match_info["model_id"]
    result = await svc.run(models.update, svc.ctx, model_id, body)
    svc.models.forget(model_id)
    return respond(result)


async def delete(request: web.Request) -> web.Response:
    svc = _svc(request)
    model_id = request.match_info["model_id"]
    result = await svc.run(models.delete, svc.ctx, model_id)
    svc.models.forget(model_id)
    return respond(result)


async def deploy(request: web.Request) -> web.Response:
    body = await read_json(request)
    node_ids = string_list(body, "node_ids")
    svc = _svc(request)
    return respond(await svc.run(deploys.deploy, svc.ctx, request.match_info["model_id"], node_ids))


async def undeploy_one(request: web.Request) -> web.Response:
    body = await read_json(request)
    return await _undeploy(request, [request.match_info["model_id"]], string_list(body, "node_ids"))


async def undeploy_many(request: web.Request) -> web.Response:
    body = await read_json(request)
    model_ids = string_list(body, "model_ids")
    if not model_ids:
        raise BadRequest("Must set specific model ids to undeploy")
    return await _undeploy(request, model_ids, string_list(body, "node_ids"))


async def _undeploy(request: web.Request, model_ids: list[str], node_ids: list[str] | None) -> web.Response:
    svc = _svc(request)
    if node_ids and not svc.settings.get("plugins.ml_commons.allow_custom_deployment_plan"):
        raise BadRequest("Don't allow custom deployment plan")
    plan = await svc.run(undeploys.plan, svc.ctx, model_ids, node_ids)
    replies = await svc.wait_job_replies(plan["request_id"], len(plan["nodes"]),
                                         svc.settings.get("mlcommons.undeploy.timeout_seconds"))
    result = await svc.run(undeploys.finish, svc.ctx, plan, replies)
    for model_id in model_ids:
        svc.models.forget(model_id)
    return respond(result)


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
