"""/_ml/trained_models/<id>/deployment/_start, _stop and _update."""
from __future__ import annotations

import asyncio
import time

from aiohttp import web

from mlcommons.api.elasticsearch.protocol import boolean, es_errors, param
from mlcommons.api.http import read_json, respond
from mlcommons.core import deployments, units
from mlcommons.errors import MLError, NotFound, RequestTimeout

BASE = "/_ml/trained_models/{model_id}/deployment"
START_PARAMS = ("cache_size", "deployment_id", "number_of_allocations", "priority", "queue_capacity",
                "threads_per_allocation", "timeout", "wait_for")
RANK = {"starting": 0, "started": 1, "fully_allocated": 2}


def _svc(request: web.Request):
    return request.app["svc"]


@es_errors
async def start(request: web.Request) -> web.Response:
    svc = _svc(request)
    model_id = request.match_info["model_id"]
    body = await read_json(request) or {}
    params = {name: value for name in START_PARAMS if (value := param(request, body, name)) is not None}
    settings = deployments.validate_start(params, body.get("adaptive_allocations"))
    begun = time.monotonic()
    started = await svc.run(deployments.start, svc.ctx, model_id, params.get("deployment_id"), settings)
    unit_id, index = started["deployment_id"], started["index"]
    doc = await wait_for(svc, index, unit_id, settings["wait_for"], begun + settings["timeout"], settings["timeout"])
    return respond({"assignment": await svc.run(deployments.assignment, svc.ctx, index, unit_id, doc)})


async def wait_for(svc, index: str, unit_id: str, wanted: str, deadline: float, timeout: float) -> dict:
    """Until the deployment reaches ``wanted`` (or can get no further: a partial placement is
    200, every node failed is 500); 408 at the deadline, leaving the deployment starting. Woken by
    the deployment's serving events, not by polling."""
    async with svc.events.watch(unit_id) as watch:
        return await _wait_for(svc, watch, index, unit_id, wanted, deadline, timeout)


async def _wait_for(svc, watch, index: str, unit_id: str, wanted: str, deadline: float, timeout: float) -> dict:
    while True:
        doc = await svc.run(units.load, svc.ctx, unit_id)
        if doc is None:
            raise MLError(f"Could not start trained model deployment [{unit_id}]: it was stopped while starting",
                          status=400, error_type="status_exception")
        state = await svc.run(deployments.state_of, svc.ctx, index, unit_id, doc)
        if wanted == "starting" or RANK[state["allocation_state"]] >= RANK[wanted]:
            return doc
        if not state["task_open"]:
            failed = {n: r.get("reason", "") for n, r in state["routing_table"].items() if r["routing_state"] == "failed"}
            if state["allocation_count"] == 0 and failed:
                raise MLError("Could not start trained model deployment, the following nodes failed with errors "
                              f"[{failed}]", status=500, error_type="status_exception")
            if state["allocation_count"] > 0:
                return doc  # placed as far as it goes
        if time.monotonic() >= deadline:
            raise RequestTimeout(f"Timed out after [{_fmt(timeout)}] waiting for trained model deployment [{unit_id}] "
                                 "to start. Use the trained model stats API to track the state of the deployment "
                                 "and try again once it has started.", error_type="status_exception")
        await watch.changed(min(deadline - time.monotonic(), svc.events.fallback))


def _fmt(seconds: float) -> str:
    if seconds >= 1 and float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{int(seconds * 1000)}ms"


@es_errors
async def stop(request: web.Request) -> web.Response:
    svc = _svc(request)
    ident = request.match_info["model_id"]
    body = await read_json(request) or {}
    allow = boolean(param(request, body, "allow_no_match", True), "allow_no_match")
    force = boolean(param(request, body, "force", False), "force")
    finish = boolean(param(request, body, "finish_pending_work", False), "finish_pending_work")
    found = []
    for token in [t.strip() for t in ident.split(",") if t.strip()]:
        if token in ("_all", "*"):
            found += await svc.run(deployments.all_deployments, svc.ctx)
            continue
        hits = await svc.run(deployments.find, svc.ctx, token)
        if not hits and not allow:
            raise NotFound(f"No known model deployment with id [{token}]", error_type="resource_not_found_exception")
        found += hits
    seen = set()
    for _, unit_id, _ in found:
        if unit_id in seen:
            continue
        seen.add(unit_id)
        if finish:
            await drain(svc, unit_id)
        await svc.run(deployments.stop_unit, svc.ctx, unit_id, force=force)
    return respond({"stopped": True})


async def drain(svc, unit_id: str) -> None:
    """finish_pending_work: wait until the deployment's queue is empty and nothing is in flight."""
    deadline = time.monotonic() + svc.settings.get("mlcommons.predict.timeout_seconds")
    while time.monotonic() < deadline:
        if not await svc.has_pending_work(unit_id):
            return
        await asyncio.sleep(0.02)


@es_errors
async def update(request: web.Request) -> web.Response:
    svc = _svc(request)
    ident = request.match_info["model_id"]
    body = await read_json(request) or {}
    allocations = param(request, body, "number_of_allocations")
    adaptive = body.get("adaptive_allocations")
    params = {"number_of_allocations": allocations} if allocations is not None else {}
    settings = deployments.validate_start(params, adaptive)
    hits = [h for h in await svc.run(deployments.find, svc.ctx, ident) if h[1] == ident] or \
        await svc.run(deployments.find, svc.ctx, ident)
    if not hits:
        raise NotFound(f"No known model deployment with id [{ident}]", error_type="resource_not_found_exception")
    index, unit_id, _ = hits[0]
    await svc.run(deployments.update, svc.ctx, unit_id,
                  settings["number_of_allocations"] if allocations is not None else None,
                  settings.get("adaptive_allocations"))
    doc = await svc.run(units.load, svc.ctx, unit_id)
    return respond({"assignment": await svc.run(deployments.assignment, svc.ctx, index, unit_id, doc)})


ROUTES = [
    ("POST", BASE + "/_start", start),
    ("POST", BASE + "/_stop", stop),
    ("POST", BASE + "/_update", update),
]
