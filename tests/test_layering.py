"""The layout holds: no module imports another package's private (``_``) modules, and there
is no import cycle among Shipyard's modules. (The layers themselves are import-linter
contracts in pyproject.toml, checked by the test command.)"""

from __future__ import annotations

import ast
from pathlib import Path

import shipyard

SRC = Path(shipyard.__file__).parent


def _modules() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(name: str, path: Path) -> list[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            out += [base] + [f"{base}.{a.name}" for a in node.names]
    return [m for m in out if m.startswith("shipyard")]


def test_no_module_reaches_into_another_packages_private_modules() -> None:
    offences = []
    for name, path in _modules().items():
        owner = ".".join(name.split(".")[:2])  # shipyard.<package>
        for target in _imports(name, path):
            parts = target.split(".")
            for depth, part in enumerate(parts[1:], start=1):
                if part.startswith("_") and not part.startswith("__"):
                    holder = ".".join(parts[:depth])
                    if not (name == holder or name.startswith(holder + ".")) and holder != owner:
                        offences.append(f"{name} imports {target}")
                    break
    assert offences == []


def test_there_is_no_import_cycle() -> None:
    modules = _modules()

    def resolve(target: str) -> str | None:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        return target or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for target in _imports(name, path):
            found = resolve(target)
            if found is None or found == name:
                continue
            is_init = modules[name].name == "__init__.py"
            # A package's __init__ re-exporting its own children is not a cycle of interest.
            if is_init and found.startswith(name + "."):
                continue
            if modules[found].name == "__init__.py" and name.startswith(found + "."):
                continue
            edges.add(found)
        graph[name] = edges
    cycles = []
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert cycles == []
