"""Weight-space ensembling (WiSE-FT / a model soup) of two encoders fine-tuned from the same MiniLM.

theta = (1 - weight) * theta_anchor + weight * theta_tuned: with the plain-view encoder as the anchor,
the instruction-trained encoder gives back part of its shift in exchange for the plain arm's general
retrieval quality (og nDCG), without more training. `method="task_arithmetic"` keeps the anchor's whole
shift from the base instead and adds a fraction of the tuned model's: theta = theta_anchor + weight *
(theta_tuned - theta_base). The merging itself is sentence-transformers' `SentenceTransformer.merge`
(mergekit's "linear" method, the model-soups paper's weighted average, and its "task_arithmetic");
this module only names the inputs, checks they embed documents themselves, and saves the result
where the pipeline looks for models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rewards.rerank import document_encoder

METHODS = ("linear", "task_arithmetic")


def soup_encoders(anchor: str | Path, tuned: str | Path, weight: float, out_dir: str | Path, *,
                  method: str = "linear", base: str | Path | None = None) -> dict[str, Any]:
    """Save the soup of `anchor` and `tuned` to `out_dir/model` (weight 0 is the anchor).

    linear: (1 - weight) * anchor + weight * tuned (weight 1 is the tuned model); task_arithmetic:
    anchor + weight * (tuned - base), `base` being the model both were fine-tuned from. All must be
    full encoders of the same architecture (a query-side-only encoder embeds documents with another
    model, so its weights describe half a retriever and are refused here).
    """
    from sentence_transformers import SentenceTransformer

    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"soup weight must be in [0, 1], got {weight}")
    if method not in METHODS:
        raise ValueError(f"soup method: one of {', '.join(METHODS)}, got {method!r}")
    if method == "task_arithmetic" and base is None:
        raise ValueError("task_arithmetic needs the base model both encoders were fine-tuned from")
    for path in (anchor, tuned):
        if document_encoder(path) is not None:
            raise ValueError(f"{path} trains the query side only (document_encoder.json); souping needs full encoders")
    if method == "linear":
        merged = SentenceTransformer.merge([str(anchor), str(tuned)], method="linear",
                                           parameters={"weight": [1.0 - weight, weight]}, device="cpu")
    else:
        merged = SentenceTransformer.merge([str(anchor), str(tuned)], method="task_arithmetic", base_model=str(base),
                                           parameters={"weight": [1.0, weight]}, device="cpu")
    out = Path(out_dir) / "model"
    merged.save(str(out))
    return {"model": str(out), "anchor": str(anchor), "tuned": str(tuned), "weight": weight, "method": method,
            "base": None if base is None else str(base)}
