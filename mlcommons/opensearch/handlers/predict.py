"""/_plugins/_ml/models/<id>/_predict and /_plugins/_ml/_predict/<algorithm>/<id>: the hot path.

Everything here runs on the event loop: one cached model lookup, one admission script, one
awaited reply, and the embeddings written out by orjson straight from the float32 array. (An
Elasticsearch deployment scaled to zero is first woken, off the loop.)
"""
from __future__ import annotations

import base64

import numpy as np
from aiohttp import web

from mlcommons.api.http import OPENSEARCH, read_json, respond
from mlcommons.core import limits
from mlcommons.errors import BadRequest, Forbidden
from mlcommons.types import FunctionName

OUTPUT_NAME = "sentence_embedding"


async def predict(request: web.Request) -> web.Response:
    service = request.app[OPENSEARCH]
    model_id = request.match_info["model_id"]
    algorithm = request.match_info.get("algorithm")
    if algorithm is not None:
        try:
            FunctionName(algorithm.upper())
        except ValueError:
            raise BadRequest("Wrong function name") from None
    body = await read_json(request, required=True)
    info = await service.model_info(model_id)
    if info["is_enabled"] is False:
        raise Forbidden("Model is disabled.")
    function = info["algorithm"]
    if function == FunctionName.REMOTE.value:
        parameters, texts, query = _remote_input(body)
        reply = await service.predict(model_id, info, "remote", texts, query, parameters=parameters)
        return web.Response(body=reply, content_type="application/json")
    texts = _text_docs(body)
    query = None
    if function == FunctionName.TEXT_SIMILARITY.value:
        query = body.get("query_text")
        if not isinstance(query, str) or not query:
            raise BadRequest("[query_text] is required for a TEXT_SIMILARITY model: the text to compare "
                             "each of [text_docs] with")
        kind, shape = "similarity", _similarity_results
    elif function in (FunctionName.SPARSE_ENCODING.value, FunctionName.SPARSE_TOKENIZE.value):
        kind, shape = "sparse", _sparse_results
    else:
        options = _options(body)
        kind, shape = "embed", lambda result: _results(result.vectors, options)  # noqa: E731
    result = await service.predict(model_id, info, kind, texts, query)
    return respond({"inference_results": shape(result)})


def _sparse_results(maps: list[dict]) -> list[dict]:
    return [{"output": [{"name": "output", "dataAsMap": {"response": [weights]}}]} for weights in maps]


def _similarity_results(scores: np.ndarray) -> list[dict]:
    out = []
    for score in scores.astype("<f4"):
        out.append({"output": [{"name": "similarity", "data_type": "FLOAT32", "shape": [1], "data": [float(score)],
                                "byte_buffer": {"array": base64.b64encode(score.tobytes()).decode(),
                                                "order": "LITTLE_ENDIAN"}}]})
    return out


def _remote_input(body: dict) -> tuple[dict | None, list[str] | None, str | None]:
    """A remote model's input: ``parameters`` for its connector's templates, and/or ``text_docs``
    for its pre-process function (with ``query_text`` for a rerank connector's)."""
    parameters = body.get("parameters")
    if parameters is not None:
        if not isinstance(parameters, dict):
            raise BadRequest("[parameters] must be an object")
        limits.small_object(parameters, "parameters")
    texts = _text_docs(body) if body.get("text_docs") is not None else None
    if parameters is None and texts is None:
        raise BadRequest("A remote model takes [parameters] (for its connector's request body) or [text_docs]")
    query = body.get("query_text")
    if query is not None and (not isinstance(query, str) or texts is None):
        raise BadRequest("[query_text] must be a string, given with [text_docs]")
    return parameters, texts, query


def _text_docs(body: dict) -> list[str]:
    texts = body.get("text_docs")
    if texts is None:
        raise BadRequest("[text_docs] is required: a list of strings to embed")
    if not isinstance(texts, list) or not texts:
        raise BadRequest("[text_docs] must be a non-empty list of strings")
    for text in texts:
        if not isinstance(text, str):
            raise BadRequest("[text_docs] must be a non-empty list of strings")
    return texts


def _options(body: dict) -> dict:
    target = body.get("target_response")
    if target is not None and (not isinstance(target, list) or not all(isinstance(t, str) for t in target)):
        raise BadRequest("[target_response] must be a list of output names")
    positions = body.get("target_response_positions")
    if positions is not None and (not isinstance(positions, list)
                                  or not all(isinstance(p, int) and not isinstance(p, bool) for p in positions)):
        raise BadRequest("[target_response_positions] must be a list of integers")
    flags = {}
    for name, default in (("return_number", True), ("return_bytes", False)):
        value = body.get(name, default)
        if not isinstance(value, bool):
            raise BadRequest(f"[{name}] must be a boolean")
        flags[name] = value
    keep = True
    if target is not None or positions is not None:
        keep = (OUTPUT_NAME in (target or [])) or (0 in (positions or []))
    return {"keep": keep, **flags}


def _results(vectors: np.ndarray, options: dict) -> list[dict]:
    if not options["keep"]:
        return [{} for _ in range(len(vectors))]
    dim = [int(vectors.shape[1])]
    out = []
    for row in vectors:
        tensor = {"name": OUTPUT_NAME, "data_type": "FLOAT32", "shape": dim}
        if options["return_number"]:
            tensor["data"] = row
        if options["return_bytes"]:
            tensor["byte_buffer"] = {"array": base64.b64encode(row.astype("<f4").tobytes()).decode(),
                                     "order": "LITTLE_ENDIAN"}
        out.append({"output": [tensor]})
    return out


ROUTES = [
    ("POST", "/models/{model_id}/_predict", predict),
    ("POST", "/_predict/{algorithm}/{model_id}", predict),
]
