"""Every failure leaves the API as the dialect's error body with the right status; requests for
another host or from another site's page are refused before any handler runs."""
from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web
from multidict import CIMultiDict

from mlcommons.api.hosts import SAFE_METHODS, HostPolicy
from mlcommons.api.http import respond
from mlcommons.core.serving import timing
from mlcommons.errors import Forbidden, MLError, TooManyRequests, Unauthenticated
from mlcommons.metrics import context as request_context
from mlcommons.metrics.recorder import Recorder
from mlcommons.openai.handlers import PREFIX as OPENAI_PREFIX
from mlcommons.openai.handlers import error_body as openai_error

log = logging.getLogger(__name__)


slow_log = logging.getLogger("mlcommons.requests")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})  # others: "other"


def observe(recorder: Recorder, settings):
    """Outermost: the request's X-Opaque-Id (cleaned: mlcommons/metrics/context.py) is echoed on
    the response and set for the log lines written while it is handled; the request is counted
    and timed by route template (mlcommons/metrics/recorder.py), as a prediction too on a
    prediction route; one slower than ``mlcommons.log.slow_request_seconds`` is logged."""
    header = request_context.HEADER
    current = request_context.current

    @web.middleware
    async def middleware(request: web.Request, handler) -> web.StreamResponse:
        opaque = request_context.clean_opaque_id(request.headers.get(header))
        state = request_context.RequestState(opaque)
        token = current.set(state)
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            if opaque is not None and not response.prepared:
                response.headers[header] = opaque
            return response
        except web.HTTPException as exc:
            status = exc.status
            if opaque is not None:
                exc.headers[header] = opaque
            raise
        except asyncio.CancelledError:
            status = 499  # the client went away first
            raise
        finally:
            elapsed = time.perf_counter() - started
            resource = request.match_info.route.resource
            method = request.method
            if method not in METHODS:  # a client's made-up method is one label, not many
                method = "other"
            slot = recorder.slot("other" if resource is None else resource.canonical, method)
            slot.record(status, elapsed)
            if slot.predict:  # the core noted the unit the prediction reached, if it reached one
                recorder.prediction(state.model, status, elapsed)
            threshold = settings.get("mlcommons.log.slow_request_seconds")
            if 0 <= threshold <= elapsed:
                slow_log.info("%s %s -> %d in %.3fs", method, request.rel_url.raw_path[:300], status, elapsed)
            current.reset(token)
    return middleware


def _body(request: web.Request, exc: MLError) -> dict:
    """The dialect's error body: OpenAI's under /v1/, Elasticsearch's and OpenSearch's elsewhere."""
    if request.path.startswith(OPENAI_PREFIX):
        return openai_error(exc.status, exc.reason)
    return exc.body()


def _error(request: web.Request, status: int, error_type: str, reason: str) -> web.Response:
    return respond(_body(request, MLError(reason, status=status, error_type=error_type)), status)


@web.middleware
async def errors(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except MLError as exc:
        headers = None
        if isinstance(exc, TooManyRequests):
            headers = {"Retry-After": str(max(1, round(exc.retry_after)))}
        elif isinstance(exc, Unauthenticated):
            # One header per scheme, as Elasticsearch sends them: a browser ignores a Basic
            # challenge that shares its header with another scheme, and never asks for a password.
            headers = CIMultiDict(("WWW-Authenticate", challenge) for challenge in Unauthenticated.CHALLENGE)
        return respond(_body(request, exc), exc.status, headers)
    except web.HTTPNotFound:
        if request.path.startswith(OPENAI_PREFIX):
            return _error(request, 404, "", f"Unknown request URL: {request.method} {request.path[:200]}")
        return _error(request, 400, "illegal_argument_exception",
                      f"no handler found for uri [{request.path_qs}] and method [{request.method}]")
    except web.HTTPMethodNotAllowed as exc:
        allowed = ",".join(sorted(exc.allowed_methods))
        return _error(request, 405, "illegal_argument_exception",
                      f"Incorrect HTTP method for uri [{request.path_qs}] and method [{request.method}], "
                      f"allowed: [{allowed}]")
    except web.HTTPRequestEntityTooLarge as exc:
        return _error(request, 413, "status_exception", f"request body is too large: {exc.text}")
    except web.HTTPException:
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _error(request, 500, "exception", "internal error; see the API log")


def host_and_origin(hosts: HostPolicy):
    """Refuse (421) a Host that is not one of ours, and (403) a state-changing request that a
    browser sent from another site (see mlcommons/api/hosts.py)."""
    @web.middleware
    async def check(request: web.Request, handler) -> web.StreamResponse:
        headers = request.headers
        host = headers.get("Host")
        if not hosts.host_allowed(host):
            raise MLError(hosts.bad_host(host), status=421, error_type="illegal_argument_exception")
        if request.method not in SAFE_METHODS:
            reason = hosts.cross_site(request.method, host, headers.get("Origin"), headers.get("Sec-Fetch-Site"))
            if reason is not None:
                raise Forbidden(reason)
        return await handler(request)
    return check


@web.middleware
async def timings(request: web.Request, handler) -> web.StreamResponse:
    """With ``mlcommons.predict.trace_timings``: a prediction's hops in X-MLCommons-Timing."""
    marks = timing.start()
    response = await handler(request)
    if len(marks) > 1:
        marks["responded"] = timing.now_us()
        response.headers[timing.HEADER] = timing.header(marks)
    return response
