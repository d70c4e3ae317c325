"""The layering check of tests/check_layers.py, run by CI (see that module for the rules)."""
from __future__ import annotations

import ast

from tests.check_layers import ROOT, cycle_problems, cycles, handler_problems, layer_problems, modules, size_problems


def test_no_import_cycle():
    assert cycle_problems(modules()) == []


def test_each_layer_imports_only_what_is_below_it():
    assert layer_problems(modules()) == []


def test_the_checker_sees_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_modules_and_folders_stay_small():
    assert size_problems(modules()) == []


def test_handlers_do_not_touch_storage():
    assert handler_problems(modules()) == []


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
