"""Log lines: plain text (the default) or one JSON object per line, both carrying the X-Opaque-Id
of the request being handled and, where the process knows it, its node.

A filter on the handler, not on a logger, so that every record that reaches the handler (from
any module's logger) gets the fields. Text lines end with ``[opaque_id=...]`` when the record was
written while handling a request that sent one. JSON lines hold ``time`` (ISO 8601, UTC, in
milliseconds), ``level``, ``logger``, ``message``, then ``opaque_id`` and ``node`` when known, and
``exception`` (its traceback) when there is one.
"""
from __future__ import annotations

import logging
import sys
import time

import orjson

from mlcommons.metrics.context import current

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s%(opaque_suffix)s"

_node: str | None = None  # the node this process is (a worker's node id, an API's name)


def set_node(name: str | None) -> None:
    """Name the node in every later JSON line of this process."""
    global _node
    _node = name


class RequestFields(logging.Filter):
    """Adds ``opaque_id``, ``opaque_suffix`` (for text lines) and ``node`` to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        state = current.get()
        opaque = None if state is None else state.opaque_id
        record.opaque_id = opaque
        record.opaque_suffix = "" if opaque is None else f" [opaque_id={opaque}]"
        record.node = _node
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        opaque = getattr(record, "opaque_id", None)
        if opaque is not None:
            line["opaque_id"] = opaque
        node = getattr(record, "node", None)
        if node is not None:
            line["node"] = node
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(line, default=str).decode()


def configure(level: str, fmt: str = "text", stream=None) -> None:
    """Set up the root logger of a process: ``level`` (a name), ``fmt`` one of :data:`FORMATS`.
    Replaces any handler set up before (the CLI calls this once, before any other logging)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format [{fmt}]; expected one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RequestFields())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
