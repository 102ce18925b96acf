"""Batches for dual-view training: both views of a pair together, one pair per base query per batch.

sentence-transformers' no-duplicates sampler keeps a pair and its twin apart (they share both document
texts), so the loss never compares the two views in one step. Here a unit is a pair and its twin (or
a lone row); units are never split, and a batch takes at most one unit per base query, so the only rows
of one query that meet in a batch are the two views of one pair, whose overlap `GroupMaskedMNRL` masks.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any

from sentence_transformers.base.sampler import DefaultBatchSampler


def unit_batches(rows: Sequence[dict], batch_size: int, seed: int = 0) -> list[list[int]]:
    """Row indices in batches of whole units (rows sharing `pair_id`), shuffled by `seed`.

    Rows without `pair_id` are units of their own; rows without `base_id` count as distinct queries.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    units: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        units.setdefault(str(r.get("pair_id", f"#{i}")), []).append(i)
    order = list(units.values())
    random.Random(seed).shuffle(order)
    done: list[list[int]] = []
    filling: list[tuple[list[int], set[str]]] = []  # batches still open, with their base queries
    for unit in order:
        base = str(rows[unit[0]].get("base_id", f"#{unit[0]}"))
        for batch, bases in filling:
            if len(batch) + len(unit) <= batch_size and base not in bases:
                batch.extend(unit)
                bases.add(base)
                break
        else:
            filling.append((list(unit), {base}))
        done += [b for b, _ in filling if len(b) >= batch_size]
        filling = [x for x in filling if len(x[0]) < batch_size]
    return done + [b for b, _ in filling]


def group_ids(rows: Sequence[dict], key: str = "base_id") -> list[int]:
    """One integer per base query (or per `key`, e.g. "pair_id": a pair and its twin), in order of first
    appearance; rows without the key are groups of their own."""
    ids: dict[str, int] = {}
    return [ids.setdefault(str(r.get(key, f"#{i}")), len(ids)) for i, r in enumerate(rows)]


class UnitBatchSampler(DefaultBatchSampler):
    """`unit_batches` as a trainer batch sampler; reshuffled per epoch (seed + epoch)."""

    def __init__(self, dataset: Any, batch_size: int, drop_last: bool, rows: Sequence[dict] = (),
                 valid_label_columns: list[str] | None = None, generator: Any = None, seed: int = 0) -> None:
        super().__init__(dataset, batch_size=batch_size, drop_last=drop_last,
                         valid_label_columns=valid_label_columns, generator=generator, seed=seed)
        if len(rows) != len(dataset):
            raise ValueError(f"UnitBatchSampler got {len(rows)} rows for a dataset of {len(dataset)}")
        self.rows = list(rows)

    def __iter__(self) -> Iterator[list[int]]:
        return iter(unit_batches(self.rows, self.batch_size, seed=self.seed + self.epoch))

    def __len__(self) -> int:
        return len(unit_batches(self.rows, self.batch_size, seed=self.seed + self.epoch))
