"""Connectors: how a remote model reaches the service that hosts it (ML Commons' connector).

A connector names a protocol (``http``, or ``aws_sigv4`` for SageMaker and Bedrock), parameters
that fill its templates, credentials (encrypted before they are stored, never shown), actions (a
PREDICT action's method, URL, headers, request body and pre/post-process functions) and a
``client_config`` (connections, time-outs, retries). Validation follows ML Commons' order and
words (common/.../connector/ in ml-commons). Every number, size and pattern a client sends is
bounded here, where ML Commons bounds none.
"""
from __future__ import annotations

import re
from typing import Any, Iterator

import orjson

from mlcommons.core import limits
from mlcommons.core.context import Context
from mlcommons.core.remote import urls
from mlcommons.core.security import access
from mlcommons.core.serving.lifecycle import ACTIVE_MODEL_STATES
from mlcommons.errors import BadRequest, Conflict, NotFound
from mlcommons.ids import new_id, now_ms
from mlcommons.store import keys as K
from mlcommons.store.documents import Tx

PROTOCOLS = ("aws_sigv4", "http")
ACTION_TYPES = ("PREDICT", "EXECUTE", "BATCH_PREDICT", "CANCEL_BATCH_PREDICT", "BATCH_PREDICT_STATUS")
BACKOFF_POLICIES = ("constant", "exponential_equal_jitter", "exponential_full_jitter")
# client_config: ML Commons' names and defaults, and our bounds (ML Commons has none).
CLIENT_CONFIG: dict[str, tuple[int, int, int]] = {  # name -> (default, minimum, maximum)
    "max_connection": (30, 1, 1024),
    "connection_timeout": (30, 1, 3600),      # seconds
    "read_timeout": (30, 1, 3600),            # seconds
    "retry_backoff_millis": (200, 1, 600_000),
    "retry_timeout_seconds": (30, 0, 3600),
    "max_retry_times": (0, -1, 100),          # -1: until retry_timeout_seconds
}
MAX_ACTIONS = 16
MAX_TEXT = 64 * 1024  # a URL, a header value or a request body template
# Headers a ${parameters.X} may not fill: a request's parameters must not choose who is calling.
CREDENTIAL_ONLY_HEADERS = frozenset((
    "authorization", "proxy-authorization", "cookie", "x-api-key", "x-auth-token", "x-auth-header",
    "x-forwarded-for", "x-real-ip", "x-client-ip", "cf-connecting-ip", "true-client-ip", "x-originating-ip",
    "host", "x-forwarded-host", "x-forwarded-server", "forwarded"))
_SAFE_TEXT = re.compile(r"^[\w\s.,!?():@\-_/'\"]*$")
_NAME_TEXT = "letters, numbers, spaces, and basic punctuation (.,!?():@-_'/\")"
REMOTE_DISABLED = ('Remote Inference is currently disabled. To enable it, update the setting '
                   '"plugins.ml_commons.remote_inference_enabled" to true.')


def not_found(connector_id: str) -> NotFound:
    return NotFound(f"Failed to find connector with the provided connector id: {connector_id}")


def check_enabled(ctx: Context) -> None:
    if not ctx.settings.get("plugins.ml_commons.remote_inference.enabled"):
        raise BadRequest(REMOTE_DISABLED)


def _validation(message: str) -> BadRequest:
    return BadRequest(f"Validation Failed: 1: {message};", error_type="action_request_validation_exception")


def _text(value: Any, field: str, maximum: int = MAX_TEXT) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"[{field}] must be a string")
    if len(value) > maximum:
        raise BadRequest(f"[{field}] is longer than {maximum} characters")
    return value


