"""Fine-tune a sentence-transformers bi-encoder on one arm's triples (MultipleNegativesRankingLoss).

MNRL with the hard negative column scores each anchor against its positive, its own hard negative and
every other document in the batch. Dual-view data needs two things from the batching (`batching="pairs"`,
the default): both views of a pair in the same batch, so one step sees the same two documents under
complementary instructions (each view's positive is the other's hard negative), and a mask over
candidates from the anchor's own base query (`GroupMaskedMNRL`): the twin's negative is this anchor's
positive, and another variant's documents of the same query may be relevant to it, so neither may count
as a negative. `batching="no_duplicates"` is the old recipe (sentence-transformers' sampler, which keeps
twins apart because they share texts), kept to measure the difference.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ir_core.config import check_range, help_field, parse_or_exit
from pipelines.dualview.pairs import SECOND_NEGATIVE, TRAIN_COLUMNS, anchor_text
from rewards.rerank import DOCUMENT_ENCODER_FILE, default_base_model, load_encoder

BATCHINGS = ("pairs", "shuffle", "no_duplicates")  # shuffle: the masked loss on random batches (an ablation)

DEFAULT_MAX_SEQ_LENGTH = 160


def configure_threads(n: int | None = None) -> int:
    """Torch CPU threads: $DUALVIEW_THREADS, else 2 cores, else 1 when the machine is oversubscribed.

    On a shared box (load average above the core count) two OpenMP threads spin against other
    processes and a training step gets slower than with one.
    """
    import torch

    if n is None:
        n = int(os.environ.get("DUALVIEW_THREADS", "0") or 0)
    if not n:
        cores = os.cpu_count() or 1
        n = 1 if os.getloadavg()[0] > cores else min(2, cores)
    torch.set_num_threads(n)
    return n


def _as_dataset(rows: Any, with_groups: bool, hard_negatives: int = 1,
                plain_view: bool = False) -> tuple[Any, list[dict]]:
    from datasets import Dataset

    from pipelines.dualview.batching import group_ids

    rows = rows.to_list() if isinstance(rows, Dataset) else list(rows)
    columns = TRAIN_COLUMNS + ((SECOND_NEGATIVE,) if hard_negatives == 2 else ())
    missing = [c for c in columns if rows and c not in rows[0]]
    if missing:
        raise ValueError(f"training rows lack column(s) {missing} (re-synthesise the pairs)")
    cols = {c: [r[c] for r in rows] for c in columns}
    if plain_view:  # the base query without its instruction, as the last input column
        cols["plain_query"] = [anchor_text(r["query"]) for r in rows]
    if with_groups:  # (base query, unit): the loss masks same-query candidates and pairs twins by unit
        cols["label"] = [list(gu) for gu in zip(group_ids(rows), group_ids(rows, "pair_id"), strict=True)]
    # The trainer feeds every non-label column to the model, in order: exactly the triple (+ label).
    return Dataset.from_dict(cols), rows


def train_encoder(rows: Any, out_dir: str | Path, base_model: str | None = None, *, epochs: float = 1.0,
                  batch_size: int = 32, learning_rate: float = 3e-5, warmup_ratio: float = 0.1,
                  max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH, scale: float = 20.0, seed: int = 0,
                  max_steps: int = -1, logging_steps: int = 10, batching: str = "pairs",
                  hard_negatives: int = 1, doc_to_query: bool = True, freeze_documents: bool = False,
                  twin_weight: float = 0.0, og_weight: float = 0.0) -> dict:
    """Train on (anchor, positive, negative) rows and save the model to `out_dir/model`.

    Returns a summary (steps, seconds, final loss); `rows` is a list of dicts or a `datasets.Dataset`
    (with `pair_id` / `base_id` for `batching="pairs"`). `hard_negatives=2` adds the `negative_2`
    column (a BM25 non-answer) next to the instruction's hard negative; `doc_to_query` adds the
    positive -> anchors softmax (batching="pairs" only), where a twin's anchor is the hard competitor.
    `freeze_documents` trains the query side only: documents are embedded by the frozen base model,
    recorded in `model/document_encoder.json` so evaluation and reranking embed them the same way.
    `twin_weight` weighs `GroupMaskedMNRL`'s polarity-reversal margin between a pair and its twin;
    `og_weight` its plain view (base query -> positive against `negative_2`; needs `hard_negatives=2`).
    """
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    if batching not in BATCHINGS:
        raise ValueError(f"unknown batching {batching!r}; choose one of {', '.join(BATCHINGS)}")
    out_dir = Path(out_dir)
    if hard_negatives not in (1, 2):
        raise ValueError(f"hard_negatives must be 1 or 2, got {hard_negatives}")
    if og_weight and (hard_negatives != 2 or batching == "no_duplicates"):
        raise ValueError("og_weight needs hard_negatives=2 and the group-masked loss")
    ds, row_list = _as_dataset(rows, with_groups=batching != "no_duplicates", hard_negatives=hard_negatives,
                               plain_view=og_weight > 0)
    if len(ds) == 0:
        raise ValueError("no training triples")
    model = load_encoder(base_model, max_seq_length)
    if batching != "no_duplicates":
        from pipelines.dualview.batching import UnitBatchSampler
        from pipelines.dualview.loss import GroupMaskedMNRL

        doc_model = load_encoder(base_model, max_seq_length) if freeze_documents else None
        loss = GroupMaskedMNRL(model, scale=scale, doc_to_query=doc_to_query, document_model=doc_model,
                               twin_weight=twin_weight, og_weight=og_weight)
        sampler: Any = functools.partial(UnitBatchSampler, rows=row_list) if batching == "pairs" \
            else BatchSamplers.BATCH_SAMPLER
    else:
        if freeze_documents:
            raise ValueError("freeze_documents needs the group-masked loss (batching 'pairs' or 'shuffle')")
        loss = MultipleNegativesRankingLoss(model, scale=scale)
        sampler = BatchSamplers.NO_DUPLICATES
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out_dir / "checkpoints"),
        num_train_epochs=epochs,
        max_steps=max_steps,
        per_device_train_batch_size=batch_size,
        learning_rate=learning_rate,
        warmup_steps=warmup_ratio,  # a float < 1 is a fraction of the steps (transformers v5)
        batch_sampler=sampler,
        seed=seed,
        data_seed=seed,
        save_strategy="no",
        logging_steps=logging_steps,
        report_to="none",
        dataloader_num_workers=0,
        disable_tqdm=os.environ.get("DUALVIEW_TQDM", "1") == "0",
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=ds, loss=loss)
    t0 = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - t0
    model.save(str(out_dir / "model"))
    if freeze_documents:
        from pipelines.rundir import atomic_write_json
        atomic_write_json(out_dir / "model" / DOCUMENT_ENCODER_FILE,
                          {"document_encoder": str(base_model or default_base_model())})
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"model": str(out_dir / "model"), "triples": len(ds), "steps": int(result.global_step),
            "seconds": round(seconds, 1), "train_loss": float(result.training_loss),
            "first_logged_loss": losses[0] if losses else None, "last_logged_loss": losses[-1] if losses else None,
            "batch_size": batch_size, "epochs": epochs, "learning_rate": learning_rate,
            "max_seq_length": max_seq_length, "seed": seed, "batching": batching,
            "hard_negatives": hard_negatives, "doc_to_query": doc_to_query and batching != "no_duplicates",
            "freeze_documents": freeze_documents, "twin_weight": twin_weight, "og_weight": og_weight}


@dataclass
class TrainEncoderArgs:
    """Train an encoder on one arm's triples (JSONL from pairs)."""

    pairs: str = help_field("JSONL with anchor/positive/negative columns")
    out: str = help_field("output folder")
    base_model: str | None = help_field("folder or hub id (default: packaged all-MiniLM-L6-v2)", default=None)
    epochs: float = help_field("training epochs", default=1.0)
    batch_size: int = help_field("triples per batch", default=32)
    lr: float = help_field("learning rate", default=3e-5)
    max_seq_length: int = help_field("longest input in tokens", default=DEFAULT_MAX_SEQ_LENGTH)
    seed: int = help_field("training seed", default=0)

    def __post_init__(self) -> None:
        check_range(self, "epochs", 0, low_open=True)
        check_range(self, "lr", 0, low_open=True)
        for name in ("batch_size", "max_seq_length"):
            check_range(self, name, 1)


def main(argv: Sequence[str] | None = None) -> None:
    (a,) = parse_or_exit([TrainEncoderArgs], argv, "python -m pipelines.dualview.train")
    from pipelines.dualview.pairs import load_pairs

    info = train_encoder(load_pairs(a.pairs), a.out, a.base_model, epochs=a.epochs, batch_size=a.batch_size,
                         learning_rate=a.lr, max_seq_length=a.max_seq_length, seed=a.seed)
    print(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
