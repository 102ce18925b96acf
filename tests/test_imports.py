"""The project's imports form no cycle, between modules or between packages (read from the source, AST)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ir_core", "stark_instruct", "rewards", "pipelines", "eval", "serve")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules imported anywhere in a file (top level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
        # a package's __init__ is imported with any of its modules: not an edge back to the package
        graph[name] = {m for m in _imports(path, modules) if m != name and m != pkg}
    return graph


def _package(module: str) -> str:
    """The top-level package a module belongs to: pipelines.backends.hf -> pipelines."""
    return module.split(".", 1)[0]


def test_no_cycle_between_modules():
    assert _cycle(_graph()) is None, " -> ".join(_cycle(_graph()) or [])


def _package_graph() -> dict[str, set[str]]:
    pkgs: dict[str, set[str]] = {}
    for a, targets in _graph().items():
        pkgs.setdefault(_package(a), set()).update(_package(b) for b in targets if _package(b) != _package(a))
    return pkgs


def test_no_cycle_between_packages():
    pkgs = _package_graph()
    assert _cycle(pkgs) is None, " -> ".join(_cycle(pkgs) or [])


def test_the_walker_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_ir_core_imports_nothing_of_the_project():
    g = _graph()
    assert all(not (targets - {m for m in g if m.startswith("ir_core")})
               for m, targets in g.items() if m.startswith("ir_core"))
