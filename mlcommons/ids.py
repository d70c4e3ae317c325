"""Identifiers in the shapes OpenSearch uses: 20-character ids for documents, 22 for nodes."""
from __future__ import annotations

import base64
import os
import time


def new_id() -> str:
    """A random URL-safe 20-character id, like an OpenSearch auto-generated document id."""
    return base64.urlsafe_b64encode(os.urandom(15)).decode()


def new_node_id() -> str:
    return base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")


def now_ms() -> int:
    return int(time.time() * 1000)
