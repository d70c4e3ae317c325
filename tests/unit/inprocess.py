"""Helpers for the unit tests that call the app in process (the ``client`` fixture of conftest.py)."""
from __future__ import annotations


async def expect_error(response, status: int, error_type: str, reason_part: str) -> dict:
    """The dialect's error body, with this status, type and (a part of) this reason."""
    body = await response.json()
    assert response.status == status and body["status"] == status, body
    assert body["error"]["type"] == error_type and reason_part in body["error"]["reason"], body
    assert body["error"]["root_cause"][0]["type"] == error_type
    return body
