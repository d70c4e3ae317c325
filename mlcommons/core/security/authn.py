"""Who sent a request: HTTP Basic (a user of the native realm) or an API key.

``authenticate`` reads the ``Authorization`` header and answers a :class:`Principal`, or raises
401 in Elasticsearch's words. It is synchronous (bcrypt); the API calls it off its event loop and
remembers the answer for each header value until the security epoch moves (api/authz.py).
"""
from __future__ import annotations

import base64
import binascii
from typing import NamedTuple

from mlcommons.core.context import Context
from mlcommons.core.security import apikeys, users
from mlcommons.errors import Unauthenticated

MAX_HEADER = 4096


class Principal(NamedTuple):
    username: str
    roles: tuple[str, ...]
    backend_roles: tuple[str, ...]
    authentication_type: str             # "realm" (a password) or "api_key"
    api_key_id: str | None = None
    api_key_name: str | None = None

    def as_owner(self) -> dict:
        return {"username": self.username, "roles": list(self.roles), "backend_roles": list(self.backend_roles)}


def missing(path: str) -> Unauthenticated:
    return Unauthenticated(f"missing authentication credentials for REST request [{path[:200]}]")


def parse(header: str) -> tuple[str, str, str]:
    """("basic", user, password) or ("apikey", id, secret); 401 for anything else. ``Bearer``
    carries an API key as ``ApiKey`` does (base64 of id:secret): it is what OpenAI's clients send
    (their ``api_key``) to /v1/embeddings."""
    scheme, _, value = header.strip().partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        scheme = "apikey"
    if scheme not in ("basic", "apikey") or len(header) > MAX_HEADER:
        raise Unauthenticated("unsupported authorization scheme: use Basic, ApiKey or Bearer (an API key)")
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthenticated(f"the [{scheme}] credentials are not valid base64") from None
    first, sep, second = decoded.partition(":")
    if not sep:
        raise Unauthenticated(f"the [{scheme}] credentials must be [name:secret] in base64")
    return scheme, first, second


def authenticate(ctx: Context, header: str, path: str) -> Principal:
    scheme, first, second = parse(header)
    if scheme == "basic":
        doc = users.verify(ctx, first, second)
        if doc is None:
            raise Unauthenticated(f"unable to authenticate user [{first[:64]}] for REST request [{path[:200]}]")
        return Principal(first, tuple(doc.get("roles", ())), tuple(doc.get("backend_roles", ())), "realm")
    doc = apikeys.verify(ctx, first, second)
    if doc is None:
        raise Unauthenticated(f"unable to authenticate with provided credentials and anonymous access is not "
                              f"allowed for this request [{path[:200]}]")
    return Principal(doc["username"], tuple(doc["roles"]), tuple(doc["backend_roles"]), "api_key", first,
                     doc["name"])
