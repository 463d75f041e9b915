"""The layers of docs/ARCHITECTURE.md, read from the source: every import (at module level,
inside a function, or for type checking only) points down, the client and the hub never
import each other, nothing imports a top-level `server` package, the graph has no circles, and no
module grows past the size a reader takes in at once."""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = {"crdtdoc": ROOT / "crdtdoc", "crdtdoc.server": ROOT / "server"}
EVERYTHING = {**SOURCES, "benchmarks": ROOT / "benchmarks"}

CORE, PROTOCOL, ADAPTER, APP = 1, 2, 3, 4
APPS = {
    "crdtdoc.cli",
    "crdtdoc.serve_cli",
    "crdtdoc.agent_cli",
    "crdtdoc.artifact_cli",
    "crdtdoc.history_cli",
    "crdtdoc.room_cli",
    "crdtdoc.mcp_server",
    "crdtdoc.mcp_history",
    "crdtdoc.mcp_resources",
    "crdtdoc.mcp_session",
    "crdtdoc.demo",
}

MAX_LINES = 500
"""A module a newcomer reads in one sitting. Modules being split may be listed below while they
are; the list may only shrink: a module on it that fits is taken off, a new one may not join."""
STILL_LARGE: set[str] = set()


def layer(module: str) -> tuple[int, str]:
    """The layer of a module, and its side among the adapters (client, hub or simulation)."""
    if module.startswith("benchmarks") or module in APPS:
        return APP, "app"
    if module.startswith("crdtdoc.server"):
        return ADAPTER, "hub"
    if module.startswith("crdtdoc.client") or module == "crdtdoc":  # the facade: the client's
        return ADAPTER, "client"
    if module.startswith("crdtdoc.sim"):
        return ADAPTER, "simulation"
    if module.startswith("crdtdoc.protocol"):
        return PROTOCOL, "protocol"
    return CORE, "core"


def modules(roots: dict[str, Path]) -> dict[str, Path]:
    """Module name -> file, walking each root without following links (crdtdoc/server is one)."""
    found = {}
    for package, top in roots.items():
        for folder, dirs, files in os.walk(top):
            dirs[:] = [d for d in dirs if not (Path(folder) / d).is_symlink()]
            for name in files:
                if not name.endswith(".py"):
                    continue
                path = Path(folder) / name
                parts = list(path.relative_to(top).with_suffix("").parts)
                if parts[-1] == "__init__":
                    parts.pop()
                found[".".join([package, *parts])] = path
    return found


def _imports(tree: ast.AST, module: str, is_package: bool) -> Iterator[tuple[str, int]]:
    """Every module name an import statement names (with its line): at module level, inside
    functions, and under `if TYPE_CHECKING:` too (a type a module names is a dependency a
    reader follows)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module if is_package else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}" if base else package
            for alias in node.names:
                yield f"{base}.{alias.name}", node.lineno
        else:
            yield from _imports(node, module, is_package)


def graph(known: dict[str, Path]) -> dict[str, dict[str, int]]:
    """module -> {imported module of the project (or a top-level `server` one): line}."""
    edges: dict[str, dict[str, int]] = {}
    for module, path in known.items():
        edges[module] = {}
        tree = ast.parse(path.read_text(), str(path))
        for name, line in _imports(tree, module, path.name == "__init__.py"):
            if name == "server" or name.startswith("server."):
                edges[module][name] = line
                continue
            target = name
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != module:
                edges[module].setdefault(target, line)
    return edges


def circles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in edges:
        if start in index:
            continue
        work = [(start, iter(edges[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, targets = work[-1]
            for target in targets:
                if target not in edges:
                    continue
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(edges[target])))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_imports_point_down_and_the_client_and_the_hub_never_import_each_other() -> None:
    known = modules(EVERYTHING)
    wrong = []
    for module, targets in graph(known).items():
        for target, line in targets.items():
            where = f"{known[module].relative_to(ROOT)}:{line} imports {target}"
            if target == "server" or target.startswith("server."):
                wrong.append(f"{where}: the hub installs as crdtdoc.server")
                continue
            (mine, side), (theirs, their_side) = layer(module), layer(target)
            if target.startswith("benchmarks") and not module.startswith("benchmarks"):
                wrong.append(f"{where}: the package does not ship the benchmarks")
            elif theirs > mine:
                wrong.append(f"{where}: a higher layer")
            elif theirs == mine == ADAPTER and side != their_side:
                wrong.append(f"{where}: the {side} may not import the {their_side}")
    assert wrong == []


def test_the_import_graph_has_no_circles() -> None:
    assert circles(graph(modules(EVERYTHING))) == []


def test_no_module_grows_past_a_sitting() -> None:
    sizes = {
        str(path.relative_to(ROOT)): len(path.read_text().splitlines())
        for path in modules(SOURCES).values()
    }
    large = {path for path, lines in sizes.items() if lines > MAX_LINES}
    assert large - STILL_LARGE == set(), "new modules past the limit: split them"
    assert STILL_LARGE - large == set(), "these fit now: take them off STILL_LARGE"


def test_the_circle_finder_finds_circles() -> None:
    edges = {"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}
    assert circles(edges) == [["a", "b", "c"]]
    assert circles({"a": {"b": 1}, "b": {}}) == []
