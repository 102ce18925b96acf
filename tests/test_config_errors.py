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
        ("learning_rate: -1\n", "cfg.yaml:1: learning_rate: must be > 0, got -1.0"),
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


@pytest.mark.parametrize(
    ("module", "argv", "expected"),
    [
        ("stark_instruct.build", ["--size", "0"], "--size: size: must be >= 1, got 0"),
        ("stark_instruct.build", ["--source", "nosuch"], "--source: invalid choice: 'nosuch'"),
        ("eval.run", ["--k", "0"], "--k: k: must be >= 1, got 0"),
        ("eval.run", ["--compare", "a"], "--compare: compare: --compare needs A,B, got 'a'"),
        ("pipelines.train", ["--data_path", "x.jsonl", "--per_device_train_batch_size", "0"],
         "--per_device_train_batch_size: per_device_train_batch_size: must be >= 1, got 0"),
        ("pipelines.model", ["convert", "--dtype", "int3"], "--dtype: invalid choice: 'int3'"),
    ],
)
def test_every_cli_reports_bad_flags_in_one_line(tmp_path, capsys, module, argv, expected):
    import importlib

    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as e:
        main([*argv, "--out", str(tmp_path / "out")] if module != "pipelines.train" else argv)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2
    assert err.startswith(f"error: {expected}") and "\n" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("module", "argv", "expected"),
    [
        ("serve.__main__", ["grpc"], "--what: invalid choice: 'grpc' (choose from 'http', 'mcp')"),
        ("serve.__main__", ["http", "--port", "0"], "--port: port: must be >= 1, got 0"),
        ("serve.__main__", ["http", "--backend", "llamacpp"], "--backend: backend: invalid choice: 'llamacpp'"),
        ("pipelines.dualview.compare", [], "--models: required"),
        ("pipelines.dualview.train", ["--pairs", "p.jsonl"], "--out: required"),
        ("pipelines.dualview.diagnose", ["--budget", "0"], "--budget: budget: must be >= 1, got 0"),
        ("eval.followir", ["--tasks", "Core17InstructionRetrieval"], "--model: required"),
        ("serve.screenshot", ["--timeout", "-1"], "--timeout: timeout: must be > 0, got -1.0"),
    ],
)
def test_the_other_clis_parse_the_same_way(capsys, module, argv, expected):
    import importlib

    with pytest.raises(SystemExit) as e:
        importlib.import_module(module).main(argv)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2
    assert err.startswith(f"error: {expected}") and "\n" not in err


def test_positional_words_comma_lists_and_a_config_field():
    from dataclasses import dataclass

    from ir_core.config import comma_list, help_field, parse_or_exit

    @dataclass
    class Args:
        a: str = help_field("first word")
        b: list[str] = help_field("the rest", default_factory=list)
        config: str = help_field("a file the command reads itself", default="x.yaml")

    assert parse_or_exit([Args], ["one", "--b", "p,q", "r"], positional="a")[0].b == ["p,q", "r"]
    assert comma_list(["p,q", "r", " ,s"]) == ["p", "q", "r", "s"]
    (got,) = parse_or_exit([Args], ["one", "two", "--config", "c.yaml"], positional=("a", "b"), config_file=False)
    assert (got.a, got.b, got.config) == ("one", ["two"], "c.yaml")
    with pytest.raises(SystemExit):
        parse_or_exit([Args], ["one", "c.yaml", "three"], positional=("a", "config"), config_file=False)  # no field
