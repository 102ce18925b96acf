"""SparseTopP (pipelines/backends/vllm_topp.py): vLLM's top-p cut on a grammar's few allowed tokens must be
the cut vLLM's full-vocabulary sort makes, so samples do not change; runs vLLM's own functions (no engine)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("vllm.v1.sample.ops.topk_topp_sampler")


def _constrained_logits(rows: int, vocab: int, allowed: list[int], seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.full((rows, vocab), float("-inf"))
    for r in range(rows):
        idx = torch.randperm(vocab, generator=g)[: allowed[r]]
        logits[r, idx] = torch.randn(allowed[r], generator=g) * 3
    return logits


def test_sparse_top_p_makes_vllms_cut():
    from vllm.v1.sample.ops.topk_topp_sampler import apply_top_k_top_p_pytorch

    from pipelines.backends import vllm_topp

    allowed = [1, 2, 5, 17, 60, 3, 100, 8]  # 100: more than MAX_CANDIDATES, the full sort
    logits = _constrained_logits(len(allowed), 4000, allowed)
    p = torch.tensor([0.95, 0.5, 0.95, 0.9, 0.95, 0.3, 0.99, 0.8])
    expected = apply_top_k_top_p_pytorch(logits.clone(), None, p, allow_cpu_sync=True)
    got = vllm_topp.sparse_top_p(logits.clone(), p)
    assert torch.equal(torch.isinf(got), torch.isinf(expected))
    torch.testing.assert_close(got[torch.isfinite(got)], expected[torch.isfinite(expected)])
    kept = torch.isfinite(got).sum(-1)
    assert kept[0] == 1 and (kept <= torch.tensor(allowed)).all() and (kept < torch.tensor(allowed)).any()


def test_rows_with_many_allowed_tokens_fall_back_to_the_full_sort(monkeypatch):
    from vllm.v1.sample.ops.topk_topp_sampler import apply_top_k_top_p_pytorch

    from pipelines.backends import vllm_topp

    monkeypatch.setattr(vllm_topp, "MAX_CANDIDATES", 10)
    logits = torch.randn(3, 500)  # unconstrained: every token allowed
    logits[1, 20:] = float("-inf")  # a constrained row beside them
    p = torch.tensor([0.9, 0.9, 0.5])
    expected = apply_top_k_top_p_pytorch(logits.clone(), None, p, allow_cpu_sync=True)
    torch.testing.assert_close(vllm_topp.sparse_top_p(logits.clone(), p), expected)


def test_processor_tracks_the_batch_and_applies_each_requests_p():
    from vllm import SamplingParams
    from vllm.v1.sample.logits_processor import BatchUpdate, MoveDirectionality
    from vllm.v1.sample.ops.topk_topp_sampler import apply_top_k_top_p_pytorch

    from pipelines.backends.vllm import TOP_P_ARG
    from pipelines.backends.vllm_topp import SparseTopP

    proc = SparseTopP(None, torch.device("cpu"), False)
    assert proc.is_argmax_invariant()
    with_p = SamplingParams(temperature=1.0, extra_args={TOP_P_ARG: 0.5})
    plain = SamplingParams(temperature=1.0)
    proc.update_state(BatchUpdate(batch_size=3, removed=[], added=[(0, with_p, None, []), (1, plain, None, []),
                                                                   (2, with_p, None, [])], moved=[]))
    assert proc.p == {0: 0.5, 2: 0.5}
    proc.update_state(BatchUpdate(batch_size=2, removed=[0], added=[],
                                  moved=[(2, 0, MoveDirectionality.UNIDIRECTIONAL)]))
    assert proc.p == {0: 0.5}
    logits = _constrained_logits(2, 300, [12, 12], seed=1)
    out = proc.apply(logits.clone())
    expected0 = apply_top_k_top_p_pytorch(logits[:1].clone(), None, torch.tensor([0.5]), allow_cpu_sync=True)
    torch.testing.assert_close(out[:1], expected0)
    torch.testing.assert_close(out[1], logits[1])  # a request without the argument is untouched
    with pytest.raises(ValueError, match="must be in"):
        SparseTopP.validate_params(SamplingParams(extra_args={TOP_P_ARG: 1.5}))
