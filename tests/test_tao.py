"""The TAO loop end to end for one round on a tiny benchmark: real scorer, selection, TRL training and
eval harness; the sampler is a fake (a random tiny model writes no valid plans, so nothing would train)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes.policies import FakePolicy
from fakes.tiny_model import make_tiny_model

from ir_core.config import ConfigError
from ir_core.io import read_json, read_jsonl
from pipelines.stages import main as stages_cli
from pipelines.tao import run_tao
from pipelines.tao_config import tao_setup
from pipelines.tao_report import markdown_table


@pytest.fixture(scope="module")
def bench_path(request, tmp_path_factory) -> Path:
    if "tiny_benchmark" in request.fixturenames or _has_fixture(request, "tiny_benchmark"):
        tb = request.getfixturevalue("tiny_benchmark")
        return Path(getattr(tb, "path", tb))
    from stark_instruct.build import build_benchmark

    return Path(build_benchmark(tmp_path_factory.mktemp("bench") / "b", size=2000, seed=0))


def _has_fixture(request, name: str) -> bool:
    try:
        request.getfixturevalue(name)
        return True
    except pytest.FixtureLookupError:
        return False


def test_one_round_end_to_end(bench_path, tmp_path, monkeypatch):
    from pipelines.round_prompts import build_prompts
    from stark_instruct.benchmark import Benchmark

    texts = [
        m["content"] for p in build_prompts(Benchmark.load(bench_path), "train", 40) for m in p["messages"]
    ]
    model = make_tiny_model(tmp_path / "model", corpus=texts)
    calls: list = []
    setup = tao_setup(dict(
        benchmark=str(bench_path),
        model_name_or_path=str(model),
        run_dir=str(tmp_path / "run"),
        rounds=1,
        n=4,
        max_train_prompts=12,
        sample_batch_size=4,
        strategy="best-of-n",
        threshold=0.05,
        margin=-1.0,  # no raw-query baseline: every prompt is kept, tied or thresholded
        merge=False,  # round 1 evaluates the adapter (asserted below)
        num_train_epochs=1,
        per_device_train_batch_size=4,
        max_length=2048,
        lora_r=4,
        lora_alpha=8,
        eval_dev_limit=16,
        eval_test_limit=8,
        report_to="none",
        engine="tantivy",
        max_searches=2,
    ))
    cfg = setup.tao
    schemas: list = []
    factory = lambda spec: schemas.append(spec.plan_schema) or FakePolicy(spec.model, spec.adapter, calls)  # noqa: E731
    # cluster flow: prepare the round, sample it as two shards through the stages CLI, then continue
    assert run_tao(setup, planner_factory=factory, stop_after="prompts", progress=False)["round"] == 1
    monkeypatch.setattr("pipelines.stages.make_planner", factory)
    for shard in ("0/2", "1/2"):
        assert (
            stages_cli(
                ["--stage", "sample", "--run-dir", cfg.run_dir, "--round", "1", "--shard", shard, "--no-progress"]
            )
            == 0
        )
    summary = run_tao(setup, planner_factory=factory, progress=False)
    run = Path(cfg.run_dir)
    rd = run / "round-01"
    assert len(list(rd.glob("candidates.shard-*.jsonl"))) == 2
    cands = read_jsonl(rd / "candidates.jsonl")
    assert len(cands) == 12 * 4
    assert {(c["prompt_id"], c["sample_idx"]) for c in cands} == {
        (p["prompt_id"], j) for p in read_jsonl(rd / "prompts.jsonl") for j in range(4)
    }
    scored = read_jsonl(rd / "scored.jsonl")
    assert all("reward" in s and "valid" in s for s in scored)
    assert any(s["reward"] > 0 for s in scored) and any(s["reward"] == 0 for s in scored)
    stats = read_json(rd / "train.stats.json")
    assert stats["rows"] + stats["dropped_tie"] + stats["dropped_threshold"] == 12
    assert stats["rows"] > 0
    assert (rd / "train" / "adapter" / "adapter_config.json").exists()
    # the recipe trains in a fresh interpreter, from the config file the loop wrote for it
    assert read_json(rd / "train_config.json")["data_path"] == str(rd / "train.jsonl")
    # the trained adapter is what round 1 evaluates
    assert (str(model), str(rd / "train" / "adapter")) in calls
    rows = read_jsonl(run / "rounds.jsonl")
    assert [r["round"] for r in rows] == [0, 1]
    assert "raw" in rows[0]["dev"]["baselines"]
    for r in rows:
        assert 0.0 <= r["dev"]["policy"]["all"]["recall"] <= 1.0
        assert r["test"]["policy"]["all"]["n"] == 8
    # the fake plans the same with or without the adapter, so both rounds tie on dev and the earlier is kept
    assert rows[0]["dev"]["policy"]["all"]["recall"] == rows[1]["dev"]["policy"]["all"]["recall"]
    assert summary["best"]["round"] == 0
    assert summary["best"]["dev"] == rows[0]["dev"]["policy"]
    assert [r["is_best"] for r in summary["rounds"]] == [True, False]
    assert read_json(run / "best.json")["round"] == 0
    # the decoding bound reaches every planner and the run's schema (which the shard CLI read)
    assert schemas and all(s["properties"]["searches"]["maxItems"] == 2 for s in schemas)
    assert read_json(run / "plan_schema.json")["properties"]["searches"]["maxItems"] == 2
    table = (run / "rounds.md").read_text()
    assert "| 0 | dev |" in table and "| 1 | dev |" in table and "| raw | dev |" in table
    manifest = read_json(run / "manifest.json")
    assert manifest["inputs"]["benchmark_queries"]["sha256"]
    assert manifest["config"]["tao"]["strategy"] == "best-of-n"

    # a second call finds every stage done and changes nothing
    before = (run / "rounds.jsonl").read_bytes()
    n_calls = len(calls)
    run_tao(setup, planner_factory=factory, progress=False)
    assert (run / "rounds.jsonl").read_bytes() == before
    assert len(calls) == n_calls


def test_best_is_chosen_on_dev_not_test():
    rows = [
        {
            "round": 0,
            "dev": {"policy": {"all": {"recall": 0.30, "validity": 1.0}}},
            "test": {"policy": {"all": {"recall": 0.90, "validity": 1.0}}},
        },
        {
            "round": 1,
            "dev": {"policy": {"all": {"recall": 0.40, "validity": 1.0}}},
            "test": {"policy": {"all": {"recall": 0.10, "validity": 1.0}}},
        },
    ]
    from pipelines.tao import best_round

    assert best_round({r["round"]: r for r in rows})["round"] == 1
    assert "| 1 | dev |" in markdown_table(rows, 20)


def test_config_rejects_greedy_and_unknown_keys():
    with pytest.raises(ValueError):
        tao_setup({"temperature": 0.0})
    with pytest.raises(ValueError):
        tao_setup({"strategy": "ppo"})
    with pytest.raises(ValueError):
        tao_setup({"no_such_key": 1})
    with pytest.raises(ValueError, match="max_searches must be an integer in 1..5"):
        tao_setup({"max_searches": 6})


def test_cli_rejects_a_bad_config_in_one_line(capsys):
    from pipelines.tao import main

    with pytest.raises(SystemExit) as e:
        main(["--config", "configs/tao/demo.yaml", "--bogus", "1", "--run-dir", "unused"])
    assert e.value.code == 2
    assert capsys.readouterr().err.strip() == "error: --bogus: unknown option"


def test_context_distillation_trains_and_asks_the_policy_with_the_request_only_prompt(bench_path, tmp_path):
    """policy_mode: round 1 samples with the compact spec, trains on request-only rows; the trained policy
    records that form, and evaluation and round 2's sampling ask it with the request turn alone."""
    from pipelines.round_prompts import build_prompts
    from stark_instruct.benchmark import Benchmark

    texts = [m["content"] for p in build_prompts(Benchmark.load(bench_path), "train", 40, mode="compact", examples=[])
             for m in p["messages"]]
    model = make_tiny_model(tmp_path / "model", corpus=texts)
    seen: list = []  # (adapter, roles of each request's messages)

    class Recording(FakePolicy):
        def __init__(self, model_path, adapter_path, calls):
            super().__init__(model_path, adapter_path, calls)
            self.adapter = adapter_path

        def plan(self, requests):
            seen.extend((self.adapter, tuple(m["role"] for m in r.messages)) for r in requests)
            return super().plan(requests)

        def sample(self, requests, n, temperature, top_p, seed):
            seen.extend((self.adapter, tuple(m["role"] for m in r.messages)) for r in requests)
            return super().sample(requests, n, temperature, top_p, seed)

    setup = tao_setup(dict(
        benchmark=str(bench_path), model_name_or_path=str(model), run_dir=str(tmp_path / "run"), rounds=2, n=4,
        max_train_prompts=8, sample_batch_size=8, threshold=0.0, margin=-1.0, num_train_epochs=1,
        per_device_train_batch_size=4, lora_r=4, lora_alpha=8, eval_dev_limit=8, eval_test=False,
        report_to="none", mode="compact", examples="none", policy_mode="request", continue_from="last",
        merge=False,  # the trained policy is told apart from the base by its adapter
        train_launcher=None,  # in the loop's process (test_one_round_end_to_end runs the default subprocess)
    ))
    calls: list = []
    run_tao(setup, planner_factory=lambda spec: Recording(spec.model, spec.adapter, calls), progress=False)
    run = Path(setup.tao.run_dir)
    rows = read_jsonl(run / "rounds.jsonl")
    assert rows[1]["select"]["rows"] > 0
    assert rows[1]["prompt_mode"] == {"sampled": "compact", "trained": "request"}
    assert rows[1]["policy_in"]["prompt_mode"] is None and rows[1]["policy_out"]["prompt_mode"] == "request"
    r1 = [json.loads(x) for x in (run / "round-01" / "prompts.jsonl").read_text().splitlines()]
    assert all(p["messages"][0]["role"] == "system" for p in r1)  # round 1 samples with the spec
    train_rows = read_jsonl(run / "round-01" / "train.jsonl")
    assert train_rows and all([m["role"] for m in t["prompt"]] == ["user"] for t in train_rows)
    # the same requests: each distilled row is the last turn of its sampled prompt
    sampled = {p["messages"][-1]["content"] for p in r1}
    assert {t["prompt"][0]["content"] for t in train_rows} <= sampled
    r2 = [json.loads(x) for x in (run / "round-02" / "prompts.jsonl").read_text().splitlines()]
    assert all([m["role"] for m in p["messages"]] == ["user"] for p in r2)
    assert rows[2]["prompt_mode"]["sampled"] == "request"
    # the untrained policy is asked with the spec, every trained one with the request turn alone
    adapter1 = rows[1]["policy_out"]["adapter_path"]
    assert {roles for a, roles in seen if a is None} == {("system", "user")}
    assert {roles for a, roles in seen if a == adapter1} == {("user",)}
    assert "compact → request" in (run / "rounds.md").read_text()


