"""Every command the README and docs/*.md show (`python -m ...`, `scripts/*.py`) exists, and every flag
they give it is one its `--help` lists; `make help` lists every make target.

The docs are read, not trusted: a renamed or removed flag in a command line the docs show fails here.
The `--help` runs are subprocesses (each command's own parser, whatever its style), four at a time.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND = re.compile(
    r"(?:(?:\.venv/bin/)?python3?\s+-m\s+(?P<module>[A-Za-z_][\w.]*)"
    r"|(?:(?:\.venv/bin/)?python3?\s+)?(?<![\w/])(?P<script>scripts/\w+\.py))"
)
FLAG = re.compile(r"(?<![\w-])(--[a-z][\w-]*)")


def snippets(text: str) -> list[str]:
    """Shell text the page shows: fenced blocks (line continuations joined) and inline code spans."""
    out = []
    for block in re.findall(r"```[^\n]*\n(.*?)```", text, re.S):
        out += block.replace("\\\n", " ").splitlines()
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    return out + re.findall(r"`([^`\n]+)`", prose.replace("\n", " "))


def commands_in(text: str) -> list[tuple[str, str, set[str]]]:
    """(command, first word after it, flags given to it) for every command a page's shell text shows."""
    found = []
    for snip in snippets(text):
        for m in COMMAND.finditer(snip):
            # this command's own arguments end at the shell's next command or comment
            tail = re.split(r"\s(?:;|&&|\|\||\||#)\s|;", snip[m.end():])[0]
            words = tail.split()
            flags = set(FLAG.findall(tail)) - {"--help"}
            found.append((m.group("module") or m.group("script"), words[0] if words else "", flags))
    return found


def doc_commands() -> list[tuple[str, str, str, set[str]]]:
    """(doc, command, first word, flags) over the README and docs/*.md."""
    return [(doc.relative_to(ROOT).as_posix(), *cmd) for doc in DOCS
            for cmd in commands_in(doc.read_text(encoding="utf-8"))]


def _argv(command: str, sub: str = "") -> list[str]:
    base = [sys.executable, command] if command.endswith(".py") else [sys.executable, "-m", command]
    return base + ([sub] if sub else []) + ["--help"]


def _help(key: tuple[str, str]) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run(_argv(*key), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    return out.returncode, out.stdout + out.stderr


def _helps(keys: set[tuple[str, str]]) -> dict[tuple[str, str], tuple[int, str]]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(sorted(keys), pool.map(_help, sorted(keys)), strict=True))


def _key(command: str, first: str) -> tuple[str, str]:
    """A first word that is a plain name (`serve mcp`, `pipelines.model convert`) is taken as a subcommand."""
    return command, first if re.fullmatch(r"[a-z][\w-]*", first) else ""


def test_every_documented_command_accepts_the_flags_the_docs_show():
    commands = doc_commands()
    assert len({c for _, c, _, _ in commands}) >= 12, commands  # the reader found the docs' commands
    helps = _helps({_key(c, first) for _, c, first, _ in commands})
    problems = []
    for doc, command, first, flags in commands:
        key = _key(command, first)
        rc, text = helps[key]
        if rc != 0:
            problems.append(f"{doc}: `{' '.join(_argv(*key)[1:])}` exits {rc}: {text.strip()[-300:]}")
            continue
        unknown = sorted(flags - set(FLAG.findall(text)))
        if unknown:
            problems.append(f"{doc}: `{' '.join(key).strip()}` has no {', '.join(unknown)}")
    assert not problems, "\n".join(sorted(set(problems)))


def test_the_reader_sees_flags_and_subcommands():
    text = ("```bash\npython -m serve mcp --backend vllm \\\n  --port 8001   # --not-a-flag\n```\n"
            "Run `scripts/bench_x.py --n 4; ls --all` or `.venv/bin/python -m eval.run --bench B`.")
    assert commands_in(text) == [("serve", "mcp", {"--backend", "--port"}), ("scripts/bench_x.py", "--n", {"--n"}),
                                 ("eval.run", "--bench", {"--bench"})]


def _make_targets() -> set[str]:
    targets = set()
    for mk in [ROOT / "Makefile", *sorted((ROOT / "mk").glob("*.mk"))]:
        targets |= set(re.findall(r"^([a-z][\w-]*):(?!=)", mk.read_text(encoding="utf-8"), re.M))
    return targets


def test_make_help_lists_every_target():
    out = subprocess.run(["make", "-s", "--no-print-directory", "help"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    listed = set(re.findall(r"^make (\S+)", out.stdout, re.M))
    targets = _make_targets()
    assert len(targets) >= 30 and {"demo", "test", "help", "browser"} <= targets
    assert targets - listed == set()
