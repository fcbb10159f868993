"""The shape of the code, read from its imports with ``ast`` (nothing is imported or started).

Services talk to each other over HTTP only, so no service package imports another: what two of
them share (wire schemas, constants) lives in the library (:mod:`paz.contracts`). The library has
no import cycle, so any of its modules can be read, and loaded, without the rest.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SOURCES = (ROOT / "shared", ROOT / "services")
"""Each holds packages named as their folders (setup.cfg's package_dir): ``shared/paz``, ``services/paz_web``."""


def modules() -> dict[str, Path]:
    """Every module under :data:`SOURCES` by its dotted name (a package by its own name)."""
    found = {}
    for source in SOURCES:
        for path in sorted(source.rglob("*.py")):
            parts = path.relative_to(source).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = modules()


def imported(name: str) -> set[str]:
    """The names module ``name`` imports anywhere: at the top, inside functions and under ``TYPE_CHECKING``.

    ``from package import name`` counts as importing ``package.name`` when that is a module of ours.
    """
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(package, node.level, node.module)
            names.update(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names)
    return names


def _absolute(package: str, level: int, module: str | None) -> str:
    """The absolute name of ``from <level dots><module> import ...`` written in ``package``."""
    if level == 0:
        return module or ""
    base = package.rsplit(".", level - 1)[0]
    return f"{base}.{module}" if module else base


def service_package(name: str) -> str | None:
    """The service package a module name belongs to (``paz_scheduler`` for ``paz_scheduler.drivers.docker``)."""
    top = name.partition(".")[0]
    return top if (ROOT / "services" / top).is_dir() else None


def test_no_service_imports_another_service() -> None:
    crossings = [
        f"{name} imports {target}"
        for name in MODULES if service_package(name)
        for target in sorted(imported(name))
        if service_package(target) not in (None, service_package(name))
    ]
    assert not crossings, "services share code only through the library (paz.contracts): " + "; ".join(crossings)


def library_graph() -> dict[str, set[str]]:
    """Which modules of ``paz`` each module of ``paz`` imports."""
    library = [name for name in MODULES if name.partition(".")[0] == "paz"]
    return {
        name: {target for target in imported(name) if target in library and target != name}
        for name in library
    }


def cycles(graph: dict[str, set[str]]) -> Iterator[list[str]]:
    """One cycle through each module that is on one, as the path that closes it."""
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> Iterator[list[str]]:
        if name in path:
            yield path[path.index(name):] + [name]
            return
        if name in done:
            return
        for target in sorted(graph[name]):
            yield from visit(target, path + [name])
        done.add(name)

    for name in sorted(graph):
        yield from visit(name, [])


def test_the_library_has_no_import_cycle() -> None:
    found = [" -> ".join(cycle) for cycle in cycles(library_graph())]
    assert not found, "import cycles in shared/paz: " + "; ".join(found)


def test_one_module_talks_to_python_etcd() -> None:
    users = sorted(name for name in MODULES if any(target.partition(".")[0] == "etcd" for target in imported(name)))
    assert len(users) <= 1, "python-etcd (import etcd) is imported by " + ", ".join(users) + "; only paz.etcd.v2 may"
