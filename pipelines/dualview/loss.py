"""MultipleNegativesRankingLoss that does not count an anchor's own base query's documents as negatives.

In a dual-view batch the twin's hard negative is this anchor's positive (a duplicate of the target),
and rows of the same base query may hold documents relevant to this anchor. Candidates whose row shares
the anchor's group (the `label` column, one id per base query) are masked, except the anchor's own
positive and hard negatives; everything else is the usual in-batch softmax.

With `doc_to_query` (the default) a second softmax runs the other way: each positive document must
prefer its own anchor over every other anchor in the batch. When a pair's twin shares the batch, the
twin's anchor (same query, complementary instruction) is the hardest competitor, and the term
s(A, p) - s(A', p) = p . (A - A') depends on the instructions alone, not on how topical p is. That is
the dual-view signal; without twins in the batch the term only separates unrelated queries.

`twin_weight` adds the polarity-reversal margin explicitly: for a row i and its twin j (same `unit`,
the second label column) d_i + d_j = (s(A, p) - s(A, n)) + (s(A', n) - s(A', p)) must be positive,
softplus(-scale (d_i + d_j)). With fixed documents this is (A - A') . (p - n): how far the two
instructions move the same pair apart, which is what p-MRR asks of one instruction against the plain
query, and it holds no topical term at all (the plain query's contribution cancels).

`og_weight` adds the plain view of every row: the base query without its instruction (the last input
column) must rank the row's positive above the base query's BM25 non-answer (`negative_2`, the last
document column) and the other rows' documents. The instruction's hard negative is relevant to the
plain query (it is a base answer), so every candidate of the anchor's own base query but the two is
masked. It is the og side of p-MRR and of og nDCG, taken from the same triples: no extra data.
"""

from __future__ import annotations

from typing import Any

import torch
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss


class GroupMaskedMNRL(MultipleNegativesRankingLoss):
    """MNRL (query -> doc) with same-group candidates of other rows masked out, plus doc -> query.

    `document_model`: a frozen encoder for the document columns (only the anchor side is trained);
    its embeddings are cached by token ids, so a document seen again costs nothing.
    """

    def __init__(self, model: Any, scale: float = 20.0, doc_to_query: bool = True,
                 document_model: Any = None, twin_weight: float = 0.0, og_weight: float = 0.0) -> None:
        super().__init__(model, scale=scale)
        self.doc_to_query = doc_to_query
        self.twin_weight = twin_weight
        self.og_weight = og_weight  # > 0: the last column is the plain query, the one before it negative_2
        self.document_model = document_model
        self._doc_cache: dict[tuple[int, ...], torch.Tensor] = {}
        if document_model is not None:
            document_model.eval()
            for p in document_model.parameters():
                p.requires_grad_(False)

    def get_config_dict(self) -> dict[str, Any]:
        return {**super().get_config_dict(), "doc_to_query": self.doc_to_query,
                "frozen_documents": self.document_model is not None, "twin_weight": self.twin_weight,
                "og_weight": self.og_weight}

    def _frozen_docs(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        ids, mask = features["input_ids"], features["attention_mask"].bool()
        keys = [tuple(row[m].tolist()) for row, m in zip(ids, mask, strict=True)]
        missing = [i for i, k in enumerate(keys) if k not in self._doc_cache]
        if missing:
            sub = {k: v[missing] for k, v in features.items() if isinstance(v, torch.Tensor)}
            with torch.no_grad():
                emb = self.document_model(sub)["sentence_embedding"]
            for i, e in zip(missing, emb, strict=True):
                self._doc_cache[keys[i]] = e
        return torch.stack([self._doc_cache[k] for k in keys])

    def forward(self, sentence_features: Any, labels: torch.Tensor) -> torch.Tensor:
        if self.document_model is None:
            return super().forward(sentence_features, labels)
        features = list(sentence_features)
        queries = [features[0], features[-1]] if self.og_weight else features[:1]
        docs = features[1:-1] if self.og_weight else features[1:]
        q = [self.model(f)["sentence_embedding"] for f in queries]
        embeddings = [q[0], *map(self._frozen_docs, docs), *q[1:]]
        return self.compute_loss_from_embeddings(embeddings, labels)

    def compute_loss_from_embeddings(self, embeddings: list[torch.Tensor], labels: Any) -> torch.Tensor:
        """`labels`: one group id per row, or rows of (group id, unit id) for the twin term."""
        og = None
        if self.og_weight:
            if len(embeddings) < 4:
                raise ValueError("og_weight needs anchor, positive, negative, negative_2 and the plain query")
            embeddings, og = embeddings[:-1], embeddings[-1]
        queries, docs = embeddings[0], torch.cat(embeddings[1:], dim=0)
        b, k = queries.size(0), len(embeddings) - 1
        scores = self.similarity_fct(queries, docs) * self.scale
        rows = torch.arange(b, device=scores.device)
        units = groups = None
        if labels is not None:
            labels = torch.as_tensor(labels, device=scores.device)
            groups, units = (labels[:, 0], labels[:, 1]) if labels.dim() == 2 else (labels.view(-1), None)
            if groups.numel() != b:
                raise ValueError(f"GroupMaskedMNRL needs one group label per row, got {groups.numel()} for {b}")
            own = rows.repeat(k)[None, :] == rows[:, None]
            same = groups[:, None] == groups.repeat(k)[None, :]
            scores = scores.masked_fill(same & ~own, float("-inf"))
        loss = torch.nn.functional.cross_entropy(scores, rows)
        if self.doc_to_query:
            # positives -> anchors; a twin's anchor is a true negative for this positive: nothing is masked
            backward = self.similarity_fct(embeddings[1], queries) * self.scale
            loss = (loss + torch.nn.functional.cross_entropy(backward, rows)) / 2
        if self.twin_weight and units is not None:
            loss = loss + self.twin_weight * self.twin_loss(queries, embeddings[1], embeddings[2], units)
        if og is not None:
            loss = loss + self.og_weight * self.plain_view_loss(og, embeddings[1], embeddings[-1], groups)
        return loss

    def plain_view_loss(self, og: torch.Tensor, pos: torch.Tensor, neg2: torch.Tensor,
                        groups: torch.Tensor | None) -> torch.Tensor:
        """Plain query -> its row's positive among all positives and BM25 non-answers of the batch."""
        b = og.size(0)
        scores = self.similarity_fct(og, torch.cat([pos, neg2])) * self.scale
        rows = torch.arange(b, device=scores.device)
        if groups is not None:
            own = rows.repeat(2)[None, :] == rows[:, None]
            scores = scores.masked_fill((groups[:, None] == groups.repeat(2)[None, :]) & ~own, float("-inf"))
        return torch.nn.functional.cross_entropy(scores, rows)

    def twin_loss(self, queries: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor,
                  units: torch.Tensor) -> torch.Tensor:
        """mean softplus(-scale (d_i + d_j)) over rows i with a twin j in the batch (0 when none has one)."""
        cos = torch.nn.functional.cosine_similarity
        margin = cos(queries, pos, dim=-1) - cos(queries, neg, dim=-1)  # d_i
        twin = (units[:, None] == units[None, :]) & ~torch.eye(len(units), dtype=torch.bool, device=units.device)
        if not twin.any():
            return queries.sum() * 0.0
        i, j = twin.nonzero(as_tuple=True)
        return torch.nn.functional.softplus(-self.scale * (margin[i] + margin[j])).mean()
