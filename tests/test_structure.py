"""The package's shape: no import cycle, no reach into another package's private
names, no file over 800 lines, and the old names that moved still resolve with a
``DeprecationWarning``."""

from __future__ import annotations

import ast
import importlib
import pathlib
import warnings

import pytest
from conftest import REPO

PACKAGE = REPO / "fsl"
MAX_LINES = 800


def _modules() -> dict[str, pathlib.Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _imports(name: str):
    """``(imported module or name, module-level?)`` for each ``fsl`` import of a module."""
    tree = ast.parse(MODULES[name].read_text())
    top = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fsl"):
            for alias in node.names:
                yield node.module, alias.name, id(node) in top
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("fsl"):
                    yield alias.name, None, id(node) in top


def _owner(module: str, name: str | None) -> tuple[str, str] | None:
    """The package a private module or name belongs to, and the private part."""
    full = f"{module}.{name}" if name and f"{module}.{name}" in MODULES else module
    parts = full.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and part != "__init__":
            return ".".join(parts[:i]), part
    if name and name.startswith("_") and full == module:
        return (module if _is_package(module) else module.rsplit(".", 1)[0]), name
    return None


def test_no_import_of_another_packages_private_names():
    offences = []
    for name in MODULES:
        for module, imported, _ in _imports(name):
            owner = _owner(module, imported)
            if owner and not (name == owner[0] or name.startswith(owner[0] + ".")):
                offences.append(f"{name} imports {module}{'.' + imported if imported else ''}")
    assert offences == []


def test_no_import_cycle_between_modules():
    edges: dict[str, set[str]] = {}
    for name in MODULES:
        for module, imported, top in _imports(name):
            target = f"{module}.{imported}" if imported and f"{module}.{imported}" in MODULES \
                else module
            if top and target in MODULES and target != name:
                edges.setdefault(name, set()).add(target)
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif not state.get(nxt):
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for name in sorted(MODULES):
        if not state.get(name):
            visit(name, [])
    assert cycles == []


def test_the_checks_can_fail():
    # The detectors above on hand-made cases: a private name of another package is
    # flagged, one of the importer's own package is not.
    assert _owner("fsl.evaluation._validation", "l2_normalize") == (
        "fsl.evaluation", "_validation")
    assert _owner("fsl.losses.base", "_check_rank") == ("fsl.losses", "_check_rank")
    assert _owner("fsl.losses", "get") is None


def test_no_file_over_800_lines():
    long = {str(p.relative_to(REPO)): n for p in PACKAGE.rglob("*.py")
            if (n := p.read_text().count("\n")) > MAX_LINES}
    assert long == {}


@pytest.mark.parametrize("old, new", [
    ("fsl.training.facenet:verification_pairs", "fsl.evaluation.protocols:verification_pairs"),
])
def test_moved_names_warn_and_resolve(old, new):
    old_module, old_name = old.split(":")
    new_module, new_name = new.split(":")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = getattr(importlib.import_module(old_module), old_name)
    assert got is getattr(importlib.import_module(new_module), new_name)
    assert any(issubclass(w.category, DeprecationWarning) and new_module in str(w.message)
               for w in caught)


def test_deprecated_modules_and_aliases_warn():
    import numpy as np

    from fsl import distances, mining

    x = np.eye(3, dtype="float32")
    with pytest.warns(DeprecationWarning, match="fsl.distances.pairwise_distances"):
        got = mining.pairwise_distances(x, "L2")
    np.testing.assert_allclose(np.asarray(got), np.asarray(distances.pairwise_distances(x, "L2")))
    import sys

    sys.modules.pop("fsl.faces.commands", None)
    with pytest.warns(DeprecationWarning, match="fsl.cli.faces"):
        importlib.import_module("fsl.faces.commands")
