"""The whole description: the parts' paths and schemas, with an operationId for each operation
(its method and path, spelled as a name), the security schemes and the tags."""
from __future__ import annotations

import copy
import functools
import re
from typing import Any

from mlcommons import __version__
from mlcommons.openapi import elasticsearch, opensearch, platform
from mlcommons.openapi.parts import ERROR_RESPONSES, ERROR_SCHEMAS

METHODS = ("get", "put", "post", "delete", "head")
DESCRIPTION = """\
One service, three dialects: OpenSearch ML Commons' REST API under /_plugins/_ml, Elasticsearch's
trained models and inference endpoints under /_ml and /_inference, and OpenAI's embeddings under /v1.

Every path also answers with a trailing slash. Errors come in the dialect's body: `{"error":
{"root_cause", "type", "reason"}, "status"}`, or OpenAI's `{"error": {"message", "type", "param",
"code"}}` under /v1/. A request body must be labelled application/json (406 otherwise). A client
that sends `Accept: application/vnd.elasticsearch+json; compatible-with=8` (or 7, 9) gets that
content type back on any JSON answer. With security on (`mlcommons.security.enabled`), every
route but a few public ones needs credentials: Basic, `ApiKey <base64 id:key>`, or under /v1/
`Bearer <api key>`.
"""


def _operation_id(method: str, route: str) -> str:
    words = re.sub(r"[^A-Za-z0-9]+", "_", route).strip("_") or "root"
    return f"{method}_{words}"


@functools.lru_cache(maxsize=1)
def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document (built once; callers must not change it)."""
    paths: dict[str, dict[str, Any]] = {}
    for part in (platform.paths(), opensearch.PATHS, elasticsearch.PATHS):
        for route, item in part.items():
            assert route not in paths, route
            paths[route] = {}
            for method in METHODS:
                if method in item:
                    # Parts share operations between a route and its older name: each gets its own copy.
                    operation = copy.deepcopy(item[method])
                    operation["operationId"] = _operation_id(method, route)
                    paths[route][method] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "mlcommons", "version": __version__, "description": DESCRIPTION,
                 "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"}},
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "tags": [{"name": name} for name in (platform.CLUSTER, opensearch.TAG, elasticsearch.TAG,
                                             elasticsearch.INFERENCE_TAG, platform.OPENAI, platform.SECURITY,
                                             platform.SERVICE)],
        "security": [{}, {"basic": []}, {"apiKey": []}, {"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": {**ERROR_SCHEMAS, **platform.SCHEMAS, **opensearch.SCHEMAS, **elasticsearch.SCHEMAS},
            "responses": ERROR_RESPONSES,
            "securitySchemes": {
                "basic": {"type": "http", "scheme": "basic", "description": "A user of the native realm."},
                "apiKey": {"type": "apiKey", "in": "header", "name": "Authorization",
                           "description": "ApiKey followed by base64 of id:api_key (the key's `encoded`)."},
                "bearer": {"type": "http", "scheme": "bearer", "description": "An API key, under /v1/."},
            },
        },
    }
