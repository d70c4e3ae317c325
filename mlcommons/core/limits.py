"""Bounds on what a client sends that no setting governs: integers spelled in text, and the
length of names and free text that are stored and searched.

Python's ``int()`` and ``\\d`` take far more than a client means: full-width and other Unicode
digits (``"１"`` is 1), underscores (``"1_000"``), surrounding blanks and thousands of digits
(``int()`` refuses past 4,300 with a ValueError nobody expects). Numbers in paths and query
strings are parsed here instead, as Java's ``Integer.parseInt`` and ``Long.parseLong`` would.
"""
from __future__ import annotations

import re
from typing import Any

from mlcommons.errors import BadRequest

# Names are keywords: OpenSearch indexes a keyword's first 256 characters (ML Commons'
# mappings: "ignore_above": 256); a longer name could not be found by its own value.
MAX_NAME_CHARS = 256
# Free text (descriptions) is stored and returned by every GET and search that shows it.
MAX_DESCRIPTION_CHARS = 10_000
# A JSON value stored as given (metadata, rate limiter, tags): its size once encoded.
MAX_OBJECT_BYTES = 64 * 1024

_INT = re.compile(r"-?[0-9]{1,18}", re.ASCII)  # within a signed 64-bit integer


def strict_int(text: str) -> int | None:
    """``text`` as an integer if it is one spelled with ASCII digits (an optional leading minus,
    at most 18 digits, nothing around them), else None."""
    return int(text) if _INT.fullmatch(text) else None


def text(value: Any, field: str, limit: int) -> str:
    """A string field no longer than ``limit`` characters."""
    if not isinstance(value, str):
        raise BadRequest(f"[{field}] must be a string")
    if len(value) > limit:
        raise BadRequest(f"[{field}] must be at most {limit} characters long, found {len(value)}")
    return value


def name(value: Any, field: str = "name") -> str:
    value = text(value, field, MAX_NAME_CHARS)
    if not value.strip():
        raise BadRequest(f"[{field}] must be a non-empty string")
    return value


def description(value: Any, field: str = "description") -> str:
    return text(value, field, MAX_DESCRIPTION_CHARS)


def small_object(value: Any, field: str) -> Any:
    """A JSON value stored as the client gave it, refused when it encodes to more than
    :data:`MAX_OBJECT_BYTES`."""
    import orjson

    try:
        size = len(orjson.dumps(value))
    except TypeError:
        raise BadRequest(f"[{field}] holds a value that is not JSON") from None
    if size > MAX_OBJECT_BYTES:
        raise BadRequest(f"[{field}] must encode to at most {MAX_OBJECT_BYTES} bytes of JSON, found {size}")
    return value
