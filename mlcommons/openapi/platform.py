"""What is neither dialect's: the cluster endpoints (mlcommons/api/cluster.py), security
(mlcommons/api/security.py), OpenAI's embeddings API (mlcommons/openai/handlers.py), the metrics,
the models page, and this description itself."""
from __future__ import annotations

from typing import Any

from mlcommons.openapi.parts import (
    ANY,
    ANY_OBJECT,
    BOOLEAN,
    FLOATS,
    INTEGER,
    NULLABLE_STRING,
    NUMBER,
    STRING,
    STRINGS,
    Schema,
    array,
    enum,
    errors,
    flag,
    json_body,
    json_content,
    obj,
    operation,
    path,
    query,
    ref,
)
from mlcommons.setting_table import SETTINGS as TABLE
from mlcommons.setting_table import Setting

CLUSTER = "Cluster"
SECURITY = "Security"
OPENAI = "OpenAI"
SERVICE = "Service"

SCHEMAS: dict[str, Any] = {
    "RootInfo": obj({
        "name": STRING, "cluster_name": STRING, "cluster_uuid": STRING,
        "version": obj({"number": STRING, "distribution": STRING, "build_flavor": STRING, "build_type": STRING,
                        "mlcommons_version": STRING, "minimum_wire_compatibility_version": STRING,
                        "minimum_index_compatibility_version": STRING}, ("number",)),
        "tagline": STRING,
    }, ("name", "cluster_name", "cluster_uuid", "version", "tagline"),
        description="OpenSearch's answer; Elasticsearch's (version 9) to a client that asks for "
                    "application/vnd.elasticsearch+json."),
    "ClusterHealth": obj({
        "cluster_name": STRING, "status": enum("green", "yellow", "red"), "timed_out": BOOLEAN,
        "number_of_nodes": INTEGER, "number_of_data_nodes": INTEGER, "unassigned_shards": INTEGER,
        "active_shards_percent_as_number": NUMBER,
    }, ("cluster_name", "status", "timed_out", "number_of_nodes")),
    "User": obj({"username": STRING, "roles": STRINGS, "backend_roles": STRINGS, "full_name": NULLABLE_STRING,
                 "email": NULLABLE_STRING, "metadata": ANY_OBJECT, "enabled": BOOLEAN}, ("username", "roles")),
    "ApiKey": obj({"id": STRING, "name": STRING, "type": STRING, "creation": INTEGER, "expiration": INTEGER,
                   "invalidated": BOOLEAN, "invalidation": INTEGER, "username": STRING, "realm": STRING,
                   "metadata": ANY_OBJECT}, ("id", "name", "invalidated", "username")),
    "OpenAIModel": obj({"id": STRING, "object": {"type": "string", "const": "model"}, "created": INTEGER,
                        "owned_by": STRING}, ("id", "object", "created", "owned_by")),
}
SETTINGS = obj(values={}, description="Settings by name: flat (dotted names) with flat_settings, nested otherwise.")
_KINDS = {bool: BOOLEAN, int: INTEGER, float: NUMBER, str: STRING, list: array({})}


def _setting(setting: Setting) -> Schema:
    value = dict(_KINDS.get(setting.kind, {}))
    for bound in ("minimum", "maximum"):
        if getattr(setting, bound) is not None and setting.kind in (int, float):
            value[bound] = getattr(setting, bound)
    return {"anyOf": [value, {"type": "null"}], "description": setting.doc}


# The dynamic settings, by their dotted names; nested objects spelling the same names are taken too.
_DYNAMIC = obj({name: _setting(setting) for name, setting in sorted(TABLE.items()) if setting.dynamic})
SETTINGS_BODY = obj({"persistent": _DYNAMIC, "transient": _DYNAMIC}, closed=True,
                    description="Settings to set (null resets one to its default); at least one. A static "
                                "setting or an unknown name is refused (400).")
SECURITY_OFF = "With security off these answer 400 (security_exception) and say how to turn it on."


