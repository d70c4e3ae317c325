"""The project's layering, checked on its source: no import cycle anywhere, and the HTTP handlers
translate only (they reach storage through the facade, ``mlcommons/api/services.py``, never
themselves). Function-level imports count: hiding an import in a function hides no cycle.

Run alone: ``.venv/bin/python -m pytest tests/unit/test_layers.py``.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("mlcommons", "workers", "tasks")
# Handlers: every module of the two dialects' HTTP layers, and the cluster endpoints.
HANDLERS = ("mlcommons.api.opensearch", "mlcommons.api.elasticsearch", "mlcommons.api.cluster")
# What a handler may not import, nor reach through an attribute.
STORAGE_MODULES = ("mlcommons.store", "mlcommons.keys", "redis")
STORAGE_ATTRIBUTES = {"docs", "blobs", "redis", "aredis", "keys"}


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imported_names(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every module ``name`` imports (anywhere in it), resolved to the deepest known module or to
    the outside package's own name."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    raw: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            raw.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                raw.add(candidate if candidate in known else base)
    out = set()
    for item in raw:
        probe = item
        while probe and probe not in known and "." in probe:
            probe = probe.rpartition(".")[0]
        out.add(probe if probe in known else item)
    out.discard(name)
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan's algorithm, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            advanced = False
            for nxt in edges:
                if nxt not in graph:
                    continue
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return groups


def test_no_import_cycle():
    known = modules()
    graph = {name: imported_names(name, path, known) & set(known) for name, path in known.items()}
    assert cycles(graph) == []


def test_the_checker_sees_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _is_handler(name: str) -> bool:
    return any(name == h or name.startswith(h + ".") for h in HANDLERS)


def test_handlers_do_not_touch_storage():
    known = modules()
    problems = []
    for name, path in sorted(known.items()):
        if not _is_handler(name):
            continue
        for imported in imported_names(name, path, known):
            if any(imported == s or imported.startswith(s + ".") for s in STORAGE_MODULES):
                problems.append(f"{name} imports {imported}")
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and node.attr in STORAGE_ATTRIBUTES:
                problems.append(f"{name}:{node.lineno} reaches .{node.attr}")
    assert problems == []


def test_test_modules_import_no_other_test_module():
    """Shared helpers live in conftest.py, tests/harness.py, tests/cluster.py or flows.py: a test
    module that imports another runs (and couples to) its tests."""
    problems = []
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            problems += [f"{path.relative_to(ROOT)} imports {n}" for n in names
                         if n.startswith("tests.") and n.rpartition(".")[2].startswith("test_")]
    assert problems == []
