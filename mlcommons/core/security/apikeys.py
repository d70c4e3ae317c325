"""Elasticsearch-style API keys: ``POST /_security/api_key`` gives an ``id`` and a secret
``api_key``; clients send ``Authorization: ApiKey base64(id:api_key)``.

The secret is 128 random bits, so a SHA-256 of it is as good as a slow hash (nothing to guess) and
costs nothing per request. A key carries its owner's roles as they were when it was made; GET
lists a user's own keys (an administrator's, anyone's); DELETE invalidates (the key stays listed,
``invalidated: true``, as in Elasticsearch). Every change raises the security epoch.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from typing import Any

from mlcommons.core.context import Context
from mlcommons.core.security import roles as role_table
from mlcommons.core.security.users import bump_epoch
from mlcommons.errors import BadRequest
from mlcommons.ids import now_ms
from mlcommons.store import keys as K

ID = re.compile(r"^[A-Za-z0-9_-]{20}$")
_TIME = re.compile(r"^(\d{1,9})(ms|s|m|h|d)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
MAX_EXPIRATION_MS = 10 * 365 * 86_400_000


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _expiration(value: Any) -> int | None:
    if value is None:
        return None
    found = _TIME.match(value) if isinstance(value, str) else None
    if not found:
        raise BadRequest(f"failed to parse setting [expiration] with value [{str(value)[:100]}] as a time value: "
                         "unit is missing or unrecognized")
    ms = int(found.group(1)) * _UNIT_MS[found.group(2)]
    if not 0 < ms <= MAX_EXPIRATION_MS:
        raise BadRequest("[expiration] must be more than 0 and at most 3650d")
    return ms


def create(ctx: Context, owner: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """``owner``: the authenticated user (``username``, ``roles``, ``backend_roles``)."""
    unknown = sorted(set(body) - {"name", "expiration", "metadata", "role_descriptors"})
    if unknown:
        raise BadRequest(f"unknown field [{unknown[0]}]")
    name = body.get("name")
    if not isinstance(name, str) or not 0 < len(name) <= 256:
        raise BadRequest("Validation Failed: 1: api key name is required and must be 1 to 256 characters;",
                         error_type="action_request_validation_exception")
    if body.get("role_descriptors"):
        raise BadRequest("[role_descriptors] are not supported: a key has its owner's roles")
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict) or len(str(metadata)) > 8192:
        raise BadRequest("[metadata] must be an object of at most 8 KiB")
    lifetime = _expiration(body.get("expiration"))
    key_id = secrets.token_urlsafe(15)[:20]
    secret = secrets.token_urlsafe(16)[:22]
    now = now_ms()
    doc = {"name": name, "key_hash": _hash(secret), "username": owner["username"], "roles": list(owner["roles"]),
           "backend_roles": list(owner.get("backend_roles") or []), "creation": now,
           "expiration": now + lifetime if lifetime else None, "invalidated": False, "invalidation": None,
           "metadata": metadata}
    ctx.docs.create(K.API_KEY, key_id, doc)
    bump_epoch(ctx)
    out = {"id": key_id, "name": name, "api_key": secret,
           "encoded": base64.b64encode(f"{key_id}:{secret}".encode()).decode()}
    if doc["expiration"]:
        out["expiration"] = doc["expiration"]
    return out


def view(key_id: str, doc: dict[str, Any]) -> dict[str, Any]:
    out = {"id": key_id, "name": doc["name"], "type": "rest", "creation": doc["creation"],
           "invalidated": doc["invalidated"], "username": doc["username"], "realm": "native", "metadata":
           doc.get("metadata") or {}}
    if doc.get("expiration"):
        out["expiration"] = doc["expiration"]
    if doc.get("invalidation"):
        out["invalidation"] = doc["invalidation"]
    return out


def _selected(ctx: Context, caller: dict[str, Any], params: dict[str, Any]) -> list[tuple[str, dict]]:
    """The keys ``params`` (``id``, ``ids``, ``name``, ``username``, ``owner``) select among those
    the caller may see: their own, or anyone's for an administrator."""
    admin = role_table.is_admin(caller["roles"]) and not params.get("owner")
    ids = params.get("ids") or ([params["id"]] if params.get("id") else None)
    if ids is not None and (not isinstance(ids, list) or len(ids) > 1000 or not all(isinstance(i, str) for i in ids)):
        raise BadRequest("[ids] must be a list of at most 1000 key ids")
    name, username = params.get("name"), params.get("username")
    found = []
    for key_id, doc in (((i, ctx.docs.get(K.API_KEY, i)) for i in ids if ID.match(i)) if ids is not None
                        else ctx.docs.all(K.API_KEY)):
        if doc is None:
            continue
        if not admin and doc["username"] != caller["username"]:
            continue
        if name and doc["name"] != name:
            continue
        if username and doc["username"] != username:
            continue
        found.append((key_id, doc))
    return sorted(found, key=lambda kv: kv[1]["creation"])


def listing(ctx: Context, caller: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    return {"api_keys": [view(k, d) for k, d in _selected(ctx, caller, params)]}


def invalidate(ctx: Context, caller: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    if not any(params.get(f) for f in ("id", "ids", "name", "username", "owner")):
        raise BadRequest("Validation Failed: 1: One of [api key id(s), api key name, username, realm name] must be "
                         "specified if [owner] flag is false;", error_type="action_request_validation_exception")
    done, before = [], []
    for key_id, doc in _selected(ctx, caller, params):
        if doc["invalidated"]:
            before.append(key_id)
            continue
        ctx.docs.update(K.API_KEY, key_id, {"invalidated": True, "invalidation": now_ms()})
        done.append(key_id)
    if done:
        bump_epoch(ctx)
    return {"invalidated_api_keys": done, "previously_invalidated_api_keys": before, "error_count": 0}


def verify(ctx: Context, key_id: str, secret: str) -> dict[str, Any] | None:
    """The key's document when the secret is its own and it is neither invalidated nor expired."""
    if not ID.match(key_id or ""):
        return None
    doc = ctx.docs.get(K.API_KEY, key_id)
    if doc is None or not hmac.compare_digest(doc["key_hash"], _hash(secret)):
        return None
    if doc["invalidated"] or (doc.get("expiration") and doc["expiration"] <= now_ms()):
        return None
    return doc
