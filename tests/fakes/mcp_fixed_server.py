"""`python tests/fakes/mcp_fixed_server.py BENCH [http PORT]`: the real MCP server over a FixedPlanner.

The MCP tests start it as a subprocess and talk to it through the SDK's own client, so the server side
(tool schema, structured output, resource, transports) is the production code; only the model is fixed.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

_spec = importlib.util.spec_from_file_location("fixed_planner", Path(__file__).parent / "fixed_planner.py")
fixed = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixed)


def main() -> None:
    from serve.api import Retriever
    from serve.mcp_server import build_mcp, claim_stdout, run_stdio
    from stark_instruct.benchmark import Benchmark

    http = len(sys.argv) > 2 and sys.argv[2] == "http"
    wire = None if http else claim_stdout()  # as `python -m serve mcp` does
    print("loading the model ...", flush=True)  # stray stdout, as vLLM writes it: must miss the wire
    os.system("echo a child process writes to stdout too")  # noqa: S605 - a fixed command
    bench = Benchmark.load(sys.argv[1])
    brand = bench.meta(0)["brand"]
    planner = fixed.FixedPlanner({"jacket": fixed.brand_plan("jacket", brand), "broken": "no plan"},
                                 errors={"enormous": "prompt_too_long: 5000 + 160 tokens > 4096"})
    server = build_mcp(Retriever(bench, planner))
    if http:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[3]), stateless_http=False)
    else:
        run_stdio(server, wire)


if __name__ == "__main__":
    main()
