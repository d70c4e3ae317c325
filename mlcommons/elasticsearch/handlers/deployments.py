"""/_ml/trained_models/<id>/deployment/_start, _stop and _update."""
from __future__ import annotations

from aiohttp import web

from mlcommons.api.http import ELASTICSEARCH, read_json, respond
from mlcommons.elasticsearch.deployments import validate_start
from mlcommons.elasticsearch.protocol import boolean, es_errors, param

BASE = "/_ml/trained_models/{model_id}/deployment"
START_PARAMS = ("cache_size", "deployment_id", "number_of_allocations", "priority", "queue_capacity",
                "threads_per_allocation", "timeout", "wait_for")


def _es(request: web.Request):
    return request.app[ELASTICSEARCH]


@es_errors
async def start(request: web.Request) -> web.Response:
    model_id = request.match_info["model_id"]
    body = await read_json(request) or {}
    params = {name: value for name in START_PARAMS if (value := param(request, body, name)) is not None}
    settings = validate_start(params, body.get("adaptive_allocations"))
    assignment = await _es(request).start_deployment(model_id, params.get("deployment_id"), settings)
    return respond({"assignment": assignment})


@es_errors
async def stop(request: web.Request) -> web.Response:
    body = await read_json(request) or {}
    allow = boolean(param(request, body, "allow_no_match", True), "allow_no_match")
    force = boolean(param(request, body, "force", False), "force")
    finish = boolean(param(request, body, "finish_pending_work", False), "finish_pending_work")
    await _es(request).stop_deployments(request.match_info["model_id"], allow, force, finish)
    return respond({"stopped": True})


@es_errors
async def update(request: web.Request) -> web.Response:
    body = await read_json(request) or {}
    allocations = param(request, body, "number_of_allocations")
    params = {"number_of_allocations": allocations} if allocations is not None else {}
    settings = validate_start(params, body.get("adaptive_allocations"))
    assignment = await _es(request).update_deployment(
        request.match_info["model_id"], settings["number_of_allocations"] if allocations is not None else None,
        settings.get("adaptive_allocations"))
    return respond({"assignment": assignment})


ROUTES = [
    ("POST", BASE + "/_start", start),
    ("POST", BASE + "/_stop", stop),
    ("POST", BASE + "/_update", update),
]
