"""docs/CONTRACTS.md names only what exists: every name it lists for a module imports from that module."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "CONTRACTS.md"
PACKAGES = ("ir_core", "stark_instruct", "rewards", "pipelines", "eval")


def _is_module(name: str) -> bool:
    path = ROOT / name.replace(".", "/")
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _top_level_ticks(bullet: str) -> list[tuple[str, str]]:
    """(backticked text, what precedes it) for ticks outside parentheses of the prose."""
    out, depth, i = [], 0, 0
    while i < len(bullet):
        c = bullet[i]
        if c == "`":
            j = bullet.index("`", i + 1)
            if depth == 0:
                out.append((bullet[i + 1 : j], bullet[max(0, i - 2) : i]))
            i = j + 1
            continue
        depth += {"(": 1, ")": -1}.get(c, 0)
        i += 1
    return out


def listed() -> list[str]:
    """Dotted names: each `pkg.module.Name` reference and each name in a '- `module`: `a`, `B(...)`' list."""
    names = []
    for bullet in re.split(r"\n(?=- )", DOC.read_text(encoding="utf-8")):
        module = None
        for text, before in _top_level_ticks(re.sub(r"\s+", " ", bullet)):
            word = re.match(r"[A-Za-z_][\w.]*", text)
            if not word:
                continue
            w = word.group(0)
            if w.split(".")[0] in PACKAGES:
                if _is_module(w):
                    module = w
                else:
                    names.append(w)
            elif module and "." not in w and before in (": ", ", "):
                names.append(f"{module}.{w}")
    return names


def _resolve(dotted: str) -> object:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        mod = ".".join(parts[:cut])
        if _is_module(mod):
            obj: object = importlib.import_module(mod)
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
            return obj
    raise ImportError(dotted)


def test_every_listed_name_imports():
    names = listed()
    assert len(names) > 60, names
    missing = []
    for dotted in names:
        try:
            _resolve(dotted)
        except (ImportError, AttributeError):
            missing.append(dotted)
    assert not missing, missing
