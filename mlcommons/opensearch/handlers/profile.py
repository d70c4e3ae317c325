"""/_plugins/_ml/profile: where each model runs and what its predictions cost, per node."""
from __future__ import annotations

from aiohttp import web

from mlcommons.api.http import OPENSEARCH, read_json, respond, string_list


async def profile_models(request: web.Request) -> web.Response:
    body = await read_json(request) or {}
    ids = request.match_info.get("model_ids")
    model_filter = [i for i in ids.split(",") if i] if ids else string_list(body, "model_ids")
    view = request.query.get("view", "node")
    return respond(await request.app[OPENSEARCH].profile(model_filter, string_list(body, "node_ids"), view))


ROUTES = [
    ("GET", "/profile", profile_models),
    ("GET", "/profile/models", profile_models),
    ("GET", "/profile/models/{model_ids}", profile_models),
]
