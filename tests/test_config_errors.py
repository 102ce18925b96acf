"""Bad settings end in one line naming the file:line (or flag) and field, exit status 2, nothing written."""

from __future__ import annotations

import pytest

from pipelines.tao import main as tao_main


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("n: four\n", "cfg.yaml:1: n: invalid int value: 'four'"),
        ("rounds: 1\nn: 2.5\n", "cfg.yaml:2: n: invalid int value: 2.5"),
        ("rounds: -1\n", "cfg.yaml:1: rounds: must be >= 0, got -1"),
        ("top_p: 5\n", "cfg.yaml:1: top_p: must be <= 1, got 5.0"),
        ("temperature: .inf\n", "cfg.yaml:1: temperature: want a finite number, got inf"),
        ("k: 0\n", "cfg.yaml:1: k: must be >= 1, got 0"),
        ("engine: nosuch\n", "cfg.yaml:1: engine: invalid choice: 'nosuch' (choose from 'tantivy', 'bm25')"),
        ("\nlr: 0.1\n", "cfg.yaml:2: lr: unknown field"),
        ("- n: 4\n", "cfg.yaml:1: the top level must be a mapping of field: value, got a list"),
        ("n: [4\n", "cfg.yaml:2: YAML syntax error:"),
    ],
)
def test_bad_config_file_is_one_line(tmp_path, capsys, monkeypatch, yaml_text, expected):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cfg.yaml").write_text(yaml_text)
    with pytest.raises(SystemExit) as e:
        tao_main(["--config", "cfg.yaml", "--run_dir", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2
    assert err.startswith(f"error: {expected}") and "\n" not in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--n", "2.5"], "--n: invalid int value: '2.5'"),
        (["--top_p", "5"], "--top_p: top_p: must be <= 1, got 5.0"),
        (["--strategy", "ppo"], "strategy: invalid choice: 'ppo'"),
        (["--bogus", "1"], "--bogus: unknown option"),
    ],
)
def test_bad_flag_is_one_line(tmp_path, capsys, argv, expected):
    with pytest.raises(SystemExit) as e:
        tao_main([*argv, "--run_dir", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2
    assert err.startswith(f"error: {expected}") and "\n" not in err
    assert not (tmp_path / "run").exists()
