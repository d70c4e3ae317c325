"""Errors that reach a client. Each carries its HTTP status and the wire ``type`` of the dialect.

The HTTP layer turns any :class:`MLError` into the error body
``{"error": {"root_cause": [{"type", "reason"}], "type", "reason"}, "status": N}``.
Anything else that escapes a handler is our own bug and becomes a 500.
"""
from __future__ import annotations


class MLError(Exception):
    """Base class: an error with an HTTP status and an error type for the body."""

    status = 500
    error_type = "status_exception"

    def __init__(self, reason: str, *, status: int | None = None, error_type: str | None = None):
        super().__init__(reason)
        self.reason = reason
        if status is not None:
            self.status = status
        if error_type is not None:
            self.error_type = error_type

    def body(self) -> dict:
        cause = {"type": self.error_type, "reason": self.reason}
        return {"error": {"root_cause": [cause], **cause}, "status": self.status}


class BadRequest(MLError):
    """400: the request is invalid (a field is missing, malformed or not allowed)."""

    status = 400
    error_type = "illegal_argument_exception"


class ParseError(BadRequest):
    """400: the body is not the JSON the endpoint expects."""

    error_type = "parse_exception"


class NotFound(MLError):
    """404: an unknown model, model group, task or node."""

    status = 404
    error_type = "status_exception"


class Conflict(MLError):
    """409: the request conflicts with the resource's current state."""

    status = 409
    error_type = "status_exception"


class Forbidden(MLError):
    status = 403
    error_type = "status_exception"


class TooLarge(MLError):
    status = 413
    error_type = "status_exception"


class TooManyRequests(MLError):
    """429: a bounded queue or a limiter refused the request; retry later. OpenSearch names it
    ``rejected_execution_exception``; the Elasticsearch dialect answers ``es_rejected_execution_exception``."""

    status = 429
    error_type = "rejected_execution_exception"

    def __init__(self, reason: str, *, retry_after: float = 1.0, **kw):
        super().__init__(reason, **kw)
        self.retry_after = retry_after


class RequestTimeout(MLError):
    status = 408
    error_type = "status_exception"


class ServiceUnavailable(MLError):
    status = 503
    error_type = "status_exception"


class NodeError(Exception):
    """A failure on a worker node while running a control-plane job (recorded per node)."""


class ModelContentChanged(NodeError):
    """The bytes read from the model store do not match the registered size or SHA-256."""

    def __init__(self, detail: str = ""):
        super().__init__("model content changed" + (f": {detail}" if detail else ""))


class UnsafeArchive(NodeError):
    """A model archive tried to write outside its folder, or is otherwise unsafe to extract."""


class Unauthenticated(MLError):
    """401: no credentials, or credentials that do not authenticate anyone. The answer carries
    ``WWW-Authenticate`` (both schemes the API takes), as Elasticsearch's does."""

    status = 401
    error_type = "security_exception"
    CHALLENGE = ('Basic realm="security", charset="UTF-8"', "ApiKey")


class Denied(MLError):
    """403: authenticated, but the user's roles do not allow the action."""

    status = 403
    error_type = "security_exception"
