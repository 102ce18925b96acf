"""Where a result came from: content hashes of inputs, the code's git commit, the versions of packages.

Run manifests (pipelines.rundir) and benchmark manifests (stark_instruct.build) record these, so two runs
can be told apart by what they were made of.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import subprocess
from collections.abc import Iterable
from pathlib import Path

TRACKED_PACKAGES = (
    "torch",
    "transformers",
    "trl",
    "peft",
    "accelerate",
    "datasets",
    "vllm",
    "deepspeed",
    "tantivy",
    "rank-bm25",
    "wandb",
)


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def path_fingerprint(path: str | Path) -> str:
    """A content hash of a file, or of every file in a folder (names and bytes), to pin a run's inputs."""
    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        h.update(str(p.relative_to(path)).encode())
        h.update(file_sha256(p).encode())
    return h.hexdigest()


def code_version(repo: str | Path | None = None) -> dict:
    """The git commit the code ran from, and whether the tree had uncommitted changes."""
    repo = Path(repo) if repo else Path(__file__).resolve().parents[1]

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def package_versions(names: Iterable[str] = TRACKED_PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out
