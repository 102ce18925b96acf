"""Bad inputs, class 1 (data loss): commands that write a folder never delete what is not theirs."""

from __future__ import annotations

import json

import pytest
from fakes.skb import write_skb

from ir_core.config import ConfigError
from ir_core.outdir import OutputDirError
from pipelines import model as pm
from stark_instruct import build as sb
from stark_instruct.benchmark import Benchmark

SMALL = {"size": 120, "queries": 12}


def _someones_folder(path):
    path.mkdir(parents=True)
    (path / "thesis.tex").write_text("years of work")
    (path / "results").mkdir()
    (path / "results" / "table.csv").write_text("a,b\n1,2\n")
    return {p.relative_to(path): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def _unchanged(path, files) -> bool:
    return {p.relative_to(path): p.read_bytes() for p in path.rglob("*") if p.is_file()} == files


def _no_leftovers(parent) -> bool:
    return not [p for p in parent.iterdir() if p.name.startswith(".") and (".partial" in p.name
                                                                           or ".old-" in p.name
                                                                           or p.name.endswith(".lock"))]


def test_build_refuses_a_folder_of_someone_elses_files(tmp_path, capsys):
    out = tmp_path / "mine"
    files = _someones_folder(out)
    with pytest.raises(OutputDirError, match="did not write"):
        sb.build_benchmark(out, **SMALL)
    with pytest.raises(SystemExit) as e:
        sb.main(["--out", str(out), "--size", "120", "--queries", "12", "--force"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "choose a new --out" in err
    assert _unchanged(out, files) and _no_leftovers(tmp_path)


def test_build_pointed_at_the_stark_root_keeps_node_info(tmp_path, capsys):
    root = write_skb(tmp_path / "skb", n=6)
    pkl = next(root.rglob("node_info.pkl"))
    before = pkl.read_bytes()
    with pytest.raises(SystemExit) as e:
        sb.main(["--source", "stark", "--stark-root", str(root), "--out", str(root),
                 "--stark-queries", str(tmp_path), "--force"])
    assert e.value.code == 2 and "refusing to replace" in capsys.readouterr().err
    assert pkl.read_bytes() == before


def test_rebuild_over_an_own_output_replaces_it_whole(tmp_path):
    out = tmp_path / "bench"
    sb.build_benchmark(out, seed=0, **SMALL)
    first = (out / "queries" / "test.jsonl").read_text()
    (out / "stale-file-from-the-old-build").write_text("x")
    sb.build_benchmark(out, seed=1, **SMALL)  # a new config: rebuilt and swapped in
    assert (out / sb.BUILD_MARKER).is_file() and not (out / "stale-file-from-the-old-build").exists()
    assert (out / "queries" / "test.jsonl").read_text() != first
    assert Benchmark.load(out).queries("test") and _no_leftovers(tmp_path)


def test_a_failed_rebuild_leaves_the_old_benchmark_intact(tmp_path, monkeypatch):
    out = tmp_path / "bench"
    sb.build_benchmark(out, **SMALL)
    manifest = (out / "manifest.json").read_bytes()

    def boom(*a, **k):
        raise RuntimeError("killed mid-build")

    monkeypatch.setattr(sb, "render_card", boom)
    with pytest.raises(RuntimeError, match="killed"):
        sb.build_benchmark(out, force=True, **SMALL)
    assert (out / "manifest.json").read_bytes() == manifest and Benchmark.load(out).queries("dev")
    assert _no_leftovers(tmp_path)


def test_a_legacy_benchmark_without_marker_is_still_ours(tmp_path):
    out = tmp_path / "bench"
    sb.build_benchmark(out, **SMALL)
    (out / sb.BUILD_MARKER).unlink()  # built before markers existed: recognised by its manifest
    sb.build_benchmark(out, force=True, **SMALL)
    assert (out / sb.BUILD_MARKER).is_file()


def test_an_empty_folder_may_be_written(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    sb.build_benchmark(out, **SMALL)
    assert (out / "corpus.parquet").is_file()


def test_a_file_or_symlink_at_out_is_refused(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("keep me")
    with pytest.raises(OutputDirError, match="not a folder"):
        sb.build_benchmark(f, **SMALL)
    target = tmp_path / "target"
    target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(OutputDirError, match="symbolic link"):
        sb.build_benchmark(link, **SMALL)
    assert f.read_text() == "keep me" and link.is_symlink()


def test_size_zero_is_a_one_line_error_not_an_empty_benchmark(tmp_path, capsys):
    with pytest.raises(ConfigError, match="size: must be >= 1"):
        sb.build_benchmark(tmp_path / "b", size=0)
    with pytest.raises(SystemExit) as e:
        sb.main(["--out", str(tmp_path / "b"), "--size", "0"])
    assert e.value.code == 2 and "--size" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_convert_refuses_a_folder_of_someone_elses_files(tmp_path, capsys):
    src = tmp_path / "any.gguf"
    src.write_bytes(b"GGUF not even a real one: refused before it is read")
    out = tmp_path / "model"
    files = _someones_folder(out)
    with pytest.raises(OutputDirError, match="converted.json"):
        pm.convert(out, src)
    with pytest.raises(SystemExit) as e:
        pm.main(["convert", "--out", str(out), "--gguf", str(src), "--force"])
    assert e.value.code == 2 and "refusing to replace" in capsys.readouterr().err
    assert _unchanged(out, files)


def test_convert_replaces_its_own_output(tmp_path):
    from fakes.tiny_gguf import write_tiny_gguf

    src = tmp_path / "tiny.gguf"
    write_tiny_gguf(src)
    out = pm.convert(tmp_path / "model", src)
    (out / "extra.txt").write_text("from the old conversion")
    pm.convert(out, src, force=True)
    assert json.loads((out / pm.MARKER).read_text())["source"] == str(src)
    assert not (out / "extra.txt").exists() and _no_leftovers(tmp_path)


@pytest.mark.parametrize("argv, flag", [
    (["--size", "-5"], "--size"), (["--queries", "-1"], "--queries"), (["--threads", "0"], "--threads"),
    (["--max-base-queries", "-2"], "--max-base-queries"), (["--reference-date", "yesterday"], "--reference-date"),
])
def test_build_settings_are_checked_before_anything_is_written(tmp_path, capsys, argv, flag):
    with pytest.raises(SystemExit) as e:
        sb.main(["--out", str(tmp_path / "b"), *argv])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith(f"error: {flag}") and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []
