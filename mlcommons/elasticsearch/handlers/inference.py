"""/_inference: create, read, delete and call inference endpoints of the ``elasticsearch`` service.

Beyond Elasticsearch, whose POST truncates long input: ``POST _inference/<task>/<id>?chunked=true``
cuts each input with the endpoint's chunking_settings and returns, per input, every chunk's
character offsets and its result.
"""
from __future__ import annotations

from aiohttp import web

from mlcommons.api.http import ELASTICSEARCH, read_json, respond
from mlcommons.core.serving.predict import NoRoute
from mlcommons.elasticsearch import chunking, endpoints, services
from mlcommons.elasticsearch.deployments import parse_time
from mlcommons.elasticsearch.protocol import boolean, es_errors, param
from mlcommons.errors import BadRequest, MLError


def _es(request: web.Request):
    return request.app[ELASTICSEARCH]


def _path(request: web.Request) -> tuple[str | None, str | None]:
    """(task_type, inference_id) from /_inference[/<task_type>]/<id> or /_inference/<task_type>."""
    first = request.match_info.get("first")
    second = request.match_info.get("second")
    if second is not None:
        if first not in endpoints.TASK_TYPES:
            raise BadRequest(f"Unknown task_type [{first}]", error_type="illegal_argument_exception")
        return first, second
    if first in endpoints.TASK_TYPES and request.method == "GET":
        return first, None
    return None, first


@es_errors
async def put(request: web.Request) -> web.Response:
    task_type, inference_id = _path(request)
    body = await read_json(request, required=True)
    timeout = parse_time(request.query.get("timeout", "30s"), "timeout")
    return respond(await _es(request).put_endpoint(inference_id, task_type, body, timeout))


@es_errors
async def get(request: web.Request) -> web.Response:
    task_type, inference_id = _path(request)
    return respond({"endpoints": await _es(request).endpoints(inference_id, task_type)})


@es_errors
async def delete(request: web.Request) -> web.Response:
    task_type, inference_id = _path(request)
    if boolean(param(request, None, "dry_run", False), "dry_run"):
        await _es(request).endpoint(inference_id, task_type)
        return respond({"acknowledged": False, "pipelines": []})
    return respond(await _es(request).delete_endpoint(inference_id, task_type))


@es_errors
async def infer(request: web.Request) -> web.Response:
    service = _es(request)
    task_type, inference_id = _path(request)
    body = await read_json(request, required=True)
    endpoint = await service.endpoint(inference_id, task_type)
    task_type = endpoint["task_type"]
    timeout = parse_time(request.query.get("timeout", "30s"), "timeout")
    inputs = body.get("input")
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list) or not inputs or not all(isinstance(t, str) for t in inputs):
        raise BadRequest("Validation Failed: 1: Field [input] cannot be empty;",
                         error_type="action_request_validation_exception")
    task_settings = {**(endpoint.get("task_settings") or {}), **(body.get("task_settings") or {})}
    errors = endpoints.check_task_settings(task_settings)
    if errors:
        raise endpoints.validation(*errors)
    unit = await service.endpoint_unit(endpoint)
    chunked = boolean(request.query.get("chunked", "false"), "chunked")
    input_type = body.get("input_type")
    if input_type is not None and str(input_type).upper() not in ("SEARCH", "INGEST", "CLASSIFICATION", "CLUSTERING"):
        raise BadRequest(f"Invalid [input_type] [{input_type}]", error_type="status_exception")
    # Search-time inference is high priority, as in Elasticsearch: head of the queue, past its cap.
    priority = str(input_type or "").upper() == "SEARCH"
    try:
        if task_type == "rerank":
            if chunked:
                raise BadRequest("[chunked] inference is for text_embedding and sparse_embedding endpoints")
            query = body.get("query")
            if not isinstance(query, str) or not query:
                raise BadRequest("Validation Failed: 1: Field [query] cannot be null for task type [rerank];",
                                 error_type="action_request_validation_exception")
            if endpoints.is_external(endpoint):
                scores = await service.rerank_remote(unit, query, inputs, timeout, priority=priority)
            else:
                scores = await service.infer(unit, "similarity", inputs, timeout, query=query, priority=priority)
            return respond({"rerank": _rerank(scores, inputs, task_settings)})
        remote = services.call_parameters(endpoint["service"], task_settings, input_type) \
            if endpoints.is_external(endpoint) else None
        if chunked:
            return respond({task_type: await _chunked(service, unit, task_type, endpoint, inputs, timeout, priority,
                                                      remote)})
        return respond({task_type: await _results(service, unit, task_type, inputs, timeout, priority, remote)})
    except NoRoute:
        raise MLError(f"Trained model deployment [{unit}] is not allocated to any nodes", status=409,
                      error_type="status_exception") from None


async def _results(service, unit: str, task_type: str, texts: list[str], timeout: float,
                   priority: bool = False, remote: dict | None = None) -> list[dict]:
    """``remote``: the call's parameters when the endpoint is an external service's."""
    if remote is not None:
        rows = await service.embed_remote(unit, texts, timeout, priority=priority, parameters=remote)
        return [{"embedding": row} for row in rows]
    if task_type == "text_embedding":
        vectors = (await service.infer(unit, "embed", texts, timeout, priority=priority)).vectors
        return [{"embedding": row} for row in vectors]
    maps = await service.infer(unit, "sparse", texts, timeout, priority=priority)
    return [{"is_truncated": False, "embedding": weights} for weights in maps]


async def _chunked(service, unit: str, task_type: str, endpoint: dict, inputs: list[str], timeout: float,
                   priority: bool = False, remote: dict | None = None) -> list[dict]:
    raw = endpoint.get("chunking_settings")
    settings = chunking.parse_chunking_settings(raw) if raw else chunking.DEFAULT_CHUNKING_SETTINGS
    spans = [chunking.chunk(text, settings) for text in inputs]
    pieces = [text[start:end] for text, found in zip(inputs, spans) for start, end in found]
    results = await _results(service, unit, task_type, pieces, timeout, priority, remote)
    key = "embedding"
    out, i = [], 0
    for found in spans:
        chunks = []
        for start, end in found:
            chunks.append({"start_offset": start, "end_offset": end, key: results[i][key]})
            i += 1
        out.append({"chunks": chunks})
    return out


def _rerank(scores, inputs: list[str], task_settings: dict) -> list[dict]:
    order = sorted(range(len(inputs)), key=lambda i: float(scores[i]), reverse=True)
    top_n = task_settings.get("top_n")
    if top_n:
        order = order[:top_n]
    with_text = task_settings.get("return_documents", True)
    out = []
    for i in order:
        entry = {"index": i, "relevance_score": float(scores[i])}
        if with_text:
            entry["text"] = inputs[i]
        out.append(entry)
    return out


ROUTES = [
    ("GET", "/_inference", get),
    ("GET", "/_inference/{first}", get),
    ("GET", "/_inference/{first}/{second}", get),
    ("PUT", "/_inference/{first}", put),
    ("PUT", "/_inference/{first}/{second}", put),
    ("DELETE", "/_inference/{first}", delete),
    ("DELETE", "/_inference/{first}/{second}", delete),
    ("POST", "/_inference/{first}", infer),
    ("POST", "/_inference/{first}/{second}", infer),
]
