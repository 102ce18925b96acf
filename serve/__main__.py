"""`python -m serve http|mcp`: the HTTP service (uvicorn) or the MCP server (stdio / streamable HTTP).

Without --model it serves the newest tuned TAO checkpoint under --runs-dir, else the untrained model,
and prints which (on stderr: over MCP stdio, stdout carries JSON-RPC only, from the first byte).
"""

from __future__ import annotations

import argparse
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from serve.planners import BACKENDS

    p = argparse.ArgumentParser(prog="python -m serve", description=__doc__)
    p.add_argument("what", choices=("http", "mcp"), help="the HTTP service with its page, or the MCP server")
    p.add_argument("--bench", default="data/benchmark/synthetic", help="a built benchmark directory")
    p.add_argument("--backend", default="vllm", choices=BACKENDS)
    p.add_argument("--model", default=None, help="checkpoint folder or API model name (default: newest tuned)")
    p.add_argument("--runs-dir", default="runs", help="where to look for TAO runs (best.json)")
    p.add_argument("--reranker", default=None, help="an encoder folder for the instruction-aware reranker")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--timeout", type=float, default=30.0, help="per-request time limit, seconds")
    p.add_argument("--transport", default="stdio", choices=("stdio", "http"), help="MCP transport")
    p.add_argument("--allowed-host", action="append", default=[], metavar="HOST",
                   help="HTTP: another Host header to serve besides the local names and --host (repeatable; "
                        "'*' for any); the rest are refused, against DNS rebinding")
    args = p.parse_args(argv)
    if not 0 < args.port < 65536:
        p.error(f"--port must be in 1..65535, got {args.port}")
    if args.timeout <= 0:
        p.error(f"--timeout must be > 0, got {args.timeout}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wire = None
    if args.what == "mcp" and args.transport == "stdio":
        from serve.mcp_server import claim_stdout

        wire = claim_stdout()  # before anything loads: vLLM logs to stdout
    from serve.api import Retriever

    try:
        retriever = Retriever.load(args.bench, args.backend, args.model, args.runs_dir, args.reranker)
    except (FileNotFoundError, ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    about = f"{args.backend} planner, {retriever.policy.describe()}"
    # stdout is the MCP stdio channel: everything human-readable goes to stderr
    print(f"serving {about} over {len(retriever.bench)} products ({args.bench})", file=sys.stderr, flush=True)
    try:
        if args.what == "http":
            import uvicorn

            from serve.app import LOCAL_HOSTS, create_app

            hosts = [*LOCAL_HOSTS, args.host if ":" not in args.host else f"[{args.host}]", *args.allowed_host]
            app = create_app(retriever, timeout_s=args.timeout, description=about, allowed_hosts=hosts)
            uvicorn.run(app, host=args.host, port=args.port, log_level="info")
        else:
            from serve.mcp_server import build_mcp, run_stdio

            server = build_mcp(retriever, timeout_s=args.timeout)
            if wire is not None:
                run_stdio(server, wire)
            else:
                server.run("streamable-http", host=args.host, port=args.port)
    finally:
        retriever.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
