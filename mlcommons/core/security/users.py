"""Users of the native realm: names, password hashes, roles and backend roles, kept as documents.

Passwords are hashed with bcrypt (cost 12) over their SHA-256 (base64), so a password longer than
bcrypt's 72 bytes still counts whole. A hash takes about a quarter of a second of CPU; the API
checks each credential once and then remembers it (core/security/authn.py). Every change raises
the security epoch, so every API process forgets what it remembered.
"""
from __future__ import annotations

import base64
import hashlib
import re
import secrets
from typing import Any

from mlcommons.core.context import Context
from mlcommons.core.security import roles as role_table
from mlcommons.errors import BadRequest, NotFound
from mlcommons.ids import now_ms
from mlcommons.store import keys as K
from mlcommons.store.documents import Conflict

NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
PASSWORD_MIN, PASSWORD_MAX = 6, 1024
MAX_ROLES = 100
ROUNDS = 12
ADMIN = "admin"


def _prehash(password: str) -> bytes:
    return base64.b64encode(hashlib.sha256(password.encode()).digest())


def hash_password(password: str) -> str:
    import bcrypt

    return bcrypt.hashpw(_prehash(password), bcrypt.gensalt(ROUNDS)).decode()


def check_password(password: str, hashed: str) -> bool:
    import bcrypt

    try:
        return bcrypt.checkpw(_prehash(password), hashed.encode())
    except ValueError:
        return False


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise BadRequest(f"Validation Failed: 1: Invalid username [{str(name)[:100]}]. Usernames must be 1 to 64 "
                         "letters, digits or the characters _ . @ -;", error_type="action_request_validation_exception")
    return name


def check_password_text(password: Any) -> str:
    if not isinstance(password, str) or not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise BadRequest(f"Validation Failed: 1: passwords must be at least [{PASSWORD_MIN}] characters long and at "
                         f"most [{PASSWORD_MAX}];", error_type="action_request_validation_exception")
    return password


def _string_list(body: dict, field: str) -> list[str]:
    value = body.get(field, [])
    if not isinstance(value, list) or len(value) > MAX_ROLES or not all(
            isinstance(v, str) and 0 < len(v) <= 128 for v in value):
        raise BadRequest(f"[{field}] must be a list of at most {MAX_ROLES} names of 1 to 128 characters")
    return list(dict.fromkeys(value))


def bump_epoch(ctx: Context) -> None:
    ctx.redis.incr(ctx.keys.security_epoch())


def put(ctx: Context, name: str, body: dict[str, Any]) -> dict[str, bool]:
    """Create or update a user (Elasticsearch's put user): ``{"created": true|false}``."""
    check_name(name)
    unknown = sorted(set(body) - {"password", "roles", "backend_roles", "full_name", "email", "enabled", "metadata"})
    if unknown:
        raise BadRequest(f"unknown field [{unknown[0]}] in the user [{name}]")
    existing = ctx.docs.get(K.USER, name)
    doc: dict[str, Any] = {}
    if "password" in body or existing is None:
        if "password" not in body:
            raise BadRequest("Validation Failed: 1: password must be specified unless you are updating an existing "
                             "user;", error_type="action_request_validation_exception")
        doc["password_hash"] = hash_password(check_password_text(body["password"]))
    if "roles" in body or existing is None:
        given = _string_list(body, "roles")
        unknown_roles = role_table.unknown_roles(given)
        if unknown_roles:
            raise BadRequest(f"unknown roles {unknown_roles}; the roles are {sorted(role_table.ROLES)}")
        doc["roles"] = given
    if "backend_roles" in body or existing is None:
        doc["backend_roles"] = _string_list(body, "backend_roles")
    for field in ("full_name", "email"):
        if field in body:
            value = body[field]
            if value is not None and (not isinstance(value, str) or len(value) > 256):
                raise BadRequest(f"[{field}] must be a string of at most 256 characters")
            doc[field] = value
    if "enabled" in body:
        if not isinstance(body["enabled"], bool):
            raise BadRequest("[enabled] must be a boolean")
        doc["enabled"] = body["enabled"]
    now = now_ms()
    doc["last_updated_time"] = now
    if existing is None:
        doc.setdefault("enabled", True)
        doc["created_time"] = now
        try:
            ctx.docs.create(K.USER, name, doc)
        except Conflict:
            raise BadRequest(f"user [{name}] was created meanwhile; send the request again",
                             status=409, error_type="version_conflict_engine_exception") from None
    else:
        ctx.docs.update(K.USER, name, doc)
    bump_epoch(ctx)
    return {"created": existing is None}


def view(name: str, doc: dict[str, Any]) -> dict[str, Any]:
    return {"username": name, "roles": doc.get("roles", []), "backend_roles": doc.get("backend_roles", []),
            "full_name": doc.get("full_name"), "email": doc.get("email"), "metadata": {},
            "enabled": doc.get("enabled", True)}


def get(ctx: Context, names: list[str] | None) -> dict[str, Any]:
    if not names:
        return {name: view(name, doc) for name, doc in sorted(ctx.docs.all(K.USER))}
    found = {}
    for name in names:
        doc = ctx.docs.get(K.USER, name)
        if doc is not None:
            found[name] = view(name, doc)
    return found


def delete(ctx: Context, name: str) -> dict[str, bool]:
    check_name(name)
    if ctx.docs.get(K.USER, name) is None:
        raise NotFound(f"user [{name}] not found", error_type="resource_not_found_exception")
    ctx.docs.delete(K.USER, name)
    bump_epoch(ctx)
    return {"found": True}


def count(ctx: Context) -> int:
    return sum(1 for _ in ctx.docs.all(K.USER))


def ensure_admin(ctx: Context, password: str | None) -> str | None:
    """On a first secure start (no users at all): make ``admin`` with ``all_access``, with the
    given password or a generated one; the password it set (None when users existed)."""
    if count(ctx) > 0:
        return None
    password = password or secrets.token_urlsafe(18)
    try:
        put(ctx, ADMIN, {"password": password, "roles": ["all_access"]})
    except BadRequest:  # another process made it first
        return None
    return password


def verify(ctx: Context, name: str, password: str) -> dict[str, Any] | None:
    """The user's document when the password is theirs and the user is enabled, else None."""
    doc = ctx.docs.get(K.USER, name) if NAME.match(name or "") else None
    if doc is None or not doc.get("enabled", True):
        check_password(password, _DUMMY_HASH)  # the same time as a real check: no telling who exists
        return None
    return doc if check_password(password, doc["password_hash"]) else None


_DUMMY_HASH = "$2b$12$cIeWr83E.XvPavg3wFCYe.054a6gQB9Gp4moyDP8vnLMzJfoivAWe"  # of no password anyone has
