"""The Elasticsearch dialect's facade: one coroutine per thing a handler asks of the core.

Each runs the synchronous core in the API's thread pool (``Services.run``). Sequences that span
several core calls live here, not in handlers: a deployment's ``_start`` and its ``wait_for``
(woken by the deployment's serving events, not by polling), ``_stop`` of several deployments, and
an inference endpoint's create, start, probe and roll back.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

from mlcommons.core.models import groups as model_groups
from mlcommons.core.models import register as registration
from mlcommons.core.security import access
from mlcommons.core.serving import deploy as deploys
from mlcommons.core.serving import units
from mlcommons.elasticsearch import deployments, endpoints, services, trained_models
from mlcommons.elasticsearch import stats as trained_model_stats
from mlcommons.errors import MLError, NotFound, RequestTimeout

RANK = {"starting": 0, "started": 1, "fully_allocated": 2}


def _fmt(seconds: float) -> str:
    if seconds >= 1 and float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{int(seconds * 1000)}ms"


class ElasticsearchService:
    def __init__(self, svc):
        self._svc = svc
        self._ctx = svc.ctx
        self._call = svc.call  # a core function, given the context first, in the thread pool
        self.settings = svc.settings

    # --- trained models ---------------------------------------------------------------------

    async def put_model(self, model_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call(trained_models.put, model_id, body)

    async def put_definition_part(self, model_id: str, part: int, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call(trained_models.put_definition_part, model_id, part, body)

    async def put_vocabulary(self, model_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call(trained_models.put_vocabulary, model_id, body)

    async def model_configs(self, ident: str | None, allow_no_match: bool, definition_status: bool) -> list[dict]:
        def configs(ctx) -> list[dict]:
            found = trained_models.matching(ctx, ident, allow_no_match)
            if access.models_on(ctx):  # ML Commons' model groups decide who sees a model here too
                found = list(access.visible_models(ctx, found, model_groups.all_docs(ctx)))
            return [trained_models.config_view(ctx, model_id, doc, definition_status=definition_status)
                    for model_id, doc in found]
        return await self._call(configs)

    async def delete_model(self, model_id: str, force: bool) -> dict[str, Any]:
        await self._call(access.check_model_id, model_id)
        return await self._call(deployments.delete_model, model_id, force)

    async def stats(self, ident: str | None, allow_no_match: bool) -> dict[str, Any]:
        return await self._call(trained_model_stats.stats, ident, allow_no_match)

    # --- deployments --------------------------------------------------------------------------

    async def start_deployment(self, model_id: str, deployment_id: str | None, settings: dict[str, Any]) -> dict:
        """Start a deployment and wait as ``settings["wait_for"]`` asks; returns its assignment."""
        begun = time.monotonic()
        started = await self._call(deployments.start, model_id, deployment_id, settings)
        unit_id, index = started["deployment_id"], started["index"]
        doc = await self.wait_for(index, unit_id, settings["wait_for"], begun + settings["timeout"],
                                  settings["timeout"])
        return await self._call(deployments.assignment, index, unit_id, doc)

    async def wait_for(self, index: str, unit_id: str, wanted: str, deadline: float, timeout: float) -> dict:
        """Until the deployment reaches ``wanted`` (or can get no further: a partial placement is
        200, every node failed is 500); 408 at the deadline, leaving the deployment starting. Woken
        by the deployment's serving events, not by polling."""
        events = self._svc.events
        async with events.watch(unit_id) as watch:
            while True:
                doc = await self._call(units.load, unit_id)
                if doc is None:
                    raise MLError(f"Could not start trained model deployment [{unit_id}]: it was stopped while "
                                  "starting", status=400, error_type="status_exception")
                state = await self._call(deployments.state_of, index, unit_id, doc)
                if wanted == "starting" or RANK[state["allocation_state"]] >= RANK[wanted]:
                    return doc
                if not state["task_open"]:
                    failed = {n: r.get("reason", "") for n, r in state["routing_table"].items()
                              if r["routing_state"] == "failed"}
                    if state["allocation_count"] == 0 and failed:
                        raise MLError("Could not start trained model deployment, the following nodes failed with "
                                      f"errors [{failed}]", status=500, error_type="status_exception")
                    if state["allocation_count"] > 0:
                        return doc  # placed as far as it goes
                if time.monotonic() >= deadline:
                    raise RequestTimeout(f"Timed out after [{_fmt(timeout)}] waiting for trained model deployment "
                                         f"[{unit_id}] to start. Use the trained model stats API to track the state "
                                         "of the deployment and try again once it has started.",
                                         error_type="status_exception")
                await watch.changed(min(deadline - time.monotonic(), events.fallback))

    async def stop_deployments(self, ident: str, allow_no_match: bool, force: bool, finish_pending: bool) -> None:
        """Stop every deployment ``ident`` names (ids, deployment ids, ``_all`` or ``*``, comma
        separated); with ``finish_pending``, each first answers what it has queued."""
        found = []
        for token in [t.strip() for t in ident.split(",") if t.strip()]:
            if token in ("_all", "*"):
                found += await self._call(deployments.all_deployments)
                continue
            hits = await self._call(deployments.find, token)
            if not hits and not allow_no_match:
                raise NotFound(f"No known model deployment with id [{token}]",
                               error_type="resource_not_found_exception")
            found += hits
        seen = set()
        for _, unit_id, _ in found:
            if unit_id in seen:
                continue
            seen.add(unit_id)
            if finish_pending:
                await self._drain(unit_id)
            await self._call(deployments.stop_unit, unit_id, force=force)

    async def _drain(self, unit_id: str) -> None:
        """Wait until the deployment's queue is empty and nothing is in flight (at most the
        prediction time-out)."""
        deadline = time.monotonic() + self.settings.get("mlcommons.predict.timeout_seconds")
        while time.monotonic() < deadline:
            if not await self._svc.has_pending_work(unit_id):
                return
            await asyncio.sleep(0.02)

    async def update_deployment(self, ident: str, allocations: int | None,
                                adaptive: dict[str, Any] | None) -> dict[str, Any]:
        hits = [h for h in await self._call(deployments.find, ident) if h[1] == ident] or \
            await self._call(deployments.find, ident)
        if not hits:
            raise NotFound(f"No known model deployment with id [{ident}]", error_type="resource_not_found_exception")
        index, unit_id, _ = hits[0]
        await self._call(deployments.update, unit_id, allocations, adaptive)
        doc = await self._call(units.load, unit_id)
        return await self._call(deployments.assignment, index, unit_id, doc)

    # --- inference ----------------------------------------------------------------------------

    async def infer_target(self, ident: str) -> tuple[str, dict[str, Any], bool]:
        """The deployment a ``_infer`` on ``ident`` runs on, the model's Elasticsearch config,
        and whether the deployment is scaled to zero (``infer`` then wakes it)."""
        unit_id, doc, es = await self._call(deployments.infer_target, ident)
        await self._call(access.check_model_id, doc.get("model_id") or unit_id)  # ML Commons' model groups
        return unit_id, es, deployments.is_asleep(doc)

    async def infer(self, unit_id: str, kind: str, texts: list[str], timeout: float, *, query: str | None = None,
                    priority: bool = False, asleep: bool = False):
        """One prediction (``kind``: embed, sparse or similarity); ``NoRoute`` if nobody serves
        the deployment. ``asleep``: give it one allocation first (the request waits in its queue)."""
        return await self._svc.infer(unit_id, kind, texts, query=query, timeout=timeout, priority=priority,
                                     asleep=asleep)

    # --- inference endpoints -------------------------------------------------------------------

    async def put_endpoint(self, inference_id: str, task_type: str | None, body: dict[str, Any],
                           timeout: float) -> dict[str, Any]:
        """Create an endpoint. One of the ``elasticsearch`` service that names no deployment gets
        its own, started here; a text_embedding endpoint then runs one probe inference for its
        dimensions, as Elasticsearch does. If the start fails, the endpoint and its deployment are
        removed again; if it only times out, the deployment goes on starting."""
        endpoint = endpoints.parse(inference_id, task_type, body)
        if endpoints.is_external(endpoint):
            return await self._put_external(endpoint, timeout)
        await self._call(endpoints.check_model, endpoint)
        owned = endpoints.owned_deployment(endpoint)
        settings = endpoints.start_settings(endpoint) if owned else None
        await self._call(endpoints.create, endpoint)
        if owned:
            begun = time.monotonic()
            try:
                started = await self._call(deployments.start, endpoint["service_settings"]["model_id"], owned,
                                           settings)
                await self.wait_for(started["index"], owned, "started", begun + timeout, timeout)
                if endpoint["task_type"] == "text_embedding":
                    probe = await self.infer(owned, "embed", ["test"], timeout)
                    endpoint["service_settings"].update(dimensions=int(probe.vectors.shape[1]), similarity="cosine",
                                                        element_type="float")
                    await self._call(endpoints.record_service_settings, inference_id, endpoint["service_settings"])
            except RequestTimeout:
                raise  # the deployment goes on starting; the endpoint works once it has started
            except BaseException:
                await self._call(endpoints.forget, inference_id)
                if await self._call(deployments.find, owned):
                    await self._call(deployments.stop_unit, owned)
                raise
        return endpoints.view(endpoint)

    async def _put_external(self, endpoint: dict[str, Any], timeout: float) -> dict[str, Any]:
        """An endpoint of an external service: its hidden remote model is registered and deployed,
        then one call to the provider checks it and gives the dimensions, as Elasticsearch does.
        If any of it fails, nothing of it stays."""
        inference_id = endpoint["inference_id"]
        connector = endpoint.pop("_connector")
        per_minute = endpoint["service_settings"]["rate_limit"]["requests_per_minute"]
        begun = time.monotonic()
        await self._call(registration.register_endpoint_model, inference_id, connector,
                         {"limit": str(per_minute), "unit": "MINUTES"})
        try:
            await self._call(endpoints.create, endpoint)
            try:
                task = await self._call(deploys.deploy, inference_id)
                await self._svc.wait_serving(inference_id, task["task_id"], begun + timeout)
                left = max(0.1, begun + timeout - time.monotonic())
                if endpoint["task_type"] == "rerank":  # checked with one call too, as Elasticsearch does
                    await self.rerank_remote(inference_id, "test query", ["how big", "store"], left)
                else:
                    vectors = await self.embed_remote(inference_id, ["test"], left)
                    settings = {**endpoint["service_settings"], "dimensions": len(vectors[0]),
                                "similarity": "cosine", "element_type": "float"}
                    endpoint["service_settings"] = settings
                    await self._call(endpoints.record_service_settings, inference_id, settings)
            except BaseException:
                await self._call(endpoints.forget, inference_id)
                raise
        except BaseException:
            await self._call(endpoints.forget_external, inference_id)
            raise
        return endpoints.view(endpoint)

    async def embed_remote(self, unit_id: str, texts: list[str], timeout: float, *, priority: bool = False,
                           parameters: dict[str, str] | None = None) -> list[list[float]]:
        """Embeddings from an external service's endpoint (its hidden remote model), within the
        endpoint's rate limit."""
        reply = await self._remote(unit_id, texts, None, timeout, priority, parameters)
        return services.embeddings_of(orjson.loads(reply))

    async def rerank_remote(self, unit_id: str, query: str, texts: list[str], timeout: float, *,
                            priority: bool = False) -> list[float]:
        """An external rerank service's relevance score for each text, in their order."""
        reply = await self._remote(unit_id, texts, query, timeout, priority, None)
        return services.scores_of(orjson.loads(reply))

    async def _remote(self, unit_id: str, texts: list[str], query: str | None, timeout: float, priority: bool,
                      parameters: dict[str, str] | None) -> bytes:
        info = await self._svc.model_info(unit_id)
        if info.get("bucket") is not None:
            await self._svc.take_token(unit_id, info["bucket"])
        return await self._svc.infer(unit_id, "remote", texts, query=query, parameters=parameters or None,
                                     timeout=timeout, priority=priority)

    async def endpoints(self, inference_id: str | None, task_type: str | None) -> list[dict[str, Any]]:
        return await self._call(endpoints.listing, inference_id, task_type)

    async def endpoint(self, inference_id: str, task_type: str | None) -> dict[str, Any]:
        return await self._call(endpoints.get, inference_id, task_type)

    async def delete_endpoint(self, inference_id: str, task_type: str | None) -> dict[str, Any]:
        return await self._call(endpoints.delete, inference_id, task_type)

    async def endpoint_unit(self, endpoint: dict[str, Any]) -> str:
        """The deployment an endpoint's inference runs on, given one allocation again first if it
        was scaled to zero."""
        unit = endpoints.serving_unit(endpoint)
        if deployments.is_asleep(await self._call(units.load, unit)):
            await self._call(deployments.wake, unit)
        return unit
