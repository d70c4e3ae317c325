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
way to act.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Iterable

import orjson

from mlcommons.api.hosts import HostPolicy
from mlcommons.errors import Forbidden, MLError

HOST = "127.0.0.1"

Wsgi = Callable[[dict, Callable], Iterable[bytes]]


def read_only_refusal(method: str, path: str) -> str | None:
    """Why a dashboard request is refused as an action, or None for a view."""
    if method.upper() not in ("GET", "HEAD") or path.startswith("/requeue/"):
        return ("the dashboard is read-only: use the API to act on models and tasks (_deploy, _undeploy, "
                "DELETE _plugins/_ml/tasks/<id>)")
    return None


def guarded(app: Wsgi, hosts: HostPolicy) -> Wsgi:
    """Wrap a WSGI application so that it only sees requests ``hosts`` lets through."""
    def guard(environ: dict, start_response: Callable) -> Iterable[bytes]:
        host = environ.get("HTTP_HOST")
        error: MLError | None = None
        if not hosts.host_allowed(host):
            error = MLError(hosts.bad_host(host), status=421, error_type="illegal_argument_exception")
        else:
            # every method: rq-dashboard requeues jobs on a GET too
            reason = hosts.cross_site(environ.get("REQUEST_METHOD", "GET"), host, environ.get("HTTP_ORIGIN"),
                                      environ.get("HTTP_SEC_FETCH_SITE"), reads_too=True)
            if reason is not None:
                error = Forbidden(reason)
            elif read_only_refusal(environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "")):
                error = Forbidden(read_only_refusal(environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "")))
        if error is None:
            return app(environ, start_response)
        body = orjson.dumps(error.body())
        phrase = {421: "Misdirected Request", 403: "Forbidden"}[error.status]
        start_response(f"{error.status} {phrase}", [("Content-Type", "application/json"),
                                                    ("Content-Length", str(len(body)))])
        return [body]
    return guard


def create_app(redis_url: str, hosts: HostPolicy) -> Any:
    """rq-dashboard's Flask app (built as its command line builds it) for one Redis."""
    from rq_dashboard import web
    from rq_dashboard.cli import make_flask_app
    from rq_dashboard.web import setup_rq_connection

    from mlcommons.core.tasks.allowed import SERIALIZER

    web.config.serializer = SERIALIZER  # jobs are JSON here (core/tasks/allowed.py), never unpickled

    app = make_flask_app(config=None, username=None, password=None, url_prefix="")
    app.config["RQ_DASHBOARD_REDIS_URL"] = redis_url
    setup_rq_connection(app)
    app.wsgi_app = guarded(app.wsgi_app, hosts)
    return app


def run(redis_url: str, port: int, static: dict[str, Any]) -> None:
    """Serve the dashboard on 127.0.0.1:``port`` until the process is stopped."""
    from werkzeug.serving import WSGIRequestHandler, run_simple

    class Handler(WSGIRequestHandler):
        # the socket time-out of each connection: a stalled client does not hold its thread
        timeout = static["mlcommons.http.read_timeout_seconds"]

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app = create_app(redis_url, HostPolicy(HOST, static["mlcommons.http.allowed_hosts"]))
    run_simple(HOST, port, app, threaded=True, request_handler=Handler)
