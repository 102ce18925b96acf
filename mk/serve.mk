# Serving (serve/, README "Serving"): the HTTP service with its page, the MCP server, the serving benchmark.
#   make serve          uvicorn on 127.0.0.1:$(PORT) with the newest tuned TAO checkpoint under runs/, else
#                       the untrained models/smollm2-135m-instruct (it prints which); SERVE_BACKEND=vllm|hf
#   make serve-mcp      the MCP server over stdio (MCP_TRANSPORT=http: streamable HTTP on $(PORT), path /mcp);
#                       silent on stdout but for JSON-RPC: no command echo, prerequisites' output to stderr
#   make serve-screenshot  docs/serve.png from a running `make serve` (headless Chromium)
#   make bench-serve    p50/p95 latency and requests/s at concurrency 1 and 8, vLLM and transformers
#   make test-serve     the serving tests (API, HTTP, MCP, page)
PORT ?= 8000
SERVE_BACKEND ?= vllm
SERVE_MODEL ?=
MCP_TRANSPORT ?= stdio
SERVE_ARGS = --bench $(BENCH) --backend $(SERVE_BACKEND) $(if $(SERVE_MODEL),--model $(SERVE_MODEL))
# transformers is ~10x slower per request here, so it gets fewer requests (same queries, in order)
BENCH_SERVE_VLLM ?= --requests 128 --requests-c1 32
BENCH_SERVE_HF ?= --requests 16 --requests-c1 4

.PHONY: serve serve-mcp serve-screenshot bench-serve test-serve

serve: venv benchmark ## HTTP service and page on 127.0.0.1:$(PORT) (docs/serve.md)
	$(PY) -m serve http $(SERVE_ARGS) --port $(PORT)

# stdout is the MCP stdio channel: make must not echo the command, and whatever building the venv or the
# benchmark prints goes to stderr (a sub-make, as prerequisites would print on stdout)
serve-mcp: ## the MCP server (stdio; MCP_TRANSPORT=http for streamable HTTP); stdout carries only JSON-RPC
	@$(MAKE) --no-print-directory venv benchmark >&2
	@$(PY) -m serve mcp $(SERVE_ARGS) --transport $(MCP_TRANSPORT) --port $(PORT)

serve-screenshot: venv ## docs/serve.png from a running `make serve` (headless Chromium)
	$(PY) -m serve.screenshot --url http://127.0.0.1:$(PORT)/ --out docs/serve.png

bench-serve: venv benchmark ## serving latency and requests/s, vLLM and transformers
	nice -n 10 $(PY) scripts/bench_serve.py --bench $(BENCH) --backends vllm $(BENCH_SERVE_VLLM) --out runs/bench/serve-vllm.json
	nice -n 10 $(PY) scripts/bench_serve.py --bench $(BENCH) --backends hf $(BENCH_SERVE_HF) --out runs/bench/serve-hf.json

test-serve: venv browser ## the serving tests (API, HTTP, MCP, page, hostile inputs)
	$(PY) -m pytest -q tests/test_serve_api.py tests/test_serve_http.py tests/test_serve_mcp.py tests/test_serve_page.py \
		tests/test_serve_hostile.py
