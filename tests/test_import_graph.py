"""No import circles between the files of ``bench/``.

Two modules that import each other (even inside a function, even under ``TYPE_CHECKING``) have
no order in which either can be read alone: the shared piece belongs in a third module both
import. The graph is read from the source (no import runs): every ``import`` statement in a
file, at any depth, is an edge from that file to each module it names. A package is its
``__init__``. ``from bench.x import y`` names ``bench.x`` (it runs that package's
``__init__`` and may read ``y`` from it) and also ``bench.x.y`` where that is a module; to
import a submodule without its package's ``__init__`` in the way, write
``from bench.x.y import ...``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "bench"


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under ``bench/`` (a package is its
    ``__init__``)."""
    modules = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_package(name: str, modules: dict[str, Path]) -> bool:
    return modules[name].name == "__init__.py"


def _absolute(node: ast.ImportFrom, importer: str, modules: dict[str, Path]) -> str:
    """The module an ``ImportFrom`` names, relative imports resolved against ``importer``."""
    if not node.level:
        return node.module or ""
    package = importer.split(".")
    if not _is_package(importer, modules):
        package.pop()
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _known(name: str, modules: dict[str, Path]) -> str | None:
    """``name`` or its nearest enclosing module that is a file of ``bench/``."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(importer: str, modules: dict[str, Path]) -> set[str]:
    """The ``bench`` modules ``importer`` imports anywhere in its file: ``from bench.x import
    y`` is ``bench.x``, and ``bench.x.y`` too where that is a module."""
    tree = ast.parse(modules[importer].read_text(), filename=str(modules[importer]))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, importer, modules)
            named = [f"{base}.{alias.name}" for alias in node.names]
            targets = [base, *(name for name in named if name in modules)]
        else:
            continue
        for target in targets:
            module = _known(target, modules)
            if module is not None and module != importer:
                found.add(module)
    return found


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    modules = module_files(root)
    return {name: imports_of(name, modules) for name in modules}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as ``[a, b, ..., a]``, or None (depth-first search, three colours)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle is not None:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start)
            if cycle is not None:
                return cycle
    return None


def test_no_import_cycle_between_files() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_graph_sees_every_kind_of_import(tmp_path: Path) -> None:
    """Function-level, ``TYPE_CHECKING``, relative and ``from package import module`` imports
    are edges; importing a package is importing its ``__init__``."""
    package = tmp_path / PACKAGE
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from bench.sub.leaf import f\n")
    (package / "sub" / "leaf.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from ..other import Thing\n"
        "def f():\n    import bench.lone\n    from bench.other import name\n"
    )
    (package / "other.py").write_text("")
    (package / "lone.py").write_text("def g():\n    from bench import other\n")
    graph = import_graph(tmp_path)
    assert graph["bench.sub"] == {"bench.sub.leaf"}
    assert graph["bench.sub.leaf"] == {"bench.other", "bench.lone"}
    assert graph["bench.lone"] == {"bench", "bench.other"}
    assert find_cycle(graph) is None
    # a module the package's __init__ imports, reaching a sibling through the package
    (package / "other.py").write_text("from bench.sub import leaf\n")
    cycle = find_cycle(import_graph(tmp_path))
    assert cycle is not None and cycle[0] == cycle[-1]
    assert {"bench.other", "bench.sub", "bench.sub.leaf"} <= set(cycle)


@pytest.mark.parametrize("name", ["bench.data", "bench.report"])
def test_packages_are_nodes(name: str) -> None:
    assert name in import_graph()