def _string_map(value: Any, field: str) -> dict[str, str]:
    """A flat map of strings; as in ML Commons, a non-string value becomes its JSON text."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"[{field}] must be an object")
    limits.small_object(value, field)
    out = {}
    for key, item in value.items():
        out[_text(key, field, 256)] = item if isinstance(item, str) else orjson.dumps(item).decode()
    return out


def parse_client_config(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise BadRequest("[client_config] must be an object")
    out: dict[str, Any] = {}
    for name, (default, low, high) in CLIENT_CONFIG.items():
        value = raw.get(name, default)
        number = limits.strict_int(value) if isinstance(value, str) else value
        if not isinstance(number, int) or isinstance(number, bool) or not low <= number <= high:
            raise BadRequest(f"[client_config.{name}] must be an integer from {low} to {high}")
        out[name] = number
    policy = raw.get("retry_backoff_policy", "constant")
    if not isinstance(policy, str) or policy.lower() not in BACKOFF_POLICIES:
        raise BadRequest("Unsupported retry backoff policy")
    out["retry_backoff_policy"] = policy.lower()
    unknown = sorted(set(raw) - set(out) - {"skip_ssl_verification", "mutual_tls_enabled", "keystore_type"})
    if unknown:
        raise BadRequest(f"[client_config] has unknown fields {unknown[:10]}")
    return out


def parse_actions(raw: Any) -> list[dict[str, Any]]:
    if raw is None:
        raise BadRequest("No actions configured for this connector")
    if not isinstance(raw, list):
        raise BadRequest("[actions] must be a list of objects")
    if len(raw) > MAX_ACTIONS:
        raise BadRequest(f"[actions] may hold at most {MAX_ACTIONS} actions")
    out = []
    for item in raw:
        if not isinstance(item, dict):
            raise BadRequest("[actions] must be a list of objects")
        kind = item.get("action_type")
        if kind is None:
            raise BadRequest("action type can't be null")
        kind = _text(kind, "action_type", 64).upper()
        if kind not in ACTION_TYPES:
            raise BadRequest(f"No enum constant org.opensearch.ml.common.connector.ConnectorAction.ActionType.{kind}")
        if item.get("url") is None:
            raise BadRequest("url can't be null")
        if item.get("method") is None:
            raise BadRequest("method can't be null")
        action: dict[str, Any] = {"action_type": kind, "method": _text(item["method"], "method", 16),
                                  "url": _text(item["url"], "url", 8192)}
        headers = _string_map(item.get("headers"), "headers")
        for header, value in headers.items():
            if header.lower() in CREDENTIAL_ONLY_HEADERS and "${parameters." in value:
                raise BadRequest(f"Header '{header}' cannot use ${{parameters.*}} placeholders for security reasons. "
                                 "Use ${credential.*} instead.")
        if headers:
            action["headers"] = headers
        for field in ("request_body", "pre_process_function", "post_process_function"):
            if item.get(field) is not None:
                action[field] = _text(item[field], field)
        if item.get("name") is not None:
            action["name"] = _action_name(item["name"])
        out.append(action)
    return out


def _action_name(value: Any) -> str:
    name = _text(value, "name", 1024)
    if any(ord(c) < 32 for c in name):
        raise BadRequest("Action name must not contain control characters")
    if len(name) > 64:
        raise BadRequest("Action name exceeds maximum length of 64 characters")
    if not re.fullmatch(r"[a-zA-Z0-9_-]+", name):
        raise BadRequest("Action name contains invalid characters. Only alphanumeric characters, hyphens, and "
                         "underscores are allowed")
    if name.upper() in ACTION_TYPES:
        raise BadRequest(f"name can't be one of action type [{', '.join(ACTION_TYPES)}]")
    return name


def _safe_text(value: Any, what: str) -> str:
    text = limits.name(value) if what == "name" else limits.description(value)
    if not _SAFE_TEXT.match(text):
        raise _validation(f"Model connector {what} can only contain {_NAME_TEXT}")
    return text


def parse(body: dict[str, Any]) -> dict[str, Any]:
    """A new connector's fields, checked in ML Commons' order (credential still in clear)."""
    limits.small_object(body, "connector")
    if body.get("name") is None:
        raise BadRequest("Connector name is null")
    if body.get("version") is None:
        raise BadRequest("Connector version is null")
    if body.get("protocol") is None:
        raise BadRequest("Connector protocol is null")
    credential = _string_map(body.get("credential"), "credential")
    if not credential:
        raise BadRequest("Connector credential is null or empty list")
    protocol = _text(body["protocol"], "protocol", 64)
    if protocol not in PROTOCOLS:
        raise BadRequest(f"Unsupported connector protocol. Please use one of [{', '.join(PROTOCOLS)}]")
    name = str(body["name"]) if not isinstance(body["name"], (dict, list)) else ""
    if not name.strip():
        raise _validation("Model connector name is required and cannot be null or blank")
    doc: dict[str, Any] = {
        "name": _safe_text(name, "name"),
        "version": _text(str(body["version"]) if isinstance(body["version"], (int, float)) else body["version"],
                         "version", 64),
        "protocol": protocol,
        "parameters": _string_map(body.get("parameters"), "parameters"),
        "credential": credential,
        "actions": parse_actions(body.get("actions")),
    }
    if body.get("description") is not None:
        doc["description"] = _safe_text(body["description"], "description")
    client_config = parse_client_config(body.get("client_config"))
    if client_config is not None:
        doc["client_config"] = client_config
    check_protocol(doc)
    return doc


def check_protocol(doc: dict[str, Any]) -> None:
    if doc["protocol"] == "aws_sigv4":
        credential, parameters = doc.get("credential") or {}, doc.get("parameters") or {}
        if "access_key" not in credential or "secret_key" not in credential:
            raise BadRequest("Missing credential")
        if "service_name" not in parameters and "service_name" not in credential:
            raise BadRequest("Missing service name")
        if "region" not in parameters and "region" not in credential:
            raise BadRequest("Missing region")


def check_urls(ctx: Context, doc: dict[str, Any]) -> None:
    """Each action's URL, its connector parameters filled in, must match a trusted pattern."""
    patterns = ctx.settings.get("plugins.ml_commons.trusted_connector_endpoints_regex")
    for action in doc["actions"]:
        urls.check_trusted(urls.fill(action["url"], doc.get("parameters") or {}), patterns)


