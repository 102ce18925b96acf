#!/bin/bash
# Hostile-user probes of the bad-input classes through the command lines (`make probe-bad-inputs`):
# prints each command's exit code and last stderr lines, flags tracebacks, then greps every file written
# for the planted secrets. Works in runs/probe-bad-inputs/ (deleted and rebuilt each time).
R=$(cd "$(dirname "$0")/.." && pwd); PY="${PYTHON:-$R/.venv/bin/python}"; export PYTHONPATH=$R OMP_NUM_THREADS=1
P=$R/runs/probe-bad-inputs; rm -rf "$P"; mkdir -p "$P"; cd "$R"
run() { echo "== $1"; shift; "$@" > $P/out.txt 2> $P/err.txt; rc=$?; echo "rc=$rc"; tail -c 400 $P/err.txt | tail -3;
        grep -q Traceback $P/err.txt && echo "!! TRACEBACK"; true; }
export OPENAI_API_KEY=sk-probe-PLANTED-000111222 HF_TOKEN=hf_probe_PLANTED_333444 MY_SERVICE_PASSWORD=pw-probe-PLANTED-555
run "build small bench" $PY -m stark_instruct.build --out $P/bench --size 300 --queries 30 --stark-queries /x/$OPENAI_API_KEY
# 1 data loss
mkdir -p $P/home/docs; echo precious > $P/home/docs/a.txt
run "build --out a folder of files" $PY -m stark_instruct.build --out $P/home --size 50 --force
run "build --out the folder's parent" $PY -m stark_instruct.build --out $P --size 50 --force
run "build --out a file" $PY -m stark_instruct.build --out $P/home/docs/a.txt --size 50
run "convert --out a folder of files" $PY -m pipelines.model convert --out $P/home --gguf $P/home/docs/a.txt --force
cat $P/home/docs/a.txt
run "rebuild own output" $PY -m stark_instruct.build --out $P/bench --size 300 --queries 30 --seed 1 --stark-queries /x/$OPENAI_API_KEY
# 2 poison rows through the score CLI
$PY - <<PYEOF
import json
from ir_core.io import atomic_write_json, write_jsonl
from pipelines.tao_config import tao_setup
from stark_instruct.benchmark import Benchmark
b = Benchmark.load("$P/bench"); qs = b.queries("train")[:5]
run = "$P/run"
atomic_write_json(run + "/config.json", tao_setup({"benchmark": "$P/bench", "report_to": "none",
    "train_launcher": "env OPENAI_API_KEY=$OPENAI_API_KEY accelerate launch", "hub_token": "hub-probe-PLANTED-777"}).to_dict())
write_jsonl(run + "/round-01/prompts.jsonl", [{"prompt_id": q["id"], "messages": [], "relevant_ids": q["relevant_ids"]} for q in qs])
atomic_write_json(run + "/round-01/policy.json", {"model_path": "m"})
texts = [r'{"searches":[{"query":"x","filter":{"field":"brand","op":"eq","value":"\ud800"}}]}', '{"searches":[{"query":"a\\u0000b"}]}',
         '{"searches":[{"query":"tent"}]}', None, "not json at all", '{"searches":[{"query":"' + "$OPENAI_API_KEY" + '"}]}']
write_jsonl(run + "/round-01/candidates.jsonl", [{"prompt_id": q["id"], "sample_idx": j, "text": t} for q in qs for j, t in enumerate(texts)])
PYEOF
run "score hostile candidates" $PY -m pipelines.stages --stage score --run-dir $P/run --round 1 --no-progress
$PY -c "
from ir_core.io import read_jsonl; from collections import Counter
rows = read_jsonl('$P/run/round-01/scored.jsonl'); print(len(rows), 'rows', Counter(r['error_code'] for r in rows))"
# 3 concurrency: a second writer while the first holds the stage
rm -rf $P/run/round-01/.done $P/run/round-01/scored.jsonl
$PY -c "
import time; from ir_core.locks import stage_lock
with stage_lock('$P/run/round-01', 'score'): time.sleep(20)" &
HOLD=$!; sleep 3
run "second score writer (holder pid $HOLD)" $PY -m pipelines.stages --stage score --run-dir $P/run --round 1 --no-progress
kill $HOLD; wait $HOLD 2>/dev/null
# 5 data files
cp -r $P/bench $P/cut; $PY -c "
p='$P/cut/queries/test.jsonl'; d=open(p,'rb').read(); open(p,'wb').write(d[:-30])"
run "eval on a cut query file" $PY -m eval.run --bench $P/cut --split test --methods raw --out $P/ev1
cp -r $P/bench $P/abc; sed -i '2s/"relevant_ids": \[[0-9]*/"relevant_ids": ["abc"/' $P/abc/queries/dev.jsonl
run "eval with \"abc\" in relevant_ids" $PY -m eval.run --bench $P/abc --split dev --methods raw --out $P/ev2
cp -r $P/bench $P/flt; sed -i '1s/"relevant_ids": \[\([0-9]*\)/"relevant_ids": [\1.0/' $P/flt/queries/dev.jsonl
run "eval with a float id" $PY -m eval.run --bench $P/flt --split dev --methods raw --out $P/ev3
cp -r $P/bench $P/bad; printf 'garbage' | dd of=$P/bad/corpus.parquet bs=1 seek=5000 conv=notrunc 2>/dev/null
run "eval on a corrupted corpus (tantivy)" $PY -m eval.run --bench $P/bad --split dev --methods raw --out $P/ev4
run "eval works on the good bench" $PY -m eval.run --bench $P/bench --split dev --methods raw,oracle --limit 20 --out $P/ev5
$PY -c "
p='$P/run/round-01/candidates.jsonl'; l=open(p).read().splitlines(True); l[3]='{broken\n'; open(p,'w').write(''.join(l))"
rm -rf $P/run/round-01/.done $P/run/round-01/scored.jsonl
run "score with a damaged candidates line" $PY -m pipelines.stages --stage score --run-dir $P/run --round 1 --no-progress
# 4 secrets: grep every file written under the probe folder (the inputs the probe itself wrote are excluded)
echo "== planted secrets found in written files:"
grep -rlE "sk-probe-PLANTED|hf_probe_PLANTED|pw-probe-PLANTED|hub-probe-PLANTED" $P --exclude=out.txt --exclude=err.txt || echo "none"
