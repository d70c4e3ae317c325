"""``/v1/embeddings`` and ``/v1/models`` in OpenAI's shapes.

A request names its model by id, or by name when exactly one text-embedding model has that name.
It goes the way a ``_predict`` goes (mlcommons/opensearch/service.py: access, the model's rate
limit, admission with its 429, auto-deploy of a model nobody serves, the time-out), so the
vectors are ``_predict``'s. Errors leave in OpenAI's shape, ``{"error": {"message", "type",
"param", "code"}}``, with the status (mlcommons/api/middlewares.py asks :func:`error_body`).
The handlers translate; mlcommons/openai/service.py decides.

What OpenAI has and this does not: token counts (``usage`` is 0: the API process does not
tokenize; the worker does), input given as token ids, and ``dimensions`` other than the model's
own (a model not trained to be shortened gives no meaningful shorter vectors; OpenAI's answer
for such a model is the same error).
"""
from __future__ import annotations

import base64
from typing import Any

from aiohttp import web

from mlcommons.api.http import OPENAI, read_json, respond
from mlcommons.errors import BadRequest
from mlcommons.openai.service import as_model

PREFIX = "/v1/"


def error_body(status: int, message: str, param: str | None = None) -> dict:
    """OpenAI's error object for a status."""
    if status == 401:
        kind, code = "authentication_error", "invalid_api_key"
    elif status == 403:
        kind, code = "permission_error", None
    elif status == 404:
        kind, code = "invalid_request_error", "model_not_found" if "model" in message.lower() else None
    elif status == 429:
        kind, code = "rate_limit_error", "rate_limit_exceeded"
    elif status >= 500 or status == 408:
        kind, code = "server_error", None
    else:
        kind, code = "invalid_request_error", None
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _input(body: dict) -> list[str]:
    texts = body.get("input")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts:
        raise BadRequest("[input] is required: a string, or a non-empty list of strings")
    if not all(isinstance(t, str) for t in texts):
        raise BadRequest("[input] must be a string or a list of strings; token ids are not supported")
    if any(not t for t in texts):
        raise BadRequest("[input] cannot contain an empty string")
    return texts


async def embeddings(request: web.Request) -> web.Response:
    body = await read_json(request, required=True)
    name = body.get("model")
    if not isinstance(name, str) or not name or len(name) > 512:
        raise BadRequest("[model] is required: a model's id, or its name when exactly one model has it")
    texts = _input(body)
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise BadRequest("[encoding_format] must be [float] or [base64]")
    dimensions = body.get("dimensions")
    if dimensions is not None and (not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1):
        raise BadRequest("[dimensions] must be a positive integer")
    vectors = await request.app[OPENAI].embed(name, texts)
    if dimensions is not None and dimensions != vectors.shape[1]:
        raise BadRequest(f"This model does not support specifying dimensions: its embeddings have "
                         f"{vectors.shape[1]}")
    if encoding == "base64":
        rows: list[Any] = [base64.b64encode(row.astype("<f4").tobytes()).decode() for row in vectors]
    else:
        rows = list(vectors)
    data = [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(rows)]
    return respond({"object": "list", "data": data, "model": name, "usage": {"prompt_tokens": 0, "total_tokens": 0}})


async def list_models(request: web.Request) -> web.Response:
    """Every text-embedding model (deployed or not: a first request deploys it), by id."""
    created = await request.app[OPENAI].models()
    return respond({"object": "list", "data": [as_model(i, at) for i, at in sorted(created.items())]})


async def get_model(request: web.Request) -> web.Response:
    return respond(as_model(*await request.app[OPENAI].model(request.match_info["model"])))


ROUTES = [
    ("POST", "/v1/embeddings", embeddings),
    ("GET", "/v1/models", list_models),
    ("GET", "/v1/models/{model}", get_model),
]
