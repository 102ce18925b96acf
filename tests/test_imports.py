"""The project's imports form no cycle, between modules or between packages, and never go up the layer order
of docs/CONTRACTS.md (read from the source, AST)."""

from __future__ import annotations

import ast
import re
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
    """The group of the layer line of docs/CONTRACTS.md a module belongs to (pipelines.backends.hf ->
    pipelines.backends, a layer of its own below eval), else its top-level package (pipelines.tao -> pipelines)."""
    groups = [g for layer in contract_layers() for g in layer if module == g or module.startswith(g + ".")]
    return max(groups, key=len, default=module.split(".", 1)[0])


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


def contract_layers() -> list[list[str]]:
    """The layer order as docs/CONTRACTS.md states it: `a` < `b`, `c` < ... (lowest first)."""
    text = (ROOT / "docs" / "CONTRACTS.md").read_text(encoding="utf-8")
    para = next((p for p in text.split("\n\n") if p.startswith("Layers (")), None)
    assert para, "docs/CONTRACTS.md has no 'Layers (...): `a` < `b` ...' paragraph"
    prose = re.sub(r"\([^)]*\)", "", para.split("):", 1)[1])  # the order, without the asides in parentheses
    return [re.findall(r"`([\w.]+)`", part) for part in prose.split("<")]


def upward_edges(graph: dict[str, set[str]], layers: list[list[str]]) -> list[str]:
    """Imports from a module to one in a higher layer (or sideways into another group of its own layer)."""
    rank = {group: i for i, groups in enumerate(layers) for group in groups}

    def group(module: str) -> str:
        return max((g for g in rank if module == g or module.startswith(g + ".")), key=len, default=module)

    bad = []
    for a, targets in graph.items():
        for b in targets:
            ga, gb = group(a), group(b)
            if ga != gb and rank.get(gb, -1) >= rank.get(ga, -1):
                bad.append(f"{a} ({ga}) -> {b} ({gb})")
    return sorted(bad)


def test_layer_order_of_the_contracts_page():
    layers = contract_layers()
    named = {g for groups in layers for g in groups}
    assert {"ir_core", "stark_instruct", "rewards", "eval", "pipelines", "serve"} <= named, layers
    graph = _graph()
    unplaced = sorted({m.split(".")[0] for m in graph} - named)
    assert not unplaced, f"packages missing from the layer line of docs/CONTRACTS.md: {unplaced}"
    assert upward_edges(graph, layers) == []


def test_the_layer_check_finds_an_upward_edge():
    layers = [["ir_core"], ["rewards"], ["pipelines.backends"], ["pipelines"]]
    graph = {"rewards.parse": {"ir_core.io"}, "pipelines.tao": {"pipelines.backends.hf"},
             "pipelines.backends.hf": {"pipelines.model"}, "ir_core.io": set()}
    assert upward_edges(graph, layers) == ["pipelines.backends.hf (pipelines.backends) -> pipelines.model (pipelines)"]
