"""Weight-space ensembling (WiSE-FT / a model soup) of two encoders fine-tuned from the same MiniLM.

theta = (1 - weight) * theta_anchor + weight * theta_tuned: with the plain-view encoder as the anchor,
the instruction-trained encoder gives back part of its shift in exchange for the plain arm's general
retrieval quality (og nDCG), without more training. The interpolation itself is sentence-transformers'
`SentenceTransformer.merge` (mergekit's "linear" method, the model-soups paper's uniform/weighted
average); this module only names the two inputs, checks they embed documents the same way, and saves
the result where the pipeline looks for models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rewards.rerank import document_encoder


def soup_encoders(anchor: str | Path, tuned: str | Path, weight: float, out_dir: str | Path) -> dict[str, Any]:
    """Save (1 - weight) * anchor + weight * tuned to `out_dir/model`; weight 0 is the anchor, 1 the tuned model.

    Both must be full encoders of the same architecture (a query-side-only encoder embeds documents
    with another model, so its weights describe half a retriever and are refused here).
    """
    from sentence_transformers import SentenceTransformer

    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"soup weight must be in [0, 1], got {weight}")
    for path in (anchor, tuned):
        if document_encoder(path) is not None:
            raise ValueError(f"{path} trains the query side only (document_encoder.json); souping needs full encoders")
    merged = SentenceTransformer.merge([str(anchor), str(tuned)], method="linear",
                                       parameters={"weight": [1.0 - weight, weight]}, device="cpu")
    out = Path(out_dir) / "model"
    merged.save(str(out))
    return {"model": str(out), "anchor": str(anchor), "tuned": str(tuned), "weight": weight}
