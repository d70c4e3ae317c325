"""The audit log: one JSON line per authentication failure, denial, change of a user or an API
key, and change of the cluster settings, with the user, the route and the source address.

Written to ``mlcommons.security.audit_log`` (``mlcommons serve`` points it at
``<data dir>/logs/audit.log``); nothing is written when it is empty. Never a password or a key.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

log = logging.getLogger("mlcommons.audit")
log.propagate = False


def configure(path: str) -> None:
    if not path or any(isinstance(h, logging.FileHandler) for h in log.handlers):
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)


def record(event: str, request: web.Request, principal: Any = None, **fields: Any) -> None:
    if not log.handlers:
        return
    peer = request.transport.get_extra_info("peername") if request.transport else None
    line = {"@timestamp": int(time.time() * 1000), "event": event, "method": request.method,
            "path": request.path[:500], "source": peer[0] if peer else None,
            "user": getattr(principal, "username", None),
            "api_key_id": getattr(principal, "api_key_id", None), **fields}
    log.info(orjson.dumps(line).decode())
