"""Run directories: every TAO stage reads and writes files under one folder so a run can be audited and resumed.

A run directory holds a ``manifest.json`` (config, code version, input hashes, seeds, package versions),
one ``.done/<stage>.json`` marker per finished stage (a finished stage is never redone), and JSONL files
written through `ir_core.io.JsonlAppender` (resumable, keyed rows); whole files are written atomically
with `ir_core.io`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ir_core.io import atomic_write_json, read_json
from ir_core.locks import stage_lock
from ir_core.provenance import code_version, package_versions, path_fingerprint
from ir_core.secrets import scrub

MANIFEST = "manifest.json"


def redact(obj: Any) -> Any:
    """Copy of a config without secrets, by value (`ir_core.secrets.scrub`), for manifests and wandb."""
    return scrub(obj)


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
