"""MultipleNegativesRankingLoss that does not count an anchor's own base query's documents as negatives.

In a dual-view batch the twin's hard negative is this anchor's positive (a duplicate of the target),
and rows of the same base query may hold documents relevant to this anchor. Candidates whose row shares
the anchor's group (the `label` column, one id per base query) are masked, except the anchor's own
positive and hard negatives; everything else is the usual in-batch softmax.
"""

from __future__ import annotations

from typing import Any

import torch
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss


class GroupMaskedMNRL(MultipleNegativesRankingLoss):
    """MNRL (query -> doc, joint softmax) with same-group candidates of other rows masked out."""

    def compute_loss_from_embeddings(self, embeddings: list[torch.Tensor], labels: Any) -> torch.Tensor:
        queries, docs = embeddings[0], torch.cat(embeddings[1:], dim=0)
        b, k = queries.size(0), len(embeddings) - 1
        scores = self.similarity_fct(queries, docs) * self.scale
        rows = torch.arange(b, device=scores.device)
        if labels is not None:
            groups = torch.as_tensor(labels, device=scores.device).view(-1)
            if groups.numel() != b:
                raise ValueError(f"GroupMaskedMNRL needs one group label per row, got {groups.numel()} for {b}")
            own = rows.repeat(k)[None, :] == rows[:, None]
            same = groups[:, None] == groups.repeat(k)[None, :]
            scores = scores.masked_fill(same & ~own, float("-inf"))
        return torch.nn.functional.cross_entropy(scores, rows)
