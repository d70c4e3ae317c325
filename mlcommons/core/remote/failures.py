"""What a provider's failed reply becomes, in the words of the dialect whose model called it.

ML Commons (``RemoteConnectorExecutor``) passes the provider's status through with its body
("Error from remote service: <body>") and retries 429 and every 5xx. Elasticsearch's inference
services (``BaseResponseHandler`` and the OpenAI-style handlers in x-pack/plugin/inference) retry
only 429, 500 and 503, name the endpoint and the status ("Received a server error status code for
request from inference entity id [id] status [500]. Error message: [...]"), answer a provider's
4xx with that status and a provider's 5xx with 400.
"""
from __future__ import annotations

from typing import NamedTuple

import orjson


class Failure(NamedTuple):
    status: int
    reason: str
    retryable: bool


def mlcommons(status: int, body: bytes) -> Failure:
    text = body.decode(errors="replace")
    reason = f"Error from remote service: {text}" if text.strip() else \
        f"Remote service returned error status {status} with empty body"
    return Failure(status, reason, status == 429 or status >= 500)


def provider_message(body: bytes) -> str | None:
    """The message in a provider's error body: OpenAI's ``{"error": {"message"}}``, Hugging
    Face's ``{"error": "..."}``, Cohere's ``{"message": "..."}``; None when it holds none."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(parsed, dict):
        return None
    error = parsed.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"]
    if isinstance(error, str):
        return error
    if isinstance(parsed.get("message"), str):
        return parsed["message"]
    if isinstance(parsed.get("detail"), str):  # FastAPI-style servers (infinity-emb, TEI)
        return parsed["detail"]
    return None


def elasticsearch(status: int, body: bytes, entity_id: str, url: str) -> Failure:
    if status == 500:
        words, retry = "Received a server error status code", True
    elif status == 503:
        words, retry = "Received a server busy error status code", True
    elif status > 500:
        words, retry = "Received a server error status code", False
    elif status == 429:
        words, retry = "Received a rate limit status code", True
    elif status == 413:
        words, retry = "Received a content too large status code", False
    elif status == 401:
        words, retry = "Received an authentication error status code", False
    elif status == 403:
        words, retry = "Received a permission denied error status code", False
    elif 300 <= status < 400:
        words, retry = "Unhandled redirection", False
    elif status == 422:
        words, retry = "Received an input validation error response", False
    elif status == 400:
        words, retry = "Received a bad request status code", False
    elif status == 404:
        words, retry = f"Resource not found at [{url}]", False
    else:
        words, retry = "Received an unsuccessful status code", False
    reason = f"{words} for request from inference entity id [{entity_id}] status [{status}]"
    message = provider_message(body)
    if message:
        reason += f". Error message: [{message[:2000]}]"
    return Failure(status if status < 500 else 400, reason, retry)


def elasticsearch_unreachable(entity_id: str, cause: str) -> str:
    return f"Http client failed to send request from inference entity id [{entity_id}]: {cause}"
