"""Generating the catalogue in worker processes gives exactly the products of one process."""

from stark_instruct.synthetic import generation_processes, iter_products


def test_parallel_generation_is_identical_and_ordered():
    serial = list(iter_products(2600, seed=4, start=100))
    parallel = list(iter_products(2600, seed=4, start=100, processes=2, chunk=700))
    assert [p.doc_id for p, _ in parallel] == list(range(100, 2600))
    assert parallel == serial


def test_small_catalogues_stay_in_one_process():
    assert generation_processes(20_000) == 1
    assert generation_processes(1_000_000) >= 1
