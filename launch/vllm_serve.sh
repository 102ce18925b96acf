#!/bin/bash
# Serve the planner (base model + a TAO LoRA adapter) with vLLM's OpenAI-compatible server, e.g. for
# evaluation through the OpenAI backend or for a demo. GPU only (pip install '.[gpu]').
#   launch/vllm_serve.sh models/qwen3-4b-instruct-2507 runs/tao-qwen3-4b/round-02/train/adapter
# Query it as model "planner" (the adapter) or the base model's path.
set -euo pipefail

MODEL=${1:?usage: vllm_serve.sh MODEL [ADAPTER]}
ADAPTER=${2:-}
TP=${TP:-1}                  # tensor parallel size (GPUs per replica)
PORT=${PORT:-8000}
MAX_LEN=${MAX_LEN:-4096}     # prompt (schema + examples, ~1k tokens) + plan
PY=${PY:-.venv/bin/python}

args=(serve "$MODEL" --port "$PORT" --tensor-parallel-size "$TP" --max-model-len "$MAX_LEN"
      --dtype bfloat16 --gpu-memory-utilization "${GPU_MEM:-0.9}" --seed 0)
if [[ -n "$ADAPTER" ]]; then
  args+=(--enable-lora --max-lora-rank "${MAX_LORA_RANK:-64}" --lora-modules "planner=$ADAPTER")
fi
# `vllm` console script from the same environment; API keys, if any, come from VLLM_API_KEY.
exec "$(dirname "$PY")/vllm" "${args[@]}"
