"""wandb for a TAO run (offline unless the user configured it); rounds.jsonl stays the durable log."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from ir_core.io import atomic_write_text
from pipelines.rundir import RunDir, redact
from pipelines.train import configure_wandb


class WandbLogger:
    """One wandb run per run directory (its id is kept there, so a resumed run logs into the same one)."""

    def __init__(self, config: dict, run: RunDir, enabled: bool, project: str):
        self.run = None
        if not enabled:
            return
        configure_wandb("wandb")
        import wandb

        self.run = wandb.init(project=project, dir=str(run.path), config=redact(config),
                              name=Path(run.path).name, resume="allow", id=_wandb_id(run))

    def log(self, row: dict) -> None:
        """A round's row of rounds.jsonl as flat wandb metrics (dev/test recall and validity per group)."""
        if self.run is None:
            return
        flat: dict[str, Any] = {"round": row["round"]}
        for split in ("dev", "test"):
            for who, groups in (row.get(split) or {}).items():
                if who == "baselines":
                    continue
                for g, v in groups.items():
                    flat[f"{split}/recall_{g}"] = v["recall"]
                    flat[f"{split}/validity_{g}"] = v["validity"]
        for sect in ("score", "select", "train"):
            for key, v in (row.get(sect) or {}).items():
                if isinstance(v, int | float) and not isinstance(v, bool):
                    flat[f"{sect}/{key}"] = v
        self.run.log(flat)

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()


def _wandb_id(run: RunDir) -> str:
    p = run / "wandb_id.txt"
    if not p.exists():
        atomic_write_text(p, uuid.uuid4().hex[:12])
    return p.read_text().strip()