# --- storage ---------------------------------------------------------------------------------

def create(ctx: Context, body: dict[str, Any]) -> str:
    check_enabled(ctx)
    acl = access.acl_of(access.connectors_on(ctx), body, "connector")
    doc = parse(body)
    check_urls(ctx, doc)
    if body.get("dry_run") is True:
        return "dryRunConnector"
    doc.update(acl or {})
    now = now_ms()
    doc.update(credential=ctx.secrets.seal(doc["credential"]), created_time=now, last_updated_time=now, _version=1)
    connector_id = new_id()
    ctx.docs.transact(lambda tx: tx.put(K.CONNECTOR, connector_id, doc, created=now))
    return connector_id


def get(ctx: Context, connector_id: str) -> dict[str, Any]:
    doc = ctx.docs.get(K.CONNECTOR, connector_id)
    if doc is None:
        raise not_found(connector_id)
    access.check_connector(ctx, doc)
    return doc


def all_docs(ctx: Context) -> Iterator[tuple[str, dict[str, Any]]]:
    return ctx.docs.all(K.CONNECTOR)


def users(ctx: Context, connector_id: str, *, deployed_only: bool) -> list[str]:
    """The models that use a connector (only those some node serves, with ``deployed_only``)."""
    out = []
    for model_id, model in ctx.docs.all(K.MODEL):
        if model.get("connector_id") != connector_id:
            continue
        if deployed_only and not (model.get("current_worker_nodes")
                                  or model.get("model_state") in {s.value for s in ACTIVE_MODEL_STATES}):
            continue
        out.append(model_id)
    return sorted(out)


def update(ctx: Context, connector_id: str, body: dict[str, Any]) -> int:
    """ML Commons' merge: parameters merged, everything else given replaced; refused while a
    deployed model uses the connector. Returns the new version."""
    check_enabled(ctx)
    if not body:
        raise BadRequest("Failed to update connector: Request body is empty", error_type="parse_exception")
    limits.small_object(body, "connector")
    changes: dict[str, Any] = {}
    if body.get("name") is not None:
        changes["name"] = _safe_text(str(body["name"]), "name")
    if body.get("description") is not None:
        changes["description"] = _safe_text(body["description"], "description")
    if body.get("version") is not None:
        changes["version"] = _text(str(body["version"]), "version", 64)
    if body.get("protocol") is not None:
        changes["protocol"] = _text(body["protocol"], "protocol", 64)
        if changes["protocol"] not in PROTOCOLS:
            raise BadRequest(f"Unsupported connector protocol. Please use one of [{', '.join(PROTOCOLS)}]")
    credential = _string_map(body.get("credential"), "credential")
    if body.get("actions") is not None:
        changes["actions"] = parse_actions(body["actions"])
    if body.get("client_config") is not None:
        changes["client_config"] = parse_client_config(body["client_config"])
    parameters = _string_map(body.get("parameters"), "parameters")
    sealed = ctx.secrets.seal(credential) if credential else None

    def tx_body(tx: Tx) -> int:
        doc = tx.get(K.CONNECTOR, connector_id)
        if doc is None:
            raise not_found(connector_id)
        access.check_connector(ctx, doc)
        merged = {**doc, **changes, "parameters": {**(doc.get("parameters") or {}), **parameters}}
        if credential:
            check_protocol({**merged, "credential": credential})
        else:
            check_protocol({**merged, "credential": {k: "" for k in doc.get("credential") or {}}})
        check_urls(ctx, merged)
        using = users(ctx, connector_id, deployed_only=True)
        if using:
            raise BadRequest(f"{len(using)} models are still using this connector, please undeploy the models "
                             f"first: [{', '.join(using)}]")
        version = int(doc.get("_version") or 1) + 1
        fields = {**changes, "parameters": merged["parameters"], "last_updated_time": now_ms(), "_version": version}
        if sealed:
            fields["credential"] = sealed
        tx.update(K.CONNECTOR, connector_id, fields)
        return version

    return ctx.docs.transact(tx_body)


def delete(ctx: Context, connector_id: str) -> int | None:
    """Delete a connector no model uses; returns the version of the delete, None if it was not there."""
    def tx_body(tx: Tx) -> int | None:
        doc = tx.get(K.CONNECTOR, connector_id)
        if doc is None:
            return None
        access.check_connector(ctx, doc)
        using = users(ctx, connector_id, deployed_only=False)
        if using:
            raise Conflict(f"{len(using)} models are still using this connector, please delete or update the "
                           f"models first: [{', '.join(using[:10])}]")
        tx.delete(K.CONNECTOR, connector_id)
        return int(doc.get("_version") or 1) + 1

    return ctx.docs.transact(tx_body)