def test_round_schedule_picks_each_rounds_strategy_and_learning_rate():
    import trl

    setup = tao_setup({"strategy": "best-of-n", "round_strategies": ["best-of-n", "dpo"],
                       "round_learning_rates": [1e-3, 5e-4], "num_train_epochs": 3})
    one, two, three = (setup.for_round(r) for r in (1, 2, 3))
    assert type(one.training) is trl.SFTConfig and one.training.learning_rate == 1e-3
    assert type(two.training) is trl.DPOConfig and two.training.learning_rate == 5e-4
    assert type(three.training) is trl.DPOConfig and three.tao.strategy == "dpo"  # the last entry goes on
    assert two.training.num_train_epochs == 3 and two.model == setup.model  # the rest is the run's
    assert tao_setup({}).for_round(2) is not None
    # a DPO run's own fields stay with its DPO rounds: SFT has a loss_type of its own
    dpo_run = tao_setup({"strategy": "dpo", "round_strategies": ["best-of-n", "dpo"], "loss_type": ["sigmoid", "sft"],
                         "learning_rate": 3e-4})
    sft = dpo_run.for_round(1).training
    assert type(sft) is trl.SFTConfig and sft.loss_type == "nll" and sft.learning_rate == 3e-4
    assert dpo_run.for_round(2).training.loss_type == ["sigmoid", "sft"]
    with pytest.raises(ConfigError, match="round_strategies"):
        tao_setup({"round_strategies": ["best-of-n", "ppo"]})


