"""The pieces every part of the description is built from: JSON Schema shorthands, parameters,
bodies, the error responses of both error shapes, and :func:`operation`.

Schemas say what is certain and leave the rest open: an object lists the fields a response
always or sometimes has, with their types, and allows others (JSON Schema's default), since
stored documents carry whatever their writers gave them."""
from __future__ import annotations

from typing import Any

JSON = "application/json"
# What an Elasticsearch client asks for (``; compatible-with=8``) and gets back on any JSON answer
# (mlcommons/elasticsearch/protocol.py).
ES_JSON = "application/vnd.elasticsearch+json"
Schema = dict[str, Any]

STRING: Schema = {"type": "string"}
INTEGER: Schema = {"type": "integer"}
NUMBER: Schema = {"type": "number"}
BOOLEAN: Schema = {"type": "boolean"}
ANY_OBJECT: Schema = {"type": "object"}
STRINGS: Schema = {"type": "array", "items": STRING}
NULLABLE_STRING: Schema = {"type": ["string", "null"]}
NULLABLE_INTEGER: Schema = {"type": ["integer", "null"]}
FLOATS: Schema = {"type": "array", "items": NUMBER}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(properties: dict[str, Schema] | None = None, required: tuple[str, ...] | list[str] = (), *,
        closed: bool = False, values: Schema | None = None, description: str | None = None) -> Schema:
    """An object with these ``properties`` (``required`` ones always there); others allowed unless
    ``closed``, or allowed with the schema ``values``."""
    out: Schema = {"type": "object"}
    if description:
        out["description"] = description
    if properties:
        out["properties"] = properties
    if required:
        out["required"] = list(required)
    if closed:
        out["additionalProperties"] = False
    elif values is not None:
        out["additionalProperties"] = values
    return out


def array(items: Schema, **extra: Any) -> Schema:
    return {"type": "array", "items": items, **extra}


def enum(*values: str) -> Schema:
    return {"type": "string", "enum": list(values)}


def one_of_types(*schemas: Schema) -> Schema:
    return {"anyOf": list(schemas)}


# --- parameters and bodies ---------------------------------------------------------------------

def path(name: str, description: str, schema: Schema | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": schema or {"type": "string", "minLength": 1}}


def query(name: str, description: str, schema: Schema | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema or STRING}


def flag(name: str, description: str) -> dict[str, Any]:
    """A boolean query parameter: present, ``true`` or ``false``."""
    return query(name, description, enum("true", "false"))


def json_content(schema: Schema) -> dict[str, Any]:
    return {JSON: {"schema": schema}, ES_JSON: {"schema": schema}}


def json_body(schema: Schema, *, required: bool = True, description: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"required": required, "content": {JSON: {"schema": schema}}}
    if description:
        out["description"] = description
    return out


# --- errors ------------------------------------------------------------------------------------

ERROR_SCHEMAS: dict[str, Schema] = {
    "Error": obj({
        "error": obj({
            "root_cause": array(obj({"type": STRING, "reason": STRING}, ("type", "reason"))),
            "type": STRING,
            "reason": STRING,
        }, ("root_cause", "type", "reason")),
        "status": INTEGER,
    }, ("error", "status"), description="Elasticsearch's and OpenSearch's error body (mlcommons/errors.py)."),
    "OpenAIError": obj({
        "error": obj({"message": STRING, "type": STRING, "param": NULLABLE_STRING, "code": NULLABLE_STRING},
                     ("message", "type", "param", "code")),
    }, ("error",), description="OpenAI's error body, under /v1/ (mlcommons/openai/handlers.py)."),
}
ERROR_RESPONSES: dict[str, Any] = {
    "Error": {"description": "An error in Elasticsearch's and OpenSearch's shape, with the status in the body too.",
              "content": json_content(ref("Error"))},
    "OpenAIError": {"description": "An error in OpenAI's shape.", "content": {JSON: {"schema": ref("OpenAIError")}}},
}
# What any route may answer, whatever it does: 400 (a bad parameter, or an Elasticsearch
# compatible-with version we do not speak), 401 and 403 (security on, or a cross-site request),
# 421 (a Host that is not one of ours).
ANY = (400, 401, 403, 421)
# What a route that reads a JSON body adds: 406 (a body not labelled JSON) and 413 (too large).
WITH_BODY = (406, 413)
REASONS = {
    400: "The request is invalid: a parameter, a field or the body.",
    401: "Security is on and the request has no valid credentials.",
    403: "The user's roles do not allow this, or a browser sent a state-changing request from another site.",
    404: "Not found.",
    406: "The body is not labelled JSON.",
    408: "The operation did not finish within its time-out.",
    409: "Conflicts with the resource's current state.",
    413: "The body is too large.",
    421: "The Host header names none of this server's names.",
    429: "A bounded queue or a rate limit refused the request; retry after Retry-After seconds.",
    503: "No node can serve this now.",
}


def errors(statuses, *, openai: bool = False) -> dict[str, Any]:
    target = "#/components/responses/" + ("OpenAIError" if openai else "Error")
    return {str(status): {"$ref": target} for status in sorted(set(statuses))}


# --- operations --------------------------------------------------------------------------------

def operation(summary: str, *, tag: str, ok: Schema | None = None, fails=(), body: dict | None = None,
              params: list | tuple = (), description: str | None = None, openai: bool = False,
              responses: dict[str, Any] | None = None, ok_description: str = "Done.") -> dict[str, Any]:
    """One operation: its 200 answers ``ok`` (JSON), or ``responses`` when given; ``fails`` are the
    statuses it may answer besides the ones every route may (``ANY``, and ``WITH_BODY`` when it
    reads a body), all with the error body of its dialect (OpenAI's when ``openai``)."""
    statuses = set(ANY) | set(fails) | (set(WITH_BODY) if body is not None else set())
    out: dict[str, Any] = {"summary": summary, "tags": [tag]}
    if description:
        out["description"] = description
    if params:
        out["parameters"] = list(params)
    if body is not None:
        out["requestBody"] = body
    answers = dict(responses) if responses is not None else {
        "200": {"description": ok_description, "content": json_content(ok if ok is not None else ANY_OBJECT)}}
    answers.update({k: v for k, v in errors(statuses, openai=openai).items() if k not in answers})
    out["responses"] = dict(sorted(answers.items()))
    return out
