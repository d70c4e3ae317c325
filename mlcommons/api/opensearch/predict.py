"""/_plugins/_ml/models/<id>/_predict and /_plugins/_ml/_predict/<algorithm>/<id>: the hot path.

Everything here runs on the event loop: one cached model lookup, one admission script, one
awaited reply, and the embeddings written out by orjson straight from the float32 array.
"""
from __future__ import annotations

import base64

import numpy as np
from aiohttp import web

from mlcommons.api.http import read_json, respond
from mlcommons.core.predict import NoRoute
from mlcommons.errors import BadRequest, Forbidden
from mlcommons.types import FunctionName

NOT_READY = "Model not ready yet. Please deploy the model first."
OUTPUT_NAME = "sentence_embedding"


async def predict(request: web.Request) -> web.Response:
    svc = request.app["svc"]
    model_id = request.match_info["model_id"]
    algorithm = request.match_info.get("algorithm")
    if algorithm is not None:
        try:
            FunctionName(algorithm.upper())
        except ValueError:
            raise BadRequest("Wrong function name") from None
    body = await read_json(request, required=True)
    info = await svc.model_info(model_id)
    if info["is_enabled"] is False:
        raise Forbidden("Model is disabled.")
    texts = _text_docs(body)
    options = _options(body)
    try:
        result = await svc.predict.embed(model_id, texts, svc.settings.get("mlcommons.predict.timeout_seconds"))
    except NoRoute:
        raise BadRequest(NOT_READY) from None
    return respond({"inference_results": _results(result.vectors, options)})


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
