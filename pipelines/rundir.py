"""Run directories: every TAO stage reads and writes files under one folder so a run can be audited and resumed.

A run directory holds a ``manifest.json`` (config, code version, input hashes, seeds, package versions),
one ``.done/<stage>.json`` marker per finished stage (a finished stage is never redone), and JSONL files
written through `ir_core.io.JsonlAppender` (resumable, keyed rows); whole files are written atomically
with `ir_core.io`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.metadata
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ir_core.io import atomic_write_json, read_json
from ir_core.locks import stage_lock
from ir_core.secrets import scrub

MANIFEST = "manifest.json"
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


def redact(obj: Any) -> Any:
    """Copy of a config without secrets, by value (`ir_core.secrets.scrub`), for manifests and wandb."""
    return scrub(obj)


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


class RunDir:
    """One run's folder: manifest, stage markers and paths, shared by every stage and round."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def __truediv__(self, rel: str) -> Path:
        return self.path / rel

    def sub(self, name: str) -> RunDir:
        """A nested run directory (e.g. one per round) with its own stage markers."""
        return RunDir(self.path / name)

    # --- manifest -------------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    def manifest(self) -> dict:
        return read_json(self.manifest_path) if self.manifest_path.exists() else {}

    def write_manifest(
        self,
        config: dict,
        inputs: dict[str, str | Path] | None = None,
        seeds: dict | None = None,
        extra: dict | None = None,
    ) -> dict:
        """Record what the run is made of; on resume, keep the creation time and note the restart."""
        old = self.manifest()
        manifest = {
            "created": old.get("created", dt.datetime.now(dt.UTC).isoformat(timespec="seconds")),
            "config": redact(config),
            "code": code_version(),
            "inputs": {
                name: {"path": str(p), "sha256": path_fingerprint(p)}
                for name, p in (inputs or {}).items()
                if Path(p).exists()
            },
            "seeds": seeds or {},
            "packages": package_versions(),
            **(redact(extra) if extra else {}),
        }
        if old:
            manifest["resumed"] = old.get("resumed", 0) + 1
        atomic_write_json(self.manifest_path, manifest)
        return manifest

    # --- stage markers ----------------------------------------------------------------------------
    def _marker(self, stage: str) -> Path:
        return self.path / ".done" / f"{stage}.json"

    def is_done(self, stage: str) -> bool:
        return self._marker(stage).exists()

    def mark_done(self, stage: str, info: dict | None = None) -> None:
        atomic_write_json(
            self._marker(stage),
            {
                "stage": stage,
                "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                **(info or {}),
            },
        )

    def done_info(self, stage: str) -> dict | None:
        m = self._marker(stage)
        return read_json(m) if m.exists() else None

    def stage(self, name: str, fn: Callable[[], dict | None]) -> dict:
        """Run ``fn`` unless ``name`` is already done; the marker stores fn's (JSON) result for later rounds.

        The stage's lock (`ir_core.locks.stage_lock`) is held while it runs: a second writer fails at once
        naming the holder (or waits, with ``IR_LOCK_WAIT``) and then finds the stage done, never redoes it."""
        info = self.done_info(name)
        if info is not None:
            return info
        with stage_lock(self.path, name):
            info = self.done_info(name)
            if info is None:
                self.mark_done(name, fn() or {})
        return self.done_info(name) or {}
