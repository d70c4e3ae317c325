"""rq-dashboard for ``mlcommons serve``: rq-dashboard's own Flask app, on loopback only, behind the
API's Host and Origin checks (mlcommons/api/hosts.py) and with a socket time-out.

``python -m rq_dashboard`` answers any Host and any Origin, so a page on a name rebound to
127.0.0.1 could read the control plane's jobs, and any page could send a browser to its requeue,
delete and empty actions. Here a request for another Host gets 421, and any request a browser
marks as cross-site (a link or form on another site included) 403, before any rq-dashboard code
runs; the dashboard opens from the address bar or a bookmark.

It is a viewer. Its actions (requeue, delete, empty, compact) are refused with 403 whoever asks,
``GET /requeue/<queue>`` included: a job requeued by hand would run a deploy or a register outside
the task that it belongs to, and the API's own routes (``_deploy``, ``_undeploy``, tasks) are the
way to act. With security on, it asks for the credentials of a user with ``all_access`` (HTTP
Basic, checked against the same users as the API; 401 otherwise).
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Iterable

import orjson

from mlcommons.api.hosts import HostPolicy
from mlcommons.errors import Forbidden, MLError, Unauthenticated

HOST = "127.0.0.1"

Wsgi = Callable[[dict, Callable], Iterable[bytes]]


def read_only_refusal(method: str, path: str) -> str | None:
    """Why a dashboard request is refused as an action, or None for a view."""
    if method.upper() not in ("GET", "HEAD") or path.startswith("/requeue/"):
        return ("the dashboard is read-only: use the API to act on models and tasks (_deploy, _undeploy, "
                "DELETE _plugins/_ml/tasks/<id>)")
    return None


def administrators(redis_url: str, static: dict[str, Any]) -> Callable[[str | None], bool]:
    """Whether an ``Authorization`` header is a user's with all_access (bcrypt once per header
    value, until users change)."""
    import hashlib

    from mlcommons.core.context import Context
    from mlcommons.core.security import authn, roles

    ctx = Context.connect(redis_url, static=static)
    known: dict[str, bool] = {}
    seen_epoch: list[bytes | None] = [None]

    def check(header: str | None) -> bool:
        if not header or not header.lower().startswith("basic "):
            return False
        epoch = ctx.redis.get(ctx.keys.security_epoch())
        if epoch != seen_epoch[0]:
            known.clear()
            seen_epoch[0] = epoch
        digest = hashlib.sha256(header.encode(errors="replace")).hexdigest()
        if digest not in known:
            try:
                principal = authn.authenticate(ctx, header, "/")
                known[digest] = roles.is_admin(principal.roles)
            except MLError:
                known[digest] = False
        return known[digest]

    return check


def guarded(app: Wsgi, hosts: HostPolicy, admin: Callable[[str | None], bool] | None = None) -> Wsgi:
    """Wrap a WSGI application so that it only sees requests ``hosts`` lets through (and, with
    ``admin``, only those whose credentials it accepts)."""
    def guard(environ: dict, start_response: Callable) -> Iterable[bytes]:
        host = environ.get("HTTP_HOST")
        error: MLError | None = None
        if admin is not None and hosts.host_allowed(host) and not admin(environ.get("HTTP_AUTHORIZATION")):
            error = Unauthenticated("the dashboard needs the credentials of a user with all_access")
        elif not hosts.host_allowed(host):
            error = MLError(hosts.bad_host(host), status=421, error_type="illegal_argument_exception")
        else:
            # every method: rq-dashboard requeues jobs on a GET too
            reason = hosts.cross_site(environ.get("REQUEST_METHOD", "GET"), host, environ.get("HTTP_ORIGIN"),
                                      environ.get("HTTP_SEC_FETCH_SITE"), reads_too=True)
            if reason is not None:
                error = Forbidden(reason)
            else:
                refusal = read_only_refusal(environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", ""))
                error = Forbidden(refusal) if refusal else None
        if error is None:
            return app(environ, start_response)
        body = orjson.dumps(error.body())
        phrase = {421: "Misdirected Request", 403: "Forbidden", 401: "Unauthorized"}[error.status]
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        if error.status == 401:
            headers.append(("WWW-Authenticate", 'Basic realm="mlcommons rq-dashboard", charset="UTF-8"'))
        start_response(f"{error.status} {phrase}", headers)
        return [body]
    return guard


def create_app(redis_url: str, hosts: HostPolicy, static: dict[str, Any] | None = None) -> Any:
    """rq-dashboard's Flask app (built as its command line builds it) for one Redis."""
    from rq_dashboard import web
    from rq_dashboard.cli import make_flask_app
    from rq_dashboard.web import setup_rq_connection

    from mlcommons.core.tasks.allowed import SERIALIZER

    web.config.serializer = SERIALIZER  # jobs are JSON here (core/tasks/allowed.py), never unpickled
    web.from_url = _connection_for

    app = make_flask_app(config=None, username=None, password=None, url_prefix="")
    app.config["RQ_DASHBOARD_REDIS_URL"] = _register(redis_url)
    setup_rq_connection(app)
    secure = bool(static and static.get("mlcommons.security.enabled"))
    app.wsgi_app = guarded(app.wsgi_app, hosts, administrators(redis_url, static) if secure else None)
    return app


# rq-dashboard builds its Redis client from its URL setting, with redis_sentinel_url, on every
# request: a client without our retries, that reads no sentinel_password, and a URL that its
# pages print with the query string (a sentinel_password) in clear. So its setting holds the URL
# redacted, which names the one client built here (mlcommons/store/connection.py, Sentinel URLs
# included), and ``web.from_url`` hands that client back.
_CLIENTS: dict[str, Any] = {}


def _register(redis_url: str) -> str:
    from mlcommons.stack.embedded_redis import redact
    from mlcommons.store.connection import sync_client

    shown = redact(redis_url)
    _CLIENTS[shown] = sync_client(redis_url)
    return shown


def _connection_for(url: str, **_options: Any) -> tuple[None, Any]:
    """rq-dashboard's ``from_url(url, sentinel_options, client_options) -> (sentinel, client)``."""
    return None, _CLIENTS[url]


def run(redis_url: str, port: int, static: dict[str, Any]) -> None:
    """Serve the dashboard on 127.0.0.1:``port`` until the process is stopped."""
    from werkzeug.serving import WSGIRequestHandler, run_simple

    class Handler(WSGIRequestHandler):
        # the socket time-out of each connection: a stalled client does not hold its thread
        timeout = static["mlcommons.http.read_timeout_seconds"]

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app = create_app(redis_url, HostPolicy(HOST, static["mlcommons.http.allowed_hosts"]), static)
    run_simple(HOST, port, app, threaded=True, request_handler=Handler)
