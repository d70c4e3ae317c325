"""Error bodies are the dialect's, with the status inside and out."""
from __future__ import annotations

from mlcommons.errors import BadRequest, Conflict, MLError, NotFound, ParseError, TooManyRequests


def test_error_body_shape():
    body = NotFound("Failed to find task").body()
    assert body == {"error": {"root_cause": [{"type": "status_exception", "reason": "Failed to find task"}],
                              "type": "status_exception", "reason": "Failed to find task"}, "status": 404}


def test_statuses_and_types():
    assert (BadRequest("x").status, BadRequest("x").error_type) == (400, "illegal_argument_exception")
    assert (ParseError("x").status, ParseError("x").error_type) == (400, "parse_exception")
    assert Conflict("x").status == 409
    rejected = TooManyRequests("full", error_type="es_rejected_execution_exception", retry_after=2)
    assert rejected.body()["error"]["type"] == "es_rejected_execution_exception" and rejected.retry_after == 2
    assert MLError("x", status=418).body()["status"] == 418
