"""No import cycle between rayop's modules.

The graph is read from the source with `ast`, so it counts every import: at module level, inside
functions, and under `if TYPE_CHECKING:` (a type-only import still couples two modules: neither can be
read, tested or moved without the other). The one edge left out is a package `__init__` importing its own
submodules to re-export their names.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "rayop"


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module an imported name lives in: the longest known module that is `name` or contains it."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        is_package = path.name == "__init__.py"
        package = mod if is_package else mod.rpartition(".")[0]
        targets: list[str] = []
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*anchor, *([base] if base else [])])
                # `from pkg import sub` imports the submodule when there is one, else a name of pkg.
                targets += [f"{base}.{a.name}" for a in node.names]
        for t in targets:
            dep = _resolve(t, modules)
            if dep is None or dep == mod:
                continue
            if is_package and dep.startswith(mod + "."):
                continue  # a package re-exporting its own submodules
            graph[mod].add(dep)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_a_cycle(graph, set(c)) for c in components]


def _a_cycle(graph: dict[str, set[str]], comp: set[str]) -> list[str]:
    """A shortest path start -> ... -> start inside one component, for the failure message."""
    start = min(comp)
    prev: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & comp):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return [*reversed(path), start]
                if w not in prev:
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    return sorted(comp)


def test_the_graph_sees_every_kind_of_import() -> None:
    graph = import_graph()
    # Module level, `from pkg import submodule`, and a function-level import.
    assert "rayop.controllers.podplan" in graph["rayop.controllers.raycluster.pods"]
    assert "rayop.runtime.client" in graph["rayop.node.agent"]
    # A package re-exporting its submodules is not an edge; importing from a package is.
    assert "rayop.controllers.raycluster.wiring" not in graph["rayop.controllers.raycluster"]
    assert "rayop.validation" in graph["rayop.controllers.raycluster.validation"]


def test_cycles_are_found_including_type_checking_imports() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    [cycle] = find_cycles(graph)
    assert cycle[0] == cycle[-1] == "a" and set(cycle) == {"a", "b", "c"}
    src = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from rayop.x import y\n"
    found = [n for n in ast.walk(ast.parse(src)) if isinstance(n, ast.ImportFrom) and n.module == "rayop.x"]
    assert found, "ast.walk reaches imports under `if TYPE_CHECKING:`"


def test_no_import_cycle_between_rayop_modules() -> None:
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)
