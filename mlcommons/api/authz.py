"""Authentication and authorization at the HTTP edge, when security is on
(``mlcommons.security.enabled``).

Every route needs one action (core/security/roles.py); :data:`ROUTE_ACTIONS` maps each route the
router has to it, and a test walks the router so that no route can be left out. A request without
credentials, or with wrong ones, gets 401 with ``WWW-Authenticate``; one whose roles lack the
action gets 403, each in the dialect's error body with Elasticsearch's or OpenSearch's words.
Verified credentials are remembered per header value (a SHA-256 of it) until the security epoch
moves (any change of a user or key, read with the settings every second), so bcrypt runs once per
credential, not once per request; failures are remembered too, so that repeating a wrong password
costs nothing. Authentication failures and denials go to the audit log.
"""
from __future__ import annotations

import asyncio
import hashlib

from aiohttp import web

from mlcommons.api import audit
from mlcommons.core.security import access
from mlcommons.core.security import roles as R
from mlcommons.core.security.authn import Principal, authenticate, missing
from mlcommons.errors import Denied, Unauthenticated

ML = "/_plugins/_ml"
PRINCIPAL = "principal"  # request key of the authenticated Principal

# (method, route) -> action; HEAD is GET's. Routes are the router's canonical paths.
ROUTE_ACTIONS: dict[tuple[str, str], str] = {
    ("GET", "/"): R.CLUSTER_READ,
    ("GET", "/_nodes"): R.CLUSTER_READ,
    ("GET", "/_cluster/health"): R.CLUSTER_READ,
    ("GET", "/_cluster/settings"): R.ADMIN,
    ("GET", "/_prometheus/metrics"): R.ML_READ,  # per-model stats, as _stats and profile
    ("PUT", "/_cluster/settings"): R.ADMIN,
    # ML Commons
    ("POST", f"{ML}/connectors/_create"): R.ML_WRITE,
    ("GET", f"{ML}/connectors/_search"): R.ML_READ,
    ("POST", f"{ML}/connectors/_search"): R.ML_READ,
    ("GET", f"{ML}/connectors/{{connector_id}}"): R.ML_READ,
    ("PUT", f"{ML}/connectors/{{connector_id}}"): R.ML_WRITE,
    ("DELETE", f"{ML}/connectors/{{connector_id}}"): R.ML_WRITE,
    ("POST", f"{ML}/model_groups/_register"): R.ML_WRITE,
    ("GET", f"{ML}/model_groups/_search"): R.ML_READ,
    ("POST", f"{ML}/model_groups/_search"): R.ML_READ,
    ("GET", f"{ML}/model_groups/{{group_id}}"): R.ML_READ,
    ("PUT", f"{ML}/model_groups/{{group_id}}"): R.ML_WRITE,
    ("DELETE", f"{ML}/model_groups/{{group_id}}"): R.ML_WRITE,
    ("POST", f"{ML}/models/_register"): R.ML_WRITE,
    ("POST", f"{ML}/models/_upload"): R.ML_WRITE,
    ("POST", f"{ML}/models/_register_meta"): R.ML_WRITE,
    ("POST", f"{ML}/models/meta"): R.ML_WRITE,
    ("GET", f"{ML}/models/_search"): R.ML_READ,
    ("POST", f"{ML}/models/_search"): R.ML_READ,
    ("POST", f"{ML}/models/_undeploy"): R.ML_WRITE,
    ("POST", f"{ML}/models/_unload"): R.ML_WRITE,
    ("POST", f"{ML}/models/{{model_id}}/upload_chunk/{{chunk_number}}"): R.ML_WRITE,
    ("POST", f"{ML}/models/{{model_id}}/chunk/{{chunk_number}}"): R.ML_WRITE,
    ("POST", f"{ML}/models/{{model_id}}/_deploy"): R.ML_WRITE,
    ("POST", f"{ML}/models/{{model_id}}/_load"): R.ML_WRITE,
    ("POST", f"{ML}/models/{{model_id}}/_undeploy"): R.ML_WRITE,
    ("POST", f"{ML}/models/{{model_id}}/_unload"): R.ML_WRITE,
    ("GET", f"{ML}/models/{{model_id}}"): R.ML_READ,
    ("PUT", f"{ML}/models/{{model_id}}"): R.ML_WRITE,
    ("DELETE", f"{ML}/models/{{model_id}}"): R.ML_WRITE,
    ("POST", f"{ML}/models/{{model_id}}/_predict"): R.ML_INFER,
    ("POST", "/v1/embeddings"): R.ML_INFER,
    ("GET", "/v1/models"): R.ML_READ,
    ("GET", "/v1/models/{model}"): R.ML_READ,
    ("POST", f"{ML}/_predict/{{algorithm}}/{{model_id}}"): R.ML_INFER,
    ("GET", f"{ML}/profile"): R.ML_READ,
    ("GET", f"{ML}/profile/models"): R.ML_READ,
    ("GET", f"{ML}/profile/models/{{model_ids}}"): R.ML_READ,
    ("GET", f"{ML}/tasks/_search"): R.ML_READ,
    ("POST", f"{ML}/tasks/_search"): R.ML_READ,
    ("GET", f"{ML}/tasks/{{task_id}}"): R.ML_READ,
    ("DELETE", f"{ML}/tasks/{{task_id}}"): R.ML_WRITE,
    # Elasticsearch trained models
    ("GET", "/_ml/trained_models/_stats"): R.ML_READ,
    ("GET", "/_ml/trained_models/{model_id}/_stats"): R.ML_READ,
    ("GET", "/_ml/trained_models"): R.ML_READ,
    ("GET", "/_ml/trained_models/{model_id}"): R.ML_READ,
    ("PUT", "/_ml/trained_models/{model_id}"): R.ML_WRITE,
    ("DELETE", "/_ml/trained_models/{model_id}"): R.ML_WRITE,
    ("PUT", "/_ml/trained_models/{model_id}/definition/{part}"): R.ML_WRITE,
    ("PUT", "/_ml/trained_models/{model_id}/vocabulary"): R.ML_WRITE,
    ("POST", "/_ml/trained_models/{model_id}/deployment/_start"): R.ML_WRITE,
    ("POST", "/_ml/trained_models/{model_id}/deployment/_stop"): R.ML_WRITE,
    ("POST", "/_ml/trained_models/{model_id}/deployment/_update"): R.ML_WRITE,
    ("POST", "/_ml/trained_models/{model_id}/_infer"): R.ML_INFER,
    ("POST", "/_ml/trained_models/{model_id}/deployment/_infer"): R.ML_INFER,
    # Elasticsearch inference
    ("GET", "/_inference"): R.INFERENCE_READ,
    ("GET", "/_inference/{first}"): R.INFERENCE_READ,
    ("GET", "/_inference/{first}/{second}"): R.INFERENCE_READ,
    ("PUT", "/_inference/{first}"): R.INFERENCE_WRITE,
    ("PUT", "/_inference/{first}/{second}"): R.INFERENCE_WRITE,
    ("DELETE", "/_inference/{first}"): R.INFERENCE_WRITE,
    ("DELETE", "/_inference/{first}/{second}"): R.INFERENCE_WRITE,
    ("POST", "/_inference/{first}"): R.INFERENCE_INFER,
    ("POST", "/_inference/{first}/{second}"): R.INFERENCE_INFER,
    # security
    ("GET", "/_security/_authenticate"): R.SELF,
    ("GET", "/_plugins/_security/authinfo"): R.SELF,
    ("POST", "/_security/api_key"): R.SELF,
    ("PUT", "/_security/api_key"): R.SELF,
    ("GET", "/_security/api_key"): R.SELF,
    ("DELETE", "/_security/api_key"): R.SELF,
    ("GET", "/_security/user"): R.ADMIN,
    ("GET", "/_security/user/{name}"): R.ADMIN,
    ("PUT", "/_security/user/{name}"): R.ADMIN,
    ("POST", "/_security/user/{name}"): R.ADMIN,
    ("DELETE", "/_security/user/{name}"): R.ADMIN,
    # the API's description says what routes exist, nothing of what the cluster holds: public, as
    # the pages that describe the dialects are
    ("GET", f"{ML}/openapi.json"): R.PUBLIC,
    # the models page (mlcommons/ui/): no data in it, but signing in there is where the browser
    # asks for credentials; its reads and deploys are then authorized route by route
    ("GET", "/ui"): R.CLUSTER_READ,
    ("GET", "/ui/{file}"): R.CLUSTER_READ,
}
# Which privileges grant an action, for Elasticsearch's words in a 403.
GRANTED_BY = {action: sorted(p for p, acts in R.PRIVILEGES.items() if action in acts) for action in R.ACTIONS}


