"""Cluster-level endpoints: GET / and the dynamic settings (GET/PUT /_cluster/settings)."""
from __future__ import annotations

import asyncio
import time

from aiohttp import web

from mlcommons import __version__
from mlcommons.api import audit
from mlcommons.api.authz import PRINCIPAL
from mlcommons.api.http import NODE_NAME, SERVICES, flag, read_json, respond
from mlcommons.core import health as cluster_health
from mlcommons.elasticsearch.deployments import parse_time
from mlcommons.elasticsearch.protocol import wants_elasticsearch
from mlcommons.errors import BadRequest
from mlcommons.settings import SETTINGS, render_value, unflatten, validate_update

COMPATIBLE_OPENSEARCH = "2.19.0"
MAX_HEALTH_WAIT = 300.0  # seconds a health request may hold its connection, whatever its timeout says
COMPATIBLE_ELASTICSEARCH = "9.1.0"


async def root(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    cluster_uuid = await svc.cluster_uuid()
    if wants_elasticsearch(request):  # an Elasticsearch client (or Eland) asks who we are
        return respond({
            "name": request.app[NODE_NAME],
            "cluster_name": svc.settings.get("cluster.name"),
            "cluster_uuid": cluster_uuid,
            "version": {
                "number": COMPATIBLE_ELASTICSEARCH,
                "build_flavor": "default",
                "build_type": "mlcommons",
                "build_hash": "mlcommons",
                "build_date": "2026-01-01T00:00:00.000Z",
                "build_snapshot": False,
                "lucene_version": "10.2.2",
                "minimum_wire_compatibility_version": "8.19.0",
                "minimum_index_compatibility_version": "8.0.0",
            },
            "tagline": "You Know, for Search",
        })
    return respond({
        "name": request.app[NODE_NAME],
        "cluster_name": svc.settings.get("cluster.name"),
        "cluster_uuid": cluster_uuid,
        "version": {
            "distribution": "opensearch",
            "number": COMPATIBLE_OPENSEARCH,
            "build_type": "mlcommons",
            "mlcommons_version": __version__,
            "minimum_wire_compatibility_version": "7.10.0",
            "minimum_index_compatibility_version": "7.0.0",
        },
        "tagline": "The OpenSearch Project: https://opensearch.org/",
    })


def _render(values: dict, flat: bool) -> dict:
    rendered = {name: render_value(value) for name, value in values.items()}
    return rendered if flat else unflatten(rendered)


async def get_settings(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    await svc.refresh_settings()
    flat = flag(request, "flat_settings")
    body = {"persistent": _render(svc.settings.overrides("persistent"), flat),
            "transient": _render(svc.settings.overrides("transient"), flat)}
    if flag(request, "include_defaults"):
        body["defaults"] = _render({name: svc.settings.static[name] for name in SETTINGS}, flat)
    return respond(body)


async def put_settings(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    body = await read_json(request, required=True)
    unknown = [k for k in body if k not in ("persistent", "transient")]
    if unknown:
        raise BadRequest(f"unknown section [{unknown[0]}]; expected [persistent] and/or [transient]")
    updates = {}
    for scope in ("persistent", "transient"):
        section = body.get(scope) or {}
        if not isinstance(section, dict):
            raise BadRequest(f"[{scope}] must be an object of settings")
        updates[scope] = validate_update(scope, section)
    if not updates["persistent"] and not updates["transient"]:
        raise BadRequest("no settings to update")
    await svc.update_settings(updates)
    audit.record("settings_changed", request, request.get(PRINCIPAL),
                 settings=sorted(set(updates["persistent"]) | set(updates["transient"])))
    flat = flag(request, "flat_settings")
    return respond({"acknowledged": True,
                    "persistent": _render({k: v for k, v in updates["persistent"].items() if v is not None}, flat),
                    "transient": _render({k: v for k, v in updates["transient"].items() if v is not None}, flat)})


async def health(request: web.Request) -> web.Response:
    """OpenSearch's cluster health, waiting (``wait_for_nodes``, ``wait_for_status``, up to
    ``timeout``, 30s by default) as scripts expect: 408 with ``timed_out: true`` when it did not come."""
    svc = request.app[SERVICES]
    want_nodes = cluster_health.parse_wait_for_nodes(request.query.get("wait_for_nodes"))
    want_status = cluster_health.parse_wait_for_status(request.query.get("wait_for_status"))
    timeout = min(max(parse_time(request.query.get("timeout", "30s"), "timeout"), 0.0), MAX_HEALTH_WAIT)
    deadline = time.monotonic() + timeout
    while True:
        state = await svc.call(cluster_health.health)
        if cluster_health.satisfied(state, want_status, want_nodes):
            return respond(state)
        if time.monotonic() >= deadline:
            return respond({**state, "timed_out": True}, 408)
        # node heartbeats and model states change on their own clocks: look again shortly
        await asyncio.sleep(min(0.1, max(0.0, deadline - time.monotonic())))


async def get_nodes(request: web.Request) -> web.Response:
    """The live worker nodes, in the shape of OpenSearch's nodes info (plus what they hold)."""
    svc = request.app[SERVICES]
    live = await svc.live_nodes()
    return respond({
        "_nodes": {"total": len(live), "successful": len(live), "failed": 0},
        "cluster_name": svc.settings.get("cluster.name"),
        "nodes": {node_id: {k: info.get(k) for k in ("name", "host", "roles", "pid", "boot_id", "device",
                                                      "started_at", "last_heartbeat", "memory")}
                  | {"models": sorted(info.get("models") or {})}
                  for node_id, info in sorted(live.items())},
    })


ROUTES = [
    ("GET", "/", root),
    ("HEAD", "/", root),
    ("GET", "/_cluster/settings", get_settings),
    ("PUT", "/_cluster/settings", put_settings),
    ("GET", "/_nodes", get_nodes),
    ("GET", "/_cluster/health", health),
]
