"""Generating the catalogue in worker processes gives exactly the products of one process."""

from stark_instruct.synthetic import generation_processes, iter_products


def test_parallel_generation_is_identical_and_ordered():
    serial = list(iter_products(2600, seed=4, start=100))
    parallel = list(iter_products(2600, seed=4, start=100, processes=2, chunk=700))
    assert [p.doc_id for p, _ in parallel] == list(range(100, 2600))
    assert parallel == serial


def test_large_catalogues_use_two_workers_where_there_are_two_cores(monkeypatch):
    monkeypatch.setattr("stark_instruct.synthetic.mp.cpu_count", lambda: 8)
    assert generation_processes(20_000) == 1  # a pool's start-up costs more than it saves
    assert generation_processes(1_000_000) == 2
    monkeypatch.setattr("stark_instruct.synthetic.mp.cpu_count", lambda: 1)
    assert generation_processes(1_000_000) == 1