def route_key(request: web.Request) -> tuple[str, str] | None:
    resource = request.match_info.route.resource
    if resource is None:
        return None
    method = "GET" if request.method == "HEAD" else request.method
    return method, (resource.canonical.rstrip("/") or "/")


class CredentialCache:
    """Header digest -> (Principal or the 401, when): forgotten when the epoch moves."""

    def __init__(self, limit: int = 10_000):
        self.limit = limit
        self.epoch: bytes | None = None
        self._entries: dict[str, Principal | Unauthenticated] = {}

    def get(self, digest: str) -> Principal | Unauthenticated | None:
        return self._entries.get(digest)

    def put(self, digest: str, value: Principal | Unauthenticated) -> None:
        if len(self._entries) >= self.limit:
            self._entries.clear()
        self._entries[digest] = value

    def see_epoch(self, epoch: bytes | None) -> None:
        if epoch != self.epoch:
            self._entries.clear()
            self.epoch = epoch


def denied(principal: Principal, action: str, path: str) -> Denied:
    if path.startswith("/_plugins"):
        return Denied(f"no permissions for [{action}] and User [name={principal.username}, backend_roles="
                      f"[{', '.join(principal.backend_roles)}], requestedTenant=null]")
    granted = ",".join(GRANTED_BY.get(action, ["all"]))
    return Denied(f"action [{action}] is unauthorized for user [{principal.username}] with effective roles "
                  f"[{','.join(principal.roles)}], this action is granted by the cluster privileges [{granted}]")


