"""The OpenAPI description against the router: every route described, every description a route,
path parameters named as the router names them; the document valid OpenAPI 3.1 with valid JSON
schemas whose references all resolve; and served as it is built."""
from __future__ import annotations

import re

import jsonschema_rs
from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

from mlcommons.api.app import create_app
from mlcommons.openapi.document import METHODS, document
from mlcommons.openapi.handlers import PATH


def _key(path: str) -> str:
    """A route as both sides name it: the trailing-slash twin folded into its route."""
    return path.rstrip("/") or "/"


def router_routes(ctx) -> set[tuple[str, str]]:
    """(METHOD, path) of every route of the app, the twins add_routes registers with a trailing
    slash left out; HEAD counts where a route has it."""
    app = create_app(ctx, watcher=False)
    return {(route.method, _key(route.resource.canonical)) for route in app.router.routes()}


def described_routes() -> set[tuple[str, str]]:
    return {(method.upper(), _key(path)) for path, item in document()["paths"].items()
            for method in item if method in METHODS}


def test_every_route_is_described_and_every_description_is_a_route(ctx):
    routes = router_routes(ctx)
    described = described_routes()
    assert sorted(routes - described) == [], "routes without a description in mlcommons/openapi/"
    assert sorted(described - routes) == [], "descriptions of routes the router does not have"


def test_path_parameters_are_the_routers_and_are_declared():
    for path, item in document()["paths"].items():
        names = set(re.findall(r"\{([^}]+)\}", path))
        for method, operation in item.items():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == names, (method, path, declared)
            queries = [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]
            assert len(queries) == len(set(queries)), (method, path, queries)


def test_the_document_is_valid_openapi_3_1():
    doc = document()
    OPENAPI_31_VALIDATOR.validate(doc)
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))


def _schemas(node, where="#"):
    """Every JSON schema of the document: components' and those inline in parameters and contents."""
    if isinstance(node, dict):
        if "schema" in node and isinstance(node["schema"], dict):
            yield where + "/schema", node["schema"]
        for key, value in node.items():
            yield from _schemas(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _schemas(value, f"{where}/{i}")


def _refs(node):
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_schemas_are_valid_json_schema_and_every_reference_resolves():
    doc = document()
    for name, schema in doc["components"]["schemas"].items():
        assert jsonschema_rs.meta.is_valid(schema), name
    for where, schema in _schemas(doc["paths"]):
        resolved = {**schema, "$defs": {}}  # references are checked below; the meta-schema checks the rest
        assert jsonschema_rs.meta.is_valid(resolved), where
    for target in set(_refs(doc)):
        assert target.startswith("#/components/"), target
        node = doc
        for part in target[2:].split("/"):
            assert part in node, target
            node = node[part]


def test_every_operation_answers_its_errors_in_its_dialects_shape():
    for path, item in document()["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert "200" in responses, (method, path)
            expected = "OpenAIError" if path.startswith("/v1/") else "Error"
            for status in ("400", "401", "403", "421"):
                assert responses[status] == {"$ref": f"#/components/responses/{expected}"}, (method, path, status)
            if "requestBody" in operation:
                assert {"406", "413"} <= set(responses), (method, path)


async def test_served_as_built(client):
    resp = await client.get(PATH)
    assert resp.status == 200 and resp.content_type == "application/json"
    assert await resp.json() == document()
