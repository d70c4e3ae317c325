"""The OpenAI dialect's facade: which model a request names, and its embeddings, through the
OpenSearch dialect's prediction path (access, rate limit, admission, auto-deploy, time-out), so
that ``/v1/embeddings`` answers exactly what ``_predict`` answers."""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from mlcommons.core.models import groups as model_groups
from mlcommons.core.models import records as model_records
from mlcommons.core.security import access
from mlcommons.errors import BadRequest, Forbidden, NotFound
from mlcommons.types import FunctionName

NAMES_TTL = 1.0  # seconds a name -> ids table is reused
MISS_MAX_AGE = 0.1  # a name not in the table is looked for in one at most this old


def read_names(ctx) -> tuple[dict[str, list[str]], dict[str, int]]:
    """Name -> ids, and id -> created (seconds), of the text-embedding models the caller may use."""
    docs = ((i, d) for i, d in model_records.all_docs(ctx) if not d.get("is_hidden"))
    if access.models_on(ctx):
        docs = access.visible_models(ctx, docs, model_groups.all_docs(ctx))
    table: dict[str, list[str]] = {}
    created: dict[str, int] = {}
    for model_id, doc in docs:
        if doc.get("algorithm") != FunctionName.TEXT_EMBEDDING.value:
            continue
        table.setdefault(str(doc.get("name") or ""), []).append(model_id)
        created[model_id] = int(doc.get("created_time") or 0) // 1000
    return table, created


class OpenAIService:
    def __init__(self, services, opensearch):
        """``services``: api/services.py's shared facade; ``opensearch``: the OpenSearch dialect's."""
        self._svc = services
        self._os = opensearch
        self._at = 0.0
        self._shared: tuple[dict, dict] = ({}, {})

    async def _names(self, max_age: float = NAMES_TTL) -> tuple[dict[str, list[str]], dict[str, int]]:
        """:func:`read_names`, reused up to ``max_age`` seconds when it is the same for everyone
        (model access control off), read for each request otherwise."""
        if access.models_on(self._svc.ctx) and access.current() is not None:
            return await self._svc.run(read_names, self._svc.ctx)
        if time.monotonic() - self._at >= max_age:
            self._shared = await self._svc.run(read_names, self._svc.ctx)
            self._at = time.monotonic()
        return self._shared

    async def _resolve(self, name: str) -> tuple[str, dict[str, Any]]:
        """The model ``name`` names (its id, or the one text-embedding model of that name), with
        the prediction path's cached facts about it."""
        try:
            return name, await self._os.model_info(name)
        except NotFound:
            pass
        table, _ = await self._names()
        if name not in table:  # a model registered a moment ago: read again (at most ten times a second)
            table, _ = await self._names(MISS_MAX_AGE)
        ids = table.get(name, [])
        if len(ids) == 1:
            return ids[0], await self._os.model_info(ids[0])
        if ids:
            raise BadRequest(f"The model name [{name}] is shared by models {sorted(ids)}; name one by its id")
        raise NotFound(f"The model [{name}] does not exist: no model has that id, and no text embedding model "
                       "has that name")

    async def embed(self, name: str, texts: list[str]) -> np.ndarray:
        """The embeddings of ``texts`` by the model ``name`` names, as ``_predict`` computes them."""
        model_id, info = await self._resolve(name)
        if info["is_enabled"] is False:
            raise Forbidden("Model is disabled.")
        if info["algorithm"] != FunctionName.TEXT_EMBEDDING.value:
            raise BadRequest(f"The model [{name}] is a {info['algorithm']} model, not a text embedding model")
        return (await self._os.predict(model_id, info, "embed", texts)).vectors

    async def models(self) -> dict[str, int]:
        """Model id -> created (seconds) of every text-embedding model the caller may use."""
        _, created = await self._names()
        return created

    async def model(self, name: str) -> tuple[str, int]:
        model_id, _ = await self._resolve(name)
        await self._os.model(model_id)  # 403 for a model the caller may not use
        _, created = await self._names()
        return model_id, created.get(model_id, 0)


def as_model(model_id: str, created: int) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": "mlcommons"}