def middleware(services, cache: CredentialCache):
    """``services``: api/services.Services (its ``run`` and ``ctx``)."""
    verifying = asyncio.Semaphore(4)  # bcrypt calls at once: a flood of passwords cannot take every thread

    async def principal_of(request: web.Request) -> Principal:
        header = request.headers.get("Authorization")
        if not header:
            raise missing(request.path)
        digest = hashlib.sha256(header.encode(errors="replace")).hexdigest()
        known = cache.get(digest)
        if known is None:
            async with verifying:
                try:
                    known = await services.run(authenticate, services.ctx, header, request.path)
                except Unauthenticated as exc:
                    known = exc
            cache.put(digest, known)
        if isinstance(known, Unauthenticated):
            raise Unauthenticated(known.reason)
        return known

    @web.middleware
    async def check(request: web.Request, handler) -> web.StreamResponse:
        cache.see_epoch(services.security_epoch)
        key = route_key(request)
        action = ROUTE_ACTIONS.get(key) if key else None
        if action == R.PUBLIC:
            return await handler(request)
        try:
            principal = await principal_of(request)
        except Unauthenticated as exc:
            audit.record("authentication_failed", request, reason=exc.reason)
            raise
        request[PRINCIPAL] = principal
        access.CURRENT.set(principal)  # set for every request: a kept-alive connection's task serves several
        if action is not None and action not in R.actions_of(principal.roles):
            audit.record("access_denied", request, principal, action=action)
            raise denied(principal, action, request.path)
        return await handler(request)

    return check
