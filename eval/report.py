"""Write an evaluation into a run folder: metrics.json, metrics.md, recall_by_kind.png, per_query/*.jsonl.

Beside recall the tables and the chart's second panel show violations@k per kind, and planner methods get
the op table (`eval.compliance`), where the harness computed them.

A folder accumulates methods: a later run (say, API models evaluated on another day) merges into the
existing metrics.json, and the tables, the chart and the bootstrap CIs are rebuilt over all methods, so one
folder holds one comparable table. Runs with a different benchmark, split, engine, k or query limit are
refused rather than mixed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from eval.compliance import INSTRUCTED_GROUPS, violations_key
from eval.methods import BASELINES
from eval.stats import RERANK_SUFFIX, add_baseline_stats, vs_baseline
from ir_core.io import atomic_write_text
from ir_core.types import GROUPS, KINDS

METRICS_JSON = "metrics.json"
METRICS_MD = "metrics.md"
PLOT = "recall_by_kind.png"
PER_QUERY_DIR = "per_query"
# a merged run must agree on these, or its numbers are not comparable
COMPAT_KEYS = ("bench", "split", "engine", "k", "limit", "n_queries", "queries_sha", "depth")


class ReportError(ValueError):
    """An out_dir that cannot take this run (another benchmark/split/k) or a damaged metrics.json."""


def safe_name(method: str) -> str:
    """A file-system-safe stem for a method name like 'hf:models/smollm2'."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", method).strip("._") or "method"


def read_metrics(out_dir: str | Path) -> dict | None:
    """The merged report of an out_dir, or None when there is none yet."""
    path = Path(out_dir) / METRICS_JSON
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: not valid JSON ({exc}); move it away or use a fresh --out") from exc
    if not isinstance(data, dict) or "config" not in data or "methods" not in data:
        raise ReportError(f"{path}: not an eval report (needs 'config' and 'methods')")
    return data


def read_per_query(out_dir: str | Path, method: str, report: dict | None = None) -> list[dict]:
    """Per-query records of one method as written by `write_report`."""
    files = (report or {}).get("methods", {}).get(method, {}).get("per_query_file")
    path = Path(out_dir) / (files or f"{PER_QUERY_DIR}/{safe_name(method)}.jsonl")
    if not path.exists():
        raise ReportError(f"no per-query log for method {method!r} at {path}")
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _check_compatible(old: dict, new: dict, path: Path) -> None:
    diffs = [f"{key}: {old.get(key)!r} there vs {new.get(key)!r} now" for key in COMPAT_KEYS
             if old.get(key) != new.get(key)]
    if diffs:
        raise ReportError(f"{path} holds an evaluation that is not comparable with this one ({'; '.join(diffs)}); "
                          "use another out_dir or start it afresh (eval.run --fresh)")


def merge(old: dict | None, new: dict, out_dir: Path) -> dict:
    """Combine a previous report with a new run (new methods win) and rebuild the derived numbers."""
    config = dict(new["config"])
    if old is not None:
        _check_compatible(old["config"], config, out_dir / METRICS_JSON)
    methods = dict(old["methods"]) if old else {}
    for name, res in new["methods"].items():
        methods[name] = res
    key = config["headline"]
    n_resamples, seed = config["n_resamples"], config["seed"]
    report = {"config": config, "methods": methods}
    cache: dict[str, list[dict]] = {}

    def records(name: str) -> list[dict]:
        if name not in cache:
            cache[name] = new.get("per_query", {}).get(name) or read_per_query(out_dir, name, report)
        return cache[name]

    add_baseline_stats(methods, records, key, n_resamples, seed)
    pairs = {(c["a"], c["b"]): c for c in (old or {}).get("comparisons", [])}
    pairs.update({(c["a"], c["b"]): c for c in new.get("comparisons", [])})
    for a, b in new.get("compare_pairs", []):
        missing = [m for m in (a, b) if m not in methods]
        if missing:
            raise ReportError(f"cannot compare {a!r} with {b!r}: not in this run or {out_dir}: {', '.join(missing)}")
        if (a, b) not in pairs or a in new["methods"] or b in new["methods"]:
            pairs[(a, b)] = {"a": a, "b": b, "by_kind": vs_baseline(records(a), records(b), key, n_resamples, seed)}
    report["comparisons"] = list(pairs.values())
    return report


