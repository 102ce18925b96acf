"""Bad inputs, class 6 (data files): every problem is one line naming ``file:line: field``, never a
traceback, a silent truncation or an unnoticed corruption."""

from __future__ import annotations

import json
import shutil

import pytest

from eval.run import main as eval_main
from ir_core.errors import DataError
from stark_instruct.benchmark import Benchmark
from stark_instruct.stark_amazon import read_query_csv, read_split_ids


@pytest.fixture()
def bench_copy(tiny_benchmark, tmp_path):
    """A private copy of the tiny benchmark to damage."""
    return shutil.copytree(tiny_benchmark.path, tmp_path / "bench")


def _set_field(path, line: int, key: str, value) -> None:
    lines = path.read_text().splitlines(keepends=True)
    row = json.loads(lines[line - 1])
    row[key] = value
    lines[line - 1] = json.dumps(row) + "\n"
    path.write_text("".join(lines))


def test_a_query_file_cut_mid_line_names_the_file_and_the_right_line(bench_copy):
    p = bench_copy / "queries" / "dev.jsonl"
    data = p.read_bytes()
    n_lines = data.count(b"\n")
    p.write_bytes(data[: len(data) - 40])  # cut inside the last line
    with pytest.raises(DataError) as e:
        Benchmark.load(bench_copy).queries("dev")
    assert str(e.value).startswith(f"{p}:{n_lines}: invalid JSON") and e.value.row == n_lines


@pytest.mark.parametrize("value, message", [
    (["abc"], "relevant_ids: 'abc' is not an integer product id"),
    ([3, 12.0], "relevant_ids: 12.0 is not an integer product id"),  # not truncated to 12
    ([True], "relevant_ids: True is not an integer"),
    ([10**9], "relevant_ids: product id 1000000000 is not in the corpus"),
    ([-1], "relevant_ids: product id -1 is not in the corpus"),
    ([], "relevant_ids: expected a non-empty list"),
    ("7", "relevant_ids: expected a non-empty list"),
])
def test_bad_relevant_ids_name_file_line_and_field(bench_copy, value, message):
    p = bench_copy / "queries" / "test.jsonl"
    _set_field(p, 3, "relevant_ids", value)
    with pytest.raises(DataError) as e:
        Benchmark.load(bench_copy).queries("test")
    assert str(e.value).startswith(f"{p}:3: ") and message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("key, value, message", [
    ("kind", "sometimes", "kind: expected one of"),
    ("id", 17, "id: expected a non-empty string"),
    ("query", None, "query: expected a string"),
    ("constraint", "{broken", "constraint: not a JSON object"),
])
def test_other_bad_fields(bench_copy, key, value, message):
    p = bench_copy / "queries" / "train.jsonl"
    _set_field(p, 2, key, value)
    with pytest.raises(DataError, match=f":2: {message}"):
        Benchmark.load(bench_copy).queries("train")


def test_a_repeated_query_id_is_refused(bench_copy):
    p = bench_copy / "queries" / "dev.jsonl"
    lines = p.read_text().splitlines(keepends=True)
    p.write_text("".join(lines + [lines[0]]))
    with pytest.raises(DataError, match=rf"dev.jsonl:{len(lines) + 1}: id: .* repeats .*dev.jsonl:1"):
        Benchmark.load(bench_copy).queries("dev")


@pytest.mark.parametrize("name", ["corpus.parquet", "meta.parquet", "schema.json"])
def test_a_corrupted_file_is_detected_on_load_before_any_search(bench_copy, name):
    p = bench_copy / name
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    p.write_bytes(bytes(data))
    with pytest.raises(DataError, match=rf"{name}: content differs from the sha256 in manifest.json"):
        Benchmark.load(bench_copy).index("tantivy")  # the tantivy path never reads corpus.parquet


def test_a_missing_hashed_file_is_detected(bench_copy):
    (bench_copy / "corpus.parquet").unlink()
    with pytest.raises(DataError, match="corpus.parquet: missing"):
        Benchmark.load(bench_copy)


def test_the_eval_cli_reports_a_corrupted_corpus_in_one_line(bench_copy, tmp_path, capsys):
    (bench_copy / "corpus.parquet").write_bytes(b"PAR1 not really")
    assert eval_main(["--bench", str(bench_copy), "--methods", "raw", "--out", str(tmp_path / "ev")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "corpus.parquet: content differs" in err and "Traceback" not in err


def _csv(tmp_path, text: str):
    p = tmp_path / "q.csv"
    p.write_text(text)
    return p


@pytest.mark.parametrize("text, line, field", [
    ('id,query,answer_ids\n' + "1" * 5000 + ',q,"[1]"\n', 2, "id"),  # the finding: a 5,000-digit id
    ('id,query,answer_ids\n1,q,"[' + "1" * 5000 + ']"\n', 2, "answer_ids"),
    ('id,query,answer_ids\n1,q,"[' + "9" * 30 + ']"\n', 2, "answer_ids"),  # beyond int64
    ('id,query,answer_ids\n1,q,"[1]"\n-4,q,"[1]"\n', 3, "id"),
    ('id,query,answer_ids\n1,q,"[1.5]"\n', 2, "answer_ids"),
    ('id,query,answer_ids\n1,q,"' + "x" * 200_000 + '"\n', 2, None),  # over csv's field limit
])
def test_query_csv_errors_are_one_line_data_errors(tmp_path, text, line, field):
    with pytest.raises(DataError) as e:
        read_query_csv(_csv(tmp_path, text))
    assert (e.value.row, e.value.field) == (line, field)
    assert str(e.value).startswith(f"{tmp_path / 'q.csv'}:{line}: ") and len(str(e.value)) < 300


def test_non_utf8_query_files_are_data_errors(tmp_path):
    p = tmp_path / "q.csv"
    p.write_bytes(b'id,query,answer_ids\n1,caf\xe9,"[1]"\n')
    with pytest.raises(DataError, match="not UTF-8"):
        read_query_csv(p)
    s = tmp_path / "train.index"
    s.write_text("1\n" + "9" * 5000 + "\n")
    with pytest.raises(DataError, match=r"train.index:2: id: expected a non-negative integer id"):
        read_split_ids(s)


def test_a_giant_id_in_node_info_is_a_data_error(tmp_path):
    import pickle

    from stark_instruct.stark_amazon import load_products

    path = tmp_path / "node_info.pkl"
    path.write_bytes(pickle.dumps({10**5000: {"title": "x"}}))
    with pytest.raises(DataError, match="node id: expected non-negative int64 ids, got an integer of"):
        list(load_products(path))
