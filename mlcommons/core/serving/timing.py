"""Where one prediction's time goes, hop by hop, for the benchmarks (``mlcommons.predict.trace_timings``).

With the setting on, the API keeps a few timestamps per request (microseconds of the wall clock,
which the API and the workers of one machine share): when the handler began, when the admission
script was sent and answered, when the reply was in hand, and when the response was built. The
request asks its worker for its own (taken off the queue, forward pass began and ended), which
come back with the reply. The response then carries them as ``X-MLCommons-Timing``,
``name=milliseconds since the handler began;...``. Off (the default) it costs one ContextVar
read per prediction.
"""
from __future__ import annotations

import time
from contextvars import ContextVar

HEADER = "X-MLCommons-Timing"
WORKER_MARKS = ("taken", "forward", "forwarded")

_CURRENT: ContextVar[dict | None] = ContextVar("prediction_timing", default=None)


def now_us() -> int:
    return time.time_ns() // 1000


def start() -> dict:
    """Begin this request's marks (the API's middleware, with the setting on)."""
    marks = {"start": now_us()}
    _CURRENT.set(marks)
    return marks


def active() -> bool:
    return _CURRENT.get() is not None


def mark(name: str, at: int | None = None) -> None:
    marks = _CURRENT.get()
    if marks is not None:
        marks[name] = now_us() if at is None else int(at)


def worker_marks(stamps) -> None:
    """The worker's (taken, forward, forwarded) stamps of this request's reply."""
    for name, at in zip(WORKER_MARKS, stamps or ()):
        mark(name, at)


def header(marks: dict) -> str:
    begun = marks["start"]
    return ";".join(f"{name}={(at - begun) / 1000:.3f}" for name, at in marks.items() if name != "start")


def parse(value: str) -> dict[str, float]:
    """The header back into {mark: milliseconds since the handler began}."""
    out = {}
    for part in value.split(";"):
        name, _, ms = part.partition("=")
        if name and ms:
            out[name.strip()] = float(ms)
    return out
