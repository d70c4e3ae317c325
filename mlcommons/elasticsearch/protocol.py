"""What an Elasticsearch client expects of every exchange.

- Every response carries ``X-Elastic-Product: Elasticsearch`` (elasticsearch-py refuses a 2xx
  without it).
- ``application/vnd.elasticsearch+json; compatible-with=8|9`` is accepted on requests and echoed on
  responses to the clients that send it.
- Parameters may come from the query string or the body; both with different values is a 400.
- Errors use Elasticsearch's types (a full queue is ``es_rejected_execution_exception``).
"""
from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from mlcommons.core import limits
from mlcommons.errors import BadRequest, MLError, TooManyRequests

PRODUCT_HEADER = "X-Elastic-Product"
_COMPATIBLE = re.compile(r"application/vnd\.elasticsearch\+json\s*;\s*compatible-with\s*=\s*(\d+)", re.I)
SUPPORTED_COMPATIBILITY = ("7", "8", "9")


def compatible_with(request: web.Request) -> str | None:
    """The compatibility version a client asked for in Accept or Content-Type, if any."""
    for header in ("Accept", "Content-Type"):
        match = _COMPATIBLE.search(request.headers.get(header, ""))
        if match:
            return match.group(1)
    return None


def wants_elasticsearch(request: web.Request) -> bool:
    return compatible_with(request) is not None


async def on_response_prepare(request: web.Request, response: web.StreamResponse) -> None:
    response.headers[PRODUCT_HEADER] = "Elasticsearch"
    version = compatible_with(request)
    if version in SUPPORTED_COMPATIBILITY and response.content_type == "application/json":
        response.headers["Content-Type"] = f"application/vnd.elasticsearch+json; compatible-with={version}"


def check_media_type(request: web.Request) -> None:
    version = compatible_with(request)
    if version is not None and version not in SUPPORTED_COMPATIBILITY:
        raise BadRequest(f"A compatible version is required on both Content-Type and Accept headers if either one "
                         f"has requested a compatible version. Accept={request.headers.get('Accept')}, "
                         f"Content-Type={request.headers.get('Content-Type')}, hasContent={request.can_read_body}, "
                         f"path={request.path}, params={dict(request.query)}, method={request.method}",
                         status=400, error_type="media_type_header_exception")


def param(request: web.Request, body: dict[str, Any] | None, name: str, default: Any = None) -> Any:
    """A parameter from the query or the body; the two must agree when both are given."""
    in_query = name in request.query
    in_body = bool(body) and name in body
    if in_query and in_body and str(body[name]).lower() != request.query[name].lower():
        raise BadRequest(f"The parameter [{name}] in the body is different from the parameter [{name}] in the query",
                         error_type="illegal_argument_exception")
    if in_body:
        return body[name]
    if in_query:
        return _query_value(request.query[name])
    return default


def _query_value(raw: str) -> Any:
    low = raw.strip().lower()
    if low in ("true", ""):
        return True if low == "true" else raw
    if low == "false":
        return False
    number = limits.strict_int(raw.strip())
    return raw if number is None else number


def boolean(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise BadRequest(f"Failed to parse value [{value}] as only [true] or [false] are allowed for parameter [{name}]",
                     error_type="illegal_argument_exception")


def es_errors(handler):
    """Wrap a handler so the errors it raises carry Elasticsearch's types."""
    async def wrapped(request: web.Request) -> web.StreamResponse:
        check_media_type(request)
        try:
            return await handler(request)
        except TooManyRequests as exc:
            exc.error_type = "es_rejected_execution_exception"
            raise
        except MLError as exc:
            if exc.error_type == "status_exception" and exc.status == 404:
                exc.error_type = "resource_not_found_exception"
            raise
    wrapped.__name__ = handler.__name__
    return wrapped
