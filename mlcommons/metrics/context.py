"""What the process knows about the request it is handling now: its X-Opaque-Id (for the log
lines written meanwhile) and the serving unit a prediction reached (for the per-model metrics).

One context variable holds one small object, set by the API's outermost middleware. The core
writes into that object (``note_model``) rather than setting a variable of its own, so what it
notes from a thread of the pool (``Services.run`` copies the context) or from a task reaches the
middleware too. This module imports nothing of ours: the core, the workers and the API all may.
"""
from __future__ import annotations

from contextvars import ContextVar

HEADER = "X-Opaque-Id"
# Longer values are cut to this many characters; characters other than printable ASCII become
# "?", so that an id can neither split a log line nor break the header it is echoed in.
MAX_OPAQUE_ID = 256


class RequestState:
    __slots__ = ("opaque_id", "model")

    def __init__(self, opaque_id: str | None):
        self.opaque_id = opaque_id
        self.model: str | None = None


current: ContextVar[RequestState | None] = ContextVar("mlcommons_request", default=None)


def clean_opaque_id(raw: str | None) -> str | None:
    """The id as echoed and logged: at most :data:`MAX_OPAQUE_ID` printable ASCII characters.
    An empty header counts as none."""
    if not raw:
        return None
    if len(raw) <= MAX_OPAQUE_ID and raw.isascii() and raw.isprintable():
        return raw  # what every sane client sends: no copy
    return "".join(c if " " <= c <= "~" else "?" for c in raw[:MAX_OPAQUE_ID])


def opaque_id() -> str | None:
    state = current.get()
    return None if state is None else state.opaque_id


def note_model(unit_id: str) -> None:
    """The request being handled reached serving unit ``unit_id`` (a model or an Elasticsearch
    deployment that exists): its prediction metrics carry that unit's id."""
    state = current.get()
    if state is not None:
        state.model = unit_id