def write_report(result: dict, out_dir: str | Path) -> dict:
    """Write per-query logs of the new methods, then the merged metrics.json, metrics.md and chart."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    old = read_metrics(out)
    if old is not None:  # refuse before writing anything
        _check_compatible(old["config"], result["config"], out / METRICS_JSON)
    known = set(result["methods"]) | set((old or {}).get("methods", {}))
    for a, b in result.get("compare_pairs", []):
        if a not in known or b not in known:
            raise ReportError(f"cannot compare {a!r} with {b!r}: evaluate both first (known: {', '.join(sorted(known))})")
    for name, records in result.get("per_query", {}).items():
        rel = f"{PER_QUERY_DIR}/{safe_name(name)}.jsonl"
        atomic_write_text(out / rel, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records))
        result["methods"][name]["per_query_file"] = rel
    report = merge(old, result, out)
    atomic_write_text(out / METRICS_JSON, json.dumps(report, indent=2, default=str) + "\n")
    atomic_write_text(out / METRICS_MD, markdown(report))
    plot_recall_by_kind(report, out / PLOT)
    return report


def fmt(value: Any, digits: int = 3, missing: str = "–") -> str:
    """A table cell: floats to ``digits`` places, None as ``missing``, anything else as is."""
    if value is None:
        return missing
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _metric_label(name: str) -> str:
    m = re.fullmatch(r"(recall|hit)@(\d+)", name)
    if m:
        return f"{'R' if m.group(1) == 'recall' else 'Hit'}@{m.group(2)}"
    return name.upper() if name == "mrr" else name


def _metric_order(name: str) -> tuple:
    m = re.fullmatch(r"(recall|hit)@(\d+)", name)
    if m:
        return (0 if m.group(1) == "recall" else 1, int(m.group(2)), name)
    return (2, 0, name)


def markdown(report: dict) -> str:
    """Headline table (Recall@k per kind, validity, gain and CI vs raw) and a full-metrics table."""
    cfg, methods = report["config"], report["methods"]
    key = cfg["headline"]
    label = _metric_label(key)
    groups = [g for g in GROUPS if any(g in m["by_kind"] for m in methods.values())]
    lines = [
        f"Benchmark `{cfg['bench']}`, split `{cfg['split']}`, {cfg['n_queries']} queries, engine `{cfg['engine']}`.",
        "",
        f"**{label} by instruction kind** (n per kind in the header; gain = {label} / raw's {label}; "
        f"Δ = paired bootstrap 95% CI of {label} minus raw, {cfg['n_resamples']} resamples).",
        "",
    ]
    counts = {g: next((m["by_kind"][g]["n"] for m in methods.values() if g in m["by_kind"]), 0) for g in groups}
    header = ["method", *[f"{g} (n={counts[g]})" for g in groups], "valid", "gain instructed", "gain all",
              "Δ instructed [95% CI]"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, res in methods.items():
        by = res["by_kind"]
        ci = res.get("vs_raw", {}).get("instructed")
        ci_txt = f"{ci['diff']:+.3f} [{ci['low']:+.3f}, {ci['high']:+.3f}]" if ci else "–"
        cells = [name, *[fmt(by.get(g, {}).get(key)) for g in groups], fmt(by.get("all", {}).get("validity")),
                 fmt(res.get("gain_vs_raw", {}).get("instructed"), 2), fmt(res.get("gain_vs_raw", {}).get("all"), 2),
                 ci_txt]
        lines.append("| " + " | ".join(cells) + " |")
    names = sorted({m for res in methods.values() for m in res["by_kind"].get("all", {})
                    if m not in ("n", "validity")}, key=_metric_order)
    lines += ["", "**All metrics, all queries** (tokens and cost from the backends' usage reports).", ""]
    header = ["method", *[_metric_label(n) for n in names], "valid", "in tok/q", "out tok/q", "cost USD", "errors"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, res in methods.items():
        by = res["by_kind"].get("all", {})
        usage = res.get("usage") or {}
        per_q, total = usage.get("per_query", {}), usage.get("total", {})
        errors = ", ".join(f"{c}×{n}" for c, n in sorted(res.get("errors", {}).items(), key=lambda x: -x[1])[:3])
        cells = [name, *[fmt(by.get(n)) for n in names], fmt(by.get("validity")),
                 fmt(per_q.get("input_tokens"), 0), fmt(per_q.get("output_tokens"), 0),
                 fmt(total.get("cost_usd"), 4), errors or "–"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += compliance_markdown(report)
    if report.get("comparisons"):
        lines += ["", f"**Pairwise comparisons** ({label}, a minus b, 95% CI).", "",
                  "| a | b | group | Δ [95% CI] |", "|---|---|---|---|"]
        for c in report["comparisons"]:
            for g, ci in c["by_kind"].items():
                lines.append(f"| {c['a']} | {c['b']} | {g} | {ci['diff']:+.3f} [{ci['low']:+.3f}, {ci['high']:+.3f}] |")
    return "\n".join(lines) + "\n"


def _violation_groups(methods: dict) -> list[str]:
    return [g for g in INSTRUCTED_GROUPS if any(g in (m.get("violations") or {}) for m in methods.values())]


def is_planner(name: str) -> bool:
    """Methods that write their own plans (not the fixed baselines), whose op table is worth printing."""
    return name.removesuffix(RERANK_SUFFIX) not in BASELINES


def compliance_markdown(report: dict) -> list[str]:
    """violations@k per instructed kind for every method, and the op table of the planner methods."""
    methods = report["methods"]
    groups = _violation_groups(methods)
    if not groups:
        return []
    key = violations_key(report["config"]["k"])
    lines = ["", f"**{key}** (share of the top {report['config']['k']} results that break the instruction's "
             "constraint, by the index metadata; mean over queries that showed results; lower is better).", "",
             "| method | " + " | ".join(groups) + " |", "|" + "---|" * (len(groups) + 1)]
    for name, res in methods.items():
        v = res.get("violations") or {}
        lines.append(f"| {name} | " + " | ".join(fmt(v.get(g, {}).get(key)) for g in groups) + " |")
    planners = [(name, res["ops"]) for name, res in methods.items() if is_planner(name) and res.get("ops")]
    if planners:
        lines += ["", "**Plan ops per constraint** (right: the constraint's direction, e.g. eq/contains/in for an "
                  "inclusion, ne/nin for an exclusion, lte/lt for a price ceiling, gte/gt for a minimum rating "
                  "or a recency window; exact: right op and value; query rows: the metadata the base query "
                  "implies).", "",
                  "| method | kind | constraint | n | right (exact) | opposite | other op | no filter | invalid |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for name, rows in planners:
            for r in rows:
                lines.append(f"| {name} | {r['kind']} | {r['attribute']} | {r['n']} | {r['right']} ({r['exact']}) | "
                             f"{r['opposite']} | {r['other']} | {r['none']} | {r['invalid']} |")
    return lines


def plot_recall_by_kind(report: dict, path: str | Path) -> Path:
    """Grouped bars of headline recall per instruction kind, one bar per method (cf. the post's Figure 4)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg, methods = report["config"], report["methods"]
    key = cfg["headline"]
    groups = [g for g in (*KINDS, "all") if any(g in m["by_kind"] for m in methods.values())]
    vgroups = _violation_groups(methods)
    names = list(methods)
    width = 0.8 / max(len(names), 1)
    panels = [(groups, key, _metric_label(key), lambda res, g: res["by_kind"].get(g, {}).get(key))]
    if vgroups:  # compliance beside recall: a second panel
        vkey = violations_key(cfg["k"])
        panels.append((vgroups, vkey, f"{vkey} (lower is better)",
                       lambda res, g: (res.get("violations") or {}).get(g, {}).get(vkey)))
    fig, axes = plt.subplots(len(panels), 1, squeeze=False, figsize=(
        max(6.0, 1.2 * len(groups) + 0.35 * len(groups) * len(names)), 4.2 * len(panels)))
    cmap = plt.get_cmap("tab10")
    for ax, (pgroups, _, ylabel, value) in zip(axes[:, 0], panels, strict=True):
        for i, name in enumerate(names):
            values = [value(methods[name], g) for g in pgroups]
            xs = [g + (i - (len(names) - 1) / 2) * width for g in range(len(pgroups))]
            bars = ax.bar(xs, [v or 0.0 for v in values], width, label=name, color=cmap(i % 10))
            ax.bar_label(bars, labels=["–" if v is None else f"{v:.2f}" for v in values], fontsize=7, padding=1)
        ax.set_xticks(range(len(pgroups)), pgroups)
        ax.set_ylabel(ylabel)
        ax.set_ylim(0, 1.2)
        ax.legend(fontsize=8, ncols=min(len(names), 5), loc="upper center", frameon=False)
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].set_title(f"{_metric_label(key)} by instruction kind ({cfg['split']}, {cfg['n_queries']} queries)")
    if vgroups:
        axes[1, 0].set_title(f"{violations_key(cfg['k'])} by instruction kind")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
