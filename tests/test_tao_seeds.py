"""scripts/tao_seeds.py: mean, spread and worst seed of TAO runs, against each run's raw baseline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(path: Path, seed: int, tao: float, raw: float = 0.4) -> Path:
    path.mkdir(parents=True)
    groups = lambda r: {g: {"recall": r, "validity": 1.0, "n": 10} for g in ("none", "instructed", "all")}  # noqa: E731
    rows = [{"round": 0, "test": {"policy": groups(0.1), "baselines": {"raw": groups(raw)}}},
            {"round": 1, "test": {"policy": groups(tao), "baselines": {}}}]
    (path / "rounds.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (path / "best.json").write_text(json.dumps({"round": 1}))
    (path / "config.json").write_text(json.dumps({"tao": {}, "training": {"seed": seed}, "model": {}}))
    return path


def test_seed_summary_reports_mean_sd_and_worst(tmp_path):
    runs = [_run(tmp_path / f"s{i}", i, v) for i, v in enumerate((0.6, 0.8, 0.7))]
    out = subprocess.run([sys.executable, "scripts/tao_seeds.py", *map(str, runs), "--out", str(tmp_path / "sum")],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    summary = json.loads((tmp_path / "sum" / "summary.json").read_text())["summary"]["instructed"]
    assert abs(summary["mean"] - 0.7) < 1e-9 and abs(summary["sd"] - 0.1) < 1e-9 and summary["worst"] == 0.6
    assert abs(summary["ratio_worst"] - 1.5) < 1e-9  # 0.6 / raw 0.4
    assert "| worst | | 0.600 (1.50x)" in out