def _cluster() -> dict[str, Any]:
    flat = flag("flat_settings", "Dotted names instead of nested objects.")
    root = operation("Who this is: OpenSearch's (or, to an Elasticsearch client, Elasticsearch's) cluster info",
                     tag=CLUSTER, ok=ref("RootInfo"))
    return {
        "/": {"get": root, "head": operation("Whether the API answers", tag=CLUSTER,
                                             responses={"200": {"description": "It does (no body)."}})},
        "/_cluster/settings": {
            "get": operation("The dynamic settings set in the cluster", tag=CLUSTER,
                             ok=obj({"persistent": SETTINGS, "transient": SETTINGS, "defaults": SETTINGS},
                                    ("persistent", "transient")),
                             params=[flat, flag("include_defaults", "Every setting's default too.")]),
            "put": operation("Set dynamic settings", tag=CLUSTER, body=json_body(SETTINGS_BODY), params=[flat],
                             ok=obj({"acknowledged": BOOLEAN, "persistent": SETTINGS, "transient": SETTINGS},
                                    ("acknowledged", "persistent", "transient"))),
        },
        "/_nodes": {"get": operation(
            "The live worker nodes and what they hold", tag=CLUSTER,
            ok=obj({"_nodes": obj({"total": INTEGER, "successful": INTEGER, "failed": INTEGER}),
                    "cluster_name": STRING,
                    "nodes": obj(values=obj({"name": {}, "host": {}, "roles": {}, "memory": {}, "models": STRINGS}))},
                   ("_nodes", "cluster_name", "nodes")))},
        "/_cluster/health": {"get": operation(
            "The cluster's health, optionally waiting for a status or a number of nodes", tag=CLUSTER,
            params=[query("wait_for_status", "Wait until the status is this or better.", enum("green", "yellow", "red")),
                    query("wait_for_nodes", "Wait for a number of live nodes: N, >=N, <=N, >N, <N, ge(N)..."),
                    query("timeout", "How long to wait (30s by default, 300s at most).")],
            responses={"200": {"description": "The health.", "content": json_content(ref("ClusterHealth"))},
                       "408": {"description": "What was waited for did not come (timed_out is true).",
                               "content": json_content(ref("ClusterHealth"))}})},
    }


def _security() -> dict[str, Any]:
    user = path("name", "A user name (for GET, several separated by commas).")
    key_body = obj({"name": STRING, "expiration": STRING, "metadata": ANY_OBJECT, "role_descriptors": ANY_OBJECT},
                   ("name",))
    created = obj({"id": STRING, "name": STRING, "api_key": STRING, "encoded": STRING, "expiration": INTEGER},
                  ("id", "name", "api_key", "encoded"))
    key_params = [query("id", "A key's id."), query("name", "A key's name."), query("username", "Its owner."),
                  flag("owner", "Only the caller's own keys.")]
    users = obj(values=ref("User"), description="By user name.")
    users_op = operation("Users of the native realm", tag=SECURITY, ok=users,
                         responses={"200": {"description": "The users.", "content": json_content(users)},
                                    "404": {"description": "None of the named users exists ({}).",
                                            "content": json_content(users)}})
    put_user = operation("Create or change a user", tag=SECURITY, ok=obj({"created": BOOLEAN}, ("created",)),
                         params=[user], fails=(409,),
                         body=json_body(obj({"password": STRING, "roles": STRINGS, "backend_roles": STRINGS,
                                             "full_name": NULLABLE_STRING, "email": NULLABLE_STRING,
                                             "enabled": BOOLEAN, "metadata": ANY_OBJECT})))
    create_key = operation("Create an API key for the caller", tag=SECURITY, ok=created, body=json_body(key_body))
    return {
        "/_security/_authenticate": {"get": operation(
            "Who the caller is (Elasticsearch)", tag=SECURITY, description=SECURITY_OFF,
            ok=obj({"username": STRING, "roles": STRINGS, "enabled": BOOLEAN, "authentication_realm": ANY_OBJECT,
                    "authentication_type": STRING, "api_key": ANY_OBJECT}, ("username", "roles")))},
        "/_plugins/_security/authinfo": {"get": operation(
            "Who the caller is (OpenSearch)", tag=SECURITY, description=SECURITY_OFF,
            ok=obj({"user": STRING, "user_name": STRING, "backend_roles": STRINGS, "roles": STRINGS},
                   ("user", "user_name", "backend_roles", "roles")))},
        "/_security/api_key": {
            "post": create_key, "put": create_key,
            "get": operation("The caller's API keys (anyone's, for an admin)", tag=SECURITY, params=key_params,
                             ok=obj({"api_keys": array(ref("ApiKey"))}, ("api_keys",))),
            "delete": operation("Invalidate API keys", tag=SECURITY, params=key_params,
                                body=json_body(obj({"ids": STRINGS, "name": STRING, "username": STRING,
                                                    "owner": BOOLEAN}), required=False),
                                ok=obj({"invalidated_api_keys": STRINGS, "previously_invalidated_api_keys": STRINGS,
                                        "error_count": INTEGER}, ("invalidated_api_keys",))),
        },
        "/_security/user": {"get": users_op},
        "/_security/user/{name}": {
            "get": {**users_op, "parameters": [user]},
            "put": put_user, "post": put_user,
            "delete": operation("Delete a user", tag=SECURITY, params=[user], fails=(404,),
                                ok=obj({"found": BOOLEAN}, ("found",))),
        },
    }


