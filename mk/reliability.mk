# Bad-input probes (issue 12): hostile plans through the engine, hostile use of the command lines.
.PHONY: probe-bad-inputs

probe-bad-inputs: ## hostile plans through the engine, hostile use of the command lines (docs/reliability.md)
	$(PY) scripts/probe_plans.py --bench data/benchmark/synthetic --n 3000
	bash scripts/probe_bad_inputs.sh
