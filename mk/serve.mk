# Serving (serve/, README "Serving"): the HTTP service with its page, the MCP server, the serving benchmark.
#   make serve          uvicorn on 127.0.0.1:$(PORT) with the newest tuned TAO checkpoint under runs/, else
#                       the untrained models/smollm2-135m-instruct (it prints which); SERVE_BACKEND=vllm|hf
#   make serve-mcp      the MCP server over stdio (MCP_TRANSPORT=http: streamable HTTP on $(PORT), path /mcp)
#   make serve-screenshot  docs/serve.png from a running `make serve` (headless Chromium)
#   make bench-serve    p50/p95 latency and requests/s at concurrency 1 and 8, vLLM and transformers
#   make test-serve     the serving tests (API, HTTP, MCP, page)
PORT ?= 8000
SERVE_BACKEND ?= vllm
SERVE_MODEL ?=
MCP_TRANSPORT ?= stdio
SERVE_ARGS = --bench $(BENCH) --backend $(SERVE_BACKEND) $(if $(SERVE_MODEL),--model $(SERVE_MODEL))
BENCH_SERVE_OUT ?= runs/bench/serve.json
BENCH_SERVE_REQUESTS ?= 48

.PHONY: serve serve-mcp serve-screenshot bench-serve test-serve

serve: venv benchmark
	$(PY) -m serve http $(SERVE_ARGS) --port $(PORT)

serve-mcp: venv benchmark
	$(PY) -m serve mcp $(SERVE_ARGS) --transport $(MCP_TRANSPORT) --port $(PORT)

serve-screenshot: venv
	$(PY) -m serve.screenshot --url http://127.0.0.1:$(PORT)/ --out docs/serve.png

bench-serve: venv benchmark
	nice -n 10 $(PY) scripts/bench_serve.py --bench $(BENCH) --backends vllm hf --requests $(BENCH_SERVE_REQUESTS) \
		--out $(BENCH_SERVE_OUT)

test-serve: venv
	$(PY) -m pytest -q tests/test_serve_api.py tests/test_serve_http.py tests/test_serve_mcp.py tests/test_serve_page.py
