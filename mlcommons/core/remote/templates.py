"""Filling a connector action's templates, as ML Commons fills them (HttpConnector.createPayload,
ConnectorUtils), with its words for what cannot be filled.

- Parameters: the connector's, then the call's (escaped), then a pre-process function's output,
  then the call's again, each later one winning.
- A call's value is escaped for a JSON string (as commons-text's ``escapeJson``: ``"``, ``\\``,
  ``/``, control and non-ASCII characters) unless it is itself a JSON object or array, or its name
  is listed in the call's ``no_escape_params``; connector parameters are used as they are.
- ``${parameters.X}`` (with an optional ``:-default``) fills the body, the URL and headers;
  ``${credential.X}`` fills headers only. ``"${parameters.X:-null}"`` with no X becomes a bare
  ``null``. Substitution is one pass: a value that itself holds a placeholder is not expanded
  again (ML Commons' recursive expansion is a way to make one request grow without bound).
"""
from __future__ import annotations

import re
from typing import Any

import orjson

from mlcommons.errors import BadRequest

_PARAMETER = re.compile(r"\$\{parameters\.([^}:]{1,256})(?::-([^}]{0,1024}))?\}")
_QUOTED_NULL_DEFAULT = re.compile(r"\"\$\{parameters\.([^}:]{1,256}):-null\}\"")
_CREDENTIAL = re.compile(r"\$\{credential\.([^}]{1,256})\}")
MAX_PAYLOAD = 16 * 1024 * 1024
MAX_HEADER = 8192
MAX_HEADERS = 65536


def escape_json(text: str) -> str:
    """commons-text's ``StringEscapeUtils.escapeJson``."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "/":
            out.append("\\/")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\f":
            out.append("\\f")
        elif ch == "\r":
            out.append("\\r")
        elif code < 0x20 or code > 0x7E:
            if code > 0xFFFF:
                code -= 0x10000
                out.append(f"\\u{0xD800 + (code >> 10):04X}\\u{0xDC00 + (code & 0x3FF):04X}")
            else:
                out.append(f"\\u{code:04X}")
        else:
            out.append(ch)
    return "".join(out)


def _is_json_container(text: str) -> bool:
    stripped = text.strip()
    if not stripped or stripped[0] not in "[{":
        return False
    try:
        return isinstance(orjson.loads(stripped), (list, dict))
    except orjson.JSONDecodeError:
        return False


def as_text(value: Any) -> str | None:
    """A parameter's value as ML Commons keeps it: strings as they are, anything else as JSON."""
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def escape_call_parameters(parameters: dict[str, Any]) -> dict[str, str | None]:
    raw_names = {n.strip() for n in (as_text(parameters.get("no_escape_params")) or "").split(",") if n.strip()}
    out: dict[str, str | None] = {}
    for name, value in parameters.items():
        text = as_text(value)
        if text is None or name in raw_names or _is_json_container(text):
            out[name] = text
        else:
            out[name] = escape_json(text)
    return out


def merge(connector: dict[str, str], call: dict[str, Any], preprocessed: dict[str, str] | None = None
          ) -> dict[str, str | None]:
    escaped = escape_call_parameters(call)
    return {**connector, **escaped, **(preprocessed or {}), **escaped}


def fill(template: str, parameters: dict[str, str | None]) -> str:
    """``${parameters.X}`` and ``${parameters.X:-default}`` filled in one pass; unknown ones stay."""
    template = _QUOTED_NULL_DEFAULT.sub(
        lambda m: m.group(0) if parameters.get(m.group(1)) is not None else "null", template)

    def value(m: re.Match) -> str:
        found = parameters.get(m.group(1))
        if found is not None:
            return found
        return m.group(2) if m.group(2) is not None else m.group(0)

    return _PARAMETER.sub(value, template)


def payload(request_body: str | None, parameters: dict[str, str | None]) -> str | None:
    """The body to send: the filled template (or the ``http_body`` parameter when the action has
    none), checked to be JSON (or NDJSON) with nothing left unfilled."""
    if request_body is None:
        return parameters.get("http_body")
    body = fill(request_body, parameters)
    if len(body) > MAX_PAYLOAD:
        raise BadRequest(f"The request to the remote model would be larger than {MAX_PAYLOAD} bytes")
    if not _is_json(body):
        raise BadRequest(f"Invalid payload: {body[:2000]}")
    if parameters.get("skip_validating_missing_parameters") != "true":
        missing = list(dict.fromkeys(m.group(1) for m in _PARAMETER.finditer(body)))
        if missing:
            raise BadRequest(f"Some parameter placeholder not filled in payload: {', '.join(missing)}")
    return body


def _is_json(body: str) -> bool:
    try:
        orjson.loads(body)
        return True
    except orjson.JSONDecodeError:
        lines = [line for line in body.splitlines() if line.strip()]
        if len(lines) < 2:
            return False
        try:
            for line in lines:
                orjson.loads(line)
            return True
        except orjson.JSONDecodeError:
            return False


def headers(templates: dict[str, str], parameters: dict[str, str | None], credential: dict[str, str]
            ) -> dict[str, str]:
    """An action's headers: ``${credential.X}`` from the decrypted credential, ``${parameters.X}``
    from the parameters; each header at most 8 KiB and all of them 64 KiB, as in ML Commons."""
    out: dict[str, str] = {}
    total = 0
    for name, template in templates.items():
        value = _CREDENTIAL.sub(lambda m: credential.get(m.group(1), m.group(0)), template)
        value = fill(value, parameters)
        if "${parameters." in value or "${credential." in value:
            raise BadRequest(f"Header '{name}' contains unresolved placeholder. Required parameter is missing.")
        if any(ord(c) < 32 and c != "\t" for c in value):
            raise BadRequest("Header value contains invalid control character")
        size = len(name) + len(value)
        if size > MAX_HEADER:
            raise BadRequest("Header size (key + value) exceeds 8KB limit")
        total += size
        if total > MAX_HEADERS:
            raise BadRequest("Total headers size (key + value) exceeds 64KB limit")
        out[name] = value
    return out
