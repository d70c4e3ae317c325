"""The security endpoints: who am I (Elasticsearch's ``_authenticate``, OpenSearch's
``authinfo``), API keys (create, list, invalidate) and the users of the native realm. With
security off they answer 400 and say how to turn it on."""
from __future__ import annotations

from aiohttp import web

from mlcommons.api import audit
from mlcommons.api.authz import PRINCIPAL
from mlcommons.api.http import SERVICES, read_json, respond
from mlcommons.core.security import apikeys, users
from mlcommons.core.security.authn import Principal
from mlcommons.errors import MLError

OFF = ("Security must be explicitly enabled to use this API. Start mlcommons with --security (or "
       "mlcommons.security.enabled: true, or MLCOMMONS_SECURITY_ENABLED=true)")


def _principal(request: web.Request) -> Principal:
    principal = request.get(PRINCIPAL)
    if principal is None:
        raise MLError(OFF, status=400, error_type="security_exception")
    return principal


async def _changed(request: web.Request) -> None:
    """This process sees a change of users or keys at once (the others within a second)."""
    await request.app[SERVICES].refresh_settings()


async def authenticate(request: web.Request) -> web.Response:
    p = _principal(request)
    out = {"username": p.username, "roles": list(p.roles), "full_name": None, "email": None, "metadata": {},
           "enabled": True, "authentication_realm": {"name": "native", "type": "native"},
           "lookup_realm": {"name": "native", "type": "native"}, "authentication_type": p.authentication_type}
    if p.api_key_id:
        out["api_key"] = {"id": p.api_key_id, "name": p.api_key_name}
        out["authentication_realm"] = {"name": "_es_api_key", "type": "_es_api_key"}
    return respond(out)


async def authinfo(request: web.Request) -> web.Response:
    p = _principal(request)
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return respond({
        "user": f"User [name={p.username}, backend_roles=[{', '.join(p.backend_roles)}], requestedTenant=null]",
        "user_name": p.username, "user_requested_tenant": None,
        "remote_address": f"{peer[0]}:{peer[1]}" if peer else None,
        "backend_roles": list(p.backend_roles), "custom_attribute_names": [], "roles": list(p.roles),
        "tenants": {}, "principal": None, "peer_certificates": "0", "sso_logout_url": None})


async def create_api_key(request: web.Request) -> web.Response:
    p = _principal(request)
    body = await read_json(request, required=True)
    created = await request.app[SERVICES].call(apikeys.create, p.as_owner(), body)
    audit.record("api_key_created", request, p, key_id=created["id"], key_name=created["name"])
    await _changed(request)
    return respond(created)


def _key_params(request: web.Request, body: dict | None) -> dict:
    params = dict(body or {})
    for name in ("id", "name", "username"):
        if name in request.query:
            params[name] = request.query[name]
    if request.query.get("owner") in ("true", ""):
        params["owner"] = True
    return params


async def get_api_keys(request: web.Request) -> web.Response:
    p = _principal(request)
    return respond(await request.app[SERVICES].call(apikeys.listing, p.as_owner(), _key_params(request, None)))


async def invalidate_api_keys(request: web.Request) -> web.Response:
    p = _principal(request)
    body = await read_json(request) or {}
    done = await request.app[SERVICES].call(apikeys.invalidate, p.as_owner(), _key_params(request, body))
    audit.record("api_key_invalidated", request, p, key_ids=done["invalidated_api_keys"])
    await _changed(request)
    return respond(done)


async def get_users(request: web.Request) -> web.Response:
    _principal(request)
    name = request.match_info.get("name")
    names = [n for n in name.split(",") if n] if name else None
    found = await request.app[SERVICES].call(users.get, names)
    return respond(found, 200 if found or not names else 404)


async def put_user(request: web.Request) -> web.Response:
    p = _principal(request)
    name = request.match_info["name"]
    body = await read_json(request, required=True)
    done = await request.app[SERVICES].call(users.put, name, body)
    audit.record("user_created" if done["created"] else "user_changed", request, p, target=name,
                 roles=body.get("roles"), password_changed="password" in body)
    await _changed(request)
    return respond(done)


async def delete_user(request: web.Request) -> web.Response:
    p = _principal(request)
    name = request.match_info["name"]
    done = await request.app[SERVICES].call(users.delete, name)
    audit.record("user_deleted", request, p, target=name)
    await _changed(request)
    return respond(done)


ROUTES = [
    ("GET", "/_security/_authenticate", authenticate),
    ("GET", "/_plugins/_security/authinfo", authinfo),
    ("POST", "/_security/api_key", create_api_key),
    ("PUT", "/_security/api_key", create_api_key),
    ("GET", "/_security/api_key", get_api_keys),
    ("DELETE", "/_security/api_key", invalidate_api_keys),
    ("GET", "/_security/user", get_users),
    ("GET", "/_security/user/{name}", get_users),
    ("PUT", "/_security/user/{name}", put_user),
    ("POST", "/_security/user/{name}", put_user),
    ("DELETE", "/_security/user/{name}", delete_user),
]