def _openai() -> dict[str, Any]:
    model = path("model", "A model's id.")
    embeddings = obj({
        "object": {"type": "string", "const": "list"},
        "data": array(obj({"object": {"type": "string", "const": "embedding"}, "index": INTEGER,
                           "embedding": {"anyOf": [FLOATS, {"type": "string", "contentEncoding": "base64"}]}},
                          ("object", "index", "embedding"))),
        "model": STRING, "usage": obj({"prompt_tokens": INTEGER, "total_tokens": INTEGER}),
    }, ("object", "data", "model", "usage"))
    body = obj({
        "model": {"type": "string", "minLength": 1, "maxLength": 512},
        "input": {"anyOf": [{"type": "string", "minLength": 1},
                            array({"type": "string", "minLength": 1}, minItems=1)]},
        "encoding_format": enum("float", "base64"), "dimensions": {"type": "integer", "minimum": 1},
        "user": STRING,
    }, ("model", "input"), description="model: an id, or a name exactly one text-embedding model has.")
    return {
        "/v1/embeddings": {"post": operation(
            "Embeddings, in OpenAI's shape", tag=OPENAI, ok=embeddings, openai=True, body=json_body(body),
            fails=(404, 408, 409, 429, 503),
            description="Goes the way a _predict goes: access, rate limit, 429, auto-deploy, time-out.")},
        "/v1/models": {"get": operation("Every text-embedding model", tag=OPENAI, openai=True,
                                        ok=obj({"object": {"type": "string", "const": "list"},
                                                "data": array(ref("OpenAIModel"))}, ("object", "data")))},
        "/v1/models/{model}": {"get": operation("One model", tag=OPENAI, openai=True, params=[model], fails=(404,),
                                                ok=ref("OpenAIModel"))},
    }


def _text(media: str, description: str, tag: str, summary: str, params=(), fails=()) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "tags": [tag]}
    if params:
        op["parameters"] = list(params)
    op["responses"] = {"200": {"description": description, "content": {media: {"schema": STRING}}},
                       **errors(set(ANY) | set(fails))}
    return op


def _service() -> dict[str, Any]:
    return {
        "/_prometheus/metrics": {"get": _text(
            "text/plain", "Prometheus' text exposition format (0.0.4), for the whole cluster.", SERVICE,
            "Metrics of the whole cluster")},
        "/ui/": {"get": _text("text/html", "The page.", SERVICE, "The models page")},
        "/ui/{file}": {"get": _text(
            "*/*", "The file (HTML, CSS or JavaScript).", SERVICE, "One of the models page's files",
            params=[path("file", "A file's name; only the page's own files are served.")], fails=(404,))},
        "/_plugins/_ml/openapi.json": {"get": operation(
            "This description (OpenAPI 3.1)", tag=SERVICE, ok=ANY_OBJECT,
            description="Public: it says what the API offers, nothing of what a cluster holds.")},
    }


def paths() -> dict[str, dict[str, Any]]:
    return {**_cluster(), **_security(), **_openai(), **_service()}
