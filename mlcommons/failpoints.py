"""Failpoints: named places where a test can make a worker pause, so that it can kill the process
at a chosen moment (during a download, a model load, a prediction batch) instead of hoping.

They are off unless the environment variable ``MLCOMMONS_FAILPOINTS`` names them, read once at
start: ``"fetch.chunk=delay(0.2);deploy.load=delay(3)"``. Production never sets it.
"""
from __future__ import annotations

import os
import re
import time

_SPEC = re.compile(r"^\s*([\w.]+)\s*=\s*delay\(\s*([0-9.]+)\s*\)\s*$")


def _parse(raw: str) -> dict[str, float]:
    points = {}
    for part in filter(None, (p.strip() for p in raw.split(";"))):
        match = _SPEC.match(part)
        if not match:
            raise ValueError(f"MLCOMMONS_FAILPOINTS: cannot parse [{part}]; expected name=delay(seconds)")
        points[match.group(1)] = float(match.group(2))
    return points


_POINTS = _parse(os.environ.get("MLCOMMONS_FAILPOINTS", ""))


def hit(name: str) -> None:
    """Pause here if the failpoint ``name`` is armed."""
    delay = _POINTS.get(name)
    if delay:
        time.sleep(delay)
