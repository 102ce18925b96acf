"""Shared fixtures: a tiny embedded benchmark built once per test session (seconds)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TINY_SIZE = 2000


@pytest.fixture(scope="session")
def tiny_benchmark(tmp_path_factory):
    """A 2k-product synthetic benchmark with its tantivy index; returns a loaded `Benchmark`."""
    from stark_instruct.benchmark import Benchmark
    from stark_instruct.build import build_benchmark

    path = build_benchmark(tmp_path_factory.mktemp("bench") / "tiny", size=TINY_SIZE, seed=0, queries=120)
    return Benchmark.load(path)


@pytest.fixture
def one_torch_thread():
    """Tiny models gain nothing from threads, and on a shared 2-core box spinning threads are far slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
