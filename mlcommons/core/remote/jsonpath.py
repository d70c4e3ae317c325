"""The part of JSONPath that connectors use (``$.data[*].embedding``, ``$.embeddings``, ``$[*]``,
``$.results``, ``$['a'][0]``), with Jayway's rule for what a path returns: the value itself for a
definite path, the list of what matched for one with a wildcard. A client may send the path (the
``response_filter`` parameter), so it is parsed linearly and bounded: at most 512 characters and
32 steps, and evaluation visits each node of the reply at most once per step.
"""
from __future__ import annotations

import re
from typing import Any

from mlcommons.errors import BadRequest

MAX_PATH = 512
MAX_STEPS = 32
WILDCARD = object()
_STEP = re.compile(r"""\.(\*|[A-Za-z_$@][\w$@-]*)|\[(\*|-?\d{1,9}|'[^']{0,256}'|"[^"]{0,256}")\]""")


class PathNotFound(Exception):
    pass


def compile_path(path: str) -> list[Any]:
    if not isinstance(path, str) or len(path) > MAX_PATH or not path.startswith("$"):
        raise BadRequest(f"[response_filter] must be a JSONPath of at most {MAX_PATH} characters starting with $")
    steps: list[Any] = []
    at = 1
    while at < len(path):
        m = _STEP.match(path, at)
        if m is None:
            raise BadRequest(f"[response_filter] is not a JSONPath this server reads: {path[:100]}")
        token = m.group(1) if m.group(1) is not None else m.group(2)
        if token == "*":
            steps.append(WILDCARD)
        elif token[0] in "'\"":
            steps.append(token[1:-1])
        elif m.group(2) is not None:
            steps.append(int(token))
        else:
            steps.append(token)
        at = m.end()
        if len(steps) > MAX_STEPS:
            raise BadRequest(f"[response_filter] may have at most {MAX_STEPS} steps")
    return steps


def read(document: Any, path: str) -> Any:
    steps = compile_path(path)
    definite = WILDCARD not in steps
    current = [document]
    for step in steps:
        found = []
        for node in current:
            if step is WILDCARD:
                if isinstance(node, list):
                    found.extend(node)
                elif isinstance(node, dict):
                    found.extend(node.values())
            elif isinstance(step, int):
                if isinstance(node, list) and -len(node) <= step < len(node):
                    found.append(node[step])
            elif isinstance(node, dict) and step in node:
                found.append(node[step])
        if definite and not found:
            raise PathNotFound(path)
        current = found
    return current[0] if definite else current
