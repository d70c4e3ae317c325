"""The project's layering, checked on its source (CI runs it through tests/unit/test_layers.py;
``.venv/bin/python tests/check_layers.py`` runs it alone and exits 1 on a problem):

- no import cycle anywhere (function-level imports count: hiding an import hides no cycle);
- each layer imports only the layers below it (``LAYERS``);
- no module over 500 lines, no folder of more than a dozen modules;
- the HTTP handlers translate only: they import no storage module and reach no storage, Redis
  client, context or thread pool through an attribute; they call their dialect's facade
  (``opensearch/service.py``, ``elasticsearch/service.py``, ``api/services.py``).
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mlcommons", "workers", "tasks")
# Handlers: every module of the two dialects' HTTP layers, and the cluster endpoints.
HANDLERS = ("mlcommons.opensearch.handlers", "mlcommons.elasticsearch.handlers", "mlcommons.api.cluster",
            "mlcommons.api.security", "mlcommons.openai.handlers", "mlcommons.ui",
            "mlcommons.openapi.handlers", "mlcommons.metrics.handlers")
# What a handler may not import, nor reach through an attribute.
STORAGE_MODULES = ("mlcommons.store", "redis")
STORAGE_ATTRIBUTES = {"docs", "blobs", "redis", "aredis", "keys", "ctx", "run", "executor"}
# The HTTP helpers (body parsing, responses) that handlers use from the layer above them.
HANDLER_MAY_IMPORT = ("mlcommons.api.http",)
# package -> what it may not import. Storage stores; the core decides and knows no dialect; each
# dialect knows the core but not the other dialect; the workers know the core's serving side only.
_UPPER = ("mlcommons.api", "mlcommons.cluster", "mlcommons.stack", "mlcommons.cli")
LAYERS = {
    "mlcommons.store": ("mlcommons.core", "mlcommons.opensearch", "mlcommons.elasticsearch", "mlcommons.openai")
    + _UPPER,
    "mlcommons.core": ("mlcommons.opensearch", "mlcommons.elasticsearch", "mlcommons.openai") + _UPPER,
    # Inside the core: tasks <- serving <- models <- departures (a node's run ending touches all).
    "mlcommons.core.tasks": ("mlcommons.core.serving", "mlcommons.core.models", "mlcommons.core.departures"),
    "mlcommons.core.serving": ("mlcommons.core.models", "mlcommons.core.departures"),
    "mlcommons.core.models": ("mlcommons.core.departures",),
    "mlcommons.core.remote": ("mlcommons.core.models", "mlcommons.core.departures"),
    "mlcommons.opensearch": ("mlcommons.elasticsearch", "mlcommons.openai") + _UPPER,
    "mlcommons.elasticsearch": ("mlcommons.opensearch", "mlcommons.openai") + _UPPER,
    # OpenAI's embeddings go through the OpenSearch dialect's facade, handed to it by the app.
    "mlcommons.openai": ("mlcommons.opensearch", "mlcommons.elasticsearch") + _UPPER,
    # The API's description is data: it may read the dialects' constants, never the layers above.
    "mlcommons.openapi": _UPPER,
    # Metrics read the core's documents and the nodes' heartbeats; the core and the workers use
    # only its leaves (context, counters, buckets), which import nothing of ours.
    "mlcommons.metrics": ("mlcommons.opensearch", "mlcommons.elasticsearch", "mlcommons.openai") + _UPPER,
    "mlcommons.cluster": ("mlcommons.opensearch", "mlcommons.api", "mlcommons.stack", "mlcommons.cli"),
    # The command's client verbs speak HTTP to a server: none of the server's own layers (they may
    # package a model folder with the workers' exporter).
    "mlcommons.client": ("mlcommons.store", "mlcommons.core", "mlcommons.opensearch", "mlcommons.elasticsearch",
                         "mlcommons.openai", "mlcommons.cluster", "redis") + _UPPER,
    "workers": ("mlcommons.opensearch", "mlcommons.elasticsearch") + _UPPER,
    "tasks": ("mlcommons.opensearch", "mlcommons.elasticsearch") + _UPPER,
}


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


def _within(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def cycle_problems(known: dict[str, Path]) -> list[str]:
    graph = {name: imported_names(name, path, known) & set(known) for name, path in known.items()}
    return [" -> ".join(group) for group in cycles(graph)]


def layer_problems(known: dict[str, Path]) -> list[str]:
    problems = []
    for name, path in sorted(known.items()):
        for package, banned in LAYERS.items():
            if _within(name, (package,)):
                problems += [f"{name} imports {imported}" for imported in sorted(imported_names(name, path, known))
                             if _within(imported, banned)
                             and not (_within(name, HANDLERS) and _within(imported, HANDLER_MAY_IMPORT))]
    return problems


def handler_problems(known: dict[str, Path]) -> list[str]:
    problems = []
    for name, path in sorted(known.items()):
        if not _within(name, HANDLERS):
            continue
        for imported in sorted(imported_names(name, path, known)):
            if _within(imported, STORAGE_MODULES):
                problems.append(f"{name} imports {imported}")
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and node.attr in STORAGE_ATTRIBUTES:
                problems.append(f"{name}:{node.lineno} reaches .{node.attr}")
    return problems


MAX_MODULE_LINES = 500
MAX_FOLDER_MODULES = 12


def size_problems(known: dict[str, Path]) -> list[str]:
    """No module over 500 lines, no folder of more than a dozen modules (``__init__`` aside)."""
    problems = []
    folders: dict[Path, int] = {}
    for name, path in sorted(known.items()):
        lines = len(path.read_text().splitlines())
        if lines > MAX_MODULE_LINES:
            problems.append(f"{name} has {lines} lines (at most {MAX_MODULE_LINES})")
        if path.name != "__init__.py":
            folders[path.parent] = folders.get(path.parent, 0) + 1
    problems += [f"{folder.relative_to(ROOT)} holds {count} modules (at most {MAX_FOLDER_MODULES})"
                 for folder, count in sorted(folders.items()) if count > MAX_FOLDER_MODULES]
    return problems


def main() -> int:
    known = modules()
    problems = cycle_problems(known) + layer_problems(known) + handler_problems(known) + size_problems(known)
    for problem in problems:
        print(problem)
    print(f"{len(known)} modules, {len(problems)} layering problems")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