def test_edit_search_and_a_round_schedule_end_to_end(bench_path, tmp_path):
    """link_request + explore_steps: round 1 explores around the samples and trains SFT on the best plans,
    round 2 trains DPO pairs (round_strategies), each with its own learning rate."""
    from pipelines.round_prompts import build_prompts
    from stark_instruct.benchmark import Benchmark

    texts = [m["content"] for p in build_prompts(Benchmark.load(bench_path), "train", 40, mode="compact", examples=[])
             for m in p["messages"]]
    model = make_tiny_model(tmp_path / "model", corpus=texts)
    setup = tao_setup(dict(
        benchmark=str(bench_path), model_name_or_path=str(model), run_dir=str(tmp_path / "run"), rounds=2, n=2,
        max_train_prompts=8, sample_batch_size=8, threshold=0.0, margin=0.0, min_gap=0.01, num_train_epochs=1,
        per_device_train_batch_size=4, lora_r=4, lora_alpha=8, eval_dev_limit=8, eval_test=False,
        report_to="none", mode="compact", examples="none", constrained=True, link_values=True, link_request=True,
        max_searches=1, max_filter_depth=2, explore_steps=2, continue_from="last",
        round_strategies=["best-of-n", "dpo"], round_learning_rates=[1e-3, 5e-4],
        train_launcher=None,  # in the loop's process (test_one_round_end_to_end runs the default subprocess)
    ))
    calls: list = []
    run_tao(setup, planner_factory=lambda spec: FakePolicy(spec.model, spec.adapter, calls), progress=False)
    run = Path(setup.tao.run_dir)
    rows = read_jsonl(run / "rounds.jsonl")
    for r, strategy in ((1, "best-of-n"), (2, "dpo")):
        rd = run / f"round-{r:02d}"
        explored = read_jsonl(rd / "explored.jsonl")
        assert explored and all(e["source"] == "edit" and e["valid"] for e in explored)
        assert rows[r]["score"]["explore"]["added"] == len(explored)
        assert rows[r]["select"]["strategy"] == strategy and rows[r]["select"]["rows"] > 0
    sft, dpo = (read_jsonl(run / f"round-0{r}" / "train.jsonl") for r in (1, 2))
    edits = {e["text"] for e in read_jsonl(run / "round-01" / "explored.jsonl")}
    assert all("completion" in t for t in sft) and any(t["completion"][0]["content"] in edits for t in sft)
    assert all({"chosen", "rejected"} <= t.keys() for t in dpo)
    configs = [read_json(run / f"round-0{r}" / "train" / "train_metrics.json")["config"] for r in (1, 2)]
    assert [(c["objective"], c["learning_rate"]) for c in configs] == [("best-of-n", 1e-3), ("dpo", 5e-4)]
